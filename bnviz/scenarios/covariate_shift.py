"""Scenario 'covariate-shift': is it really internal covariate shift? (Santurkar, Tsipras, Ilyas
& Madry 2018, "How Does Batch Normalization Help Optimization?") A network with BatchNorm and one
without, from the same initial weights on the same batches, measured every few steps of a short
training (bnviz/experiments/covariate_shift.py): internal covariate shift as they define it
through gradients, and the loss landscape along the gradient. Each seed gives one number per
measure and network: the median over its checkpoints once both networks learn; the verdicts
compare those numbers seed by seed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from ..config import NORM_NAMES
from ..experiments import covariate_shift as experiment
from ..experiments.covariate_shift import NORMS
from ..plot import (
    MAIN_DASH,
    NEUTRAL,
    NORM_COLORS,
    NORM_SYMBOLS,
    STEP_AXIS,
    TWIN_DASH,
    line_markers,
    rgba,
)
from ..record import Run
from .base import Chart, Results, Scenario
from .common import finish
from .evidence import SEEDS, Spread, Verdict, band, by_seed, compare, final, sweep

DASHES = {"batch": MAIN_DASH, "none": TWIN_DASH}
# The verdicts read the checkpoints from this step on: before it the no-norm network is still on
# its initial plateau, where its gradient is near 0 and so is everything measured along it (a
# flat region, not a smooth one). The figures show every checkpoint.
FROM_STEP = 100


def jobs(seeds=SEEDS) -> list:
    """Both networks on the same seeds: a seed fixes the initial weights and the batches."""
    return [
        j
        for norm in NORMS
        for j in sweep(NORM_NAMES[norm], experiment.shift_and_smoothness, seeds, norm=norm)
    ]


# ---------------------------------------------------------------- the measures


def _series(key: str) -> Callable[[dict], np.ndarray]:
    """One run's values of a result key, per checkpoint."""

    def get(r: dict) -> np.ndarray:
        return np.asarray(r[key][: len(r["steps"])], dtype=np.float64)

    return get


@dataclass(frozen=True)
class Measure:
    """One measured quantity per checkpoint, positive, smaller meaning 'less shift' or 'smoother'
    (Santurkar et al.'s reading)."""

    key: str  # the verdict's key
    name: str  # as the text names it
    value: Callable[[dict], np.ndarray]  # per checkpoint of one run

    def median(self, r: dict) -> float:
        """The median over the run's checkpoints from FROM_STEP on (finite values)."""
        values = self.value(r)
        values = values[(np.asarray(r["steps"]) >= FROM_STEP) & np.isfinite(values)]
        return float(np.median(values)) if len(values) else math.nan


SHIFT = Measure("less-shift", "the gradient shift ‖G − G′‖₂", _series("shift"))
RELATIVE = Measure("less-relative-shift", "the relative gradient shift ‖G − G′‖₂/‖G‖₂",
                   _series("relative_shift"))  # fmt: skip
DIRECTION = Measure("less-turn", "the gradient's change of direction 1 − cos(G, G′)",
                    _series("direction_change"))  # fmt: skip
LOSS = Measure("smoother-loss", "the loss variation along −g", _series("loss_range"))
GRADIENT = Measure("steadier-gradient", "the gradient change along −g",
                   _series("grad_change_range"))  # fmt: skip
BETA = Measure("smaller-beta", "the effective β-smoothness", _series("beta_smoothness"))
ICS = (SHIFT, RELATIVE, DIRECTION)  # Santurkar et al.: not clearly reduced by BN
LANDSCAPE = (LOSS, GRADIENT, BETA)  # Santurkar et al.: smaller with BN
MEASURES = ICS + LANDSCAPE
LOG_UNIT = " log10 units"  # of the ratio without / with BN: one unit is a factor of ten


def medians(results: Results, norm: str, measure: Measure) -> dict[int, float]:
    """{seed: the measure's median over the checkpoints from FROM_STEP on} of one network."""
    return {s: measure.median(r) for s, r in by_seed(results, NORM_NAMES[norm]).items()}


def _log10(values: dict[int, float]) -> dict[int, float]:
    return {s: math.log10(v) if v > 0 else math.nan for s, v in values.items()}


def _verdict(results: Results, m: Measure) -> Verdict:
    """BN's median smaller, seed by seed, compared on a log scale: the measures vary by
    factors between seeds (and the figures draw them on log axes), so a ratio is the
    difference that means the same for every seed."""
    bn, none = medians(results, "batch", m), medians(results, "none", m)
    where = f"(median over the checkpoints from step {FROM_STEP})"
    return compare(
        m.key,
        f"{m.name} was smaller with BN {where}",
        f"{m.name} was larger with BN {where}",
        _log10(none),
        _log10(bn),
        unit=LOG_UNIT,
    )


def verdicts(results: Results) -> list[Verdict]:
    return [_verdict(results, m) for m in MEASURES]


def checkpoints(results: Results, m: Measure, start: int = FROM_STEP) -> tuple[int, int]:
    """At how many (seed, checkpoint) pairs from step `start` on, measured for both networks,
    BN's value was the better one; and of how many."""
    none_runs = by_seed(results, NORM_NAMES["none"])
    better = total = 0
    for seed, r in by_seed(results, NORM_NAMES["batch"]).items():
        other = none_runs.get(seed)
        if other is None:
            continue
        for step, a, b in zip(r["steps"], m.value(r), m.value(other)):
            if step >= start and math.isfinite(a) and math.isfinite(b):
                total += 1
                better += bool(a < b)
    return better, total


# ---------------------------------------------------------------- figures


def _rows(runs: list[dict], m: Measure) -> tuple[list[int], np.ndarray]:
    """The measure per checkpoint of each run, padded with NaN to the longest run's steps."""
    steps = max((r["steps"] for r in runs), key=len)
    rows = np.full((len(runs), len(steps)), np.nan)
    for i, r in enumerate(runs):
        values = m.value(r)
        rows[i, : len(values)] = values
    return steps, rows


def _band(rows: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, low, high) per checkpoint over seeds: mean ± sd, or for a log axis the
    geometric mean ×/÷ the geometric sd (mean ± sd of log10)."""
    if not log:
        return band(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(rows > 0, np.log10(rows), np.nan)
    return tuple(10**edge for edge in band(logs))


def _figure(results: Results, m: Measure, title: str, y_title: str, log: bool, what: str):
    fig = go.Figure()
    for norm in NORMS:
        runs = list(by_seed(results, NORM_NAMES[norm]).values())
        if not runs:
            continue
        steps, rows = _rows(runs, m)
        centre, low, high = _band(rows, log)
        name = NORM_NAMES[norm]
        group = dict(legendgroup=norm, hoverinfo="skip", mode="lines")
        fig.add_scatter(x=steps, y=low, showlegend=False, line=dict(width=0), **group)  # edge
        fig.add_scatter(
            x=steps,
            y=high,
            name=f"{name}: {'×/÷' if log else '±'} sd",
            fill="tonexty",
            fillcolor=rgba(NORM_COLORS[norm], 0.2),
            line=dict(width=0),
            **group,
        )
        fig.add_scatter(
            x=steps,
            y=centre,
            mode="lines+markers",
            name=f"{name}, {len(runs)} seeds",
            legendgroup=norm,
            line=dict(color=NORM_COLORS[norm], dash=DASHES[norm], width=2.5),
            marker=line_markers(NORM_SYMBOLS[norm]),
            hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3g}}<extra></extra>",
        )
    fig.add_vline(
        x=FROM_STEP,
        line=dict(color=NEUTRAL, dash="dot", width=1),
        annotation_text="verdicts from here",
        annotation_position="top right",
    )
    v = _verdict(results, m)
    spread = "geometric mean over seeds, band ×/÷ one sd" if log else "mean, band ± one sd"
    note = f"{what}. Line: {spread}. BN smaller: {v.mark}"
    return finish(fig, title, y_title=y_title, note=note, log_y=log)


ETA = f"η {experiment.STEP_SIZES[0]:g} to {experiment.STEP_SIZES[-1]:g}"
CHARTS = (
    # (measure, title, y axis, log scale, what the line is)
    (SHIFT, "ICS: gradient change ‖G − G′‖₂", "‖G − G′‖₂ (log scale)", True,
     "mean over block 2 on and the head"),
    (DIRECTION, "ICS: change of direction 1 − cos(G, G′)", "1 − cos (0 = same direction)",
     True, "mean over block 2 on and the head"),
    (LOSS, "Loss variation along −g", "max − min loss (nats)", True,
     f"max − min over {ETA} of L(w − η·g)"),
    (GRADIENT, "Gradient predictiveness along −g", "max − min ‖Δ∇L‖₂ over η", True,
     f"max − min over {ETA} of ‖∇L(w − η·g) − ∇L(w)‖₂"),
)  # fmt: skip


def _chart(m: Measure, title: str, y_title: str, log: bool, what: str) -> Chart:
    def draw(results: Results) -> go.Figure:
        return _figure(results, m, title, y_title, log, what)

    needs = tuple(NORM_NAMES[n] for n in NORMS)
    return Chart(title, draw, needs, STEP_AXIS, y_title)


FIGURES = tuple(_chart(*spec) for spec in CHARTS)


# ---------------------------------------------------------------- explanation

CLAIM = (
    "**The claim tested.** BatchNorm's benefit is often explained by a reduced *internal "
    "covariate shift* (ICS): each layer's inputs move less when the layers before it update "
    "(Ioffe & Szegedy 2015). Santurkar, Tsipras, Ilyas & Madry (2018, *How Does Batch "
    "Normalization Help Optimization?*) measured ICS through gradients: layer i's gradient "
    "G before, and G′ after, layers 1…i−1 take their step, on the same batch. They found BN does "
    "not clearly reduce it, and that BN instead smooths the loss landscape: along the gradient, "
    "the loss and the gradient change less."
)


def _lead(found: dict[str, Verdict]) -> str:
    """The first sentences when Santurkar et al.'s findings did not reproduce here, else ''."""
    decided = [found[m.key] for m in MEASURES]
    if any(v.pending for v in decided):
        return ""
    parts = []
    reduced = [m.name for m in ICS if found[m.key].holds]
    if reduced:
        parts.append(
            "Not reproduced here: Santurkar et al. found that BN does not clearly reduce "
            f"internal covariate shift, but in this small network it did, by {_names(reduced)} "
            "(the verdicts below). Why is not known here; they measured far larger networks "
            "(VGG on CIFAR-10, deep linear networks)."
        )
    rougher = [m.name for m in LANDSCAPE if not found[m.key].holds]
    if rougher:
        parts.append(
            "Not reproduced here: Santurkar et al. found the landscape smoother with BN, but "
            f"{_names(rougher)} was not smaller with BN in enough seeds (the verdicts below)."
        )
    return " ".join(parts) + "\n\n" if parts else ""


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _bullet(results: Results, v: Verdict, m: Measure) -> str:
    better, total = checkpoints(results, m)
    whole, whole_total = checkpoints(results, m, start=0)
    return (
        f"- {v.text} BN's was smaller at {better} of {total} checkpoints from step {FROM_STEP} "
        f"on ({whole} of {whole_total} over the whole run)."
    )


def _plateau(bn_runs: dict, none_runs: dict) -> str:
    """The training loss of both networks at the last checkpoint before FROM_STEP."""
    step = max((s for r in bn_runs.values() for s in r["steps"] if s < FROM_STEP), default=None)
    if step is None:
        return ""

    def loss(runs):
        values = [r["loss"][r["steps"].index(step)] for r in runs.values() if step in r["steps"]]
        return Spread.of(values)

    bn, none = loss(bn_runs), loss(none_runs)
    return (
        f" Before step {FROM_STEP} the network without BN is still leaving its initial plateau "
        f"(training loss at step {step}: {none.text()} without BN, {bn.text()} with), where its "
        f"gradient is near 0 and so is everything measured along it; the figures show every "
        f"checkpoint, the verdicts read those from step {FROM_STEP} on."
    )


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    bn_runs = by_seed(results, NORM_NAMES["batch"])
    none_runs = by_seed(results, NORM_NAMES["none"])
    if not bn_runs and not none_runs:
        return CLAIM + "\n\nBoth networks are being measured…"
    found = {v.key: v for v in verdicts(results)}
    first = next(iter((bn_runs or none_runs).values()))
    every = first["steps"][1] - first["steps"][0] if len(first["steps"]) > 1 else 1
    seeds = sorted(set(bn_runs) | set(none_runs))
    setup = (
        f"Measured here: widths {tuple(first['widths'])}, batch {first['batch_size']}, SGD "
        f"(momentum 0.9) at lr {first['lr']:g}, {first['steps_trained']} steps, seeds "
        f"{', '.join(map(str, seeds))}; with and without BN from the same initial weights on the "
        f"same batches. Every {every} steps, on that step's batch: the gradient shift of each "
        f"layer when the earlier layers take the step the optimizer really takes, and the loss "
        f"and gradient along −g for step sizes η = "
        f"{', '.join(f'{s:g}' for s in first['step_sizes'])}. Each seed gives one number per "
        f"measure and network, the median over its checkpoints from step {FROM_STEP} on (a "
        f"few late spikes move a mean, not a median); numbers are mean ± sd over the seeds. "
        f"The verdicts compare the two networks' medians seed by seed as a ratio, in log10 "
        f"units (one unit is a factor of ten), since these measures vary by factors between "
        f"seeds." + _plateau(bn_runs, none_runs)
    )
    lines = [_lead(found) + CLAIM, "", setup, ""]
    if not bn_runs or not none_runs:
        done = "BatchNorm" if bn_runs else "no-norm"
        lines.append(f"The {done} runs are in; the other network is being measured…")
    lines.append("**Internal covariate shift** (block 2 on and the head; block 1's G′ is G):")
    lines += [_bullet(results, found[m.key], m) for m in ICS]
    lines += ["", "**The loss landscape along the gradient −g:**"]
    lines += [_bullet(results, found[m.key], m) for m in LANDSCAPE]
    if bn_runs and none_runs:
        acc = {
            norm: Spread.of(final(r["test_acc"]) for r in runs.values()).text(100, "%")
            for norm, runs in (("batch", bn_runs), ("none", none_runs))
        }
        lines += [
            "",
            f"Both networks learned: test accuracy (eval mode, mean of the last evaluations) "
            f"{acc['batch']} with BN, {acc['none']} without.",
        ]
    for norm, runs in (("batch", bn_runs), ("none", none_runs)):
        for seed, r in runs.items():
            if r.get("diverged_step"):
                lines.append(
                    f"The {NORM_NAMES[norm]} run of seed {seed} diverged at step "
                    f"{r['diverged_step']}."
                )
    return "\n".join(lines)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """ICS and smoothness in two lines, from the verdicts the explanation quotes."""
    found = {v.key: v for v in verdicts(results or {})}
    shift, loss = found[SHIFT.key], found[LOSS.key]
    if shift.pending or loss.pending:
        return "Measuring gradient shift and smoothness with and without BatchNorm…"

    if shift.holds:
        ics = (
            f"Unlike Santurkar et al., BN reduced the gradient shift ({shift.agree}/{shift.seeds})"
        )
    elif shift.holds is False:
        ics = f"BN increased the gradient shift ({shift.against}/{shift.seeds} seeds)"
    else:
        ics = "As Santurkar et al. found, BN did not clearly reduce the gradient shift"
    if loss.holds:
        smooth = f"as they found, the loss varied less along −g with BN ({loss.agree}/{loss.seeds})"
    elif loss.holds is False:
        smooth = f"unlike them, the loss varied more along −g with BN ({loss.against}/{loss.seeds})"
    else:
        smooth = "the loss variation along −g was not distinguishable"
    return f"{ics}; {smooth}."


SCENARIO = Scenario(
    id="covariate-shift",
    title="Is it really internal covariate shift?",
    summary="Does BatchNorm help by reducing internal covariate shift, or by smoothing the "
    "loss landscape?",
    view="Gradients",
    preset={"twin": "none", "depth": 3, "width": 8, "lr": 0.1, "optimizer": "sgd", "steps": 300},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
