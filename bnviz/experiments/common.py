"""Small helpers shared by the experiments (bnviz/experiments/*): JSON-ready numbers and a
finished run as a summary. Covered by every scenario's precompute fingerprint."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..record import Run

CURVE_POINTS = 50  # training-loss curves are averaged down to at most this many points


def clean(value) -> float:
    """A JSON-ready float: non-finite values become NaN."""
    value = float(value)
    return value if math.isfinite(value) else math.nan


def float_list(values) -> list[float]:
    """Plain floats for a JSON result (numpy and torch scalars converted, nothing else changed)."""
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def clean_list(values: Sequence | np.ndarray) -> list[float]:
    """Plain floats for a JSON result, non-finite values as NaN."""
    return [clean(v) for v in float_list(values)]


def loss_curve(run: Run, points: int = CURVE_POINTS) -> tuple[list[int], list[float]]:
    """The training loss averaged over consecutive windows of steps: (last step of each
    window, mean loss in it). Windows are equal in length, at most `points` of them."""
    loss = np.asarray(run.metric("train_loss"), dtype=np.float64)
    n = len(loss)
    if n == 0:
        return [], []
    size = max(1, math.ceil(n / points))
    edges = list(range(0, n, size)) + [n]
    steps = [int(run.steps[b - 1]) for b in edges[1:]]
    means = [float(loss[a:b].mean()) for a, b in zip(edges, edges[1:])]
    return steps, means


def final_loss(run: Run, last: int = 20) -> float:
    """Mean training loss over the last `last` steps (one batch's loss is noisy)."""
    loss = np.asarray(run.metric("train_loss"), dtype=np.float64)
    return float(loss[-last:].mean()) if len(loss) else math.nan


def curves(run: Run) -> dict:
    """A finished run as a JSON-ready summary: status, loss curve (windowed means), test
    accuracy over training in both modes, and the final numbers."""
    loss_steps, loss = loss_curve(run)
    return {
        "status": run.status,
        "message": run.message,
        "steps": run.num_steps,
        "loss_steps": loss_steps,
        "loss": loss,
        "eval_steps": [int(s) for s in run.eval_steps],
        "acc_running": float_list(run.acc_running_stats),
        "acc_batch": float_list(run.acc_batch_stats),
        "final_acc": float(run.acc_running_stats[-1]),
        "final_acc_batch": float(run.acc_batch_stats[-1]),
        "final_loss": final_loss(run),
    }
