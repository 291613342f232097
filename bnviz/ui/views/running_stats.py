"""Running statistics: batch against running mean and variance, the update formula with live
numbers, the averaging window, gamma and beta, and each channel's gain 1/sqrt(var + eps)."""

from __future__ import annotations

import math

import streamlit as st

from ... import figures
from ...batchnorm import effective_window
from ...record import momentum_numbers
from ..controls import plain
from ..session import Frame
from .common import chart, drawn, pick_channel, pick_layer, pick_step, secondary_chart


def _steps(window: float) -> str:
    count = round(window)
    return f"≈ {count} step" if count == 1 else f"≈ {count} steps"


def _formula(numbers: dict) -> None:
    f = numbers["factor"]
    if numbers["momentum"] is None:
        st.markdown(
            f"Cumulative average (momentum=None): the factor at step {numbers['step']} is "
            f"1/{numbers['step']} = {f:.4g}."
        )
    for latex in formula_latex(numbers):
        st.latex(latex)


def _factor(value: float) -> str:
    """A number multiplied in the formula; negative ones in brackets, so that (1 - m) times
    -0.002 never reads as a subtraction."""
    return f"({value:.4g})" if value < 0 else f"{value:.4g}"


def formula_latex(numbers: dict) -> tuple[str, str]:
    """The running mean's and running variance's update at one step, with its numbers."""
    f, m = numbers["factor"], numbers["m"]
    before, batch = _factor(numbers["running_before"]), _factor(numbers["batch"])
    var_before, var_batch = _factor(numbers["var_running_before"]), numbers["var_batch_biased"]
    mean = (
        rf"\hat\mu \leftarrow (1 - {f:.4g})\times{before}"
        rf" + {f:.4g}\times{batch} = {numbers['running_after']:.4g}"
    )
    var = (
        rf"\hat\sigma^2 \leftarrow (1 - {f:.4g})\times{var_before}"
        rf" + {f:.4g}\times\underbrace{{{var_batch:.4g}\times"
        rf"\tfrac{{{m}}}{{{m - 1}}}}}_{{\text{{unbiased}}}} = {numbers['var_running_after']:.4g}"
    )
    return mean, var


def render(frame: Frame) -> None:
    run = frame.run
    cols = st.columns([1, 1, 3])
    layer = pick_layer(run, "rs_layer", cols[0])
    channel = pick_channel(run, layer, "rs_channel", cols[1])
    if not run.num_steps:
        st.info("No steps yet: press Step or Play.")
        return
    steps = range(1, run.num_steps + 1)
    step, pinned = pick_step(steps, "rs_step", "Step for the numbers below", cols[2])
    index = step - 1
    chart(drawn(frame, figures.running_stats_figure, run, layer, channel), "running_stats")
    info = run.layers[layer]
    if info.has_running_stats:
        numbers = momentum_numbers(run, layer, channel, index)
        left, right = st.columns([3, 1])
        with left:
            # plain(): a replayed run's names come from a file (checked, but never markdown)
            st.markdown(f"**The update at step {step}**, channel {channel} of {plain(info.name)}:")
            _formula(numbers)
        window = effective_window(numbers["momentum"], step)
        right.metric(
            "Averaging window",
            "all steps so far"
            if numbers["momentum"] is None
            else ("never updates" if math.isinf(window) else _steps(window)),
            help="An EMA with momentum m forgets a batch's weight to 1/e after about 1/m steps.",
        )
        keras = numbers["keras_momentum"]
        right.caption(
            "PyTorch momentum "
            + ("None" if numbers["momentum"] is None else f"{numbers['momentum']:g}")
            + ("" if keras is None else f" = Keras momentum {keras:g}")
        )
    else:
        st.info(
            f"{info.norm} normalization keeps no running statistics: it normalizes every "
            "input with its own statistics, in training and in evaluation alike."
        )
    left, right = st.columns(2)
    with left:
        secondary_chart(
            frame, "affine", lambda: drawn(frame, figures.affine_figure, run, layer), layer
        )
    with right:
        build = lambda: drawn(frame, figures.gain_figure, run, layer, index)  # noqa: E731
        secondary_chart(frame, "gain", build, layer, pinned and step)
