"""Small helpers shared by the classroom scenarios: their figures laid out by the plotting kit
(bnviz/plot.py) like the run figures, 'measuring…' notes, number formatting, JSON-safe floats,
averages over runs. Plain Python, numpy and plotly; what jobs compute is in bnviz/experiments."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plot
from ..plot import NOTE, PANEL, PANEL_TITLE_SIZE, PLOT_HEIGHT, STEP_AXIS

MEASURING = "measuring…"


# --- figures -------------------------------------------------------------------------------


def subplots(titles: Sequence[str] = (), **grid) -> go.Figure:
    """make_subplots (`grid`: rows, cols, spacing, ...) with its panel titles in the run
    figures' size; finish(..., panel_titles=True) makes room for them."""
    fig = make_subplots(subplot_titles=list(titles) or None, **grid)
    fig.update_annotations(font=dict(size=PANEL_TITLE_SIZE), name=PANEL)
    return fig


def finish(
    fig: go.Figure,
    title: str,
    x_title: str | None = STEP_AXIS,
    y_title: str | None = None,
    *,
    note: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    plot_height: int = PLOT_HEIGHT,
    panel_titles: bool = False,
) -> go.Figure:
    """A scenario figure, built with plotly's own API, laid out as the run figures are
    (bnviz.plot.finish): short title, details in the subtitle (`note`), axis titles, legend
    under the plot, fonts, margins and the plot's height. Returns a new figure, so it comes last:
    what it measures (tick labels, legend entries) must be in place. A scenario's legend group
    is one entry for several traces (seeds, panels, channels), so a click hides them all."""
    return plot.finish(
        plot.Spec.of(fig),
        title,
        x_title=x_title or None,
        y_title=y_title or None,
        note=note,
        log_x=log_x,
        log_y=log_y,
        plot_height=plot_height,
        panel_titles=panel_titles,
        groupclick="togglegroup",
    )


def note(fig: go.Figure, text: str = MEASURING, y: float = 0.5, size: int = 15) -> go.Figure:
    """A centred note on the plot area, 'measuring…' unless told otherwise."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=y,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=size),  # the theme's text colour: no grey reads on both themes
        name=NOTE,
    )
    return fig


def placeholder(title: str, x_title: str, y_title: str, **kwargs) -> go.Figure:
    """An empty figure that says its numbers are being measured."""
    return finish(note(go.Figure()), title, x_title, y_title, **kwargs)


# --- numbers and text ----------------------------------------------------------------------


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None) -> str:
    """An accuracy (0..1) as a percentage with one decimal ('47.2%'), or 'n/a'."""
    return f"{100 * value:.1f}%" if _finite(value) else "n/a"


def signed_points(value: float | None) -> str:
    """A difference of accuracies in signed percentage points ('+3.1 pp'), or 'n/a'."""
    return f"{100 * value:+.1f} pp" if _finite(value) else "n/a"


def points(value: float | None) -> str:
    """A size of a difference of accuracies in percentage points (unsigned), or 'n/a'."""
    return f"{100 * abs(value):.1f} pp" if _finite(value) else "n/a"


def num(value: float | None, digits: int = 3) -> str:
    """A measured number, short ('0.0123', '4.56e+03'), or 'n/a'."""
    return f"{value:.{digits}g}" if _finite(value) else "n/a"


def lr_text(lr: float) -> str:
    return f"{lr:g}"


# --- summaries over runs --------------------------------------------------------------


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
