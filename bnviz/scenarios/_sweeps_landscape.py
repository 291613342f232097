"""Small helpers shared by the covariate-shift and bn-only scenarios: the figure house style,
number formatting and a JSON-safe float. Plain Python and plotly."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go

BN_COLOR = "#0072B2"  # BatchNorm, drawn solid
NONE_COLOR = "#D55E00"  # no normalization (or the baseline), drawn dashed
NEUTRAL = "#8C8C8C"  # references: chance, full training
HEIGHT = 360
MARGIN = dict(l=10, r=10, t=60, b=10)
LEGEND = dict(orientation="h", y=-0.25, x=0, xanchor="left", yanchor="top")
MEASURING = "measuring…"


def finish(
    fig: go.Figure, title: str, x_title: str, y_title: str, log_y: bool = False
) -> go.Figure:
    """Short title, axis titles with units, legend under the plot, no background colour."""
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=HEIGHT,
        margin=MARGIN,
        legend=LEGEND,
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, type="log" if log_y else None)
    return fig


def note(fig: go.Figure, text: str) -> go.Figure:
    """A centred grey note on the plot area, e.g. 'measuring…'."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=15, color=NEUTRAL),
    )
    return fig


def clean(value) -> float:
    """A JSON-ready float: non-finite values become NaN."""
    value = float(value)
    return value if math.isfinite(value) else math.nan


def num(value: float | None) -> str:
    """A measured number with three significant digits, or 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}"


def pct(value: float | None) -> str:
    """An accuracy (0..1) as a percentage with one decimal, or 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f}%"


def finite_mean(values: Iterable) -> float:
    """Mean of the finite values (NaN if there are none)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else math.nan


def mean_rows(rows: list[list[float]]) -> np.ndarray:
    """Element-wise mean over runs of per-step series of possibly different lengths (a run that
    stopped early contributes to the steps it reached)."""
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        padded[i, : len(r)] = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(padded).sum(0)
        sums = np.where(np.isfinite(padded), padded, 0.0).sum(0)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
