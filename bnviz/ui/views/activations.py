"""Activations: pre-norm / post-norm / post-activation histograms with a step scrubber,
percentile bands of one unit over time, and the saturated or dead fraction."""

from __future__ import annotations

import streamlit as st

from ... import figures
from ..session import Frame
from .common import ALL_CHANNELS, chart, drawn, pick_channel, pick_layer, pick_step, secondary_chart


def render(frame: Frame) -> None:
    run, twin = frame.run, frame.twin
    cols = st.columns([1, 1, 3])
    layer = pick_layer(run, "act_layer", cols[0])
    channel = pick_channel(run, layer, "act_channel", cols[1], allow_all=True, tracked_only=True)
    steps = run.snapshots[layer].steps
    if not steps:
        st.info("No snapshot yet: press Step or Play.")
        return
    step, pinned = pick_step(steps, "snapshot", "Replay a recorded step", cols[2])
    index = steps.index(step)
    if not pinned and step != run.num_steps:
        every = f" (one every {steps[-1] - steps[-2]} steps)" if len(steps) > 1 else ""
        st.caption(f"Step {step} is the newest snapshot{every}; the run is at {run.num_steps}.")
    selected = None if channel == ALL_CHANNELS else channel
    chart(drawn(frame, figures.histogram_figure, run, layer, index, selected), "histograms")
    st.caption(
        f"Histograms use the first {run.hist_images} images of that step's training batch; the bin "
        "edges are fixed for the whole run, so steps compare. Values beyond the edges count in "
        "the end bins."
    )
    which = st.radio(
        "Percentiles of",
        ("unit", "layer"),
        key="percentiles_of",
        horizontal=True,
        format_func={"unit": "one unit (channel 0, centre)", "layer": "the whole layer"}.get,
    )
    left, right = st.columns(2)
    with left:
        build = lambda: drawn(frame, figures.percentile_figure, run, layer, twin, which)  # noqa: E731
        secondary_chart(frame, "percentiles", build, layer, which)
    with right:
        secondary_chart(
            frame, "saturation", lambda: drawn(frame, figures.saturation_figure, run, twin)
        )
