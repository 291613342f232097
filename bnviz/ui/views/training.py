"""Training: loss and accuracy (batch, eval with running stats, eval with batch stats)."""

from __future__ import annotations

import math

import streamlit as st

from ... import figures
from ..session import Frame
from .common import chart, drawn, pair, presenting, secondary_chart


def _latest(values: list[float]) -> str:
    """The latest accuracy; n/a before the first and where it is undefined (NaN: batch
    statistics of one value per channel, or a run whose first step failed)."""
    return f"{values[-1]:.1%}" if values and math.isfinite(values[-1]) else "n/a"


def _measured(run) -> str:
    """When the latest test accuracy was measured: it is measured every few steps only."""
    return f" at step {run.eval_steps[-1]}" if run.eval_steps else ""


def render(frame: Frame) -> None:
    run, twin = frame.run, frame.twin
    if not presenting():  # in presenter mode the charts come first, on the projector's screen
        _metrics(run, twin)
    left, right = pair()
    with left:
        chart(drawn(frame, figures.loss_figure, run, twin), "loss")
    with right:
        secondary_chart(frame, "accuracy", lambda: drawn(frame, figures.accuracy_figure, run, twin))
    if presenting():
        _metrics(run, twin)
    _caption()


def _metrics(run, twin) -> None:
    cols = st.columns(4 if twin else 3)
    if run.num_steps:
        cols[0].metric(
            f"Training loss at step {run.num_steps}",
            f"{run.metric('train_loss')[-1]:.3f}",
            help="Cross-entropy of that step's training batch, measured on every step.",
        )
    cadence = (
        "Test accuracy on the held-out images is measured every few steps (densely in the "
        "first ones), not on every step: this is the value of the step named."
    )
    cols[1].metric(
        f"Test accuracy{_measured(run)}, running stats",
        _latest(run.acc_running_stats),
        help="Eval mode: BatchNorm subtracts its running mean and divides by √(running "
        "variance + ε). " + cadence,
    )
    cols[2].metric(
        f"Test accuracy{_measured(run)}, batch stats",
        _latest(run.acc_batch_stats),
        help="Train mode, batches of the training batch size; buffers untouched (n/a where "
        "PyTorch refuses batch statistics, e.g. eps 0). " + cadence,
    )
    if twin:
        cols[3].metric(
            f"Twin ({twin.config.norm}): test accuracy{_measured(twin)}",
            _latest(twin.acc_running_stats),
            help="Eval mode, like the main network's. " + cadence,
        )


def _caption() -> None:
    st.caption(
        "Solid: the main network. Dashed: its twin, trained on the same batches from the same "
        "initial weights. It differs in normalization and in the conv biases that go with it: a "
        "conv that feeds a norm has no bias (the norm subtracts the mean); one that feeds none has."
    )
