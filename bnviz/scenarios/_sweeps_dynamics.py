"""Small helpers shared by the high-lr, sigmoid-drift, tiny-batches and momentum-lag scenarios:
figure layout, number formatting and a bare training loop for sweeps. Plain Python and plotly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from ..trainer import Trainer, to_tensor

BN_COLOR = "#0072B2"  # BatchNorm, drawn solid
NONE_COLOR = "#D55E00"  # no normalization, drawn dashed
GN_COLOR = "#009E73"  # GroupNorm
NEUTRAL = "#8C8C8C"
HEIGHT = 360
MARGIN = dict(l=10, r=10, t=60, b=10)
LEGEND = dict(orientation="h", y=-0.25, x=0, xanchor="left", yanchor="top")
MEASURING = "measuring…"


def finish(
    fig: go.Figure,
    title: str,
    x_title: str,
    y_title: str,
    log_x: bool = False,
    log_y: bool = False,
    height: int = HEIGHT,
) -> go.Figure:
    """The house style: short title, axis titles with units, legend under the plot."""
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=height,
        margin=MARGIN,
        legend=LEGEND,
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def note(fig: go.Figure, text: str, y: float = 0.5) -> go.Figure:
    """A centred grey note on the plot area, e.g. 'measuring…'."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=y,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=15, color=NEUTRAL),
    )
    return fig


def placeholder(title: str, x_title: str, y_title: str, **kwargs) -> go.Figure:
    """An empty figure that says its numbers are being measured."""
    return note(finish(go.Figure(), title, x_title, y_title, **kwargs), MEASURING)


def in_force(run, field: str):
    """The value of batch_size, lr, eps or momentum in force at the run's latest step."""
    value = getattr(run.config, field)
    for change in run.changes:
        if change["field"] == field:
            value = change["new"]
    return value


def pct(value: float | None) -> str:
    """An accuracy (0..1) as a percentage with one decimal ('47.2%'), or 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    """A measured number, short ('0.0123', '4.56e+03'), or 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def lr_text(lr: float) -> str:
    return f"{lr:g}"


def clean(value) -> float:
    """A JSON-ready float: non-finite values become NaN."""
    value = float(value)
    return value if math.isfinite(value) else math.nan


def clean_list(values: Sequence | np.ndarray) -> list[float]:
    return [clean(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def stride(n: int, cap: int = 300) -> np.ndarray:
    """At most `cap` evenly spaced indices out of n, the last one included."""
    if n <= cap:
        return np.arange(n)
    idx = np.arange(0, n, math.ceil(n / (cap - 1)))
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def mean_of(values: Sequence[float]) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else math.nan


@torch.no_grad()
def eval_accuracy(trainer: Trainer) -> float:
    """Test accuracy in eval mode (running statistics) only, on the trainer's held-out images;
    half the cost of Trainer.accuracy(), which also measures with batch statistics."""
    model = trainer.model
    model.eval()
    try:
        return float((model(trainer.eval_x).argmax(1) == trainer.eval_y).float().mean())
    finally:
        model.train()


def bare_steps(trainer: Trainer, steps: int) -> tuple[str, int]:
    """`steps` plain optimizer steps on the trainer's own model, optimizer and batch order, with
    no recording (several times cheaper per step than Trainer.step at tiny batch sizes).
    Returns (status, steps done): 'completed', 'diverged' (non-finite loss) or 'failed'."""
    model, optimizer, data = trainer.model, trainer.optimizer, trainer.data
    model.train()
    for k in range(steps):
        idx = trainer.batches.next(trainer.batch_size)
        x = to_tensor(data, data.x_train[idx])
        y = torch.from_numpy(data.y_train[idx])
        try:
            loss = F.cross_entropy(model(x), y)
        except ValueError:  # one value per channel in BatchNorm
            return "failed", k
        if not math.isfinite(loss.item()):
            return "diverged", k + 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return "completed", steps
