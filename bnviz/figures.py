"""Plotly figures of a run record (bnviz.Run): pure functions from recorded numbers to a
go.Figure, with no training and no Streamlit. Every block has one colour everywhere
(LAYER_COLORS), the main run is drawn solid and its twin dashed, mid-run changes and divergence
are marked on every time axis, and long per-step series are strided to at most MAX_POINTS points
per trace so the figure sent to the browser on every refresh stays small. No template or
background colour is set: the app's light or dark theme applies, and every colour here keeps a
contrast of at least 3:1 on both white and Streamlit's dark background."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .config import FIELDS
from .model import block_sides
from .record import HIST_KINDS, Run
from .trainer import HIST_IMAGES

# Okabe-Ito hues; orange and sky blue darkened so that every colour has a contrast of at least
# 3:1 against white and against Streamlit's dark background (#0e1117). The first three (the
# default depth) stay apart under protanopia, deuteranopia and tritanopia.
LAYER_COLORS: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#BF8A00", "#2E8BC0")
MAIN_DASH = "solid"
TWIN_DASH = "dash"
MAX_POINTS = 600  # per trace, for per-step series
AFFINE_POINTS = 12_000  # all gamma and beta traces of a block together
HEIGHT = 340
MARGIN = dict(l=10, r=10, t=50, b=10)
STEP_AXIS = "step (optimizer steps)"
NEUTRAL = "#8C8C8C"  # references, change markers, the head layer
ALERT = "#E41A1C"  # divergence, eps-dominated channels
METRIC_COLORS = {"loss": "#0072B2", "train": NEUTRAL, "running": "#0072B2", "batch": "#D55E00"}
SMOOTH_WINDOW = 9  # steps in the centred moving average of the training-batch accuracy
UPDATE_RATIO_REFERENCE = 1e-3
NORM_NAMES = {
    "batch": "BatchNorm",
    "group": "GroupNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "none": "no norm",
}
KIND_TITLES = {
    "pre_norm": "pre-norm (the norm's input)",
    "post_norm": "post-norm (the norm's output)",
    "post_act": "post-activation",
}
CHANGE_NAMES = {"lr": "lr", "batch_size": "batch", "eps": "ε", "momentum": "momentum"}
_SAME_RUN_FIELDS = ("steps", "snapshot_every", "eval_every")  # never worth naming a twin by
# running_stats_figure rows: (what, batch stat, running stat, initial buffer value)
_STAT_ROWS = (
    ("mean", "batch_mean", "running_mean", 0.0),
    ("variance", "batch_var", "running_var", 1.0),
)
_STAT_NAMES = {
    "batch_mean": "batch mean",
    "running_mean": "running mean",
    "batch_var": "batch variance (biased, ÷m)",
    "running_var": "running variance (unbiased, ÷(m−1))",
}


def layer_color(i: int) -> str:
    """The colour of block i (cycling past the palette)."""
    return LAYER_COLORS[i % len(LAYER_COLORS)]


# ---------------------------------------------------------------- private helpers


def _stride(n: int, cap: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `cap` evenly strided points out of n, the last one always included."""
    if n <= cap:
        return np.arange(n)
    idx = np.arange(0, n, math.ceil(n / (cap - 1)))
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _shade(color: str, t: float) -> str:
    """Blend a hex colour towards white (t > 0) or black (t < 0) by |t|."""
    rgb = np.array([int(color[k : k + 2], 16) for k in (1, 3, 5)], dtype=float)
    rgb = rgb + (255 - rgb) * t if t > 0 else rgb * (1 + t)
    return "#" + "".join(f"{int(round(v)):02X}" for v in rgb)


def _rgba(color: str, alpha: float) -> str:
    """A hex colour as an rgba() string."""
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _fmt(value) -> str:
    """A changed setting's value, short."""
    if value is None:
        return "None"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(run: Run, other: Run | None) -> str:
    """The run's normalization, plus the first other setting that tells it from `other`."""
    name = NORM_NAMES.get(run.config.norm, run.config.norm)
    if other is None or other.config.norm != run.config.norm:
        return name
    for field in FIELDS:
        value = getattr(run.config, field)
        if field not in _SAME_RUN_FIELDS and value != getattr(other.config, field):
            return f"{name}, {field} {_fmt(value)}"
    return name


def _members(run: Run, twin: Run | None) -> list[tuple[Run, str, str]]:
    """(run, label, dash) for the main run and, if given, the twin."""
    members = [(run, f"{_describe(run, twin)} (main)", MAIN_DASH)]
    if twin is not None:
        members.append((twin, f"{_describe(twin, run)} (twin)", TWIN_DASH))
    return members


def _in_force(run: Run, field: str, step: int):
    """The value of a changeable setting at `step`, after run.changes applied up to it."""
    value = getattr(run.config, field)
    for change in sorted(run.changes, key=lambda c: c["step"]):
        if change["field"] == field and change["step"] <= step:
            value = change["new"]
    return value


def _line(
    fig: go.Figure,
    x,
    y,
    name: str,
    color: str,
    *,
    what: str,
    unit: str = "",
    dash: str = MAIN_DASH,
    hover_name: str | None = None,
    row: int = 1,
    col: int = 1,
    cap: int = MAX_POINTS,
    customdata=None,
    hovertemplate: str | None = None,
    **scatter,
) -> None:
    """Add one time series (strided to `cap` points) with a hover naming the run and step."""
    idx = _stride(len(x), cap)
    hover = hovertemplate or (
        f"<b>{hover_name or name}</b><br>step %{{x}}<br>{what}: %{{y:.4g}}{unit}<extra></extra>"
    )
    if scatter.get("hoverinfo") == "skip":
        hover = None
    style = {"mode": "lines", "line": dict(color=color, dash=dash, width=2), **scatter}
    trace = go.Scatter(
        x=np.asarray(x)[idx],
        y=np.asarray(y)[idx],
        name=name,
        hovertemplate=hover,
        customdata=None if customdata is None else np.asarray(customdata)[idx],
        **style,
    )
    fig.add_trace(trace, row=row, col=col)


def _mark_events(fig: go.Figure, run: Run, twin: Run | None = None) -> None:
    """Dotted lines at mid-run changes (one label per step) and a red line where a run diverged."""
    labels: dict[int, list[str]] = {}
    for r in (run, twin):
        for change in r.changes if r is not None else []:
            text = (
                f"{CHANGE_NAMES.get(change['field'], change['field'])} "
                f"{_fmt(change['old'])}→{_fmt(change['new'])}"
            )
            if text not in labels.setdefault(change["step"], []):
                labels[change["step"]].append(text)
    marks = [(step, ", ".join(texts), NEUTRAL, "dot") for step, texts in sorted(labels.items())]
    for r, label, dash in _members(run, twin):
        if r.status == "diverged" and r.diverged_step is not None:
            text = "diverged" if twin is None else f"{label} diverged"
            marks.append((r.diverged_step, text, ALERT, dash))
    for k, (step, text, color, dash) in enumerate(marks):
        fig.add_vline(
            x=step,
            line=dict(color=color, dash=dash, width=1.5),
            row="all",
            col="all",
            exclude_empty_subplots=False,
        )
        fig.add_annotation(
            x=step,
            xref="x",
            y=1 - 0.09 * (k % 3),
            yref="paper",
            yanchor="top",
            xanchor="left",
            text=text,
            showarrow=False,
            font=dict(size=11, color=color),
        )


def _no_data(fig: go.Figure, text: str = "no data yet") -> None:
    """A centred note on an otherwise empty figure."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=14, color=NEUTRAL),
    )


def _legend_rows(fig: go.Figure, width_px: int = 550) -> int:
    """Rough number of rows a horizontal legend of the figure's named traces will take."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    if len(names) < 2:
        return 0
    return math.ceil(sum(len(n) * 6.5 + 40 for n in names) / width_px)


def _finish(
    fig: go.Figure,
    title: str,
    *,
    x_title: str | None = STEP_AXIS,
    y_title: str | list[str] | None = None,
    rows: int = 1,
    note: str | None = None,
    log_y: bool = False,
    height: int = HEIGHT,
) -> go.Figure:
    """Title, axis titles, a horizontal legend on top, margins and height, shared by all."""
    extra = 20 * max(0, _legend_rows(fig) - 1) + (18 if note else 0)
    fig.update_layout(
        title=dict(
            text=title,
            x=0,
            xanchor="left",
            xref="paper",
            y=1,
            yref="container",
            yanchor="top",
            pad=dict(t=8),
            font=dict(size=15),
            subtitle=dict(text=note or "", font=dict(size=12)),
        ),
        height=height + extra,
        margin={**MARGIN, "t": MARGIN["t"] + extra},
        legend=dict(orientation="h", x=0, xanchor="left", y=1, yanchor="bottom"),
        bargap=0,
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    if x_title:
        fig.update_xaxes(title_text=x_title, row=rows)
    titles = [y_title] * rows if isinstance(y_title, str) else (y_title or [])
    for row, text in enumerate(titles, 1):
        fig.update_yaxes(title_text=text, row=row, col=1)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _grid(rows: int = 1) -> go.Figure:
    """An empty figure of `rows` rows sharing one x axis (a subplot grid, even for one row)."""
    return make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)


def _empty(run: Run, twin: Run | None) -> bool:
    """True when neither run has recorded a step."""
    return run.num_steps == 0 and (twin is None or twin.num_steps == 0)


def _name(what: str, label: str, twin: Run | None) -> str:
    """A trace's legend name: what it shows, plus which run when a twin is shown."""
    return f"{what} · {label}" if twin is not None else what


def _per_layer(
    fig: go.Figure, run: Run, twin: Run | None, series, *, what: str, unit: str = ""
) -> None:
    """One line per block and run; series(run, i) -> (x, y), or None to skip that block."""
    for r, label, dash in _members(run, twin):
        for i, info in enumerate(r.layers):
            xy = series(r, i)
            if xy is None or len(xy[0]) == 0:
                continue
            _line(
                fig,
                xy[0],
                xy[1],
                _name(info.name, label, twin),
                layer_color(i),
                what=what,
                unit=unit,
                dash=dash,
                hover_name=f"{info.name} · {label}",
                mode="lines+markers" if len(xy[0]) == 1 else "lines",
            )


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; the window shrinks at both ends (and for short series)."""
    n = len(y)
    if n == 0:
        return np.asarray(y, dtype=np.float32)
    window = min(window, n if n % 2 else n - 1)
    kernel = np.ones(window)
    total = np.convolve(np.asarray(y, dtype=np.float64), kernel, mode="same")
    count = np.convolve(np.ones(n), kernel, mode="same")
    return (total / count).astype(np.float32)


def _saturation_label(run: Run, info) -> str:
    """What counts as saturated for this run's activation."""
    if info.saturation == "dead":
        return "dead (relu = 0)"
    if run.config.activation == "tanh":
        return "saturated (|tanh| > 0.97)"
    return "saturated (sigmoid < 0.015 or > 0.985)"


def _image_side(run: Run) -> int:
    """Input image side length of the run's data set."""
    return 32 if run.config.dataset == "cifar10" else 28


def _step_index(run: Run, step_index: int) -> int:
    """A (possibly negative) row index into run.steps, checked."""
    n = run.num_steps
    if n == 0:
        raise ValueError("no steps recorded yet")
    if not -n <= step_index < n:
        raise IndexError(f"step_index {step_index} out of range for {n} recorded steps")
    return step_index % n


# ---------------------------------------------------------------- loss and accuracy


def loss_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Training loss (cross-entropy of each batch) per step; the twin dashed."""
    fig = _grid()
    for r, label, dash in _members(run, twin):
        if r.num_steps:
            _line(
                fig,
                r.steps,
                r.metric("train_loss"),
                label,
                METRIC_COLORS["loss"],
                what="loss",
                dash=dash,
            )
    if _empty(run, twin):
        _no_data(fig)
    _mark_events(fig, run, twin)
    return _finish(
        fig, "Training loss (each batch, before its update)", y_title="cross-entropy loss (nats)"
    )


def accuracy_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Batch accuracy (centred moving average) and test accuracy in both modes, in %."""
    fig = _grid()
    for r, label, dash in _members(run, twin):
        if r.num_steps:
            smooth = _moving_average(r.metric("train_acc"), SMOOTH_WINDOW) * 100
            what = f"training batches ({SMOOTH_WINDOW}-step centred mean)"
            _line(
                fig,
                r.steps,
                smooth,
                _name(what, label, twin),
                METRIC_COLORS["train"],
                what="accuracy",
                unit="%",
                dash=dash,
                hover_name=f"{what} · {label}",
            )
        if any(info.has_running_stats for info in r.layers):
            series = [
                ("test, running stats (eval mode)", r.acc_running_stats, "running"),
                ("test, batch stats (train mode)", r.acc_batch_stats, "batch"),
            ]
        else:
            series = [("test (no running stats: both modes agree)", r.acc_running_stats, "running")]
        for what, values, key in series:
            color = METRIC_COLORS[key]
            _line(
                fig,
                r.eval_steps,
                np.asarray(values, dtype=np.float32) * 100,
                _name(what, label, twin),
                color,
                what="accuracy",
                unit="%",
                dash=dash,
                hover_name=f"{what} · {label}",
                mode="lines+markers",
                marker=dict(size=5, color=color),
            )
    if _empty(run, twin) and not run.eval_steps:
        _no_data(fig)
    _mark_events(fig, run, twin)
    fig.update_yaxes(range=[0, 101])
    return _finish(
        fig, "Accuracy: training batches and held-out test images", y_title="accuracy (%)"
    )


# ---------------------------------------------------------------- activations


def _bin_labels(edges: np.ndarray) -> list[str]:
    """Hover text of each bin; the end bins also hold the values beyond the edges."""
    labels = [f"[{lo:.3g}, {hi:.3g})" for lo, hi in zip(edges[:-1], edges[1:])]
    labels[0] = f"below {edges[1]:.3g}"
    labels[-1] = f"{edges[-2]:.3g} and above"
    return labels


def histogram_figure(run: Run, layer: int, snapshot: int, channel: int | None = None) -> go.Figure:
    """Pre-norm | post-norm | post-activation value fractions of a block at one snapshot."""
    info, snaps = run.layers[layer], run.snapshots[layer]
    if channel is not None and not 0 <= channel < info.tracked_channels:
        raise ValueError(
            f"channel must be from 0 to {info.tracked_channels - 1} (per-channel histograms are "
            f"kept for the first {info.tracked_channels} channels of {info.name}); got {channel}"
        )
    titles = [KIND_TITLES[kind] for kind in HIST_KINDS]
    if snaps.steps and channel is None:
        titles[-1] += f", {_saturation_label(run, info)}: "
        titles[-1] += f"{snaps.saturated_fraction[snapshot]:.1%}"
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.06)
    which = "all channels" if channel is None else f"channel {channel}"
    if not snaps.steps:
        _no_data(fig, "no snapshot yet")
        return _finish(fig, f"{info.name}, {which}: no snapshot yet", x_title="value")
    step = snaps.steps[snapshot]
    for col, kind in enumerate(HIST_KINDS, 1):
        series = snaps.hist if channel is None else snaps.channel_hist
        counts = np.asarray(series[kind][snapshot], dtype=np.float64)
        counts = counts if channel is None else counts[channel]
        edges = np.asarray(snaps.edges[kind], dtype=np.float64)
        bar = go.Bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts / max(counts.sum(), 1),
            width=np.diff(edges),
            marker=dict(color=layer_color(layer), line=dict(width=0)),
            customdata=_bin_labels(edges),
            hovertemplate="values %{customdata}<br>fraction %{y:.3f}<extra></extra>",
            showlegend=False,
        )
        fig.add_trace(bar, row=1, col=col)
    notes = []
    if run.config.placement == "after":
        notes.append(
            "placement 'after' (conv → activation → norm): the post-activation values "
            "are the norm's input, the same as pre-norm"
        )
    if info.norm == "none":
        notes.append("no normalization: post-norm is the pre-norm values unchanged")
    images = min(HIST_IMAGES, int(_in_force(run, "batch_size", step)))
    title = f"{info.name}, {which}: values at step {step} (first {images} images of the batch)"
    return _finish(
        fig, title, x_title="value", y_title="fraction of values", note="; ".join(notes) or None
    )


def percentile_figure(
    run: Run, layer: int, twin: Run | None = None, which: str = "unit"
) -> go.Figure:
    """15/50/85th percentiles of a unit's or layer's activation input (Ioffe & Szegedy Fig. 1)."""
    if which not in ("unit", "layer"):
        raise ValueError(f"which must be 'unit' or 'layer'; got {which!r}")
    fig = _grid()
    color = layer_color(layer)
    for r, label, dash in _members(run, twin):
        if layer >= len(r.layers) or not r.snapshots[layer].steps:
            continue
        snaps = r.snapshots[layer]
        p = np.asarray(getattr(snaps, f"{which}_percentiles"), dtype=np.float32).reshape(-1, 3)
        alpha, edge = (0.3, 0) if dash == MAIN_DASH else (0.12, 1)
        band = dict(line=dict(color=color, width=edge, dash="dot"), legendgroup=label)
        _line(
            fig,
            snaps.steps,
            p[:, 0],
            "15th",
            color,
            what="15th percentile",
            showlegend=False,
            hoverinfo="skip",
            **band,
        )
        _line(
            fig,
            snaps.steps,
            p[:, 2],
            f"15th–85th percentile · {label}",
            color,
            what="85th percentile",
            fill="tonexty",
            fillcolor=_rgba(color, alpha),
            hoverinfo="skip",
            **band,
        )
        hover = (
            f"<b>median · {label}</b><br>step %{{x}}<br>85th: %{{customdata[1]:.4g}}"
            "<br>50th: %{y:.4g}<br>15th: %{customdata[0]:.4g}<extra></extra>"
        )
        _line(
            fig,
            snaps.steps,
            p[:, 1],
            f"median · {label}",
            color,
            what="median",
            dash=dash,
            customdata=p[:, [0, 2]],
            hovertemplate=hover,
            legendgroup=label,
            mode="lines+markers" if len(p) == 1 else "lines",
        )
    info = run.layers[layer]
    if not fig.data:
        _no_data(fig, "no snapshot yet")
    _mark_events(fig, run, twin)
    if which == "unit":
        c, y, x = info.unit
        title = f"{info.name}, one unit (channel {c}, y {y}, x {x}): its activation input"
        note = "15th / 50th / 85th percentile over the images of each batch"
    else:
        title = f"{info.name}, all units: activation input"
        note = "15th / 50th / 85th percentile over the layer (up to 16 images of each batch)"
    return _finish(fig, title, y_title="activation input (value)", note=note)


def saturation_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Fraction of each block's activations that are dead or saturated, in %, per snapshot."""
    fig = _grid()

    def series(r, i):
        snaps = r.snapshots[i]
        return snaps.steps, np.asarray(snaps.saturated_fraction, dtype=np.float32) * 100

    label = _saturation_label(run, run.layers[0]) if run.layers else "saturated"
    _per_layer(fig, run, twin, series, what=label, unit="%")
    if not fig.data:
        _no_data(fig, "no snapshot yet")
    _mark_events(fig, run, twin)
    return _finish(fig, f"Activations {label}, per block", y_title="% of activations")


# ---------------------------------------------------------------- normalization statistics


def running_stats_figure(run: Run, layer: int, channel: int) -> go.Figure:
    """Batch mean/variance of a channel (dots) against the running mean/variance (lines)."""
    info = run.layers[layer]
    if not 0 <= channel < info.channels:
        raise ValueError(f"channel must be from 0 to {info.channels - 1}; got {channel}")
    fig = _grid(rows=2)
    color = layer_color(layer)
    for row, (what, batch_key, running_key, initial) in enumerate(_STAT_ROWS, 1):
        if not run.num_steps:
            break
        batch = run.layer_stat(layer, batch_key)[:, channel]
        _line(
            fig,
            run.steps,
            batch,
            _STAT_NAMES[batch_key],
            color,
            what=what,
            row=row,
            mode="markers",
            marker=dict(color=color, size=5, opacity=0.55),
        )
        running = run.layer_stat(layer, running_key)
        if running is not None:  # drawn from the initial buffer value (step 0) on
            x = np.concatenate([[0], run.steps])
            y = np.concatenate([[initial], running[:, channel]]).astype(np.float32)
            _line(
                fig,
                x,
                y,
                _STAT_NAMES[running_key],
                color,
                what=what,
                row=row,
                line=dict(color=color, width=2.5),
            )
    if not run.num_steps:
        _no_data(fig)
    _mark_events(fig, run)
    title = f"{info.name}, channel {channel}: "
    if info.has_running_stats:
        title += "batch statistics (dots) and running statistics (line)"
        note = (
            "training divides by the biased batch variance (÷m); running_var stores the "
            "unbiased estimate (÷(m−1)), which eval mode divides by"
        )
    elif info.norm == "none":
        title += "batch statistics only"
        note = "no normalization: statistics of the pre-activation; nothing is stored"
    else:
        title += "batch statistics only"
        note = f"{NORM_NAMES[info.norm]} keeps no running statistics (it normalizes per image)"
    return _finish(
        fig, title, y_title=["mean (value)", "variance (value²)"], rows=2, note=note, height=380
    )


def affine_figure(run: Run, layer: int) -> go.Figure:
    """γ (scale) and β (shift) of every channel of block `layer` over the steps, two rows."""
    info = run.layers[layer]
    fig = _grid(rows=2)
    gamma, beta = run.layer_stat(layer, "gamma"), run.layer_stat(layer, "beta")
    if gamma is None or beta is None:
        _no_data(fig, f"{NORM_NAMES[info.norm]} has no γ and β to learn")
        return _finish(fig, f"{info.name}: no affine parameters", rows=2, height=380)
    cap = int(np.clip(AFFINE_POINTS // (2 * info.channels), 60, MAX_POINTS))
    base = layer_color(layer)
    for c in range(info.channels):
        color = _shade(base, 0.7 * (c / max(info.channels - 1, 1)) - 0.35)
        for row, (symbol, values) in enumerate((("γ", gamma), ("β", beta)), 1):
            _line(
                fig,
                run.steps,
                values[:, c],
                f"channel {c}",
                color,
                what=symbol,
                row=row,
                cap=cap,
                showlegend=False,
                line=dict(color=color, width=1),
            )
    if not run.num_steps:
        _no_data(fig)
    _mark_events(fig, run)
    title = f"{info.name}: γ (scale) and β (shift) of each of its {info.channels} channels"
    return _finish(fig, title, y_title=["γ (scale)", "β (shift)"], rows=2, height=380)


def _gain(var: np.ndarray, eps: float) -> np.ndarray:
    """1/sqrt(var + eps), infinite where both are 0."""
    with np.errstate(divide="ignore"):
        return 1 / np.sqrt(var + eps)


def gain_figure(run: Run, layer: int, step_index: int = -1) -> go.Figure:
    """Each channel's gain 1/sqrt(var + eps) at one step, eps-dominated channels highlighted."""
    info = run.layers[layer]
    fig = _grid()
    if not run.num_steps:
        _no_data(fig)
        return _finish(fig, f"{info.name}: gain per channel", x_title="channel", log_y=True)
    i = _step_index(run, step_index)
    step = int(run.steps[i])
    eps = float(_in_force(run, "eps", step))
    var = run.layer_stat(layer, "batch_var")[i].astype(np.float64)
    gain = _gain(var, eps)
    channels = np.arange(info.channels)
    dominated = eps >= var
    hover = (
        "channel %{x}<br>batch var %{customdata[0]:.4g}<br>ε %{customdata[1]:.3g}"
        "<br>gain %{y:.4g}<extra>%{fullData.name}</extra>"
    )
    for name, mask, color, pattern in (
        ("gain 1/√(batch var + ε)", ~dominated, layer_color(layer), ""),
        ("ε ≥ batch var: ε dominates", dominated, ALERT, "/"),
    ):
        fig.add_bar(
            x=channels[mask],
            y=gain[mask],
            name=name,
            customdata=np.column_stack([var[mask], np.full(mask.sum(), eps)]),
            marker=dict(color=color, pattern=dict(shape=pattern), line=dict(width=0)),
            hovertemplate=hover,
        )
    running = run.layer_stat(layer, "running_var")
    if running is not None:
        rvar = running[i].astype(np.float64)
        fig.add_scatter(
            x=channels,
            y=_gain(rvar, eps),
            mode="markers",
            name="1/√(running var + ε): eval mode",
            customdata=np.column_stack([rvar, np.full(len(rvar), eps)]),
            marker=dict(color=NEUTRAL, size=8, symbol="diamond"),
            hovertemplate=hover.replace("batch var", "running var"),
        )
    if eps > 0:
        fig.add_scatter(
            x=[-0.5, info.channels - 0.5],
            y=[eps**-0.5] * 2,
            mode="lines",
            name="1/√ε: the largest possible gain",
            line=dict(color=NEUTRAL, dash="dot"),
            hovertemplate="1/√ε = %{y:.4g}<extra></extra>",
        )
    fig.update_layout(barmode="overlay")
    title = (
        f"{info.name} at step {step}: gain 1/√(var + ε) per channel, ε = {eps:g} "
        f"({int(dominated.sum())} of {info.channels} channels with ε ≥ var)"
    )
    note = None
    if info.norm != "batch":
        note = (
            f"{NORM_NAMES[info.norm]} does not divide by per-channel batch statistics: "
            "shown is the gain BatchNorm would apply"
        )
    return _finish(fig, title, x_title="channel", y_title="gain (log scale)", note=note, log_y=True)


# ---------------------------------------------------------------- gradients and updates


def grad_norm_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Per-block L2 norm of the loss gradient w.r.t. the norm's input, log y; twin dashed."""
    fig = _grid()
    _per_layer(
        fig,
        run,
        twin,
        lambda r, i: (r.steps, r.layer_stat(i, "input_grad_norm")),
        what="gradient norm",
    )
    if _empty(run, twin):
        _no_data(fig)
    _mark_events(fig, run, twin)
    return _finish(
        fig,
        "Gradient norm at each block's norm input (the pre-norm activations)",
        y_title="‖∂loss/∂input‖ (L2, log scale)",
        log_y=True,
    )


def update_ratio_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Update:data ratio of the conv and head weights, against the 1e-3 rule of thumb."""
    fig = _grid()
    for r, label, dash in _members(run, twin):
        if not r.num_steps:
            continue
        for name in r.params:
            parts = name.split(".")
            if name == "head.weight":
                legend, color = "head", NEUTRAL
            elif parts[0] == "blocks" and parts[2:] == ["conv", "weight"]:
                legend, color = r.layers[int(parts[1])].name, layer_color(int(parts[1]))
            else:
                continue
            legend += " weight"
            _line(
                fig,
                r.steps,
                r.param_stat(name, "update_ratio"),
                _name(legend, label, twin),
                color,
                what="update ratio",
                dash=dash,
                hover_name=f"{legend} · {label}",
            )
    last = max(run.num_steps, twin.num_steps if twin is not None else 0, 1)
    fig.add_scatter(
        x=[1, last],
        y=[UPDATE_RATIO_REFERENCE] * 2,
        mode="lines",
        name="1e-3: Karpathy's rule of thumb",
        line=dict(color=NEUTRAL, dash="dot", width=1.5),
        hovertemplate="1e-3: Karpathy's rule of thumb<extra></extra>",
    )
    if _empty(run, twin):
        _no_data(fig)
    _mark_events(fig, run, twin)
    return _finish(
        fig,
        "Update:data ratio of the weights (‖update‖ / ‖weights‖)",
        y_title="update / weights (log scale)",
        log_y=True,
    )


# ---------------------------------------------------------------- train / eval gap


def eval_gap_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Test accuracy with batch stats minus with running stats, in percentage points."""
    fig = _grid()
    skipped = 0
    for r, label, dash in _members(run, twin):
        x = np.asarray(r.eval_steps)
        gap = (np.asarray(r.acc_batch_stats, np.float64) - np.asarray(r.acc_running_stats)) * 100
        ok = np.isfinite(gap)
        skipped += int((~ok).sum())
        if ok.any():
            color = METRIC_COLORS["batch"]
            _line(
                fig,
                x[ok],
                gap[ok],
                label,
                color,
                what="gap",
                unit=" pp",
                dash=dash,
                mode="lines+markers",
                marker=dict(color=color, size=6),
            )
    fig.add_hline(y=0, line=dict(color=NEUTRAL, width=1), exclude_empty_subplots=False)
    if not fig.data:
        _no_data(fig)
    _mark_events(fig, run, twin)
    note = "positive: the batch statistics do better than the running averages on test images"
    if skipped:
        note += f"; {skipped} point(s) skipped (a channel had one value per batch)"
    return _finish(
        fig,
        "Train/eval gap: test accuracy with batch stats − with running stats",
        y_title="gap (percentage points)",
        note=note,
    )


def batch_noise_figure(noise) -> go.Figure:
    """A channel's batch means and variances over many batches against the full-data values."""
    panels = (
        (np.asarray(noise.batch_means, dtype=np.float64), noise.full_mean, "mean", "value"),
        (np.asarray(noise.batch_vars, dtype=np.float64), noise.full_var, "variance", "value²"),
    )
    titles = [
        f"batch {what}s{' (biased)' if what == 'variance' else ''}: "
        f"std {values.std() if len(values) else math.nan:.3g}"
        for values, _, what, _ in panels
    ]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=titles)
    for col, (values, full, what, unit) in enumerate(panels, 1):
        fig.add_histogram(
            x=values,
            nbinsx=20,
            marker=dict(color=layer_color(noise.layer), line=dict(width=0)),
            showlegend=False,
            hovertemplate=f"batch {what} %{{x}}<br>%{{y}} batches<extra></extra>",
            row=1,
            col=col,
        )
        fig.add_vline(
            x=full,
            line=dict(color=ALERT, width=2, dash="dash"),
            row=1,
            col=col,
            annotation_text=f"all test images: {full:.4g}",
            annotation_font=dict(color=ALERT, size=11),
            exclude_empty_subplots=False,
        )
        fig.update_xaxes(title_text=f"batch {what} ({unit})", row=1, col=col)
    title = (
        f"channel {noise.channel} of block{noise.layer + 1}: batch statistics at batch "
        f"size {noise.batch_size} ({len(noise.batch_means)} batches)"
    )
    return _finish(fig, title, x_title=None, y_title="batches")


# ---------------------------------------------------------------- the momentum formula


def momentum_numbers(run: Run, layer: int, channel: int, step_index: int = -1) -> dict:
    """Numbers of one channel's running-average update at a step; ValueError if no buffers."""
    info = run.layers[layer]
    if not info.has_running_stats:
        raise ValueError(f"{info.name} ({NORM_NAMES[info.norm]}) keeps no running statistics")
    if not 0 <= channel < info.channels:
        raise ValueError(f"channel must be from 0 to {info.channels - 1}; got {channel}")
    i = _step_index(run, step_index)
    step = int(run.steps[i])
    momentum = _in_force(run, "momentum", step)
    factor = 1 / step if momentum is None else float(momentum)
    side = block_sides(_image_side(run), len(run.layers))[layer]
    m = int(_in_force(run, "batch_size", step)) * side * side

    def at(stat: str, row: int, initial: float) -> float:
        return initial if row < 0 else float(run.layer_stat(layer, stat)[row, channel])

    biased = at("batch_var", i, 0.0)
    return {
        "step": step,
        "momentum": None if momentum is None else float(momentum),
        "factor": factor,
        "running_before": at("running_mean", i - 1, 0.0),
        "batch": at("batch_mean", i, 0.0),
        "running_after": at("running_mean", i, 0.0),
        "var_running_before": at("running_var", i - 1, 1.0),
        "var_batch_biased": biased,
        "var_batch_unbiased": biased * m / (m - 1) if m > 1 else math.nan,
        "var_running_after": at("running_var", i, 1.0),
        "m": m,
        "keras_momentum": None if momentum is None else 1 - float(momentum),
    }


def effective_window(momentum: float | None, step: int) -> float:
    """About how many recent steps a running average spans (1/momentum; every step for None)."""
    if momentum is None:
        return float(step)
    return math.inf if momentum == 0 else 1 / momentum
