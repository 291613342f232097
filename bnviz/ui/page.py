"""The page: sidebar controls, the play/pause/step/reset bar, the live status and the views."""

from __future__ import annotations

import streamlit as st
import torch

from ..config import TrainConfig
from ..datasets import DatasetUnavailable
from ..scenarios import FREE_PLAY, SCENARIOS
from . import links, scenario_panel, sidebar
from .session import Session, structural_key
from .views import activations, export, gradients, running_stats, theory, train_eval, training

# One thread per training session: on a shared 2-core host, sessions (threads of one server
# process) train side by side, and torch's threads would otherwise contend for the same cores.
torch.set_num_threads(1)

STEP_CHUNK = 10  # steps per press of "step"
FIRST_STEPS = 20  # trained at once on first load, so the first picture means something
REFRESH_SECONDS = 0.5  # while playing: train for part of this, then redraw
TRAIN_SHARE = 0.6  # the share of each refresh spent training
VIEWS = dict(
    zip(links.VIEWS, (training, activations, running_stats, gradients, train_eval, theory, export))
)
STATE_ICONS = {
    "playing": ":material/play_arrow:",
    "paused": ":material/pause:",
    "finished": ":material/check_circle:",
    "diverged": ":material/error:",
    "failed": ":material/error:",
    "stopped": ":material/stop:",
    "replay": ":material/history:",
}


def _start(config: TrainConfig, twin: str) -> Session:
    """A fresh session; a data set that cannot be loaded falls back to 'shapes' with a note."""
    try:
        session = Session.start(config, twin)
    except DatasetUnavailable as e:
        st.session_state["data_error"] = str(e)
        session = Session.start(config.replace(dataset="shapes"), twin)
        session.key = structural_key(config, twin)  # don't retry on every rerun
    else:
        st.session_state.pop("data_error", None)
    session.advance(steps=FIRST_STEPS)
    return session


def _current_session(config: TrainConfig, twin: str) -> Session:
    session = st.session_state.get("session")
    if session is None or (session.replay is None and session.key != structural_key(config, twin)):
        with st.spinner(f"Training the first {FIRST_STEPS} steps..."):
            session = _start(config, twin)
    elif not session.finished:  # a finished run keeps its settings; Reset starts with new ones
        with session.guard:
            session.apply_live_changes(config)
    st.session_state["session"] = session
    return session


def _play():
    st.session_state["session"].playing = True


def _pause():
    st.session_state["session"].playing = False


def _step():
    session = st.session_state["session"]
    session.playing = False
    with session.guard:
        session.advance(steps=STEP_CHUNK)


def _reset():
    st.session_state.pop("session", None)


def _buttons(session: Session):
    live = session.replay is None
    cols = st.columns([1, 1, 1, 1, 3])
    cols[0].button(
        "Play",
        key="play",
        on_click=_play,
        icon=":material/play_arrow:",
        type="primary",
        disabled=not live or session.finished or session.playing,
        width="stretch",
    )
    cols[1].button(
        "Pause",
        key="pause",
        on_click=_pause,
        icon=":material/pause:",
        disabled=not live or not session.playing,
        width="stretch",
    )
    cols[2].button(
        f"Step {STEP_CHUNK}",
        key="step",
        on_click=_step,
        icon=":material/skip_next:",
        disabled=not live or session.finished,
        width="stretch",
    )
    cols[3].button(
        "Reset",
        key="reset",
        on_click=_reset,
        icon=":material/restart_alt:",
        width="stretch",
        help="Start again from the initial weights with the current settings.",
    )


def describe(config: TrainConfig) -> str:
    """The settings of a run in one line."""
    momentum = "None (cumulative)" if config.momentum is None else f"{config.momentum:g}"
    return (
        f"{config.dataset} · widths {'/'.join(map(str, config.widths))} · {config.activation} · "
        f"{config.norm} norm {config.placement} the activation · batch {config.batch_size} · "
        f"eps {config.eps:g} · momentum {momentum} · {config.optimizer} lr {config.lr:g} · "
        f"seed {config.seed}"
    )


def _status(session: Session):
    run, state = session.run, session.state
    text = f"{STATE_ICONS[state]} **{state}** · step {run.num_steps} of {run.config.steps}"
    if session.replay is None and session.steps_per_second:
        text += f" · {session.steps_per_second:.0f} steps/s"
    st.markdown(text)
    st.caption(describe(run.config_in_force()))
    if state in ("diverged", "failed"):
        st.error(run.message, icon=":material/error:")
    if "more than 1 value per channel" in run.message:
        st.info(
            "A teaching moment, not a crash: in training mode BatchNorm normalizes each channel "
            "with the mean and variance of the batch. Here a channel held a single value (batch "
            "size 1 and a 1x1 feature map in the last block), so its variance is undefined and "
            "PyTorch refuses. A larger batch, fewer blocks, or evaluation mode (running "
            "statistics) avoids it; GroupNorm and LayerNorm do not depend on the batch at all."
        )


def _body(session: Session):
    with session.guard:
        _draw(session)


def _draw(session: Session):
    if session.playing:
        session.advance(seconds=REFRESH_SECONDS * TRAIN_SHARE)
        if not session.playing:  # finished or diverged: redraw the buttons too
            st.rerun()
    _status(session)
    scenario = _scenario()
    if scenario is not None:
        scenario_panel.render(scenario, session)
    tabs = st.tabs(list(VIEWS), key="view", on_change="rerun")
    for tab, view in zip(tabs, VIEWS.values()):
        if tab.open:  # only the open view is computed and sent to the browser
            with tab:
                view.render(session)


def _scenario():
    scenario_id = st.session_state.get("scenario", FREE_PLAY)
    return SCENARIOS.get(scenario_id)


def main():
    st.set_page_config(page_title="bnviz: BatchNorm, live", page_icon="📊", layout="wide")
    sidebar.init_state()
    if "link_notes" not in st.session_state:  # the first run of this session reads the link
        st.session_state["link_notes"] = links.apply_link(dict(st.query_params))
    scenario_id = links.scenario_picker()
    config, twin = sidebar.controls(set(st.session_state.get("hidden", [])))
    links.share_link(sidebar.values(), scenario_id)
    session = _current_session(config, twin)
    st.title("BatchNorm, live")
    if st.session_state["link_notes"]:
        st.warning(
            "Some settings in the link were ignored: " + "; ".join(st.session_state["link_notes"])
        )
    if "data_error" in st.session_state:
        st.warning(st.session_state["data_error"] + " Showing the built-in 'shapes' data set.")
    if session.replay is not None:
        st.info("Replaying a saved run: the sidebar does not apply until you go back to live.")
    _buttons(session)
    if session.replay is None and session.finished:
        waiting = session.pending_changes(config)
        if waiting:
            st.info(
                f"This run has ended, so the new {', '.join(waiting)} will apply when you press "
                "**Reset**, which starts again from the initial weights."
            )
    busy = session.playing or scenario_panel.pending(_scenario())
    st.fragment(_body, run_every=REFRESH_SECONDS if busy else None)(session)
