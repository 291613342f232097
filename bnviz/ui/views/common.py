"""Small widgets shared by the views."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from ...alttext import describe
from ...cache import SharedCache
from ...record import Run
from ..session import Frame

ALL_CHANNELS = "all"
# A browser busy redrawing can send back a scrubber position it was shown this long ago.
ECHO_SECONDS = 5.0
SECONDARY_SECONDS = 3.0
SECONDARY_TURN = "secondary_chart:turn"  # set by the page before each live redraw of a view


def new_redraw() -> None:
    """A live redraw of the views begins: one secondary chart may be drawn anew in it."""
    st.session_state[SECONDARY_TURN] = True


class Prepared(go.Figure):
    """A finished figure that is serialized once, however many pages draw it. st.plotly_chart
    asks a figure for its dict (plotly.tools.return_figure_from_figure_or_data), copies it and
    turns its arrays into base64 on every call: a few milliseconds a chart, for every page of a
    class. This one answers with the JSON-ready dict it made once, and knows its text
    alternative. It holds nothing else (copying the figure into it costs ten times more than
    serializing it): the app's tests read every chart's spec as Streamlit sends it, so they
    fail if Streamlit ever stops asking for to_dict. Read-only: nothing changes a drawn
    figure."""

    def __init__(self, figure: go.Figure):
        super().__init__()
        self._spec = json.loads(pio.to_json(figure, validate=False))
        self._alt = describe(figure)  # plotly figures take no public attributes

    @property
    def alt(self) -> str:
        return self._alt

    def to_dict(self) -> dict:
        return self._spec


# Figures are pure functions of the record: sessions showing the same records (a class riding
# one shared run, or opening one link) draw each figure once. Bounded: a few per view.
_drawn = SharedCache(max_items=64, logged=False)


def drawn(frame: Frame, build: Callable[..., go.Figure], *args) -> go.Figure:
    """build(*args), where args are the frame's runs and plain values (a layer, a channel),
    built and serialized once for every session whose frame has the same content
    (Frame.content)."""
    content = frame.content
    if content is None:
        return build(*args)
    key = (build.__qualname__, content, tuple(_token(frame, a) for a in args))
    return _drawn.get_or_compute(key, lambda: Prepared(build(*args)))


def _token(frame: Frame, value):
    """An argument in a figure's key: the frame's runs by role, anything else as it is."""
    if value is frame.run:
        return "run"
    if value is frame.twin and value is not None:
        return "twin"
    return value


def chart(figure: go.Figure, key: str) -> None:
    """A plotly figure at full width (Streamlit's theme follows light/dark mode), with a text
    alternative read from the figure (its title and latest values) as its accessible name."""
    alt = figure.alt if isinstance(figure, Prepared) else describe(figure)
    st.plotly_chart(figure, width="stretch", key=key, alt=alt)


def secondary_chart(frame: Frame, key: str, build: Callable[[], go.Figure], *inputs) -> None:
    """A view's second or third chart: while the run plays it is drawn anew at most every
    SECONDARY_SECONDS, and at most one such chart per redraw, so that their redraws take
    turns; in between the browser gets the same figure again, which it does not redraw (a
    chart whose figure changed is drawn from scratch). `inputs` are what the figure depends
    on besides the run: a change of them draws it at once."""
    held = st.session_state.get(f"{key}:held")  # (run, inputs, when, figure)
    now = time.monotonic()
    same = held is not None and held[:2] == (frame.serial, inputs)
    if frame.playing and same:
        if now - held[2] < SECONDARY_SECONDS or not st.session_state.get(SECONDARY_TURN):
            chart(held[3], key)
            return
        st.session_state[SECONDARY_TURN] = False  # no other secondary chart in this redraw
    figure = build()
    st.session_state[f"{key}:held"] = (frame.serial, inputs, now, figure)
    chart(figure, key)


def pick_layer(run: Run, key: str, where=st) -> int:
    """Select a block by name."""
    names = [layer.name for layer in run.layers]
    if st.session_state.get(key, 0) >= len(names):
        st.session_state[key] = 0
    return where.selectbox(
        "Layer", range(len(names)), key=key, format_func=lambda i: _layer_label(run, i)
    )


def _layer_label(run: Run, i: int) -> str:
    info = run.layers[i]
    return f"{info.name} ({info.channels} channels)"


def pick_channel(
    run: Run, layer: int, key: str, where=st, allow_all: bool = False, tracked_only: bool = False
):
    """Select one channel of a block (or all of them)."""
    info = run.layers[layer]
    count = info.tracked_channels if tracked_only else info.channels
    options = ([ALL_CHANNELS] if allow_all else []) + list(range(count))
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return where.selectbox(
        "Channel",
        options,
        key=key,
        format_func=lambda c: "all channels" if c == ALL_CHANNELS else f"channel {c}",
    )


@dataclass
class _Scrubber:
    """Where one step scrubber stands: following the newest step (pinned None) or pinned to
    a step the user chose. `shown` holds the steps it was moved to while following, with when:
    a browser busy redrawing can send one of them back after the page has moved on, and that
    echo must not read as the user dragging the scrubber back."""

    pinned: int | None = None
    shown: deque = field(default_factory=lambda: deque(maxlen=64))
    back_to_live: bool = False

    def echo(self, step: int) -> bool:
        """Whether the browser sending `step` is no choice of the user's: the step it was
        last moved to, however long ago, or one it was moved to in the last ECHO_SECONDS."""
        if self.shown and self.shown[-1][1] == step:
            return True
        now = time.monotonic()
        return any(s == step and now - t < ECHO_SECONDS for t, s in self.shown)

    def follow(self, step: int) -> None:
        self.pinned = None
        if not self.shown or self.shown[-1][1] != step:
            self.shown.append((time.monotonic(), step))


def _back_to_live(state: _Scrubber) -> None:
    state.back_to_live = True


def pick_step(steps: Sequence[int], key: str, label: str, where=st) -> tuple[int, bool]:
    """A step scrubber over `steps` (a range is drawn as a plain slider, anything else as a
    slider over its values). It follows the newest step while the run trains; dragged to an
    earlier step it is pinned there, through Play and Pause, until "Back to live" or until it
    is dragged to the newest step. Returns the step and whether it is pinned."""
    state = st.session_state.setdefault(f"{key}:scrubber", _Scrubber())
    latest, sent = steps[-1], st.session_state.get(key)
    if state.back_to_live:
        if state.pinned is not None:  # the browser may still send it once: not a new pin
            state.shown.append((time.monotonic(), state.pinned))
        state.pinned, state.back_to_live = None, False
    elif sent is not None and sent != latest and sent != state.pinned and not state.echo(sent):
        state.pinned = sent  # the user moved the scrubber
    elif sent == latest:
        state.pinned = None
    if state.pinned is not None:
        # the record may have thinned out the pinned step: keep the nearest earlier one
        state.pinned = max((s for s in steps if s <= state.pinned), default=steps[0])
        step = state.pinned
    else:
        state.follow(latest)
        step = latest
    st.session_state[key] = step
    if len(steps) == 1:
        where.caption(f"{label}: {step} (only one recorded so far)")
    elif isinstance(steps, range):
        where.slider(label, steps.start, latest, key=key)
    else:
        where.select_slider(label, list(steps), key=key)
    if state.pinned is not None:
        where.button(
            f"Pinned at step {step}: back to live",
            key=f"{key}:live",
            icon=":material/fast_forward:",
            on_click=_back_to_live,
            args=(state,),
            help=f"Follow the newest step ({latest}) again.",
        )
    return step, state.pinned is not None


def presenting() -> bool:
    """Whether the page is in presenter mode (?present=1, or the sidebar's toggle)."""
    return bool(st.session_state.get("present", False))


def pair() -> tuple:
    """Two places for charts: side by side, or one above the other in presenter mode, where
    the open view's main chart takes the whole width of a projector."""
    return (st.container(), st.container()) if presenting() else tuple(st.columns(2))
