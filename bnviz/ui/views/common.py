"""Small widgets shared by the views."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from ...record import Run

ALL_CHANNELS = "all"


def chart(figure: go.Figure, key: str) -> None:
    """A plotly figure at full width (Streamlit's theme follows light/dark mode)."""
    st.plotly_chart(figure, width="stretch", key=key)


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


def pick_step(steps: list[int], key: str, label: str, where=st) -> int:
    """A step scrubber over `steps`. Left at the latest step, it follows training; moved back,
    it stays where it was put."""
    latest_key = f"{key}:latest"
    value = st.session_state.get(key)
    if value not in steps or value == st.session_state.get(latest_key):
        st.session_state[key] = steps[-1]
    st.session_state[latest_key] = steps[-1]
    if len(steps) == 1:
        where.caption(f"{label}: {steps[0]} (only one recorded so far)")
        return steps[0]
    return where.select_slider(label, steps, key=key)
