"""The normalization family: BatchNorm, LayerNorm, InstanceNorm, GroupNorm and no normalization,
trained on the same batches from the same initial conv weights (same seed: exactly what
bnviz.Lockstep gives), compared by what each normalizes over and, seed by seed, by what each
measured here (the runs: bnviz/experiments/norm_family.py)."""

from __future__ import annotations

import plotly.graph_objects as go

from ..config import NORM_NAMES
from ..experiments import norm_family as experiment
from ..experiments.norm_family import BATCH_SIZE, NORMS, WIDTHS
from ..model import group_count
from ..plot import NORM_COLORS, NORM_SYMBOLS, STEP_AXIS, line_markers, rgba
from . import common
from .base import Chart, Results, Scenario
from .evidence import (
    SEEDS,
    Spread,
    Verdict,
    across,
    band,
    by_seed,
    compare,
    final,
    sweep,
)

DASHES = {"none": "dash"}
# published: Wu & He 2018, ResNet-50 on ImageNet, 32 images per GPU, top-1 error (%)
PUBLISHED_ERROR = {"batch": 23.6, "group": 24.1, "layer": 25.3, "instance": 28.4}
NORMALIZED = ("batch", "group", "layer", "instance")  # each compared with no normalization
# Final accuracy: the mean of the evaluations over the last 100 steps. One evaluation of these
# small networks swings by many points from one to the next (see the curves), more than the
# usual last three (evidence.LAST_EVALS) smooth out.
FINAL_EVALS = 5


def over(norm: str, widths: tuple = WIDTHS) -> str:
    """What one mean and variance is computed over, for an N x C x H x W activation."""
    if norm == "group":
        groups = ", ".join(f"{c // group_count(c)}" for c in widths)
        return f"H, W and a group of channels (here {groups} channels a group), per sample"
    return {
        "batch": "N, H, W: per channel, across the batch",
        "layer": "C, H, W: per sample",
        "instance": "H, W: per sample and channel",
        "none": "nothing (the conv keeps its bias)",
    }[norm]


def jobs(seeds=SEEDS) -> list:
    """Every normalization on the same seeds: a seed fixes the batches and the initial conv
    weights, so the normalizations compare seed by seed."""
    return [j for n in NORMS for j in sweep(NORM_NAMES[n], experiment.train_norm, seeds, norm=n)]


# ---------------------------------------------------------------- numbers per seed


def accuracy(results: Results, norm: str) -> dict[int, float]:
    """{seed: final test accuracy in eval mode}: the mean of the last evaluations."""
    return across(results, NORM_NAMES[norm], lambda r: final(r["acc_running"], FINAL_EVALS))


def batch_gap(results: Results) -> dict[int, float]:
    """{seed: BatchNorm's final test accuracy with batch statistics minus in eval mode}."""

    def gap(r: dict) -> float:
        return final(r["acc_batch"], FINAL_EVALS) - final(r["acc_running"], FINAL_EVALS)

    return across(results, NORM_NAMES["batch"], gap)


def _vs_none(results: Results, norm: str) -> Verdict:
    name = NORM_NAMES[norm]
    return compare(
        f"{norm}-beats-none",
        f"{name} reached a higher test accuracy than no normalization",
        f"no normalization reached a higher test accuracy than {name}",
        accuracy(results, norm),
        accuracy(results, "none"),
        scale=100,
        unit=" points",
    )


def _pair(results: Results, a: str, b: str) -> Verdict:
    """Wu & He's order at 32 images per GPU: a ahead of b."""
    first, second = NORM_NAMES[a], NORM_NAMES[b]
    at = f"at batch {BATCH_SIZE}"
    return compare(
        f"{a}-beats-{b}",
        f"{first} reached a higher test accuracy than {second} {at}",
        f"{second} reached a higher test accuracy than {first} {at}",
        accuracy(results, a),
        accuracy(results, b),
        scale=100,
        unit=" points",
    )


# Wu & He's order at 32 images per GPU, pair by pair (their top-1 errors in PUBLISHED_ERROR)
PUBLISHED_ORDER = (("batch", "group"), ("group", "layer"), ("layer", "instance"))


def verdicts(results: Results) -> list[Verdict]:
    return [_vs_none(results, n) for n in NORMALIZED] + [
        _pair(results, a, b) for a, b in PUBLISHED_ORDER
    ]


def _by_key(results: Results) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


def _spread(values: dict[int, float], unit: str = "%") -> str:
    return Spread.of(values.values()).text(100, unit) if values else common.MEASURING


def table_rows(results: Results) -> list[dict]:
    """One row of strings per normalization, in NORMS order: mean ± sd over its seeds."""
    rows = []
    for norm in NORMS:
        runs = by_seed(results, NORM_NAMES[norm])
        loss = Spread.of(r["final_loss"] for r in runs.values())
        if not runs:
            gap = common.MEASURING
        elif norm == "batch":
            gap = Spread.of(batch_gap(results).values()).text(100, " pp")
        else:
            gap = "none: no running statistics"
        rows.append(
            {
                "norm": NORM_NAMES[norm],
                "over": over(norm, tuple(next(iter(runs.values()))["widths"]) if runs else WIDTHS),
                "acc": _spread(accuracy(results, norm)),
                "loss": loss.text() if runs else common.MEASURING,
                "gap": gap,
                "seeds": str(len(runs)),
            }
        )
    return rows


# ---------------------------------------------------------------- figures

TABLE_HEIGHT = 480  # px: every row of the table, wrapped in half a page, without scrolling
ACCURACY_TITLE = "Test accuracy (eval mode) during training"
ACCURACY_AXIS = "test accuracy (%)"
FINAL_TITLE = "Final test accuracy, seed by seed"
LOSS_TITLE = "Training loss (mean over windows of steps)"
LOSS_AXIS = "cross-entropy loss"
TABLE_TITLE = "What each normalizes over, what it measured"


def _bands(results: Results, x_key: str, y_key: str, scale: float) -> go.Figure:
    """Per normalization: the mean over seeds and a band of ± one sd."""
    fig = go.Figure()
    for norm in NORMS:
        runs = list(by_seed(results, NORM_NAMES[norm]).values())
        if not runs:
            continue
        runs = [r for r in runs if r[x_key] == runs[0][x_key]]
        steps = runs[0][x_key]
        mean, low, high = (scale * a for a in band([r[y_key] for r in runs]))
        name, color = NORM_NAMES[norm], NORM_COLORS[norm]
        edge = dict(legendgroup=norm, hoverinfo="skip", mode="lines", line=dict(width=0))
        fig.add_scatter(x=steps, y=low, showlegend=False, **edge)  # the band's lower edge
        fig.add_scatter(
            x=steps, y=high, name=f"{name}: ± sd", fill="tonexty", fillcolor=rgba(color, 0.15),
            **edge,
        )  # fmt: skip
        fig.add_scatter(
            x=steps,
            y=mean,
            mode="lines+markers",
            name=f"{name}, {len(runs)} seeds",
            legendgroup=norm,
            line=dict(color=color, dash=DASHES.get(norm, "solid"), width=2),
            marker=line_markers(NORM_SYMBOLS[norm], size=7),
            hovertemplate=f"{name}<br>step %{{x}}<br>mean %{{y:.3g}}<extra></extra>",
        )
    return fig


def accuracy_figure(results: Results) -> go.Figure:
    fig = _bands(results, "eval_steps", "acc_running", 100)
    note = "line: mean over seeds, band: ± one sd"
    return common.finish(fig, ACCURACY_TITLE, y_title=ACCURACY_AXIS, note=note)


def loss_figure(results: Results) -> go.Figure:
    fig = _bands(results, "loss_steps", "loss", 1)
    note = "line: mean over seeds, band: ± one sd"
    return common.finish(fig, LOSS_TITLE, y_title=LOSS_AXIS, note=note)


def final_figure(results: Results) -> go.Figure:
    """Each seed's final test accuracy per normalization, and their mean ± sd."""
    fig = go.Figure()
    for norm in NORMS:
        values = accuracy(results, norm)
        if not values:
            continue
        name, color = NORM_NAMES[norm], NORM_COLORS[norm]
        spread = Spread.of(values.values())
        fig.add_scatter(
            x=[name] * len(values),
            y=[100 * a for a in values.values()],
            mode="markers",
            name=f"{name}: seeds",
            legendgroup=norm,
            marker=dict(color=color, symbol=NORM_SYMBOLS[norm], size=9, opacity=0.6),
            customdata=list(values),
            hovertemplate="seed %{customdata}<br>%{y:.1f}%<extra>" + name + "</extra>",
        )
        fig.add_scatter(
            x=[name],
            y=[100 * spread.mean],
            error_y=dict(type="data", array=[100 * spread.sd], thickness=2, width=12),
            mode="markers",
            name=f"{name}: mean ± sd",
            legendgroup=norm,
            showlegend=False,  # the axis names it; the dots' entry tells it apart
            marker=dict(color=color, symbol="line-ew-open", size=22, line=dict(width=3)),
            hovertemplate=f"mean {spread.text(100, '%')}<extra>{name}</extra>",
        )
    found = _by_key(results)
    short = {"batch": "BN", "group": "GN", "layer": "LN", "instance": "IN"}
    marks = "; ".join(f"{short[n]} {found[f'{n}-beats-none'].mark}" for n in NORMALIZED)
    note = (
        f"dots: seeds; bar: mean ± sd. Above no norm: {marks}. BN above GN: "
        f"{found['batch-beats-group'].mark}"
    )
    return common.finish(fig, FINAL_TITLE, None, ACCURACY_AXIS, note=note)


def table_figure(results: Results) -> go.Figure:
    rows = table_rows(results)
    header = [
        "norm",
        "one mean and variance over",
        "final test accuracy (eval mode)",
        "training loss, last 20 steps",
        "gap: batch stats − running stats",
        "seeds",
    ]
    keys = ["norm", "over", "acc", "loss", "gap", "seeds"]
    fig = go.Figure(
        go.Table(
            columnwidth=[1.7, 2.1, 1.4, 1.3, 1.4, 0.9],  # "InstanceNorm" unbroken in half a page
            header=dict(values=[f"<b>{h}</b>" for h in header], align="left"),
            cells=dict(values=[[r[k] for r in rows] for k in keys], align="left", height=28),
        )
    )
    return common.finish(
        fig,
        TABLE_TITLE,
        None,
        note=f"after {experiment.STEPS} steps; mean ± sd over the seeds",
        plot_height=TABLE_HEIGHT,
    )


ALL = tuple(NORM_NAMES[n] for n in NORMS)
FIGURES = (
    Chart(ACCURACY_TITLE, accuracy_figure, ALL, STEP_AXIS, ACCURACY_AXIS),
    Chart(FINAL_TITLE, final_figure, ALL, "", ACCURACY_AXIS),
    Chart(LOSS_TITLE, loss_figure, ALL, STEP_AXIS, LOSS_AXIS),
    Chart(TABLE_TITLE, table_figure),  # drawn at once: its rows say "measuring…" until then
)


# ---------------------------------------------------------------- explanation

INTRO = (
    "All of these compute y = γ (x − mean) / √(var + ε) + β per channel; they differ in "
    "which values share one mean and variance. BatchNorm pools over the batch (N, H, W per "
    "channel), so it needs running statistics for eval, and its batch statistics get noisy "
    "at tiny batches. LayerNorm (C, H, W), InstanceNorm (H, W) and GroupNorm (H, W and a "
    "group of channels) pool within one sample, so they behave the same in train and eval "
    "mode. Each run here starts from the same conv weights and sees the same batches."
)


def _published() -> str:
    return (
        "Published, ResNet-50 on ImageNet with 32 images per GPU (Wu & He 2018, Group "
        "Normalization), top-1 error: "
        + ", ".join(f"{NORM_NAMES[n]} {e}%" for n, e in PUBLISHED_ERROR.items())
        + ". Their point is that GroupNorm's error stays near 24% as the batch shrinks to 2 "
        "images per GPU, where BatchNorm's rises to 34.7%. Those are their numbers, not ours."
    )


def _lead(found: dict[str, Verdict]) -> str:
    """The first sentence when Wu & He's order at 32 images per GPU did not reproduce."""
    pairs = [found[f"{a}-beats-{b}"] for a, b in PUBLISHED_ORDER]
    if any(v.pending for v in pairs):
        return ""
    missed = []
    for (a, b), v in zip(PUBLISHED_ORDER, pairs):
        if v.holds is not True:
            how = "reversed" if v.holds is False else "not distinguishable"
            missed.append(
                f"{NORM_NAMES[a]} ahead of {NORM_NAMES[b]} ({PUBLISHED_ERROR[a]}% vs "
                f"{PUBLISHED_ERROR[b]}% error; here {how})"
            )
    if not missed:
        return ""
    return (
        f"Not reproduced here: Wu & He's order at {BATCH_SIZE} images per GPU, "
        + "; ".join(missed)
        + ". Why is not known here: their ResNet-50 on ImageNet is far larger than this "
        "network and its small data set, and gaps of a point or less (theirs between BatchNorm "
        f"and GroupNorm) are below what {pairs[0].seeds} seeds resolve here (the verdicts "
        "below)."
    )


def _pair_names(key: str) -> str:
    """'layer-beats-none' -> 'LayerNorm vs no norm'."""
    a, b = key.split("-beats-")
    return f"{NORM_NAMES[a]} vs {NORM_NAMES[b]}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _results_text(results: Results, found: dict[str, Verdict]) -> str:
    done = [n for n in NORMS if by_seed(results, NORM_NAMES[n])]
    first = next(iter(by_seed(results, NORM_NAMES[done[0]]).values()))
    seeds = sorted({s for n in done for s in by_seed(results, NORM_NAMES[n])})
    evals = first["eval_steps"][-FINAL_EVALS:]
    numbers = ", ".join(f"{NORM_NAMES[n]} {_spread(accuracy(results, n))}" for n in done)
    lines = [
        f"Measured here (widths {tuple(first['widths'])}, batch {BATCH_SIZE}, {first['steps']} "
        f"steps, seeds {', '.join(map(str, seeds))}): final test accuracy in eval mode, the "
        f"mean of the evaluations at steps {', '.join(map(str, evals))} (one evaluation swings "
        f"a lot, see the curves), mean ± sd over the seeds: {numbers}.",
        "",
        "Seed by seed:",
        "",
    ]
    lines += [f"- {v.text}" for v in found.values()]
    close = [_pair_names(v.key) for v in found.values() if v.holds is None and not v.pending]
    if close:
        lines += [
            "",
            "Not distinguishable is not the same as equal: a gap within about two standard "
            f"errors of the mean difference is not resolved by {found[next(iter(found))].seeds} "
            f"seeds at this scale, so another set of seeds may come out either way on "
            f"{_and(close)}. These are fragile at this scale.",
        ]
    if by_seed(results, NORM_NAMES["batch"]):
        lines += [
            "",
            "Only BatchNorm depends on the batch: its test accuracy with batch statistics minus "
            f"eval mode was {Spread.of(batch_gap(results).values()).text(100, ' points')}; the "
            "others compute the same thing in both modes.",
        ]
    return "\n".join(lines)


def _live_text(run, twin) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    text = (
        f"Live run: {NORM_NAMES.get(run.config.norm, run.config.norm)} at "
        f"{common.pct(run.acc_running_stats[-1])} test accuracy (step {run.eval_steps[-1]})"
    )
    if twin is not None and twin.eval_steps:
        text += (
            f"; its twin, {NORM_NAMES.get(twin.config.norm, twin.config.norm)}, at "
            f"{common.pct(twin.acc_running_stats[-1])} (step {twin.eval_steps[-1]})"
        )
    return text + "."


def explain(results: Results, run, twin) -> str:
    found = _by_key(results)
    parts = [p for p in (_lead(found), INTRO) if p]
    if not any(by_seed(results, NORM_NAMES[n]) for n in NORMS):
        parts.append("The runs are being measured…")
    else:
        parts.append(_results_text(results, found))
        pending = len(jobs()) - sum(len(by_seed(results, NORM_NAMES[n])) for n in NORMS)
        if pending > 0:
            parts.append(f"{pending} run(s) still being measured…")
    parts.append(_published())
    live = _live_text(run, twin)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: Results, run, twin) -> str:
    """Each normalization against none, and BatchNorm against GroupNorm, from the verdicts."""
    found = _by_key(results or {})
    if any(v.pending for v in found.values()):
        return "Measuring the five normalizations…"
    vs_none = {n: found[f"{n}-beats-none"] for n in NORMALIZED}
    short = {"batch": "BN", "group": "GN", "layer": "LN", "instance": "IN"}
    words = {True: "ahead", None: "not distinguishable", False: "behind"}
    parts = []
    for holds, word in words.items():
        names = [short[n] for n, v in vs_none.items() if v.holds is holds]
        if names:
            parts.append(f"{word}: {', '.join(names)}")
    bn_gn = found["batch-beats-group"]
    pair = {True: "BN ahead", None: "not distinguishable", False: "GN ahead"}[bn_gn.holds]
    return (
        f"Against no norm over {bn_gn.seeds} seeds, {'; '.join(parts)}. BatchNorm vs "
        f"GroupNorm at batch {BATCH_SIZE}: {pair}."
    )


SCENARIO = Scenario(
    id="norm-family",
    title="BatchNorm, LayerNorm, InstanceNorm, GroupNorm",
    summary="What does each normalization average over, and how do they compare on the same "
    "data and initial weights?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "twin": "group"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
