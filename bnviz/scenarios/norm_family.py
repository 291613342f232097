"""The normalization family: BatchNorm, LayerNorm, InstanceNorm, GroupNorm and no normalization,
trained on the same batches from the same initial conv weights (same seed: exactly what
bnviz.Lockstep gives), compared by what each normalizes over and by what it measured here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..config import NORM_NAMES, TrainConfig
from ..experiments import common as xcommon
from ..model import group_count
from ..plot import NORM_COLORS, NORM_SYMBOLS, line_markers
from ..trainer import train
from . import common
from .base import Scenario, job

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 250
EVAL_EVERY = 25
NORMS = ("batch", "none", "group", "layer", "instance")
SEEDS = (0, 1)
DASHES = {"none": "dash"}
# published: Wu & He 2018, ResNet-50 on ImageNet, 32 images per GPU, top-1 error (%)
PUBLISHED_ERROR = {"batch": 23.6, "group": 24.1, "layer": 25.3, "instance": 28.4}


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


def train_norm(norm: str, seed: int = 0, steps: int = STEPS, widths: tuple = WIDTHS) -> dict:
    """Train one normalization. A run alone equals the same config in a bnviz.Lockstep: the
    batches come from the seed, and conv/linear weights are drawn per tensor name from it."""
    config = TrainConfig(
        widths=tuple(widths),
        norm=norm,
        batch_size=BATCH_SIZE,
        steps=steps,
        seed=seed,
        eval_every=min(EVAL_EVERY, steps),
        snapshot_every=steps,
    )
    run = train(config)
    return {"norm": norm, "seed": seed, "widths": list(widths), **xcommon.curves(run)}


def jobs() -> list:
    return [
        job(f"{NORM_NAMES[n]}, seed {s}", train_norm, norm=n, seed=s) for s in SEEDS for n in NORMS
    ]


def _rows(results: dict) -> list[dict]:
    rows = [r for r in results.values() if "norm" in r and "final_acc" in r]
    return sorted(rows, key=lambda r: (NORMS.index(r["norm"]), r["seed"]))


def _by_norm(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["norm"], []).append(r)
    return out


def table_rows(results: dict) -> list[dict]:
    """One row of strings per normalization, in NORMS order; every number is a run's own."""
    groups = _by_norm(_rows(results))
    rows = []
    for norm in NORMS:
        runs = groups.get(norm, [])
        widths = tuple(runs[0]["widths"]) if runs else WIDTHS
        if runs:
            acc = " / ".join(common.pct(r["final_acc"]) for r in runs)
            loss = " / ".join(f"{r['final_loss']:.3f}" for r in runs)
            if norm == "batch":
                gap = " / ".join(
                    common.signed_points(r["final_acc_batch"] - r["final_acc"]) for r in runs
                )
            else:
                gap = "none: no running statistics"
            seeds = ", ".join(str(r["seed"]) for r in runs)
        else:
            acc = loss = gap = common.MEASURING
            seeds = ""
        rows.append(
            {
                "norm": NORM_NAMES[norm],
                "over": over(norm, widths),
                "acc": acc,
                "loss": loss,
                "gap": gap,
                "seeds": seeds,
            }
        )
    return rows


# ---------------------------------------------------------------- figures

TABLE_HEIGHT = 480  # px: every row of the table, wrapped in half a page, without scrolling


def _table_figure(results: dict) -> go.Figure:
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
    title = "What each normalizes over, what it measured"
    return common.finish(
        fig,
        title,
        None,
        note=f"after {STEPS} steps; a number per seed, as the last column lists them",
        plot_height=TABLE_HEIGHT,
    )


def _curve_figure(
    results: dict, x_key: str, y_key: str, scale: float, title, y_title, details=None
) -> go.Figure:
    fig = go.Figure()
    shown = set()
    for r in _rows(results):
        name = NORM_NAMES[r["norm"]]
        fig.add_scatter(
            x=r[x_key],
            y=[scale * v for v in r[y_key]],
            mode="lines+markers",
            name=name,
            legendgroup=name,
            showlegend=name not in shown,
            line=dict(color=NORM_COLORS[r["norm"]], dash=DASHES.get(r["norm"], "solid"), width=1.8),
            marker=line_markers(NORM_SYMBOLS[r["norm"]], size=7),
            hovertemplate=f"{name}, seed {r['seed']}<br>step %{{x}}<br>%{{y:.3g}}<extra></extra>",
        )
        shown.add(name)
    if not fig.data:
        common.note(fig, size=14)
    return common.finish(fig, title, y_title=y_title, note=details)


def figures(results: dict) -> list[go.Figure]:
    return [
        _curve_figure(
            results,
            "eval_steps",
            "acc_running",
            100,
            "Test accuracy (eval mode) during training",
            "test accuracy (%)",
            "one line per seed",
        ),
        _curve_figure(
            results,
            "loss_steps",
            "loss",
            1,
            "Training loss (mean over windows of steps)",
            "cross-entropy loss",
        ),
        _table_figure(results),
    ]


# ---------------------------------------------------------------- explanation


def _mean_acc(runs: list[dict]) -> float:
    return float(np.mean([r["final_acc"] for r in runs]))


def _spread(groups: dict[str, list[dict]]) -> float:
    """The largest difference between seeds of one normalization."""
    spreads = [
        max(r["final_acc"] for r in runs) - min(r["final_acc"] for r in runs)
        for runs in groups.values()
        if len(runs) > 1
    ]
    return max(spreads) if spreads else float("nan")


def _batch_vs_none(groups: dict[str, list[dict]]) -> tuple[float, bool]:
    """BatchNorm's mean final test accuracy minus no normalization's, and whether that is
    within the spread between seeds of one normalization (not resolved)."""
    diff = _mean_acc(groups["batch"]) - _mean_acc(groups["none"])
    spread = _spread(groups)
    return diff, bool(np.isfinite(spread) and abs(diff) <= spread)


def _results_text(groups: dict[str, list[dict]]) -> str:
    done = [n for n in NORMS if n in groups]
    ranked = sorted(done, key=lambda n: -_mean_acc(groups[n]))
    order = ", ".join(
        f"{NORM_NAMES[n]} {common.pct(_mean_acc(groups[n]))}"
        + (f" ({' / '.join(common.pct(r['final_acc']) for r in groups[n])})")
        for n in ranked
    )
    steps = groups[done[0]][0]["steps"]
    text = (
        f"Measured here (widths {tuple(groups[done[0]][0]['widths'])}, batch {BATCH_SIZE}, "
        f"{steps} steps; mean final test accuracy over the seeds, each seed in brackets): "
        f"{order}."
    )
    spread = _spread(groups)
    if np.isfinite(spread):
        text += (
            f" Two seeds of the same normalization differed by up to {common.points(spread)}, so "
            "smaller differences than that are not resolved at this scale."
        )
    if "batch" in groups and "none" in groups:
        diff, within = _batch_vs_none(groups)
        if within:
            text += f" BatchNorm against none: {common.signed_points(diff)}, within that spread."
        else:
            better = "better" if diff > 0 else "worse"
            text += f" BatchNorm did {common.points(diff)} {better} than no normalization."
    if "batch" in groups:
        gaps = " / ".join(
            common.signed_points(r["final_acc_batch"] - r["final_acc"]) for r in groups["batch"]
        )
        text += (
            f" Only BatchNorm depends on the batch: its test accuracy with batch statistics minus "
            f"eval mode was {gaps}; the others compute the same thing in both modes."
        )
    return text


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


def explain(results: dict, run, twin) -> str:
    parts = [
        "All of these compute y = γ (x − mean) / √(var + ε) + β per channel; they differ in "
        "which values share one mean and variance. BatchNorm pools over the batch (N, H, W per "
        "channel), so it needs running statistics for eval, and its batch statistics get noisy "
        "at tiny batches. LayerNorm (C, H, W), InstanceNorm (H, W) and GroupNorm (H, W and a "
        "group of channels) pool within one sample, so they behave the same in train and eval "
        "mode. Each run here starts from the same conv weights and sees the same batches."
    ]
    groups = _by_norm(_rows(results))
    if not groups:
        parts.append("The runs are being measured…")
    else:
        parts.append(_results_text(groups))
        pending = len(jobs()) - sum(len(g) for g in groups.values())
        if pending > 0:
            parts.append(f"{pending} run(s) still being measured…")
    parts.append(
        "Published, ResNet-50 on ImageNet with 32 images per GPU (Wu & He 2018, Group "
        "Normalization), top-1 error: "
        + ", ".join(f"{NORM_NAMES[n]} {e}%" for n, e in PUBLISHED_ERROR.items())
        + ". Their point is that GroupNorm's error stays near 24% as the batch shrinks to 2 "
        "images per GPU, where BatchNorm's rises to 34.7%. Those are their numbers, not ours."
    )
    live = _live_text(run, twin)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """BatchNorm against no normalization in two lines, from the numbers the explanation
    quotes."""
    groups = _by_norm(_rows(results or {}))
    if sum(len(g) for g in groups.values()) < len(jobs()):
        return "Measuring the five normalizations…"
    diff, within = _batch_vs_none(groups)
    spread = common.points(_spread(groups))
    if within:
        return (
            f"BatchNorm against no normalization: **{common.signed_points(diff)}**, within the "
            f"{spread} two seeds of one normalization differed by: not resolved at this scale."
        )
    better = "better" if diff > 0 else "worse"
    return (
        f"BatchNorm did **{common.points(diff)}** {better} than no normalization; two seeds of "
        f"one normalization differed by up to {spread}, so smaller gaps are not resolved here."
    )


SCENARIO = Scenario(
    id="norm-family",
    title="BatchNorm, LayerNorm, InstanceNorm, GroupNorm",
    summary="What does each normalization average over, and how do they compare on the same "
    "data and initial weights?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "twin": "group"},
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
