"""Scenario 'bn-only': training BatchNorm and only BatchNorm (Frankle, Schwab & Morcos 2021).
Every conv and linear weight and bias stays at its random initial value and only BN's gamma and
beta learn; compared, seed by seed, with training the same number of randomly chosen
conv/linear weights instead, with training everything, and with chance. The runs themselves
are in bnviz/experiments/bn_only.py."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..experiments import bn_only as experiment
from ..experiments.bn_only import SMALL_GAMMA, VARIANTS
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS, STEP_AXIS, line_markers, rgba
from ..record import Run
from .base import Chart, Results, Scenario
from .common import finish, pct
from .evidence import SEEDS, Spread, Verdict, across, band, by_seed, compare, final, sweep

LABELS = {
    "bn_only": "only γ and β",
    "random": "as many random weights",
    "full": "all parameters",
}
COLORS = {"bn_only": NORM_COLORS["batch"], "random": NORM_COLORS["none"], "full": NEUTRAL}
SYMBOLS = {"bn_only": NORM_SYMBOLS["batch"], "random": NORM_SYMBOLS["none"], "full": "star"}
DASHES = {"bn_only": "solid", "random": "dash", "full": "dot"}
ACCURACY_AXIS = "test accuracy, eval mode (%)"


def jobs(seeds=SEEDS) -> list:
    """Every variant on the same seeds: a seed fixes the initial weights, the batches and the
    random-weight mask, so the variants compare seed by seed."""
    return [
        j for v in VARIANTS for j in sweep(LABELS[v], experiment.train_subset, seeds, variant=v)
    ]


# ---------------------------------------------------------------- numbers per seed


def accuracy(results: Results, variant: str) -> dict[int, float]:
    """{seed: final test accuracy}: the mean of the last evaluations, not one snapshot."""
    return across(results, LABELS[variant], lambda r: final(r["test_acc"]))


def switched_off(results: Results, variant: str) -> dict[int, float]:
    """{seed: fraction of channels with |gamma| < SMALL_GAMMA after training}."""
    return across(results, LABELS[variant], "small_gamma_fraction")


def verdicts(results: Results) -> list[Verdict]:
    bn, rnd, full = (accuracy(results, v) for v in VARIANTS)
    chance = across(results, LABELS["bn_only"], "chance")
    points = dict(scale=100, unit=" points")
    return [
        compare(
            "bn-only-above-chance",
            "training only γ and β reached a test accuracy above chance",
            "training only γ and β stayed below chance",
            bn,
            chance,
            **points,
        ),
        compare(
            "bn-only-beats-random",
            "training only γ and β reached a higher test accuracy than training as many "
            "randomly chosen conv/linear weights",
            "training as many randomly chosen conv/linear weights reached a higher test "
            "accuracy than training only γ and β",
            bn,
            rnd,
            **points,
        ),
        compare(
            "full-beats-bn-only",
            "training all parameters reached a higher test accuracy than training only γ and β",
            "training only γ and β reached a higher test accuracy than training all parameters",
            full,
            bn,
            **points,
        ),
        compare(
            "more-gammas-off",
            f"more channels ended with |γ| < {SMALL_GAMMA:g} when only γ and β were trained than "
            "when all parameters were",
            f"fewer channels ended with |γ| < {SMALL_GAMMA:g} when only γ and β were trained than "
            "when all parameters were",
            switched_off(results, "bn_only"),
            switched_off(results, "full"),
            scale=100,
            unit=" points",
        ),
    ]


def _by_key(results: Results) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures


def _band(fig: go.Figure, variant: str, runs: list[dict]) -> None:
    """Mean test accuracy over seeds, with a band of ± one standard deviation."""
    runs = [r for r in runs if r["eval_steps"] == runs[0]["eval_steps"]] or runs[:1]
    steps = runs[0]["eval_steps"]
    mean, low, high = (100 * a for a in band([r["test_acc"] for r in runs]))
    name = LABELS[variant]
    group = dict(legendgroup=variant, hoverinfo="skip", mode="lines")
    fig.add_scatter(x=steps, y=low, showlegend=False, line=dict(width=0), **group)  # edge
    fig.add_scatter(
        x=steps,
        y=high,
        name=f"{name}: ± sd",
        fill="tonexty",
        fillcolor=rgba(COLORS[variant], 0.2),
        line=dict(width=0),
        **group,
    )
    fig.add_scatter(
        x=steps,
        y=mean,
        mode="lines+markers",
        name=f"{name}, mean of {len(runs)} seeds",
        legendgroup=variant,
        line=dict(color=COLORS[variant], dash=DASHES[variant], width=2.5),
        marker=line_markers(SYMBOLS[variant]),
        hovertemplate=f"{name}<br>step %{{x}}<br>mean %{{y:.0f}}%<extra></extra>",
    )


def accuracy_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    chance = None
    for variant in VARIANTS:
        runs = list(by_seed(results, LABELS[variant]).values())
        if runs:
            chance = runs[0]["chance"]
            _band(fig, variant, runs)
    fig.update_yaxes(range=[0, 100])
    if chance is not None:
        fig.add_hline(
            y=100 * chance,
            line=dict(color=NEUTRAL, dash="dot", width=1),
            annotation_text=f"chance {chance:.0%}",
            annotation_position="bottom right",
        )
    v = _by_key(results)
    note = (
        f"band: ± one sd over seeds. Only γβ vs as many random weights: "
        f"{v['bn-only-beats-random'].mark}; all parameters vs only γβ: "
        f"{v['full-beats-bn-only'].mark}"
    )
    return finish(fig, ACCURACY_TITLE, y_title=ACCURACY_AXIS, note=note)


def switched_off_figure(results: Results) -> go.Figure:
    """Per seed, the share of channels with |gamma| < SMALL_GAMMA; the mean ± sd beside it."""
    fig = go.Figure()
    for variant in ("bn_only", "full"):
        values = switched_off(results, variant)
        if not values:
            continue
        name = LABELS[variant]
        spread = Spread.of(values.values())
        fig.add_scatter(
            x=[name] * len(values),
            y=[100 * x for x in values.values()],
            mode="markers",
            name=f"{name}, one dot a seed",
            legendgroup=variant,
            marker=dict(color=COLORS[variant], symbol=SYMBOLS[variant], size=9, opacity=0.6),
            customdata=list(values),
            hovertemplate="seed %{customdata}<br>%{y:.1f}%<extra>" + name + "</extra>",
        )
        fig.add_scatter(
            x=[name],
            y=[100 * spread.mean],
            error_y=dict(type="data", array=[100 * spread.sd], thickness=2, width=12),
            mode="markers",
            name=f"{name}, mean ± sd",
            legendgroup=variant,
            showlegend=False,  # the axis names it; the dots' entry tells it apart
            marker=dict(color=COLORS[variant], symbol="line-ew-open", size=22, line=dict(width=3)),
            hovertemplate=f"mean {spread.text(100, '%')}<extra>{name}</extra>",
        )
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(range=[-0.5, 1.5])
    note = f"one dot per seed; bar: mean ± sd. {_by_key(results)['more-gammas-off'].mark}"
    return finish(fig, SWITCHED_OFF_TITLE, None, SWITCHED_OFF_AXIS, note=note)


def gamma_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    for variant in ("bn_only", "full"):
        runs = list(by_seed(results, LABELS[variant]).values())
        if not runs:
            continue
        values = np.abs(np.concatenate([np.asarray(g) for r in runs for g in r["gamma"]]))
        fig.add_trace(
            go.Histogram(
                x=values,
                xbins=dict(start=0, size=0.05),
                name=f"{LABELS[variant]} trained ({len(values)} channels, {len(runs)} seeds)",
                marker=dict(color=COLORS[variant]),
                opacity=0.65,
            )
        )
    fig.update_layout(barmode="overlay")
    fig.add_vline(
        x=SMALL_GAMMA,
        line=dict(color=NEUTRAL, dash="dot", width=1),
        annotation_text=f"|γ| = {SMALL_GAMMA:g}",
        annotation_position="top right",
    )
    return finish(
        fig, GAMMA_TITLE, GAMMA_AXIS, "channels", note="every channel of every block, all seeds"
    )


ACCURACY_TITLE = "Test accuracy, frozen random weights"
SWITCHED_OFF_TITLE = f"Channels with |γ| < {SMALL_GAMMA:g}, per seed"
SWITCHED_OFF_AXIS = "channels (%)"
GAMMA_TITLE = "|γ| after training"
GAMMA_AXIS = "|γ| (1 at init)"
FIGURES = (
    Chart(ACCURACY_TITLE, accuracy_figure, tuple(LABELS.values()), STEP_AXIS, ACCURACY_AXIS),
    Chart(
        SWITCHED_OFF_TITLE,
        switched_off_figure,
        (LABELS["bn_only"], LABELS["full"]),
        "",
        SWITCHED_OFF_AXIS,
    ),
    Chart(GAMMA_TITLE, gamma_figure, (LABELS["bn_only"], LABELS["full"]), GAMMA_AXIS, "channels"),
)


# ---------------------------------------------------------------- explanation

CLAIM = (
    "**Frankle, Schwab & Morcos (2021), *Training BatchNorm and Only BatchNorm*:** with every "
    "conv and linear weight frozen at its random initial value, training only BatchNorm's "
    "per-channel scale γ and shift β reaches accuracy far above chance, more than training the "
    "same number of randomly chosen other weights; and many γ shrink towards 0, which switches "
    "those channels off."
)
# Frankle et al.'s findings, as the verdicts that test them
PUBLISHED = {
    "bn-only-above-chance": "training only γ and β reaches far above chance",
    "bn-only-beats-random": "it beats training as many random weights",
    "more-gammas-off": "more γ shrink towards 0 than in a fully trained network",
}


def _live(run: Run | None) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    return (
        f" The live run trains every parameter of its network: "
        f"{pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}."
    )


def _not_reproduced(found: dict[str, Verdict]) -> str:
    """The first sentence when a published finding did not hold here, else ''."""
    failed = [
        f"{what} ({'reversed' if found[key].holds is False else 'not distinguishable'})"
        for key, what in PUBLISHED.items()
        if not found[key].pending and found[key].holds is not True
    ]
    if not failed:
        return ""
    return (
        f"Not reproduced here, at this small scale: Frankle et al.'s finding that "
        f"{'; and that '.join(failed)}. "
    )


def _spread(values: dict[int, float], unit: str = "%") -> str:
    return Spread.of(values.values()).text(100, unit)


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    found = _by_key(results)
    runs = {v: by_seed(results, LABELS[v]) for v in VARIANTS}
    if not any(runs.values()):
        return CLAIM + "\n\nThe variants are being measured…" + _live(run)
    first = next(iter(next(r for r in runs.values() if r).values()))
    seeds = sorted({s for r in runs.values() for s in r})
    setup = (
        f"Measured here: widths {tuple(first['widths'])}, batch {first['batch_size']}, Adam at "
        f"lr {first['lr']:g} for every variant, {first['steps']} steps, seeds "
        f"{', '.join(map(str, seeds))}; a seed fixes the initial weights, the batches and which "
        f"random weights learn, so the variants compare seed by seed. Final test accuracy: eval "
        f"mode (running statistics) on 500 held-out images, the mean of the last evaluations "
        f"(steps {', '.join(map(str, first['eval_steps'][-3:]))}); each number below is the "
        f"mean ± sd over the seeds."
    )
    lines = [_not_reproduced(found) + CLAIM, "", setup, ""]
    for variant in VARIANTS:
        if not runs[variant]:
            lines.append(f"- **{LABELS[variant]}**: being measured…")
            continue
        r = next(iter(runs[variant].values()))
        count = f"{r['trainable']:,} of {r['total_params']:,} parameters"
        what = {
            "bn_only": f"**Only γ and β** ({count})",
            "random": f"**{r['trainable']:,} randomly chosen conv/linear weights** instead "
            f"(γ, β frozen at 1 and 0)",
            "full": f"**All {r['trainable']:,} parameters**, for context",
        }[variant]
        acc = _spread(accuracy(results, variant))
        lines.append(f"- {what}: {acc} ({len(runs[variant])} seeds); chance is {pct(r['chance'])}.")
    if runs["bn_only"]:
        frozen = max(r["frozen_max_change"] for v in runs.values() for r in v.values())
        lines.append(
            "- Frozen weights: "
            + (
                "bit-for-bit equal to their initial values after training, in every run."
                if frozen == 0
                else f"changed by up to {frozen:.3g} (they should not have)."
            )
        )
        gamma = (
            f"- **|γ| < {SMALL_GAMMA:g}** (from 1 at init): "
            f"{_spread(switched_off(results, 'bn_only'))} of the channels after training only "
            f"γ and β"
        )
        if runs["full"]:
            gamma += f", {_spread(switched_off(results, 'full'))} after training everything"
        lines.append(gamma + ".")
    lines += ["", "Verdicts, seed by seed:", ""]
    lines += [f"- {v.text}" for v in found.values()]
    diverged = [
        f"The {LABELS[v]} run of seed {s} diverged."
        for v in VARIANTS
        for s, r in runs[v].items()
        if r.get("diverged_step")
    ]
    if diverged:
        lines += ["", " ".join(diverged)]
    return "\n".join(lines) + _live(run)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """Only γβ against as many random weights in two lines, from the explanation's numbers."""
    v = _by_key(results or {})["bn-only-beats-random"]
    if v.pending:
        return "Measuring networks that train only BatchNorm's γ and β…"
    acc = _spread(accuracy(results, "bn_only"))
    if v.holds:
        return (
            f"Training only γ and β (random weights frozen) reached **{acc}**, more than as "
            f"many random weights in {v.agree} of {v.seeds} seeds."
        )
    if v.holds is False:
        return (
            f"Training only γ and β reached **{acc}**, less than as many random weights in "
            f"{v.against} of {v.seeds} seeds."
        )
    return (
        f"Training only γ and β reached **{acc}**; against as many random weights: not "
        f"distinguishable at this scale."
    )


SCENARIO = Scenario(
    id="bn-only",
    title="Training BatchNorm and only BatchNorm",
    summary="How far does a network get if its random conv and linear weights stay frozen and "
    "only BatchNorm's γ and β learn?",
    view="Training",
    preset={
        "twin": "off",
        "depth": 5,
        "width": 8,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 0.05,
        "steps": 200,
    },
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
