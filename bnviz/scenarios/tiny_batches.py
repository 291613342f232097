"""Scenario 'tiny-batches': Wu & He (2018, Group Normalization) at classroom scale. BatchNorm
against GroupNorm at batch sizes 2, 8 and 32, five seeds each, each run ending with its learning
rate lowered, where its test error levels off (bnviz/experiments/tiny_batches.py). BatchNorm is
tested with precise statistics, so that a running average lagging the weights does not count
against it. The published
ResNet-50/ImageNet numbers are shown beside it, labelled as published."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from ..config import NORM_NAMES
from ..experiments import tiny_batches as x
from ..experiments.tiny_batches import batch_run
from ..plot import NORM_COLORS, NORM_SYMBOLS, rgba
from ..record import Run
from . import evidence as ev
from .base import Chart, Scenario
from .common import finish, subplots

NORMS = ("batch", "group")
BATCHES = (2, 8, 32)
# The design: at batch N the learning rate is base_lr·√(N/32) and the run takes
# base_steps·√(32/N) steps, so lr × steps is the same at every batch size and the small batches,
# whose steps are cheap, get the most of them; lr / 10 for the last 30% of the steps.
SWEEP = dict(
    base_batch=32,
    base_lr=0.1,
    base_steps=400,
    widths=(8, 16),
    decay_at=x.DECAY_AT,
    precise_images=x.PRECISE_IMAGES,
    evals=x.EVALS,
    last=x.LAST,
)
TITLE_SWEEP = "Measured: test error against batch size"
TITLE_CURVES = "Measured: test error during training"
TITLE_PUBLISHED = "Published (Wu & He 2018), not measured here"
# Wu & He 2018, Figure 1 / Table: ImageNet top-1 error (%) by images per GPU.
PUBLISHED_BATCHES = (32, 16, 8, 4, 2)
PUBLISHED = {
    "batch": (23.6, 23.7, 24.8, 27.3, 34.7),
    "group": (24.1, 24.2, 24.0, 24.2, 24.1),
}
PUBLISHED_AT_32 = {"layer": 25.3, "instance": 28.4}
SMALL, LARGE = min(BATCHES), max(BATCHES)
ERROR_AXIS = "test error (%)"
BATCH_AXIS = "batch size (images per batch, log₂ scale)"


def lr_for(batch_size: int) -> float:
    """The learning rate at this batch size: base_lr·√(N / base_batch)."""
    return SWEEP["base_lr"] * math.sqrt(batch_size / SWEEP["base_batch"])


def steps_for(batch_size: int) -> int:
    """The steps at this batch size: base_steps·√(base_batch / N)."""
    return round(SWEEP["base_steps"] * math.sqrt(SWEEP["base_batch"] / batch_size))


# each batch size's learning rate, steps and training images (steps × batch)
DESIGN = {b: dict(lr=lr_for(b), steps=steps_for(b), images=steps_for(b) * b) for b in BATCHES}


def _label(norm: str, batch_size: int) -> str:
    return f"{NORM_NAMES[norm]}, batch {batch_size}"


def jobs(seeds=ev.SEEDS) -> list:
    return [
        job
        for b in BATCHES
        for n in NORMS
        for job in ev.sweep(
            _label(n, b),
            batch_run,
            seeds,
            norm=n,
            batch_size=b,
            steps=DESIGN[b]["steps"],
            lr=DESIGN[b]["lr"],
            widths=SWEEP["widths"],
        )
    ]


# ---------------------------------------------------------------- reading results


def errors(results: dict, norm: str, batch_size: int, precise: bool = True) -> dict[int, float]:
    """{seed: final test error (0..1)}: the mean of the last evaluations, with precise
    statistics for BatchNorm (precise=False: its running averages, plain eval mode)."""

    def value(r: dict) -> float:
        if r.get("status") != "completed":
            return math.nan
        return ev.final(r["error_precise"] if precise else r["error"])

    return ev.across(results, _label(norm, batch_size), value)


def spread(results: dict, norm: str, batch_size: int, precise: bool = True) -> ev.Spread:
    return ev.Spread.of(errors(results, norm, batch_size, precise).values())


def _pct(s: ev.Spread) -> str:
    return s.text(100, "%")


def _gap(results: dict, batch_size: int) -> dict[int, float]:
    """{seed: BatchNorm's final error minus GroupNorm's} at this batch size."""
    bn, gn = errors(results, "batch", batch_size), errors(results, "group", batch_size)
    return {s: bn[s] - gn[s] for s in sorted(set(bn) & set(gn))}


# ---------------------------------------------------------------- verdicts


def verdicts(results: dict) -> list[ev.Verdict]:
    results = results or {}
    bn = {b: errors(results, "batch", b) for b in (SMALL, LARGE)}
    gn = {b: errors(results, "group", b) for b in (SMALL, LARGE)}
    points = dict(scale=100, unit=" points")
    return [
        ev.compare(
            "gn-beats-bn-small",
            f"GroupNorm's test error was lower than BatchNorm's at batch {SMALL}",
            f"BatchNorm's test error was lower than GroupNorm's at batch {SMALL}",
            bn[SMALL],
            gn[SMALL],
            **points,
        ),
        ev.compare(
            "bn-degrades",
            f"BatchNorm's test error was higher at batch {SMALL} than at batch {LARGE}",
            f"BatchNorm's test error was lower at batch {SMALL} than at batch {LARGE}",
            bn[SMALL],
            bn[LARGE],
            **points,
        ),
        ev.compare(
            "gn-not-flat",
            f"GroupNorm's test error was higher at batch {SMALL} than at batch {LARGE}",
            f"GroupNorm's test error was lower at batch {SMALL} than at batch {LARGE}",
            gn[SMALL],
            gn[LARGE],
            **points,
        ),
        ev.compare(
            "bn-loses-more-small",
            f"BatchNorm's error above GroupNorm's was larger at batch {SMALL} than at batch "
            f"{LARGE}",
            f"BatchNorm's error above GroupNorm's was larger at batch {LARGE} than at batch "
            f"{SMALL}",
            _gap(results, SMALL),
            _gap(results, LARGE),
            **points,
        ),
        ev.compare(
            "bn-beats-gn-large",
            f"as published, BatchNorm's test error was lower than GroupNorm's at batch {LARGE}",
            "unlike the published numbers, GroupNorm's test error was lower than BatchNorm's at "
            f"batch {LARGE}",
            gn[LARGE],
            bn[LARGE],
            **points,
        ),
    ]


def _by_key(results: dict) -> dict[str, ev.Verdict]:
    return {v.key: v for v in verdicts(results)}


def _reproduced(v: dict[str, ev.Verdict]) -> bool:
    """Wu & He's shape: GroupNorm beats BatchNorm at the smallest batch, BatchNorm degrades as
    the batch shrinks, and GroupNorm does not (within the noise)."""
    return (
        v["gn-beats-bn-small"].holds is True
        and v["bn-degrades"].holds is True
        and v["gn-not-flat"].holds is None
    )


# ---------------------------------------------------------------- figures


def _log2_axis(fig: go.Figure, batches, **where) -> None:
    fig.update_xaxes(
        type="log", tickvals=list(batches), ticktext=[str(b) for b in batches], **where
    )


SERIES = (  # (norm, precise, name, dash, symbol)
    ("batch", True, "BatchNorm (precise statistics)", "solid", NORM_SYMBOLS["batch"]),
    ("batch", False, "BatchNorm (running averages)", "dot", "circle-open"),
    ("group", True, "GroupNorm", "dash", NORM_SYMBOLS["group"]),
)


def _sweep_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm, precise, name, dash, symbol in SERIES:
        rows = [(b, spread(results, norm, b, precise)) for b in BATCHES]
        rows = [(b, s) for b, s in rows if s.n]
        if not rows:
            continue
        fig.add_trace(
            go.Scatter(
                x=[b for b, _ in rows],
                y=[100 * s.mean for _, s in rows],
                error_y=dict(type="data", array=[100 * s.sd for _, s in rows], width=4),
                customdata=[[100 * s.sd, s.n] for _, s in rows],
                name=name,
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash=dash, width=1.5 if not precise else 2.5),
                marker=dict(symbol=symbol, size=9, color=NORM_COLORS[norm]),
                hovertemplate="batch %{x}: %{y:.0f}% ± %{customdata[0]:.0f} (sd, "
                "%{customdata[1]} seeds)<extra>" + name + "</extra>",
            )
        )
    _log2_axis(fig, BATCHES)
    v = _by_key(results)
    marks = (
        f"GN < BN at {SMALL}: {v['gn-beats-bn-small'].mark}; BN {SMALL} > {LARGE}: "
        f"{v['bn-degrades'].mark}; GN {SMALL} > {LARGE}: {v['gn-not-flat'].mark}"
    )
    return finish(
        fig,
        TITLE_SWEEP,
        BATCH_AXIS,
        ERROR_AXIS,
        note=f"mean ± sd over seeds, last {x.LAST} evaluations; {marks}",
    )


def _curves_figure(results: dict) -> go.Figure:
    fig = subplots([f"batch {b}" for b in BATCHES], rows=1, cols=len(BATCHES), shared_yaxes=True)
    for col, b in enumerate(BATCHES, 1):
        for norm, dash in (("batch", "solid"), ("group", "dash")):
            runs = ev.by_seed(results, _label(norm, b))
            rows = [r["error"] for r in runs.values() if len(r["error"]) == x.EVALS]
            if not rows:
                continue
            steps = next(iter(runs.values()))["eval_steps"]
            mean, low, high = (100 * a for a in ev.band(rows))
            group = dict(legendgroup=norm, showlegend=False, hoverinfo="skip")
            fig.add_scatter(
                x=steps, y=low, line=dict(width=0, color=NORM_COLORS[norm]), **group,
                row=1, col=col,
            )  # fmt: skip
            fig.add_scatter(
                x=steps,
                y=high,
                fill="tonexty",
                fillcolor=rgba(NORM_COLORS[norm], 0.2),
                line=dict(width=0, color=NORM_COLORS[norm]),
                row=1,
                col=col,
                **group,
            )
            name = NORM_NAMES[norm] + (" (running averages)" if norm == "batch" else "")
            fig.add_scatter(
                x=steps,
                y=mean,
                name=name,
                legendgroup=norm,
                showlegend=col == 1,
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash=dash),
                marker=dict(symbol=NORM_SYMBOLS[norm], size=6, color=NORM_COLORS[norm]),
                hovertemplate=f"batch {b}, step %{{x}}: %{{y:.0f}}% error<extra>{name}</extra>",
                row=1,
                col=col,
            )
    return finish(
        fig,
        TITLE_CURVES,
        "step",
        ERROR_AXIS,
        note="eval mode, mean ± sd over seeds; lr ÷ 10 after "
        f"{100 * x.DECAY_AT:.0f}% of each run's steps",
        panel_titles=True,
    )


def published_figure(results: dict | None = None) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        fig.add_trace(
            go.Scatter(
                x=list(PUBLISHED_BATCHES),
                y=list(PUBLISHED[norm]),
                name=f"{NORM_NAMES[norm]} (published)",
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash="solid" if norm == "batch" else "dash"),
                marker=dict(symbol=NORM_SYMBOLS[norm], size=8, color=NORM_COLORS[norm]),
                hovertemplate="%{x} images per GPU: %{y}% top-1 error<extra>"
                + NORM_NAMES[norm]
                + ", Wu & He 2018</extra>",
            )
        )
    for norm, value in PUBLISHED_AT_32.items():
        fig.add_trace(
            go.Scatter(
                x=[32],
                y=[value],
                name=f"{NORM_NAMES[norm]} (published, batch 32 only)",
                mode="markers",
                marker=dict(color=NORM_COLORS[norm], size=10, symbol=NORM_SYMBOLS[norm]),
                hovertemplate="32 images per GPU: %{y}% top-1 error<extra>"
                + NORM_NAMES[norm]
                + ", Wu & He 2018</extra>",
            )
        )
    _log2_axis(fig, sorted(PUBLISHED_BATCHES))
    return finish(
        fig,
        TITLE_PUBLISHED,
        "images per GPU (log₂ scale)",
        "ImageNet top-1 error (%)",
        note="ResNet-50 on ImageNet: published numbers, not measured in this app",
    )


PREFIXES = tuple(f"{NORM_NAMES[n]}, batch" for n in NORMS)
FIGURES = (
    Chart(TITLE_SWEEP, _sweep_figure, PREFIXES, BATCH_AXIS, ERROR_AXIS),
    Chart(TITLE_CURVES, _curves_figure, PREFIXES, "step", ERROR_AXIS),
    Chart(TITLE_PUBLISHED, published_figure),
)


# ---------------------------------------------------------------- explanation


def _first(v: dict[str, ev.Verdict], results: dict) -> str:
    """The opening: whether Wu & He's shape reproduced here, and why not where known."""
    if any(verdict.pending for verdict in v.values()):
        return (
            "BatchNorm and GroupNorm are being measured at batch sizes "
            f"{', '.join(map(str, BATCHES))} ({ev.MIN_SEEDS} seeds each)."
        )
    gn_small, gn_large = (_pct(spread(results, "group", b)) for b in (SMALL, LARGE))
    bn_large = _pct(spread(results, "batch", LARGE))
    if _reproduced(v):
        text = (
            "Wu & He's shape reproduces at this scale: BatchNorm's test error rises as the batch "
            f"shrinks to {SMALL} images while GroupNorm's stays level within the noise "
            f"({gn_small} at batch {SMALL}, {gn_large} at batch {LARGE})."
        )
    else:
        reasons = []
        if v["gn-not-flat"].holds:
            small, large = DESIGN[SMALL]["images"], DESIGN[LARGE]["images"]
            reasons.append(
                "because small-batch training itself costs accuracy within this budget: "
                "GroupNorm, "
                "which computes the same thing at any batch size, is not level either "
                f"({gn_small} error at batch {SMALL}, {gn_large} at batch {LARGE}), as a "
                f"batch-{SMALL} run sees {small:,} training images with noisy gradients and a "
                f"batch-{LARGE} run {large:,}"
            )
        elif v["gn-not-flat"].holds is False:
            reasons.append(
                f"GroupNorm did better at batch {SMALL} than at batch {LARGE}, for reasons "
                "these runs do not show"
            )
        if v["bn-degrades"].holds is not True:
            reasons.append(
                f"BatchNorm's error did not clearly rise from batch {LARGE} to batch {SMALL}, "
                "for reasons these runs do not show"
            )
        if v["gn-beats-bn-small"].holds is not True:
            reasons.append(
                f"GroupNorm did not clearly beat BatchNorm at batch {SMALL}, for reasons these "
                "runs do not show"
            )
        text = (
            "Wu & He's shape (BatchNorm degrading as the batch shrinks while GroupNorm stays "
            "level) is not fully reproduced at this scale"
            + ((", " if v["gn-not-flat"].holds else ": ") + "; ".join(reasons) if reasons else "")
            + "."
        )
        if v["gn-not-flat"].holds and v["bn-loses-more-small"].holds:
            text += (
                " BatchNorm's own share shows in the difference: it lost more than GroupNorm "
                "as the batch shrank (see the verdicts below)."
            )
    if v["bn-beats-gn-large"].holds is False:
        text += (
            f" Unlike Wu & He, GroupNorm also beat BatchNorm at batch {LARGE} ({gn_large} "
            f"against {bn_large}); these runs do not show why."
        )
    return text


def _verdict_lines(v: dict[str, ev.Verdict]) -> str:
    return "**Verdicts** (paired by seed): " + " ".join(
        v[k].text
        for k in (
            "gn-beats-bn-small",
            "bn-degrades",
            "gn-not-flat",
            "bn-loses-more-small",
            "bn-beats-gn-large",
        )
    )


def _measured(results: dict) -> str:
    parts = []
    for b in BATCHES:
        cells = []
        for norm, precise, name in (
            ("batch", True, "BN"),
            ("batch", False, "BN with running averages"),
            ("group", True, "GN"),
        ):
            s = spread(results, norm, b, precise)
            cells.append(f"{name} {_pct(s) if s.n else '…'}")
        parts.append(f"batch {b}: " + ", ".join(cells))
    return (
        f"**Measured test error** (mean ± sd over seeds of the mean of each run's last "
        f"{x.LAST} evaluations; BatchNorm with precise statistics unless said): "
        + "; ".join(parts)
        + "."
    )


def _setup() -> str:
    rows = ", ".join(
        f"batch {b}: lr {d['lr']:g}, {d['steps']:,} steps ({d['images']:,} images)"
        for b, d in DESIGN.items()
    )
    return (
        "**How it is measured.** Every batch size gets its own budget, with lr × steps the "
        "same for all and the small batches, whose steps are cheap, given the most steps "
        f"({rows}); SGD with momentum 0.9, and "
        f"lr ÷ 10 for the last {100 - 100 * x.DECAY_AT:.0f}% of the steps, as Wu & He divide "
        "theirs, where each run's test error levels off (the second chart; longer runs at "
        f"batch {SMALL} might still gain, which these runs do not show). Small network "
        f"(widths {'-'.join(map(str, SWEEP['widths']))}), "
        f"{ev.MIN_SEEDS} seeds of each run. Test error on 500 held-out images, averaged over "
        f"the last {x.LAST} evaluations. BatchNorm is tested with **precise statistics** "
        f"(Ioffe & Szegedy's Algorithm 2: its mean and variance recomputed from "
        f"{x.PRECISE_IMAGES:,} training images in batches of the training size), so that a "
        "running average lagging behind the weights does not count against it; its plain "
        "eval-mode error, with the running averages, is shown beside."
    )


def _lag(results: dict) -> str:
    """What the running averages cost BatchNorm at the largest batch, stated as fragile."""
    running = errors(results, "batch", LARGE, precise=False)
    precise = errors(results, "batch", LARGE)
    diffs = [100 * (running[s] - precise[s]) for s in sorted(set(running) & set(precise))]
    s = ev.Spread.of(diffs)
    if s.n < ev.MIN_SEEDS:
        return ""
    return (
        f"At batch {LARGE} the running averages and precise statistics differed by "
        f"{ev.plus_minus(s.mean, s.se, ' points', sign=True)} (running minus precise, ± one "
        "standard error). No claim is made on it: two sets of five seeds (the shipped ones and "
        "those of `python -m bnviz replicate`) disagreed on its sign, so it is fragile at this "
        "scale."
    )


def _published() -> str:
    published = ", ".join(
        f"{b}: BN {bn}% / GN {gn}%"
        for b, bn, gn in zip(PUBLISHED_BATCHES, PUBLISHED["batch"], PUBLISHED["group"])
    )
    return (
        "BatchNorm estimates each channel's mean and variance from the batch; with a few "
        "images those estimates are noisy. Wu & He (2018) proposed GroupNorm, which normalizes "
        "over groups of channels within each image and does not depend on the batch. "
        f"**Published** (Wu & He 2018, ResNet-50 on ImageNet, top-1 error by images per GPU; "
        f"not measured here): {published}; at 32 LayerNorm {PUBLISHED_AT_32['layer']}%, "
        f"InstanceNorm {PUBLISHED_AT_32['instance']}%."
    )


def _err(value: float) -> str:
    """A live test error (0..1) as a percentage with one decimal."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _explain_live(run: Run | None, twin: Run | None) -> list[str]:
    if run is None or run.num_steps == 0 or not run.eval_steps:
        return []
    name = NORM_NAMES.get(run.config.norm, run.config.norm)
    text = (
        f"**Live run** (batch {run.setting_at('batch_size')}, {run.num_steps} steps, one seed): "
        f"{name} {_err(1 - run.acc_running_stats[-1])} test error at step {run.eval_steps[-1]} "
        "in eval mode"
    )
    if run.config.norm == "batch":
        text += f", {_err(1 - run.acc_batch_stats[-1])} with batch statistics"
    if twin is not None and twin.eval_steps:
        twin_name = NORM_NAMES.get(twin.config.norm, twin.config.norm)
        text += (
            f"; twin ({twin_name}) {_err(1 - twin.acc_running_stats[-1])} at step "
            f"{twin.eval_steps[-1]}"
        )
    return [text + "."]


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    v = _by_key(results)
    lines = [_first(v, results)]
    if results:
        lines += [_verdict_lines(v), _measured(results)]
        lines += [text for text in (_lag(results),) if text]
    else:
        lines.append(_verdict_lines(v))
    lines += [_setup(), _published()]
    lines += _explain_live(run, twin)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The smallest batch's verdict and how far each norm moved, from the explanation's
    numbers."""
    v = _by_key(results or {})
    if any(verdict.pending for verdict in v.values()):
        return "Measuring BatchNorm and GroupNorm at tiny batches…"
    bn, gn = (spread(results, n, SMALL) for n in NORMS)
    bn_l, gn_l = (spread(results, n, LARGE) for n in NORMS)
    head = f"Batch {SMALL}: GroupNorm **{_pct(gn)}** error, BatchNorm **{_pct(bn)}**"
    head += f" ({v['gn-beats-bn-small'].mark})." if v["gn-beats-bn-small"].holds else "."
    return head + f" At {LARGE}: GN {_pct(gn_l)}, BN {_pct(bn_l)}."


SCENARIO = Scenario(
    id="tiny-batches",
    title="Tiny batches: BatchNorm against GroupNorm",
    summary="What happens to BatchNorm when a batch holds only a few images, and does GroupNorm "
    "avoid it?",
    view="Training",
    # lr 0.02: the sidebar's step nearest the sweep's lr at batch 2 (0.1 · √(2/32) = 0.025)
    preset=dict(dataset="shapes", norm="batch", batch_size=2, lr=0.02, steps=1000, twin="group"),
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
