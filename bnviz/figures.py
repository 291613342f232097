"""The run figures: pure functions from a run record (bnviz.Run) to a go.Figure, one per chart of
the views (and the numbers of the momentum formula the running-statistics view writes out), with
no training and no Streamlit, drawn and laid out with the plotting kit (bnviz/plot.py). What
they know of runs is here: every block has one colour and one marker symbol everywhere
(LAYER_COLORS, LAYER_SYMBOLS), the main run is drawn solid and its twin dashed (and the run it
branched from, run.parent, grey and dotted), mid-run changes, branches and divergence are marked
on every time axis, and long per-step series are strided to at most MAX_POINTS points per trace
so the figure sent to the browser on every refresh stays small."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .config import FIELDS, NORM_NAMES
from .plot import (
    ALERT,
    HEAD_SYMBOL,
    LAYER_COLORS,
    LINE_WIDTH,
    MAIN_DASH,
    MARK,
    MAX_MARKERS,
    MAX_POINTS,
    NEUTRAL,
    NOTE_SIZE,
    PARENT_DASH,
    TWIN_DASH,
    TWO_ROW_PLOT_HEIGHT,
    Spec,
    finish,
    layer_color,
    layer_symbol,
    line_markers,
    moving_average,
    no_data,
    rgba,
    trace,
)
from .record import HIST_KINDS, Run
from .series import stride

PARENT_NAME = "before the branch"  # the legend entry of the run before a branch (PARENT_DASH)
AFFINE_POINTS = 6_000  # all gamma and beta traces of a block together
# the training batches' loss and accuracy share a colour; test accuracy has one per mode
_BLUE, _ORANGE, _GREEN = LAYER_COLORS[:3]
METRIC_COLORS = {"loss": _BLUE, "train": _BLUE, "running": _GREEN, "batch": _ORANGE}
METRIC_SYMBOLS = {"running": "circle", "batch": "diamond"}  # test accuracy: not by hue alone
SMOOTH_WINDOW = 9  # steps in the centred moving average of the training-batch accuracy
UPDATE_RATIO_REFERENCE = 1e-3
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


# ---------------------------------------------------------------- private helpers


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
    """(run, label, dash) for the main run, the twin if given, and the run the main one
    branched from if any (see _line for how it is drawn)."""
    members = [(run, f"{_describe(run, twin)} (main)", MAIN_DASH)]
    if twin is not None:
        members.append((twin, f"{_describe(twin, run)} (twin)", TWIN_DASH))
    if run.parent is not None:
        members.append((run.parent, PARENT_NAME, PARENT_DASH))
    return members


def _line(
    fig: Spec,
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
    """Add one time series (strided to `cap` points) with a hover naming the run and step.
    A series of the run before a branch (PARENT_DASH) is drawn grey, thin and dotted, with
    one legend entry per figure."""
    idx = stride(len(x), cap)
    if dash == PARENT_DASH:
        first = not any(t.get("legendgroup") == PARENT_NAME for t in fig.data)
        hover_name = f"{hover_name or name} · {PARENT_NAME}"
        name, color = PARENT_NAME, NEUTRAL
        line = dict(color=color, dash=dash, width=LINE_WIDTH / 2)
        scatter |= dict(legendgroup=PARENT_NAME, showlegend=first, opacity=0.8, line=line)
        if "marker" in scatter:  # a block's symbol, in the parent's grey
            scatter["marker"] = scatter["marker"] | dict(color=color, size=6)
    hover = hovertemplate or (
        f"<b>{hover_name or name}</b><br>step %{{x}}<br>{what}: %{{y:.4g}}{unit}<extra></extra>"
    )
    if scatter.get("hoverinfo") == "skip":
        hover = None
    style = {"mode": "lines", "line": dict(color=color, dash=dash, width=LINE_WIDTH), **scatter}
    series = trace(
        "scatter",
        x=np.asarray(x)[idx],
        y=np.asarray(y)[idx],
        name=name,
        hovertemplate=hover,
        customdata=None if customdata is None else np.asarray(customdata)[idx],
        **style,
    )
    fig.add(series, row, col)


def _branch_points(run: Run) -> dict[int, str]:
    """Where run and the runs it branched from each went on as a branch: step -> how the run
    before ended there ('' when it was still running or had completed its steps)."""
    points, parent = {}, run.parent
    while parent is not None:
        ended = {"failed": "failed", "diverged": "diverged"}.get(parent.status, "")
        points[parent.num_steps + 1] = ended
        parent = parent.parent
    return points


def _mark_events(fig: Spec, run: Run, twin: Run | None = None) -> None:
    """Dotted lines at mid-run changes (one label per step), at branch points (where the run
    went on from with Continue or Fork, saying how the run before ended there) and a red line
    where a run diverged."""
    labels: dict[int, list[str]] = {}
    for r in (run, twin):
        for change in r.changes if r is not None else []:
            text = (
                f"{CHANGE_NAMES.get(change['field'], change['field'])} "
                f"{_fmt(change['old'])}→{_fmt(change['new'])}"
            )
            if text not in labels.setdefault(change["step"], []):
                labels[change["step"]].append(text)
    branches = _branch_points(run)
    marks = []
    for step in sorted(labels.keys() | branches.keys()):
        text = ", ".join(labels.get(step, []))
        if step in branches:
            text = f"branch: {text}" if text else "continued"
            if branches[step]:
                text = f"{branches[step]}; {text}"
        color = ALERT if branches.get(step) else NEUTRAL
        marks.append((step, text, color, "dot"))
    for r, label, dash in _members(run, twin):
        if r.status == "diverged" and r.diverged_step is not None and dash != PARENT_DASH:
            text = "diverged" if twin is None else f"{label} diverged"
            marks.append((r.diverged_step, text, ALERT, dash))
    for k, (step, text, color, dash) in enumerate(marks):
        fig.vline(step, dict(color=color, dash=dash, width=1.5))  # in every row
        fig.annotate(
            x=step,
            xref="x",
            y=1 - 0.09 * (k % 3),
            yref="paper",
            yanchor="top",
            xanchor="left",
            text=text,
            showarrow=False,
            font=dict(size=NOTE_SIZE),  # the theme's text colour; the line has the mark's
            name=MARK,
        )


def _empty(run: Run, twin: Run | None) -> bool:
    """True when neither run has recorded a step."""
    return run.num_steps == 0 and (twin is None or twin.num_steps == 0)


def _group(label: str, twin: Run | None) -> str | None:
    """A run's legend group when a twin is shown (a column of the legend per run), else none."""
    return label if twin is not None else None


def _name(what: str, label: str, twin: Run | None) -> str:
    """A trace's legend name: what it shows, plus which run when a twin is shown."""
    return f"{what} · {label}" if twin is not None else what


def _per_layer(fig: Spec, run: Run, twin: Run | None, series, *, what: str, unit: str = "") -> None:
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
                mode="lines+markers",
                marker=line_markers(layer_symbol(i), layer_color(i)),
                legendgroup=_group(label, twin),
            )


def _saturation_label(run: Run, info) -> str:
    """What counts as saturated for this run's activation."""
    if info.saturation == "dead":
        return "dead (relu = 0)"
    if run.config.activation == "tanh":
        return "saturated (|tanh| > 0.97)"
    return "saturated (sigmoid < 0.015 or > 0.985)"


# ---------------------------------------------------------------- loss and accuracy


def loss_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Training loss (cross-entropy of each batch) per step; the twin dashed."""
    fig = Spec()
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
        no_data(fig)
    _mark_events(fig, run, twin)
    return finish(
        fig,
        "Training loss",
        y_title="cross-entropy loss (nats)",
        note="the loss of each training batch, measured before its update",
    )


def accuracy_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Batch accuracy (centred moving average) and test accuracy in both modes, in %."""
    fig = Spec()
    for r, label, dash in _members(run, twin):
        if r.num_steps:
            smooth = moving_average(r.metric("train_acc"), SMOOTH_WINDOW) * 100
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
                legendgroup=_group(label, twin),
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
                marker=dict(size=7, color=color, symbol=METRIC_SYMBOLS[key]),
                legendgroup=_group(label, twin),
            )
    if _empty(run, twin) and not run.eval_steps:
        no_data(fig)
    _mark_events(fig, run, twin)
    fig.update_axes("y", range=[0, 101])
    note = (
        f"training batches: a {SMOOTH_WINDOW}-step centred mean; test: held-out images, "
        "in eval mode (running statistics) and train mode (batch statistics)"
    )
    return finish(
        fig,
        "Accuracy: training batches and test images",
        y_title="accuracy (%)",
        note=note,
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
    fig = Spec(cols=3, spacing=0.06, titles=titles)
    which = "all channels" if channel is None else f"channel {channel}"
    if not snaps.steps:
        no_data(fig, "no snapshot yet")
        title = f"{info.name}, {which}: no snapshot yet"
        return finish(fig, title, x_title="value", panel_titles=True)
    step = snaps.steps[snapshot]
    for col, kind in enumerate(HIST_KINDS, 1):
        series = snaps.hist if channel is None else snaps.channel_hist
        counts = np.asarray(series[kind][snapshot], dtype=np.float64)
        counts = counts if channel is None else counts[channel]
        edges = np.asarray(snaps.edges[kind], dtype=np.float64)
        bar = trace(
            "bar",
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts / max(counts.sum(), 1),
            width=np.diff(edges),
            marker=dict(color=layer_color(layer), line=dict(width=0)),
            customdata=_bin_labels(edges),
            hovertemplate="values %{customdata}<br>fraction %{y:.3f}<extra></extra>",
            showlegend=False,
        )
        fig.add(bar, row=1, col=col)
    images = min(run.hist_images, int(run.setting_at("batch_size", step)))
    notes = [f"the first {images} images of the training batch"]
    if run.config.placement == "after":
        notes.append(
            "placement 'after' (conv → activation → norm): the post-activation values "
            "are the norm's input, the same as pre-norm"
        )
    if info.norm == "none":
        notes.append("no normalization: post-norm is the pre-norm values unchanged")
    title = f"{info.name}, {which}: values at step {step}"
    return finish(
        fig,
        title,
        x_title="value",
        y_title="fraction of values",
        note="; ".join(notes),
        panel_titles=True,
    )


def percentile_figure(
    run: Run, layer: int, twin: Run | None = None, which: str = "unit"
) -> go.Figure:
    """15/50/85th percentiles of a unit's or layer's activation input (Ioffe & Szegedy Fig. 1)."""
    if which not in ("unit", "layer"):
        raise ValueError(f"which must be 'unit' or 'layer'; got {which!r}")
    fig = Spec()
    color = layer_color(layer)
    for r, label, dash in _members(run, twin):
        if layer >= len(r.layers) or not r.snapshots[layer].steps:
            continue
        snaps = r.snapshots[layer]
        p = np.asarray(getattr(snaps, f"{which}_percentiles"), dtype=np.float32).reshape(-1, 3)
        alpha, edge = (0.22, 0) if dash == MAIN_DASH else (0.1, 1.5)
        if dash != PARENT_DASH:  # the run before a branch: its median only
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
                fillcolor=rgba(color, alpha),
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
            line=dict(color=color, dash=dash, width=3),
        )
    info = run.layers[layer]
    if not fig.data:
        no_data(fig, "no snapshot yet")
    _mark_events(fig, run, twin)
    if which == "unit":
        c, y, x = info.unit
        title = f"{info.name}, one unit: activation input"
        note = (
            f"the unit at channel {c}, y {y}, x {x}; line: median, band: 15th to 85th "
            "percentile over the images of each batch"
        )
    else:
        title = f"{info.name}, all units: activation input"
        note = (
            "line: median, band: 15th to 85th percentile over the whole layer "
            f"(up to {run.hist_images} images of each batch)"
        )
    return finish(fig, title, y_title="activation input (value)", note=note)


def saturation_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Fraction of each block's activations that are dead or saturated, in %, per snapshot."""
    fig = Spec()

    def series(r, i):
        snaps = r.snapshots[i]
        return snaps.steps, np.asarray(snaps.saturated_fraction, dtype=np.float32) * 100

    label = _saturation_label(run, run.layers[0]) if run.layers else "saturated"
    _per_layer(fig, run, twin, series, what=label, unit="%")
    if not fig.data:
        no_data(fig, "no snapshot yet")
    _mark_events(fig, run, twin)
    fig.update_axes("y", rangemode="tozero")  # a rise from 3% to 6% should not fill the height
    return finish(
        fig,
        f"Activations {label.split(' (')[0]}, per block",
        y_title="% of activations",
        note=f"share of each block's post-activation values that are {label}",
    )


# ---------------------------------------------------------------- normalization statistics


def running_stats_figure(run: Run, layer: int, channel: int) -> go.Figure:
    """Batch mean/variance of a channel (dots) against the running mean/variance (lines)."""
    info = run.layers[layer]
    if not 0 <= channel < info.channels:
        raise ValueError(f"channel must be from 0 to {info.channels - 1}; got {channel}")
    fig = Spec(rows=2)
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
            cap=MAX_MARKERS,
            mode="markers",
            marker=dict(color=color, size=6, opacity=0.75),
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
        no_data(fig)
    _mark_events(fig, run)
    title = f"{info.name}, channel {channel}: "
    if info.has_running_stats:
        title += "running statistics"
        note = (
            "dots: each training batch's statistics; line: the running average, from its "
            "initial value on. Training divides by the biased batch variance (÷m); running_var "
            "stores the unbiased estimate (÷(m−1)), which eval mode divides by"
        )
    elif info.norm == "none":
        title += "batch statistics only"
        note = "no normalization: statistics of the pre-activation; nothing is stored"
    else:
        title += "batch statistics only"
        note = f"{NORM_NAMES[info.norm]} keeps no running statistics (it normalizes per image)"
    return finish(
        fig,
        title,
        y_title=["mean (value)", "variance (value²)"],
        note=note,
        plot_height=TWO_ROW_PLOT_HEIGHT,
    )


def affine_figure(run: Run, layer: int) -> go.Figure:
    """γ (scale) and β (shift) of every channel of block `layer` over the steps, two rows."""
    info = run.layers[layer]
    fig = Spec(rows=2)
    gamma, beta = run.layer_stat(layer, "gamma"), run.layer_stat(layer, "beta")
    if gamma is None or beta is None:
        no_data(fig, f"{NORM_NAMES[info.norm]} has no γ and β to learn")
        return finish(fig, f"{info.name}: no affine parameters", plot_height=TWO_ROW_PLOT_HEIGHT)
    # One trace per parameter, its channels' lines joined by gaps: a trace per channel made
    # the browser draw 2 x channels traces (128 in a block of 64) on every redraw.
    cap = int(np.clip(AFFINE_POINTS // (2 * info.channels), 60, MAX_POINTS))
    idx = stride(run.num_steps, cap)
    gap = np.full(1, np.nan)
    x = np.concatenate([np.r_[run.steps[idx], gap] for _ in range(info.channels)])
    channel = np.repeat(np.arange(info.channels), len(idx) + 1)
    color = layer_color(layer)
    for row, (symbol, values) in enumerate((("γ", gamma), ("β", beta)), 1):
        y = np.concatenate([np.r_[values[idx, c], gap] for c in range(info.channels)])
        lines = trace(
            "scatter",
            x=x,
            y=y.astype(np.float32),
            customdata=channel,
            mode="lines",
            name=symbol,
            showlegend=False,
            line=dict(color=rgba(color, 0.7), width=1),
            hovertemplate=f"<b>channel %{{customdata}}</b><br>step %{{x}}<br>{symbol}: "
            "%{y:.4g}<extra></extra>",
        )
        fig.add(lines, row, 1)
    if not run.num_steps:
        no_data(fig)
    _mark_events(fig, run)
    return finish(
        fig,
        f"{info.name}: γ (scale) and β (shift)",
        y_title=["γ (scale)", "β (shift)"],
        note=f"one line for each of its {info.channels} channels",
        plot_height=TWO_ROW_PLOT_HEIGHT,
    )


def _gain(var: np.ndarray, eps: float) -> np.ndarray:
    """1/sqrt(var + eps), infinite where both are 0."""
    with np.errstate(divide="ignore"):
        return 1 / np.sqrt(var + eps)


def gain_figure(run: Run, layer: int, step_index: int = -1) -> go.Figure:
    """Each channel's gain 1/sqrt(var + eps) at one step, eps-dominated channels highlighted."""
    info = run.layers[layer]
    fig = Spec()
    if not run.num_steps:
        no_data(fig)
        return finish(fig, f"{info.name}: gain 1/√(var + ε)", x_title="channel", log_y=True)
    i = run.row(step_index)
    step = int(run.steps[i])
    eps = float(run.setting_at("eps", step))
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
        bar = trace(
            "bar",
            x=channels[mask],
            y=gain[mask],
            name=name,
            customdata=np.column_stack([var[mask], np.full(mask.sum(), eps)]),
            marker=dict(color=color, pattern=dict(shape=pattern), line=dict(width=0)),
            hovertemplate=hover,
        )
        fig.add(bar)
    running = run.layer_stat(layer, "running_var")
    if running is not None:
        running_var = running[i].astype(np.float64)
        points = trace(
            "scatter",
            x=channels,
            y=_gain(running_var, eps),
            mode="markers",
            name="1/√(running var + ε): eval mode",
            customdata=np.column_stack([running_var, np.full(len(running_var), eps)]),
            marker=dict(color=NEUTRAL, size=8, symbol="diamond"),
            hovertemplate=hover.replace("batch var", "running var"),
        )
        fig.add(points)
    if eps > 0:
        limit = trace(
            "scatter",
            x=[-0.5, info.channels - 0.5],
            y=[eps**-0.5] * 2,
            mode="lines",
            name="1/√ε: the largest possible gain",
            line=dict(color=NEUTRAL, dash="dot"),
            hovertemplate="1/√ε = %{y:.4g}<extra></extra>",
        )
        fig.add(limit)
    fig.update(barmode="overlay")
    # gain 1 (the scale left unchanged) always in view, so that the bars have a labelled base
    shown = np.r_[gain, eps**-0.5 if eps > 0 else 1.0, 1.0]
    shown = np.log10(shown[np.isfinite(shown) & (shown > 0)])
    pad = 0.05 * (shown.max() - shown.min()) + 0.05
    fig.update_axes("y", range=[shown.min() - pad, shown.max() + pad])
    note = (
        f"ε = {eps:g}: in {int(dominated.sum())} of {info.channels} channels ε ≥ the batch "
        "variance (red, hatched), so ε rather than the data sets the gain"
    )
    if info.norm != "batch":
        note += (
            f". {NORM_NAMES[info.norm]} does not divide by per-channel batch statistics: "
            "shown is the gain BatchNorm would apply"
        )
    return finish(
        fig,
        f"{info.name}, step {step}: gain 1/√(var + ε)",
        x_title="channel",
        y_title="gain (log scale)",
        note=note,
        log_y=True,
    )


# ---------------------------------------------------------------- gradients and updates


def grad_norm_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Per-block L2 norm of the loss gradient w.r.t. the norm's input, log y; twin dashed."""
    fig = Spec()
    _per_layer(
        fig,
        run,
        twin,
        lambda r, i: (r.steps, r.layer_stat(i, "input_grad_norm")),
        what="gradient norm",
    )
    if _empty(run, twin):
        no_data(fig)
    _mark_events(fig, run, twin)
    return finish(
        fig,
        "Gradient norm per block",
        y_title="‖∂loss/∂input‖ (L2, log scale)",
        note="the L2 norm of the loss gradient at each block's norm input (the pre-norm "
        "activations), each step",
        log_y=True,
    )


def update_ratio_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Update:data ratio of the conv and head weights, against Karpathy's 1e-3 heuristic."""
    fig = Spec()
    for r, label, dash in _members(run, twin):
        if not r.num_steps:
            continue
        for name in r.params:
            parts = name.split(".")
            if name == "head.weight":
                legend, color, symbol = "head", NEUTRAL, HEAD_SYMBOL
            elif parts[0] == "blocks" and parts[2:] == ["conv", "weight"]:
                i = int(parts[1])
                legend, color, symbol = r.layers[i].name, layer_color(i), layer_symbol(i)
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
                mode="lines+markers",
                marker=line_markers(symbol, color),
                legendgroup=_group(label, twin),
            )
    last = max(run.num_steps, twin.num_steps if twin is not None else 0, 1)
    reference = trace(
        "scatter",
        x=[1, last],
        y=[UPDATE_RATIO_REFERENCE] * 2,
        mode="lines",
        name="1e-3: Karpathy's heuristic (makemore part 3)",
        line=dict(color=NEUTRAL, dash="dot", width=2),
        hovertemplate="1e-3: Karpathy's heuristic for an MLP with plain SGD<extra></extra>",
    )
    fig.add(reference)
    if _empty(run, twin):
        no_data(fig)
    _mark_events(fig, run, twin)
    return finish(
        fig,
        "Update:data ratio of the weights",
        y_title="‖update‖ / ‖weights‖ (log scale)",
        note="how far each step moves the weights, relative to their size; dotted: 1e-3, "
        "a heuristic from Karpathy's makemore part 3 (an MLP trained with plain SGD)",
        log_y=True,
    )


# ---------------------------------------------------------------- train / eval gap


def eval_gap_figure(run: Run, twin: Run | None = None) -> go.Figure:
    """Test accuracy with batch stats minus with running stats, in percentage points."""
    fig = Spec()
    skipped, without = 0, []
    members = _members(run, twin)
    own = [m for m in members if m[2] != PARENT_DASH]  # the run before a branch: no notes
    for r, label, dash in members:
        if not any(info.has_running_stats for info in r.layers):
            if dash != PARENT_DASH:
                without.append(label)  # eval mode is train mode: a line at 0 would say nothing
            continue
        x = np.asarray(r.eval_steps)
        gap = (np.asarray(r.acc_batch_stats, np.float64) - np.asarray(r.acc_running_stats)) * 100
        ok = np.isfinite(gap)
        skipped += int((~ok).sum()) if dash != PARENT_DASH else 0
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
                marker=dict(color=color, size=8),
            )
    fig.hline(0, dict(color=NEUTRAL, width=1.5))
    if not fig.data:
        no_data(fig, "no running statistics, so no gap" if len(without) == len(own) else None)
    _mark_events(fig, run, twin)
    note = (
        "test accuracy with batch statistics minus with running statistics; positive: the batch "
        "statistics do better than the running averages on test images"
    )
    if skipped:
        note += f"; {skipped} point(s) skipped (a channel had one value per batch)"
    if without:
        note += f"; not drawn: {' and '.join(without)}, which keeps no running statistics"
    return finish(fig, "Train/eval gap", y_title="gap (percentage points)", note=note)


def batch_noise_figure(noise) -> go.Figure:
    """A channel's batch means and variances over many batches against the full-data values."""
    panels = (
        (np.asarray(noise.batch_means, dtype=np.float64), noise.full_mean, "mean", "value"),
        (np.asarray(noise.batch_vars, dtype=np.float64), noise.full_var, "variance", "value²"),
    )
    titles = [  # the full-data value here rather than by its line, where bars would hide it
        f"batch {what}s{' (biased)' if what == 'variance' else ''}: "
        f"std {values.std() if len(values) else math.nan:.3g} (the {what} over all test "
        f"images: {full:.4g})"
        for values, full, what, _ in panels
    ]
    fig = Spec(cols=2, spacing=0.08, titles=titles)
    for col, (values, full, what, unit) in enumerate(panels, 1):
        histogram = trace(
            "histogram",
            x=values,
            nbinsx=20,
            marker=dict(color=layer_color(noise.layer), line=dict(width=0)),
            showlegend=False,
            hovertemplate=f"batch {what} %{{x}}<br>%{{y}} batches<extra></extra>",
        )
        fig.add(histogram, row=1, col=col)
        fig.vline(full, dict(color=ALERT, width=2, dash="dash"), row=1, col=col)
        fig.update_axes("x", row=1, col=col, title=dict(text=f"batch {what} ({unit})"))
    title = f"channel {noise.channel} of block{noise.layer + 1}: batch statistics"
    note = (
        f"batch size {noise.batch_size}: {len(noise.batch_means)} batches of held-out images; "
        "red dashed line: the statistic over all test images at once"
    )
    return finish(fig, title, x_title=None, y_title="batches", note=note, panel_titles=True)
