"""Gradients: per-layer gradient norms and the update:data ratio, main against twin."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ... import figures
from ...config import NORM_NAMES
from ...record import Run
from ..session import Frame
from .common import chart, drawn, pair, secondary_chart

RECENT_STEPS = 20  # the caption's medians are over this many latest steps


def median_update_ratio(run: Run) -> float | None:
    """Median update:data ratio of the blocks' weights (convs, or an MLP's fully connected
    layers) over the latest RECENT_STEPS steps."""
    names = [n for n in run.params if n.startswith("blocks.") and n.endswith(".conv.weight")]
    if not run.num_steps or not names:
        return None
    ratios = np.concatenate([run.param_stat(n, "update_ratio")[-RECENT_STEPS:] for n in names])
    return float(np.median(ratios))


def measured(run: Run, twin: Run | None) -> str:
    """What the ratios were in this run, next to how well each network did."""
    parts = []
    for r, role in ((run, "main"), (twin, "twin")):
        ratio = None if r is None else median_update_ratio(r)
        if ratio is None:
            continue
        text = f"{NORM_NAMES.get(r.config.norm, r.config.norm)} ({role}) {ratio:.1e}"
        if r.eval_steps:
            text += f", test accuracy {r.acc_running_stats[-1]:.1%} at step {r.eval_steps[-1]}"
        parts.append(text)
    if not parts:
        return ""
    first = max(1, run.num_steps - RECENT_STEPS + 1)
    layers = "fully connected layers' weights" if run.config.arch == "mlp" else "conv weights"
    return (
        f" In this run, the median ratio of the {layers} over steps {first} to "
        f"{run.num_steps}: " + "; ".join(parts) + "."
    )


def render(frame: Frame) -> None:
    left, right = pair()
    with left:
        chart(drawn(frame, figures.grad_norm_figure, frame.run, frame.twin), "grad_norm")
    with right:
        build = lambda: drawn(frame, figures.update_ratio_figure, frame.run, frame.twin)  # noqa: E731
        secondary_chart(frame, "update_ratio", build)
    st.caption(
        "Left: the norm of the loss gradient reaching each normalization layer's input. Right: "
        "how far each step moves the weights, relative to their size. The dotted 1e-3 is a "
        "heuristic from Karpathy's makemore part 3, measured on a small MLP trained with plain "
        "SGD: a rough guide for that setting, not a limit for this network. BatchNorm makes a "
        "layer's output ignore the scale of the weights before it (BN(cWx) = BN(Wx)), so "
        "there the ratio says less about whether steps are too large: compare the two "
        "networks here." + measured(frame.run, frame.twin)
    )
