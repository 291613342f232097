"""Scenario 'fold-bn': at inference BatchNorm is a fixed per-channel affine map, so it folds
into the convolution before it (W′ = γW/√(σ² + ε), b′ = β + γ(b − μ)/√(σ² + ε)). Over seeds
of trained networks: the folded network's logits against eval mode's in float32 and float64,
and against train mode's, which depend on the other images of the batch; a live action folds
the app's own network and times both on this machine. The fold itself and the measurements
are in bnviz/experiments/fold_bn.py."""

from __future__ import annotations

import copy
import math
import statistics
import textwrap
import time

import plotly.graph_objects as go
import torch

from ..experiments import fold_bn as experiment
from ..experiments.fold_bn import (
    EPS,
    QUOTE_BATCH,
    TOL,
    TRAIN_BATCHES,
    NotFoldable,
    compare_eval,
    fold_bn,
    logits,
    train_mode_logits,
)
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS, rgba
from ..record import Run
from .base import Action, Chart, Results, Scenario
from .common import finish, num
from .evidence import SEEDS, Spread, Verdict, across, band, by_seed, compare, rounded, sweep

LABEL = "trained BatchNorm network, folded"
SMALL, LARGE = TRAIN_BATCHES[0], TRAIN_BATCHES[-1]
# the live action's timing: forward passes over a batch of test images, repeated, median
TIMED_BATCH = 100
TIMED_PASSES = 3
TIMED_REPEATS = 5


def jobs(seeds=SEEDS) -> list:
    """One trained network per seed, folded and compared (no variants: the comparisons are
    within each network)."""
    return sweep(LABEL, experiment.fold_run, seeds)


# ---------------------------------------------------------------- numbers per seed


def _margin(relative: float, tol: float, eps: float) -> float:
    """log10(tol / relative difference), a difference below the dtype's rounding unit counted
    as that unit: > 0 when the difference is under the tolerance."""
    if relative is None or not math.isfinite(relative):
        return math.nan
    return math.log10(tol / max(relative, eps))


def eval_margin(results: Results, dtype: str) -> dict[int, float]:
    """{seed: orders of magnitude by which folded-vs-eval stays under TOL[dtype]}."""
    return across(
        results,
        LABEL,
        lambda r: _margin(r[dtype]["relative"], r["tol"][dtype], r["eps"][dtype]),
    )


def _row(r: dict, batch: int) -> dict:
    return next(row for row in r["train"]["by_batch"] if row["batch"] == batch)


def _excess(relative: float, tol: float) -> float:
    """log10(relative difference / tol): > 0 when the difference is over the tolerance."""
    return math.log10(max(relative, 1e-300) / tol)


def train_excess(results: Results) -> dict[int, float]:
    """{seed: log10 of train mode's largest relative difference from the folded network, at
    test batches of QUOTE_BATCH, over the float32 tolerance}."""
    return across(
        results,
        LABEL,
        lambda r: _excess(_row(r, QUOTE_BATCH)["relative"], r["tol"]["float32"]),
    )


def reshuffle_excess(results: Results) -> dict[int, float]:
    """{seed: log10 of the same images' train-mode difference between two batchings, over the
    float32 tolerance}."""
    return across(
        results,
        LABEL,
        lambda r: _excess(r["train"]["reshuffled"]["relative"], r["tol"]["float32"]),
    )


def mean_abs(results: Results, batch: int) -> dict[int, float]:
    """{seed: mean |train-mode logit − folded logit| at test batches of `batch`}."""
    return across(results, LABEL, lambda r: _row(r, batch)["mean_abs"])


def verdicts(results: Results) -> list[Verdict]:
    results = results or {}
    t32, t64 = sci(TOL["float32"]), sci(TOL["float64"])
    orders = dict(unit=" orders of magnitude")
    return [
        compare(
            "fold equals eval, float32",
            f"in float32 the folded network's logits equalled eval mode's within rounding "
            f"(largest difference below {t32} of the largest logit)",
            f"in float32 the folded network's logits differed from eval mode's by more than "
            f"{t32} of the largest logit",
            eval_margin(results, "float32"),
            0.0,
            **orders,
        ),
        compare(
            "fold equals eval, float64",
            f"in float64 the folded network's logits equalled eval mode's within rounding "
            f"(largest difference below {t64} of the largest logit)",
            f"in float64 the folded network's logits differed from eval mode's by more than "
            f"{t64} of the largest logit",
            eval_margin(results, "float64"),
            0.0,
            **orders,
        ),
        compare(
            "train mode differs from fold",
            f"train mode (test batches of {QUOTE_BATCH}) differed from the folded network by "
            f"more than {t32} of the largest logit",
            f"train mode (test batches of {QUOTE_BATCH}) equalled the folded network within "
            f"{t32} of the largest logit",
            train_excess(results),
            0.0,
            **orders,
        ),
        compare(
            "train mode depends on the batch",
            f"the same images' train-mode logits changed by more than {t32} of the largest "
            f"logit when the test set was reshuffled into other batches of {QUOTE_BATCH}",
            f"the same images' train-mode logits stayed within {t32} of the largest logit when "
            f"the test set was reshuffled into other batches of {QUOTE_BATCH}",
            reshuffle_excess(results),
            0.0,
            **orders,
        ),
        compare(
            "smaller batches differ more",
            f"train mode was further from the folded network with test batches of {SMALL} "
            f"than of {LARGE} (mean |Δlogit|)",
            f"train mode was further from the folded network with test batches of {LARGE} "
            f"than of {SMALL} (mean |Δlogit|)",
            mean_abs(results, SMALL),
            mean_abs(results, LARGE),
        ),
    ]


def _by_key(results: Results) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures

DIFF_TITLE = "Largest logit difference from folded"
DIFF_AXIS = "largest |Δlogit| / largest |logit|"
BATCH_TITLE = "Train mode vs folded, by test batch"
BATCH_AXIS = "test batch size (images)"
BATCH_Y = "mean |Δlogit|"
COLUMNS = (
    ("eval mode, float32", "fold equals eval, float32", NORM_COLORS["batch"]),
    ("eval mode, float64", "fold equals eval, float64", NORM_COLORS["batch"]),
    (f"train mode, batches of {QUOTE_BATCH}", "train mode differs from fold", NORM_COLORS["none"]),
    (
        f"train mode, reshuffled batches of {QUOTE_BATCH}",
        "train mode depends on the batch",
        NORM_COLORS["none"],
    ),
)


def _column_values(r: dict) -> list[float]:
    return [
        r["float32"]["relative"],
        r["float64"]["relative"],
        _row(r, QUOTE_BATCH)["relative"],
        r["train"]["reshuffled"]["relative"],
    ]


def diff_figure(results: Results) -> go.Figure:
    """Per seed, the largest relative difference of each comparison on a log axis (a 0 drawn
    at the dtype's rounding unit), the range over seeds as a bar, the tolerances as lines."""
    runs = by_seed(results, LABEL)
    found = _by_key(results)
    fig = go.Figure()
    floor = {"eval mode, float32": EPS["float32"], "eval mode, float64": EPS["float64"]}
    for i, (name, key, color) in enumerate(COLUMNS):
        values = {s: _column_values(r)[i] for s, r in runs.items()}
        shown = [max(v, floor.get(name, 0.0)) for v in values.values()]
        fig.add_scatter(
            x=[name] * len(shown),
            y=shown,
            mode="markers",
            name=f"{name}, one dot a seed",
            marker=dict(
                color=color,
                symbol=NORM_SYMBOLS["batch" if i < 2 else "none"],
                size=9,
                opacity=0.7,
            ),
            customdata=list(values),
            hovertemplate="seed %{customdata}<br>%{y:.3g}<extra>" + name + "</extra>",
        )
        if shown:
            low, high = min(shown), max(shown)
            fig.add_scatter(
                x=[name, name],
                y=[low, high],
                mode="lines",
                showlegend=False,
                line=dict(color=rgba(color, 0.5), width=10),
                hovertemplate=f"range over seeds; {found[key].mark}<extra>{name}</extra>",
            )
    for dtype, dash in (("float32", "dash"), ("float64", "dot")):
        fig.add_hline(y=TOL[dtype], line=dict(color=NEUTRAL, dash=dash, width=1))
        fig.add_annotation(  # on a log axis an annotation's y is the exponent
            text=f"{dtype} tolerance {sci(TOL[dtype])}",
            x=1,
            xref="paper",
            xanchor="right",
            y=math.log10(TOL[dtype]),
            yref="y",
            yanchor="bottom",
            showarrow=False,
            font=dict(size=11),
        )
    names = [name for name, _, _ in COLUMNS]
    ticks = ["<br>".join(textwrap.wrap(n.replace(",", ""), 14)) for n in names]
    fig.update_xaxes(tickvals=names, ticktext=ticks)
    fig.update_yaxes(type="log", exponentformat="power")
    note = (
        f"one dot a seed; bar: range. Eval mode within rounding: "
        f"{found['fold equals eval, float32'].mark} (float32), "
        f"{found['fold equals eval, float64'].mark} (float64); train mode differs: "
        f"{found['train mode differs from fold'].mark}"
    )
    return finish(fig, DIFF_TITLE, None, DIFF_AXIS, note=note)


def batch_figure(results: Results) -> go.Figure:
    """Mean |Δlogit| of train mode from the folded network against the test batch size: the
    mean over seeds with a band of ± one sd, each seed a thin line."""
    runs = by_seed(results, LABEL)
    fig = go.Figure()
    rows = [[_row(r, b)["mean_abs"] for b in TRAIN_BATCHES] for r in runs.values()]
    color = NORM_COLORS["none"]
    for s, row in zip(runs, rows):
        fig.add_scatter(
            x=list(TRAIN_BATCHES),
            y=row,
            mode="lines",
            legendgroup="seeds",
            name="one seed",
            showlegend=s == next(iter(runs)),
            line=dict(color=rgba(color, 0.35), width=1),
            hovertemplate=f"seed {s}<br>batch %{{x}}<br>%{{y:.3g}}<extra></extra>",
        )
    mean, low, high = band(rows)
    edge = dict(mode="lines", line=dict(width=0, color=color), hoverinfo="skip", showlegend=False)
    fig.add_scatter(x=list(TRAIN_BATCHES), y=low, **edge)
    fig.add_scatter(
        x=list(TRAIN_BATCHES), y=high, fill="tonexty", fillcolor=rgba(color, 0.2), **edge
    )
    fig.add_scatter(
        x=list(TRAIN_BATCHES),
        y=mean,
        mode="lines+markers",
        name=f"mean of {len(rows)} seeds ± sd",
        line=dict(color=color, width=2.5),
        marker=dict(symbol=NORM_SYMBOLS["none"], size=8),
        hovertemplate="batch %{x}<br>mean %{y:.3g}<extra></extra>",
    )
    fig.update_yaxes(rangemode="tozero")
    note = (
        f"folded = eval mode; {SMALL} vs {LARGE} images a batch: "
        f"{_by_key(results)['smaller batches differ more'].mark}"
    )
    return finish(fig, BATCH_TITLE, BATCH_AXIS, BATCH_Y, note=note, log_x=True).update_layout(
        legend_traceorder="normal"
    )


FIGURES = (
    Chart(DIFF_TITLE, diff_figure, (LABEL,), None, DIFF_AXIS),
    Chart(BATCH_TITLE, batch_figure, (LABEL,), BATCH_AXIS, BATCH_Y),
)


# ---------------------------------------------------------------- explanation

CLAIM = (
    "At inference, in eval mode, BatchNorm uses its running mean μ and variance σ², not the "
    "batch's: y = γ(x − μ)/√(σ² + ε) + β is a fixed per-channel affine map. The conv before it "
    "is linear, so the two fold into one conv: W′ = γW/√(σ² + ε) and b′ = β + γ(b − μ)/√(σ² + "
    "ε) (b = 0 when the conv has no bias). In train mode μ and σ² are the batch's own, so no "
    "fixed weights can do the same."
)


def sci(value: float) -> str:
    """A tolerance as a power of ten: 1e-4, 1e-12."""
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _spread(values, unit: str = "") -> str:
    return Spread.of(values).text(unit=unit)


def _centre(runs: dict, batch: int) -> str:
    """The mean over seeds of mean |Δlogit| at one test batch size, to the digits its spread
    allows."""
    spread = Spread.of(_row(r, batch)["mean_abs"] for r in runs.values())
    return rounded(spread.mean, spread.sd)


def _largest(runs: dict, dtype: str, key: str) -> float:
    return max(r[dtype][key] for r in runs.values())


def _live(run: Run | None) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    return (
        f" The live run is at step {run.num_steps}; the action below folds its network as it "
        "is now."
    )


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    found = _by_key(results or {})
    runs = by_seed(results or {}, LABEL)
    if not runs:
        return CLAIM + "\n\nThe trained networks are being folded and measured…" + _live(run)
    first = next(iter(runs.values()))
    seeds = ", ".join(map(str, runs))
    images = first["float32"]["images"]
    setup = (
        f"Measured here: a network of widths {tuple(first['widths'])} trained for "
        f"{first['steps']} steps at batch {first['batch_size']} (SGD), seeds {seeds}; its "
        f"logits on {images} held-out images in eval mode against those of its folded copy "
        f"(the fold computed in float64, stored in the network's dtype). Each number below is "
        f"the mean ± sd over the seeds."
    )
    agree32 = min(r["float32"]["agree"] for r in runs.values())
    moved = [r["train"]["reshuffled"]["mean_abs"] for r in runs.values()]
    t32, t64 = TOL["float32"], TOL["float64"]
    lines = [
        CLAIM,
        "",
        setup,
        "",
        f"- **float32**: largest |Δlogit| at most {_largest(runs, 'float32', 'max_abs'):.2g}, "
        "against logits up to "
        f"{_spread(r['float32']['max_logit'] for r in runs.values())}; relative, at most "
        f"{_largest(runs, 'float32', 'relative'):.2g} (tolerance {sci(t32)}). The folded and the "
        f"eval-mode network predicted the same class for {agree32} of {images} images in "
        f"every seed" + ("." if agree32 == images else " at least."),
        f"- **float64**: largest |Δlogit| at most {_largest(runs, 'float64', 'max_abs'):.2g}, "
        f"relative at most {_largest(runs, 'float64', 'relative'):.2g} (tolerance {sci(t64)}): "
        "the float32 difference is rounding, not an error in the fold.",
        f"- **train mode** (batch statistics), test batches of {QUOTE_BATCH}: largest relative "
        f"difference from the folded network "
        f"{_spread(_row(r, QUOTE_BATCH)['relative'] for r in runs.values())}, and "
        f"{_spread(_row(r, QUOTE_BATCH)['changed'] for r in runs.values())} of {images} "
        f"predictions changed. Reshuffled into other batches of {QUOTE_BATCH}, the same images' "
        f"train-mode logits moved by {_spread(moved)} "
        f"on average: an image's output depends on the images beside it.",
        "- Mean |Δlogit| of train mode from the folded network, by test batch size (the mean "
        "over the seeds; the chart draws their spread): "
        + "; ".join(f"{b}: {_centre(runs, b)}" for b in TRAIN_BATCHES)
        + f". Even one batch of all {LARGE} images does not give the running statistics: they "
        "average the training batches, with the weights as they were then.",
        "",
        "Verdicts, seed by seed (differences in orders of magnitude: log10 of the tolerance "
        "over the difference, or of the difference over the tolerance):",
        "",
    ]
    lines += [f"- {v.text}" for v in found.values()]
    lines += [
        "",
        "Folding is how deployed networks usually run BatchNorm: one conv instead of a conv "
        "and a normalization, the same outputs. It needs BN after the conv and before the "
        "activation: placed after the activation, the nonlinearity sits between them.",
    ]
    return "\n".join(lines) + _live(run)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    found = _by_key(results or {})
    v32, train = found["fold equals eval, float32"], found["train mode differs from fold"]
    if v32.pending or train.pending:
        return "Measuring folded BatchNorm networks against eval and train mode…"
    runs = by_seed(results, LABEL)
    rel = max(r["float32"]["relative"] for r in runs.values())
    if v32.holds and train.holds:
        return (
            f"Folded BN gave eval mode's logits within float32 rounding (≤ {rel:.2g} relative) "
            f"in {v32.agree} of {v32.seeds} seeds. Train mode differs: batch statistics."
        )
    if v32.holds:
        return (
            f"Folding BN into the conv gave eval mode's logits within float32 rounding in "
            f"{v32.agree} of {v32.seeds} seeds; train mode: not distinguishable."
        )
    return f"Folding BN into the conv: {v32.text}"[:160]


# ---------------------------------------------------------------- live action


@torch.no_grad()
def _median_time(model, x: torch.Tensor, passes: int, repeats: int) -> float:
    """Median over `repeats` of the seconds `passes` forward passes over x take."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(passes):
            model(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def fold_live(trainer) -> dict:
    """Fold the live network (a copy; the trainer's model is untouched): eval mode against the
    folded copy on the held-out images in float32 and float64, train mode at the run's batch
    size against it, and this machine's time for forward passes of both."""
    config = trainer.config
    base = {
        "step": int(trainer.steps_done),
        "norm": config.norm,
        "placement": config.placement,
    }
    try:
        folded = fold_bn(trainer.model)
    except NotFoldable as e:
        return {**base, "foldable": False, "reason": str(e)}
    x = trainer.eval_x
    f32 = compare_eval(trainer.model, x, torch.float32)
    f64 = compare_eval(trainer.model, x, torch.float64)
    batch = min(trainer.batch_size, len(x))
    usable = len(x) // batch * batch
    train = math.nan
    try:
        t = train_mode_logits(trainer.model, x[:usable], batch)
        ref = logits(folded, x[:usable])
        train = float((t - ref).abs().max() / ref.abs().max())
    except ValueError:  # one value per channel: batch statistics are undefined
        pass
    net = copy.deepcopy(trainer.model).eval()
    timed = x[:TIMED_BATCH]
    _median_time(net, timed, 1, 1)  # warm up both once
    _median_time(folded, timed, 1, 1)
    t_eval = _median_time(net, timed, TIMED_PASSES, TIMED_REPEATS)
    t_fold = _median_time(folded, timed, TIMED_PASSES, TIMED_REPEATS)
    return {
        **base,
        "foldable": True,
        "float32": f32,
        "float64": f64,
        "train_batch": batch,
        "train_relative": train,
        "timed_images": len(timed),
        "passes": TIMED_PASSES,
        "repeats": TIMED_REPEATS,
        "threads": torch.get_num_threads(),
        "seconds_eval": t_eval,
        "seconds_folded": t_fold,
    }


def render_live(result: dict) -> str:
    if not result["foldable"]:
        return f"At step {result['step']}, nothing was folded: {result['reason']}."
    f32, f64 = result["float32"], result["float64"]
    images = f32["images"]
    agree = (
        f"predictions agree on all {images} test images"
        if f32["agree"] == images
        else f"predictions agree on {f32['agree']} of {images} test images"
    )
    equal = (
        "within float32 rounding"
        if f32["relative"] < TOL["float32"]
        else "NOT within float32 rounding"
    )
    train = result["train_relative"]
    train_text = (
        f"Train mode (batches of {result['train_batch']}, batch statistics) differs from the "
        f"folded network by up to {num(train)} of the largest logit: it cannot be folded."
        if math.isfinite(train)
        else f"Train mode could not run with batches of {result['train_batch']}: one value per "
        "channel has no batch variance."
    )
    ratio = result["seconds_folded"] / result["seconds_eval"]
    ms_eval, ms_fold = (num(1000 * result[k]) for k in ("seconds_eval", "seconds_folded"))
    return "\n\n".join(
        [
            f"At step {result['step']}, the live network folded (BatchNorm merged into each "
            f"conv), against the same network in eval mode on {images} held-out images:",
            f"- float32: largest |Δlogit| {num(f32['max_abs'])} (logits up to "
            f"{num(f32['max_logit'])}; relative {num(f32['relative'])}, {equal}); {agree}.\n"
            f"- float64: largest |Δlogit| {num(f64['max_abs'])} (relative "
            f"{num(f64['relative'])}).",
            train_text,
            f"Speed, measured now on this machine ({result['threads']} CPU "
            f"thread{'s' if result['threads'] != 1 else ''}; median of "
            f"{result['repeats']} repeats of {result['passes']} forward passes over a batch of "
            f"{result['timed_images']} test images): eval mode {ms_eval} ms, "
            f"folded {ms_fold} ms, folded/unfolded ×{num(ratio)}. "
            "Another machine, or another moment on this shared one, gives other times.",
        ]
    )


FOLD_ACTION = Action(
    label="Fold the live network",
    fn=fold_live,
    render=render_live,
    help="Fold BatchNorm into each conv of a copy of the live network, compare its logits with "
    "eval mode's (float32, float64) and train mode's, and time both on this machine.",
)

SCENARIO = Scenario(
    id="fold-bn",
    title="Folding BatchNorm into the conv",
    summary="At inference BatchNorm is a fixed per-channel affine map: does folding it into the "
    "conv before it give exactly the same network, and why can train mode not be folded?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "placement": "before", "twin": "off"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(FOLD_ACTION,),
)
