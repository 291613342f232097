"""Small helpers shared by the epsilon, train-vs-eval, placement and norm-family scenarios:
figure styling, number formatting, and reading a network's internals without recording."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch

from ..record import Run
from ..trainer import Trainer

HEIGHT = 360
MARGIN = dict(l=10, r=10, t=60, b=10)
BN_COLOR = "#0072B2"
NONE_COLOR = "#D55E00"
GREY = "#8C8C8C"
MEASURING = "measuring…"
CURVE_POINTS = 50  # training-loss curves are averaged down to at most this many points


def style(
    fig: go.Figure,
    title: str,
    x_title: str,
    y_title: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
    height: int = HEIGHT,
) -> go.Figure:
    """The scenarios' common look: short title, legend below, axis titles, no background."""
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=height,
        margin=MARGIN,
        legend=dict(orientation="h", y=-0.25, x=0, xanchor="left", yanchor="top"),
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    if log_x:
        fig.update_xaxes(type="log", exponentformat="power")
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


def note(fig: go.Figure, text: str = MEASURING) -> go.Figure:
    """A centred grey note on a figure (e.g. while its jobs are still running)."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=14, color=GREY),
    )
    return fig


def pct(value: float) -> str:
    """An accuracy as a percentage with one decimal ('nan' for an undefined one)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def pp(value: float) -> str:
    """A difference of accuracies in signed percentage points."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:+.1f} pp"


def num(value: float) -> str:
    """A measured number, 3 significant digits."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def clean(values) -> list[float]:
    """Floats for a JSON result (NaN kept; numpy scalars converted)."""
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


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


@torch.no_grad()
def norm_input(trainer: Trainer, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The input of block `layer`'s norm for images x (eval mode: no buffer changes, nothing
    recorded)."""
    captured = []
    norm = trainer.model.blocks[layer].norm
    handle = norm.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    was_recording, trainer._recording = trainer._recording, False
    try:
        trainer.model.eval()
        trainer.model(x)
    finally:
        trainer.model.train()
        trainer._recording = was_recording
        handle.remove()
    return captured[0]


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
        "acc_running": clean(run.acc_running_stats),
        "acc_batch": clean(run.acc_batch_stats),
        "final_acc": float(run.acc_running_stats[-1]),
        "final_acc_batch": float(run.acc_batch_stats[-1]),
        "final_loss": final_loss(run),
    }


def pts(value: float) -> str:
    """A size of a difference of accuracies in percentage points (unsigned)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * abs(value):.1f} pp"
