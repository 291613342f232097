"""The page: sidebar controls, the play/pause/step/reset bar, the live status and the views."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for

import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from .. import datasets, memory, runtree
from ..cache import SharedCache, worker
from ..config import LIVE_FIELDS, TrainConfig
from ..datasets import DatasetUnavailable
from ..scenarios import FREE_PLAY, SCENARIOS
from ..trainer import Lockstep
from . import follow, keys, links, scenario_panel, sidebar, style
from . import session as sessions
from .controls import CONTROLS, DEFAULTS, LOCKED_VALUES, plain
from .session import Frame, Session, structural_key
from .views import activations, export, gradients, running_stats, theory, train_eval, training
from .views.common import new_redraw, presenting

# Threads. Every viewer of a server is a thread of one process, and all training runs on the
# worker's threads, one per available core (bnviz/cache.py), so that at most that many
# trainings run at once and the rest wait in a visible queue. Each training uses one torch
# thread: the model is small, so torch's intra-op threads would gain little even alone and, with
# several trainings at once, would fight over the same cores. Inter-op threads serve only
# torch.jit forks, which bnviz does not use. (The interop count can only be set before torch
# first runs parallel work, hence the guard.)
torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

# Memory: one server process serves every viewer, so keep malloc from growing an arena per thread
# (see bnviz/memory.py); freed temporaries are handed back after each new run starts.
memory.tune_malloc()

# The interpreter's lock: a training thread gives it up inside every torch call and must win it
# back from every page's script thread, each time waiting up to the switch interval (5 ms by
# default) for the holder to let go. With 60 live pages the shared trainer made 3 steps/s; with
# 0.5 ms, 5-6 (bench/bench_class.py; 0.1 ms and 2 ms were both slower).
sys.setswitchinterval(0.0005)

# "bnviz compute: ..." lines in the server log: one per computation shared across sessions
logging.getLogger("bnviz").setLevel(logging.INFO)
if not logging.getLogger("bnviz").handlers:
    logging.getLogger("bnviz").addHandler(logging.StreamHandler())
log = logging.getLogger(__name__)

STEP_CHUNK = 10  # steps per press of "step"
FIRST_STEPS = 20  # trained at once on first load, so the first picture means something
# While playing, the status line redraws this often, and the charts this often: a chart whose
# figure changed is drawn anew by the browser (Streamlit remounts it), and a view's charts
# drawn 2.5 times a second kept a small laptop's browser so busy that Pause took seconds.
REFRESH_SECONDS = 0.35  # at least 2 changes of the step counter a second, with 60 pages live
CHART_REFRESH_SECONDS = 1.2
# Every page of a server runs its script on one Python interpreter: with a class of pages live
# at once, their chart redraws would take the interpreter from the trainer and from the
# websockets (and a page's status line waits while its charts redraw). So the charts redraw
# this much less often per open page (every 12 s with 60), while the status line and its step
# counter keep their pace (bench/bench_class.py measures both).
CHART_SECONDS_PER_PAGE = 0.2
QUEUE_POLL_SECONDS = 1.0  # while waiting for a training thread, the status line redraws this often
JOBS_POLL_SECONDS = 1.0  # while a scenario's experiments run, the page looks for new results
# The first steps of each configuration, trained once and cloned by every session that opens
# it (a class opening the same link computes them once). Bounded: each holds two small models.
openings = SharedCache(max_items=16)
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
    "waiting": ":material/hourglass:",
}


def _guarded(draw: Callable) -> Callable:
    """A bug while drawing shows a message, not a traceback, and is logged on the server with
    its traceback; the session and every other one go on. (BNVIZ_RAISE=1, set by the tests,
    lets it through instead.) Streamlit's rerun and stop are not Exceptions and pass."""

    @functools.wraps(draw)
    def guarded(*args, **kwargs):
        try:
            return draw(*args, **kwargs)
        except Exception:
            if os.environ.get("BNVIZ_RAISE"):
                raise
            log.exception("bnviz: drawing the page failed")
            st.error(
                "Something went wrong while drawing this page; the details are in the server's "
                "log. Press **Reset** or reload the page to go on.",
                icon=":material/error:",
            )

    return guarded


def _where(position: int | None) -> str:
    return sessions.queue_text(position, worker.threads) if position else "running"


def _wait(future: Future, key: tuple, doing: str):
    """Block this script run until the worker has done `key`, showing where it stands."""
    if not future.done():
        note, shown = st.empty(), None
        while not future.done():
            text = f"{doing} ({_where(worker.position(key))})..."
            if text != shown:  # a class waiting at once sends only what changed
                note.info(text, icon=":material/hourglass:")
                shown = text
            wait_for([future], timeout=0.25)
        note.empty()
    return future.result()


def _opening(config: TrainConfig, twin: str) -> Lockstep:
    lock = Session.lockstep(config, twin)
    lock.step(FIRST_STEPS)
    return lock


def _start(config: TrainConfig, twin: str) -> Session:
    """A fresh session; a data set that cannot be loaded falls back to 'shapes' with a note."""
    key = ("opening", config, twin)
    try:
        if key not in openings:  # a download waits here, on this page's thread, and never
            with st.spinner(f"Loading the {config.dataset} data set..."):  # on a training one
                datasets.load(config.dataset)
        future = worker.submit(key, lambda: _opening(config, twin), cache=openings)
        opening = _wait(future, key, f"Training the first {FIRST_STEPS} steps")
    except DatasetUnavailable as e:
        session = _start(config.replace(dataset="shapes"), twin)
        session.key = structural_key(config, twin)  # don't retry on every rerun
        st.session_state["data_error"] = str(e)
        return session
    except ValueError as e:  # e.g. a batch larger than the data set
        sessions.replace(st.session_state, None)  # the run it replaces stops too
        st.error(f"This run cannot start: {plain(e)}. Change the settings in the sidebar.")
        st.stop()
    st.session_state.pop("data_error", None)
    session = Session.start(config, twin, opening)
    memory.trim()  # the data set's generation and the first steps leave freed temporaries
    return session


def _connected() -> Callable[[], bool]:
    """Whether this browser session is still connected, callable from any thread: training
    stops as soon as its tab is closed. (AppTest runs without a server: always connected.)"""
    ctx = get_script_run_ctx()
    if not Runtime.exists() or ctx is None:
        return lambda: True
    runtime, session_id = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session_id)


def _train(session: Session) -> Future:
    """Queue the training of this session's branch on the worker: a known branch of the same
    history if there is one (RunTree.board), trained once for every session that rides it
    (a queued request is not repeated)."""
    branch = session.board()
    others_waiting = lambda: worker.waiting() > 0  # noqa: E731

    def train():
        branch.train(session.tree, others_waiting)
        memory.trim()  # the activations of the last steps

    return worker.run(("train", branch.serial), train)


def _current_session(config: TrainConfig, twin: str) -> Session:
    session = st.session_state.get("session")
    if session is None or (session.replay is None and session.key != structural_key(config, twin)):
        session = _start(config, twin)
        session.connected = _connected()
    elif not session.finished:  # a finished run keeps its settings; Reset starts with new ones
        with session.guard:
            session.apply_live_changes(config)
    sessions.replace(st.session_state, session)
    return session


def _play():
    st.session_state["session"].playing = True


def _pause():
    st.session_state["session"].playing = False


def _step():
    session = st.session_state["session"]
    session.playing = False
    session.steps_left += STEP_CHUNK  # trained on the worker: see main()


def _reset():
    sessions.replace(st.session_state, None)


def _continue():
    """Go on with the run that ended, with the sidebar's live settings (a branch if changed)."""
    session, config = st.session_state["session"], st.session_state["settings"][0]
    session.go_on({k: getattr(config, k) for k in session.pending_changes(config)})


FORK_NAMES = {"batch_size": "batch size", "eps": "eps", "momentum": "momentum", "lr": "lr"}
MOMENTA = (0.01, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0)  # choices for a fork (the sidebar has a slider)


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fork_choices(field: str) -> tuple:
    return MOMENTA if field == "momentum" else CONTROLS[field][1]


def _fork():
    """Fork the live run here: one live setting changes from the next step, in the sidebar
    too (it holds the settings in force)."""
    state = st.session_state
    session, field = state["session"], state["fork_field"]
    value = state[f"fork_{field}"]
    state[field] = value
    if field == "momentum":
        state["momentum_none"] = False
    session.go_on({field: value}, play=session.playing)


def _go_on_buttons(session: Session, row):
    """Continue (a run that ended) and Fork here (at the current step), in the button bar."""
    run, more = session.run, session.more_steps
    row.button(
        f"Continue +{more}" if more else "Continue",
        key="continue",
        on_click=_continue,
        icon=":material/resume:",
        disabled=not session.can_go_on,
        width="content",
        help=(
            f"Train on from step {run.num_steps + 1}"
            + (f", with {more} more steps" if more else "")
            + ", with the live settings in the sidebar (batch size, eps, momentum, lr). The "
            "run so far stays; a changed setting starts a branch."
        ),
    )
    live = session.replay is None and not session.error
    with row.popover(
        "Fork here",
        icon=":material/call_split:",
        disabled=not live or (session.finished and not session.can_go_on),
        width="content",
        help="Branch the run at this step with one setting changed; the run so far stays drawn.",
    ):
        field = st.selectbox(
            "Setting to change", LIVE_FIELDS, key="fork_field", format_func=FORK_NAMES.get
        )
        choices = _fork_choices(field)
        now = session.trainer.run.setting_at(field) if live else None
        st.select_slider(
            f"New {FORK_NAMES[field]}",
            choices,
            value=now if now in choices else choices[0],
            key=f"fork_{field}",
            format_func=_value,
        )
        st.button(
            f"Branch from step {run.num_steps + 1}",
            key="fork",
            on_click=_fork,
            disabled=not live,
            help="The setting changes in the sidebar too. A run that ended waits for **Play**.",
        )


def _buttons(session: Session):
    live = session.replay is None
    row = st.container(key="controls", horizontal=True, gap="small")
    row.button(
        "Play",
        key="play",
        on_click=_play,
        icon=":material/play_arrow:",
        type="primary",
        disabled=not live or session.finished or session.playing,
        width="content",
    )
    row.button(
        "Pause",
        key="pause",
        on_click=_pause,
        icon=":material/pause:",
        disabled=not live or not session.playing,
        width="content",
    )
    row.button(
        f"Step {STEP_CHUNK}",
        key="step",
        on_click=_step,
        icon=":material/skip_next:",
        disabled=not live or session.finished,
        width="content",
    )
    row.button(
        "Reset",
        key="reset",
        on_click=_reset,
        icon=":material/restart_alt:",
        width="content",
        help="Start again from the initial weights with the current settings.",
    )
    _go_on_buttons(session, row)
    with row.popover(":material/keyboard:", help="Keyboard shortcuts", key="keys"):
        st.markdown(keys.HELP)


def _way_on(session: Session, config: TrainConfig):
    """After a run ended: what Continue would do with the sidebar's settings, and Reset."""
    run, waiting = session.run, session.pending_changes(config)
    if not session.can_go_on:
        return
    new = ", ".join(f"{FORK_NAMES[k]} = {_value(getattr(config, k))}" for k in waiting)
    start = run.num_steps + 1
    if waiting:
        text = (
            f"**Continue** goes on from step {start} with {new}: a branch of this run, which "
            "stays drawn up to there. **Reset** starts again from the initial weights."
        )
    elif run.status in ("failed", "diverged"):
        text = (
            f"To go on from step {start}, change the setting that stopped the run in the "
            "sidebar and press **Continue**: the run so far stays. With the same settings the "
            "step would most likely end the same way."
        )
    else:
        return
    if run.status == "diverged":
        text += (
            " The step that diverged changed nothing, but the steps before it may already have "
            "grown the weights too far for any setting to save the run."
        )
    st.info(text, icon=":material/call_split:")


def describe(config: TrainConfig) -> str:
    """The settings of a run in one line."""
    momentum = "None (cumulative)" if config.momentum is None else f"{config.momentum:g}"
    net = " · fully connected (MLP)" if config.arch == "mlp" else ""
    return (
        f"{config.dataset}{net} · widths {'/'.join(map(str, config.widths))} · "
        f"{config.activation} · "
        f"{config.norm} norm {config.placement} the activation · batch {config.batch_size} · "
        f"eps {config.eps:g} · momentum {momentum} · {config.optimizer} lr {config.lr:g} · "
        f"seed {config.seed}"
    )


def _status(frame: Frame, settings: bool = True):
    """The status line, and below it (settings=False: drawn by the page once, see
    _settings_line) the settings in force."""
    run, state = frame.run, frame.state
    position = worker.position(("train", frame.serial)) if state == "playing" else None
    if position:  # asked to play, but nothing moves yet: it does not say playing
        state = "waiting"
    text = f"{STATE_ICONS[state]} **{state}** · step {run.num_steps} of {run.config.steps}"
    if run.status == "diverged" and run.diverged_step is not None:  # as the message counts
        text = (
            f"{STATE_ICONS[state]} **{state}** · stopped after step {run.num_steps} of "
            f"{run.config.steps}; step {run.diverged_step} was refused (its loss blew up)"
        )
    if position:
        text += f" · {_where(position)}"
    elif frame.replay is None and frame.steps_per_second:
        text += f" · {frame.steps_per_second:.0f} steps/s"
    if frame.riders > 1 and state in ("playing", "waiting"):  # one training, several pages
        text += f" · shared by {frame.riders} sessions with this history"
    lead = st.session_state.get("sharing")  # the lecturer sees who follows; followers do not
    if lead is not None and lead.audience:
        text += f" · {lead.audience} following"
    every = st.session_state.get("chart_seconds", CHART_REFRESH_SECONDS)
    if state == "playing" and every > CHART_REFRESH_SECONDS:  # many pages open: say why
        text += f" · charts redraw every {every:.0f} s while this server has many pages open"
    st.markdown(text)
    if settings:
        _settings_line(run)
    if state in ("diverged", "failed"):
        st.error(plain(frame.session.error or run.message), icon=":material/error:")
    twin = frame.twin
    messages = run.message + (twin.message if twin is not None else "")
    if twin is not None and twin.status in ("diverged", "failed"):
        st.warning(
            f"The twin ({twin.config.norm} norm) stopped; its curves end at step "
            f"{twin.num_steps}: {plain(twin.message)}",
            icon=":material/warning:",
        )
    if "eps must be positive during training" in messages:
        st.info(
            "A teaching moment, not a crash: PyTorch's BatchNorm refuses eps = 0 in training. "
            "A channel whose values are all equal in a batch has variance 0, and without eps "
            "normalizing it divides 0 by 0. Choose 'from scratch' as the implementation to "
            "see what happens then, or any eps above 0 and press **Continue** to go on."
        )
    if "more than 1 value per channel" in messages:
        st.info(
            "A teaching moment, not a crash: in training mode BatchNorm normalizes each channel "
            "with the mean and variance of the batch. Here a channel held a single value (batch "
            "size 1 and a 1x1 feature map in the last block), so its variance is undefined and "
            "PyTorch refuses. A larger batch, fewer blocks, or evaluation mode (running "
            "statistics) avoids it; GroupNorm and LayerNorm do not depend on the batch at all."
        )


def _settings_line(run) -> None:
    """The settings in force, in one line (in presenter mode they are a click away, in the
    sidebar). A live page draws it once, outside its status line's fragment: it changes only
    with a change of settings, which draws the page anew, and a class of live pages sends
    one message less each time their status lines redraw."""
    if not presenting():
        st.caption(describe(run.config_at()))


def _queued(session: Session) -> bool:
    return session.wants_training and bool(worker.position(("train", session.serial)))


@_guarded
def _waiting(session: Session):
    """While the session waits for a training thread, only its status line redraws: a class
    of waiting pages must not keep the server busy redrawing charts that do not change."""
    session.touch()
    _train(session)
    if not _queued(session):
        st.rerun()  # its turn has come (or it was paused): draw the live page
    _status(session.frame())


@_guarded
def _body(session: Session):
    """Status, scenario panel and views of a session that is not training."""
    session.touch()
    frame = session.frame()
    _status(frame)
    _views(frame)


def _chart_seconds() -> float:
    """How often a live page's charts redraw, given how many pages are open on this server
    (set when the page is drawn: a class pressing Play at once all get the same pace)."""
    return max(CHART_REFRESH_SECONDS, CHART_SECONDS_PER_PAGE * runtree.tree.pages())


@_guarded
def _live_status(session: Session):
    """The status line of a session that trains: it redraws often and notices the end."""
    session.touch()
    if session.wants_training:
        _train(session)  # after a pause for another session's turn, queue again
        if _queued(session):
            st.rerun()  # wait with a still page
    else:  # the run finished, diverged or was paused: redraw the buttons too
        st.rerun()
    _status(session.frame(), settings=False)


@_guarded
def _live_views(session: Session):
    """The scenario panel and views of a session that trains, at the charts' pace."""
    session.follow()
    new_redraw()
    _views(session.frame(settled=True))


def _views(frame: Frame):
    """The scenario panel, if any, and the open view."""
    scenario = _scenario()
    if scenario is not None:
        scenario_panel.render(scenario, frame)
    tabs = st.tabs(list(VIEWS), key="view", on_change="rerun")
    for tab, view in zip(tabs, VIEWS.values()):
        if tab.open:  # only the open view is computed and sent to the browser
            with tab:
                view.render(frame)


def _scenario():
    scenario_id = st.session_state.get("scenario", FREE_PLAY)
    return SCENARIOS.get(scenario_id)


def _settings(hidden: set[str]) -> tuple[TrainConfig, str, str | None]:
    """The sidebar's configuration and twin, and why they were refused if they were. A refused
    combination (over a cap, e.g. batch x width) sends the sidebar back to the last accepted
    values of the capped controls (the scenario's or the defaults, on a first page) and draws
    the page again, so the sidebar shows the settings in force."""
    try:
        config, twin = sidebar.controls(hidden)
    except ValueError as e:
        if st.session_state.pop("restoring", False):  # those failed too: never loop
            config, twin = st.session_state.get("settings", (TrainConfig(), "none"))
            return config, twin, str(e)
        accepted = st.session_state.get("accepted") or _preset_values()
        st.session_state["restore"] = {key: accepted[key] for key in sidebar.RESTORED}
        st.session_state["restoring"], st.session_state["refused"] = True, str(e)
        st.rerun()
    st.session_state.pop("restoring", None)
    st.session_state["settings"] = config, twin
    st.session_state["accepted"] = sidebar.values()
    return config, twin, st.session_state.pop("refused", None)


def _preset_values() -> dict:
    scenario = _scenario()
    return {**DEFAULTS, **(scenario.preset if scenario is not None else {})}


def _restore_controls() -> None:
    """Before any widget is drawn: put back the values _settings chose (see there)."""
    restore = st.session_state.pop("restore", None)
    if restore:
        st.session_state.update(restore)
        st.session_state.pop(LOCKED_VALUES, None)  # hidden ones lock the restored values


def main():
    # presenter mode starts with the sidebar folded away (its controls one click off)
    present = st.session_state.get("present", st.query_params.get("present") == "1")
    st.set_page_config(
        page_title="bnviz: BatchNorm, live",
        page_icon="📊",
        layout="wide",
        initial_sidebar_state="collapsed" if present else "auto",
    )
    _page()


@_guarded
def _page():
    sidebar.init_state()
    if "link_notes" not in st.session_state:  # the first run of this session reads the link
        params = dict(st.query_params)
        code = params.pop("follow", None)
        st.session_state["link_notes"] = links.apply_link(params)
        if code is not None:
            follow.start(code, _connected())
    session = st.session_state.get("session")
    if session is not None and session.lead is not None:
        _follower_page(session)
        return
    _restore_controls()
    scenario_id = links.scenario_picker()
    st.session_state.setdefault("present", False)
    st.sidebar.toggle(
        "Presenter mode",
        key="present",
        help="For a projector: large type, the open view's chart on the first screen, a "
        "scenario's takeaway with its explanation one click away. The link includes it.",
    )
    share_slot = st.sidebar.container()  # beside Presenter mode: both are for the lecturer
    config, twin, refused = _settings(set(st.session_state.get("hidden", [])))
    links.share_link(sidebar.values(), scenario_id)
    session = _current_session(config, twin)
    session.touch()
    hidden = st.session_state.get("hidden", [])
    follow.share_panel(share_slot, session, scenario_id, hidden, session.connected)
    style.inject(present=presenting())
    keys.inject()
    if not presenting():
        st.title("BatchNorm, live")
    if st.session_state["link_notes"]:
        st.error(
            "Some settings in the link were ignored: " + "; ".join(st.session_state["link_notes"])
        )
    if "follow_error" in st.session_state:
        st.error(
            f"This follow link does not work: {st.session_state.pop('follow_error')} "
            "Here is the app on its own.",
            icon=":material/link_off:",
        )
    if refused:
        st.error(
            f"{refused}. The sidebar is back to the settings in force.", icon=":material/block:"
        )
    if "data_error" in st.session_state:
        note = st.session_state["data_error"].replace(datasets.OFFLINE_HINT, "").strip()
        st.warning(f"{note} Showing the built-in 'shapes' data set, which works offline.")
    if session.replay is not None:
        st.info("Replaying a saved run: the sidebar does not apply until you go back to live.")
    if session.steps_left and not session.playing:  # "Step 10": done before the page is drawn
        _wait(_train(session), ("train", session.serial), f"Training {STEP_CHUNK} steps")
    _buttons(session)
    if session.replay is None and session.finished:
        _way_on(session, config)
    training = session.wants_training
    if training:
        _train(session)
    if _queued(session):
        st.fragment(_waiting, run_every=QUEUE_POLL_SECONDS)(session)
        _views(session.frame())  # drawn once: nothing changes until training starts
        return
    if training:
        st.session_state["chart_seconds"] = every = _chart_seconds()
        st.fragment(_live_status, run_every=REFRESH_SECONDS)(session)
        _settings_line(session.frame().run)
        st.fragment(_live_views, run_every=every)(session)
        return
    # experiments in the background land every few seconds at most
    refresh = JOBS_POLL_SECONDS if scenario_panel.pending(_scenario()) else None
    st.fragment(_body, run_every=refresh)(session)


# -- a follower's page (bnviz/ui/follow.py) ---------------------------------------------------

FOLLOW_POLL_SECONDS = 1.0  # a follower's still page looks this often for what its lead did


def _live_signature(leader: Session) -> tuple:
    """What a live follower's page was drawn from: the lead's run and its live changes."""
    return (leader.serial, len(leader.branch.history))


def _lead_signature(session: Session) -> tuple:
    """What a follower's still page was drawn from: when it changes, the page is drawn anew."""
    leader = session.leader
    if leader is None:
        return (session.held, session.orphaned)
    return (leader.serial, leader.state, leader.run.num_steps, session.lead.scenario)


@_guarded
def _follower_page(session: Session):
    session.touch()
    session.follow()
    if session.leader is not None:  # the lecturer's scenario, with its panel and view
        st.session_state["scenario"] = session.lead.scenario
    follow.sidebar()
    style.inject(present=presenting())
    keys.inject()
    if not presenting():
        st.title("BatchNorm, live")
    follow.banner(session)
    follow.buttons(session)
    leader = session.leader
    if leader is not None and leader.wants_training:
        st.session_state["chart_seconds"] = every = _chart_seconds()
        st.fragment(_follow_status, run_every=REFRESH_SECONDS)(session, _live_signature(leader))
        _settings_line(session.frame().run)
        st.fragment(_live_views, run_every=every)(session)
        return
    _body(session)
    if leader is not None:
        st.fragment(_follow_watch, run_every=FOLLOW_POLL_SECONDS)(session, _lead_signature(session))


@_guarded
def _follow_status(session: Session, drawn: tuple):
    """A live follower's status line: it notices when the lead stops, changes run or changes
    a setting (`drawn`: its run and history when the page was drawn)."""
    session.touch()
    session.follow()
    leader = session.leader
    if leader is None or not leader.wants_training or _live_signature(leader) != drawn:
        st.rerun()
    _status(session.frame(), settings=False)


@_guarded
def _follow_watch(session: Session, drawn: tuple):
    """A still follower's page draws itself anew when its lead does something."""
    session.touch()
    session.follow()
    if _lead_signature(session) != drawn:
        st.rerun()
