"""Scenario 'high-lr': does BatchNorm tolerate larger learning rates? (Ioffe & Szegedy 2015,
section 3.3; Bjorck et al. 2018; scale invariance: van Laarhoven 2017, Arora et al. 2019.) A
learning-rate sweep with and without BN over seeds, which also tracks each block's conv weight
norm ‖W‖; the loss after one plain gradient step, at initialisation and after training; the
activation scale per block of a deeper network in its first steps at a large learning rate; and
an action that measures ‖W‖ of the live network against its initialisation."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import torch

from ..config import NORM_NAMES
from ..experiments.high_lr import (
    BATCH_SIZE,
    DEEP_LR,
    DEEP_STEPS,
    DEEP_WIDTHS,
    EVAL_EVERY,
    PROBE_BATCHES,
    PROBE_LRS,
    STEPS,
    WIDTHS,
    activation_scale,
    loss_ratio_at_init,
    lr_run,
    weight_norms,
)
from ..model import build_model
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS, STEP_AXIS, layer_color, layer_symbol, rgba
from ..record import Run
from ..trainer import EXPLODED
from .base import Action, Chart, Results, Scenario
from .common import finish, lr_text, num, pct, subplots
from .evidence import SEEDS, Spread, Verdict, across, band, by_seed, compare, final, sweep

NORMS = ("batch", "none")
DASHES = {"batch": "solid", "none": "dash"}
SWEEP_LRS = (0.1, 0.3, 1.0, 3.0, 10.0)
LEARNED = 0.25  # final test accuracy counted as "learned" (10 classes: chance is 10%)
PROBE_TRAIN_LR = 0.1  # the sweep runs at this lr measure the one-step probe when trained
PROBE_QUOTE_LR = 10.0  # the step size the verdicts compare
# A loss ratio that overflowed float32 (the models' precision) counts as this power of ten: the
# loss rose past about 3e38 (a lower bound, so an overflow counts as a large rise, not as none).
OVERFLOW_LOG10 = 38.5
NORM_LRS = (0.1, 1.0)  # the sweep's lrs whose weight norms the ‖W‖ figure draws
BLOCK = 0  # the block whose ‖W‖ the verdicts compare (block 1)
TITLE_SWEEP = "Final test accuracy against learning rate"
TITLE_PROBE = "Loss after one gradient step, by its size"
TITLE_DEEP = "Activation scale per block, depth 6"
TITLE_NORM = "Conv weight norm ‖W‖ over training"
TITLE_STEP = "Effective step lr/‖W‖², BatchNorm, block 1"
Y_SWEEP = "test accuracy, eval mode (%)"
Y_PROBE = "L(w − lr·g) / L(w)"
Y_DEEP = "std over the batch"
Y_NORM = "‖W‖ of the block's conv"
Y_STEP = "lr / ‖W‖²"


def label_sweep(norm: str, lr: float) -> str:
    return f"{NORM_NAMES[norm]}, lr {lr_text(lr)}"


def label_init(norm: str) -> str:
    return f"{NORM_NAMES[norm]}: one-step loss ratio at init"


def label_deep(norm: str) -> str:
    return f"{NORM_NAMES[norm]}: depth {len(DEEP_WIDTHS)}, lr {lr_text(DEEP_LR)}"


# ---------------------------------------------------------------- jobs


def jobs(seeds=SEEDS):
    """Seed by seed (a first picture of every lr comes early): the sweep (its lr 0.1 runs also
    probe one step when trained), the probe at initialisation, the depth-6 runs."""
    out = []
    for seed in seeds:
        for lr in SWEEP_LRS:
            probe = {"probe_lrs": PROBE_LRS} if lr == PROBE_TRAIN_LR else {}
            for n in NORMS:
                out += sweep(label_sweep(n, lr), lr_run, (seed,), norm=n, lr=lr, **probe)
        for n in NORMS:
            out += sweep(label_init(n), loss_ratio_at_init, (seed,), norm=n)
        for n in NORMS:
            out += sweep(
                label_deep(n),
                activation_scale,
                (seed,),
                norm=n,
                lr=DEEP_LR,
                steps=DEEP_STEPS,
                widths=DEEP_WIDTHS,
            )
    return out


# ---------------------------------------------------------------- reading results


def final_acc(r: dict) -> float:
    """A run's final test accuracy: the mean of its last evaluations, or, for a run whose loss
    exploded, the accuracy of the model as it stood when it stopped."""
    return r["acc"][-1] if r["status"] == "diverged" else final(r["acc"])


def sweep_acc(results: Results, norm: str, lr: float) -> dict[int, float]:
    return across(results, label_sweep(norm, lr), final_acc)


def norm_growth(r: dict, block: int = BLOCK) -> float:
    """‖W‖ of one block's conv at the end of a sweep run over its value at initialisation."""
    return r["weight_norm"][-1][block] / r["weight_norm"][0][block]


def _log10(value: float) -> float:
    return math.log10(value) if value > 0 and math.isfinite(value) else math.nan


def probe_log(r: dict, lr: float = PROBE_QUOTE_LR) -> float:
    """log10 of the loss ratio after one step of `lr`; an overflow counts as OVERFLOW_LOG10."""
    ratio = r["ratio"][int(np.argmin([abs(math.log10(x / lr)) for x in r["lrs"]]))]
    return _log10(ratio) if math.isfinite(ratio) else OVERFLOW_LOG10


def _trained_probe(results: Results, norm: str) -> dict[int, dict]:
    return {s: r["probe"] for s, r in by_seed(results, label_sweep(norm, PROBE_TRAIN_LR)).items()}


def deep_steps(r: dict) -> int:
    """The steps a depth-6 run completed before its loss exploded (all of them if it did not)."""
    return r["diverged_step"] - 1 if r["status"] == "diverged" else len(r["steps"])


def conv_growth(r: dict) -> float:
    """log10 of the conv outputs' std at the last forward pass over the first, mean over blocks."""
    first, last = r["pre_norm_std"][0], r["pre_norm_std"][-1]
    return float(np.mean([_log10(b / a) if a > 0 else math.nan for a, b in zip(first, last)]))


def depth_growth(r: dict) -> float:
    """log10 of the post-activation std of the last block over the first, at the last forward
    pass (step 12, or the one whose loss exploded)."""
    post = r["post_act_std"][-1]
    return _log10(post[-1] / post[0]) if post[0] > 0 else math.nan


# ---------------------------------------------------------------- verdicts


def _learned(results: Results, norm: str, lr: float) -> Verdict:
    name = NORM_NAMES[norm]
    return compare(
        f"learned: {name}, lr {lr_text(lr)}",
        f"{name} learned at lr {lr_text(lr)} (final accuracy above {LEARNED:.0%})",
        f"{name} did not learn at lr {lr_text(lr)} (final accuracy below {LEARNED:.0%})",
        sweep_acc(results, norm, lr),
        LEARNED,
        scale=100,
        unit=" pp",
    )


def _beats(results: Results, lr: float) -> Verdict:
    return compare(
        f"BN beats none: lr {lr_text(lr)}",
        f"BatchNorm reached a higher final accuracy than no norm at lr {lr_text(lr)}",
        f"no norm reached a higher final accuracy than BatchNorm at lr {lr_text(lr)}",
        sweep_acc(results, "batch", lr),
        sweep_acc(results, "none", lr),
        scale=100,
        unit=" pp",
    )


def sweep_verdicts(results: Results) -> dict[float, dict[str, Verdict]]:
    """Per lr: BN learned, no norm learned, BN beat no norm."""
    return {
        lr: {
            "batch": _learned(results, "batch", lr),
            "none": _learned(results, "none", lr),
            "beats": _beats(results, lr),
        }
        for lr in SWEEP_LRS
    }


def probe_verdicts(results: Results) -> dict[str, Verdict]:
    at = lr_text(PROBE_QUOTE_LR)
    init = {n: across(results, label_init(n), probe_log) for n in NORMS}
    trained = {n: {s: probe_log(p) for s, p in _trained_probe(results, n).items()} for n in NORMS}
    when = f"after {STEPS} steps at lr {lr_text(PROBE_TRAIN_LR)}"
    return {
        "init": compare(
            "one step at init",
            f"at initialisation, one step of lr {at} raised the loss more without BN than with it "
            "(compared in log10 of the loss ratio)",
            f"at initialisation, one step of lr {at} raised the loss more with BN than without it "
            "(compared in log10 of the loss ratio)",
            init["none"],
            init["batch"],
        ),
        "trained": compare(
            "one step after training",
            f"{when}, one step of lr {at} raised the loss more without BN than with it "
            "(compared in log10 of the loss ratio)",
            f"{when}, one step of lr {at} raised the loss more with BN than without it "
            "(compared in log10 of the loss ratio)",
            trained["none"],
            trained["batch"],
        ),
    }


def deep_verdicts(results: Results) -> dict[str, Verdict]:
    bn, none = label_deep("batch"), label_deep("none")
    at = f"at lr {lr_text(DEEP_LR)}"
    blocks = len(DEEP_WIDTHS)
    return {
        "steps": compare(
            "depth 6: steps before the loss exploded",
            f"with BN the depth-{blocks} network completed more of its first {DEEP_STEPS} steps "
            f"{at} before its loss exploded than without",
            f"without BN the depth-{blocks} network completed more of its first {DEEP_STEPS} "
            f"steps {at} before its loss exploded than with BN",
            across(results, bn, deep_steps),
            across(results, none, deep_steps),
        ),
        "depth": compare(
            "depth 6: growth through depth",
            f"without BN the post-activation scale grew more from block 1 to block {blocks} "
            "than with BN (log10 of the ratio, at the last forward pass)",
            f"with BN the post-activation scale grew more from block 1 to block {blocks} than "
            "without (log10 of the ratio, at the last forward pass)",
            across(results, none, depth_growth),
            across(results, bn, depth_growth),
        ),
        "conv": compare(
            "depth 6: BN's conv outputs grew",
            f"with BN {at} the conv outputs' std grew from the first forward pass to the last "
            f"(log10 of the ratio, mean over the {blocks} blocks)",
            f"with BN {at} the conv outputs' std shrank from the first forward pass to the last "
            f"(log10 of the ratio, mean over the {blocks} blocks)",
            across(results, bn, conv_growth),
            0.0,
        ),
    }


def norm_verdicts(results: Results) -> dict[str, Verdict]:
    lr0, lr1 = NORM_LRS
    growth = {
        (n, lr): across(results, label_sweep(n, lr), norm_growth) for n in NORMS for lr in NORM_LRS
    }
    block = f"‖W‖ of block {BLOCK + 1}"

    def grew(norm: str, lr: float) -> Verdict:
        name = NORM_NAMES[norm]
        return compare(
            f"‖W‖ grew: {name}, lr {lr_text(lr)}",
            f"{block} grew over {STEPS} steps with {name} at lr {lr_text(lr)} (final over initial)",
            f"{block} shrank over {STEPS} steps with {name} at lr {lr_text(lr)} (final over "
            "initial)",
            growth[(norm, lr)],
            1.0,
            scale=100,
            unit="%",
        )

    return {
        "batch": grew("batch", lr0),
        "none": grew("none", lr0),
        "batch high": grew("batch", lr1),
        "more": compare(
            f"‖W‖ grew more with BN: lr {lr_text(lr0)}",
            f"{block} grew more with BatchNorm than with no norm at lr {lr_text(lr0)}",
            f"{block} grew more with no norm than with BatchNorm at lr {lr_text(lr0)}",
            growth[("batch", lr0)],
            growth[("none", lr0)],
            scale=100,
            unit=" pp",
        ),
    }


def verdicts(results: Results) -> list[Verdict]:
    results = results or {}
    out = [v for per_lr in sweep_verdicts(results).values() for v in per_lr.values()]
    for group in (probe_verdicts, deep_verdicts, norm_verdicts):
        out += list(group(results).values())
    return out


# ---------------------------------------------------------------- figures


def _add_band(
    fig: go.Figure,
    x,
    rows,
    color: str,
    *,
    log: bool = False,
    by_range: bool = False,
    row: int | None = None,
    col: int | None = None,
) -> np.ndarray:
    """The spread over seeds as a band under the line the caller draws, which gets the returned
    centre: mean ± sd (evidence.band), or with `by_range` the median and the range (min to max)
    for quantities whose seeds differ by orders of magnitude; in log10 when `log`."""
    arr = np.asarray(rows, dtype=np.float64)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            arr = np.where(arr > 0, np.log10(np.where(arr > 0, arr, 1.0)), np.nan)
    if by_range:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no finite value
            centre, low, high = (f(arr, axis=0) for f in (np.nanmedian, np.nanmin, np.nanmax))
    else:
        centre, low, high = band(arr)
    if log:
        centre, low, high = (10**v for v in (centre, low, high))
    where = dict(row=row, col=col) if row else {}
    edge = dict(mode="lines", line=dict(width=0, color=color), hoverinfo="skip", showlegend=False)
    fig.add_trace(go.Scatter(x=list(x), y=low, **edge), **where)
    fig.add_trace(
        go.Scatter(x=list(x), y=high, fill="tonexty", fillcolor=rgba(color, 0.18), **edge),
        **where,
    )
    return centre


def _finish(*args, **kwargs) -> go.Figure:
    """common.finish, with the legend in the order the traces were drawn (plotly reverses it
    for figures with filled bands)."""
    return finish(*args, **kwargs).update_layout(legend_traceorder="normal")


def _padded(rows: list[list[float]], length: int) -> list[list[float]]:
    """Series of runs that stopped early, padded with NaN to `length`."""
    return [list(r) + [math.nan] * (length - len(r)) for r in rows]


def _sweep_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    per_lr = sweep_verdicts(results)
    n_seeds = 0
    for norm in NORMS:
        color, name = NORM_COLORS[norm], NORM_NAMES[norm]
        xs, means, sds, hover = [], [], [], []
        seed_x, seed_y, seed_symbol, seed_text = [], [], [], []
        for lr in SWEEP_LRS:
            runs = by_seed(results, label_sweep(norm, lr))
            if not runs:
                continue
            accs = {s: 100 * final_acc(r) for s, r in runs.items()}
            spread = Spread.of(accs.values())
            n_seeds = max(n_seeds, spread.n)
            xs.append(lr)
            means.append(spread.mean)
            sds.append(spread.sd if math.isfinite(spread.sd) else 0.0)
            v = per_lr[lr][norm]
            hover.append(f"{spread.text(unit='%')} over {spread.n} seeds; learned: {v.mark}")
            for s, r in runs.items():
                seed_x.append(lr)
                seed_y.append(accs[s])
                diverged = r["status"] == "diverged"
                seed_symbol.append("x" if diverged else NORM_SYMBOLS[norm])
                seed_text.append(
                    f"seed {s}: diverged at step {r['diverged_step']}" if diverged else f"seed {s}"
                )
        if not xs:
            continue
        fig.add_trace(
            go.Scatter(
                x=seed_x,
                y=seed_y,
                name=f"{name}, one seed",
                legendgroup=norm,
                showlegend=False,
                mode="markers",
                marker=dict(color=rgba(color, 0.45), symbol=seed_symbol, size=6),
                text=seed_text,
                hovertemplate="%{text}: %{y:.1f}%<extra>" + name + "</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=means,
                name=f"{name} (mean ± sd)",
                legendgroup=norm,
                mode="lines+markers",
                line=dict(color=color, dash=DASHES[norm]),
                marker=dict(symbol=NORM_SYMBOLS[norm], size=9, color=color),
                error_y=dict(type="data", array=sds, visible=True, color=color, thickness=1.5),
                text=hover,
                hovertemplate="lr %{x:g}: %{text}<extra>" + name + "</extra>",
            )
        )
    for y, text in ((10, "chance (10%)"), (100 * LEARNED, f"learned ({LEARNED:.0%})")):
        fig.add_hline(
            y=y,
            line=dict(color=NEUTRAL, dash="dot"),
            annotation_text=text,
            annotation_position="top left",
        )
    fig.update_yaxes(range=[0, 100])
    widths = "-".join(map(str, WIDTHS))
    details = (
        f"{STEPS} steps of SGD (momentum 0.9), widths {widths}; mean ± sd over {n_seeds} seeds, "
        "small marks are seeds (× = diverged)"
    )
    wins = [lr for lr in SWEEP_LRS if per_lr[lr]["beats"].holds]
    if wins:
        marks = ", ".join(f"{lr_text(lr)} ({per_lr[lr]['beats'].mark})" for lr in wins)
        details += f". BN beat no norm at lr {marks}"
    fig = _finish(fig, TITLE_SWEEP, "learning rate (log scale)", Y_SWEEP, note=details, log_x=True)
    return fig.update_xaxes(tickvals=list(SWEEP_LRS), ticktext=[lr_text(lr) for lr in SWEEP_LRS])


def _probe_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    found = probe_verdicts(results)
    when_trained = f"after {STEPS} steps"
    for after in (False, True):
        for norm in NORMS:
            if after:
                probes = list(_trained_probe(results, norm).values())
            else:
                probes = list(by_seed(results, label_init(norm)).values())
            if not probes:
                continue
            lrs = probes[0]["lrs"]
            rows = [[r if math.isfinite(r) else math.nan for r in p["ratio"]] for p in probes]
            color = NORM_COLORS[norm]
            mean = _add_band(fig, lrs, rows, color, log=True, by_range=True)
            when = when_trained if after else "at init"
            name = f"{NORM_NAMES[norm]}, {when}"
            fig.add_trace(
                go.Scatter(
                    x=lrs,
                    y=mean,
                    name=name,
                    mode="lines+markers",
                    opacity=1.0 if after else 0.6,
                    marker=dict(
                        symbol=NORM_SYMBOLS[norm] + ("" if after else "-open"), size=6, color=color
                    ),
                    line=dict(color=color, dash=DASHES[norm], width=2.5 if after else 1.5),
                    hovertemplate="lr %{x:g}: loss × %{y:.3g} (median of "
                    f"{len(probes)} seeds)<extra>{name}</extra>",
                )
            )
    fig.add_hline(
        y=1,
        line=dict(color=NEUTRAL, dash="dot"),
        annotation_text="no change",
        annotation_position="top left",
    )
    at = lr_text(PROBE_QUOTE_LR)
    details = (
        f"{PROBE_BATCHES} batches per seed; median and range over seeds; trained at lr "
        f"{lr_text(PROBE_TRAIN_LR)}. Did no norm's loss rise more at lr {at}? At init: "
        f"{found['init'].mark}; {when_trained}: {found['trained'].mark}"
    )
    return _finish(
        fig,
        TITLE_PROBE,
        "step size lr (log scale)",
        Y_PROBE + " (log scale)",
        note=details,
        log_x=True,
        log_y=True,
    )


def _deep_figure(results: Results) -> go.Figure:
    fig = subplots(
        ("conv output (the norm's input)", "post-activation"),
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
    )
    found = deep_verdicts(results)
    blocks = list(range(1, len(DEEP_WIDTHS) + 1))
    for norm in NORMS:
        runs = list(by_seed(results, label_deep(norm)).values())
        if not runs:
            continue
        color = NORM_COLORS[norm]
        for last in (False, True):
            when = "last step" if last else "step 1"
            name = f"{NORM_NAMES[norm]}, {when}"
            for col, key in ((1, "pre_norm_std"), (2, "post_act_std")):
                rows = [r[key][-1 if last else 0] for r in runs]
                mean = _add_band(fig, blocks, rows, color, log=True, by_range=True, row=1, col=col)
                fig.add_trace(
                    go.Scatter(
                        x=blocks,
                        y=mean,
                        name=name,
                        legendgroup=name,
                        showlegend=col == 1,
                        mode="lines+markers",
                        opacity=1.0 if last else 0.55,
                        line=dict(color=color, dash=DASHES[norm], width=2.5 if last else 1.5),
                        marker=dict(
                            symbol=NORM_SYMBOLS[norm] + ("" if last else "-open"),
                            size=7,
                            color=color,
                        ),
                        hovertemplate="block %{x}: std %{y:.3g} (median)<extra>"
                        + name
                        + "</extra>",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(dtick=1)
    details = (
        f"widths {'-'.join(map(str, DEEP_WIDTHS))}, lr {lr_text(DEEP_LR)}; median and range "
        f"over seeds; last step = step {DEEP_STEPS} or the one whose loss exploded. BN's conv "
        f"outputs grew: {found['conv'].mark}; grew more through depth without BN: "
        f"{found['depth'].mark}"
    )
    return _finish(
        fig,
        TITLE_DEEP,
        "block (depth)",
        Y_DEEP + " (log scale)",
        note=details,
        log_y=True,
        panel_titles=True,
    )


def _norm_figure(results: Results) -> go.Figure:
    blocks = len(WIDTHS)
    fig = subplots(
        [f"block {b + 1}" for b in range(blocks)], rows=1, cols=blocks, horizontal_spacing=0.08
    )
    found = norm_verdicts(results)
    symbols = {lr: layer_symbol(k) for k, lr in enumerate(NORM_LRS)}
    for lr in NORM_LRS:
        for norm in NORMS:
            runs = list(by_seed(results, label_sweep(norm, lr)).values())
            if not runs:
                continue
            steps = max((r["eval_steps"] for r in runs), key=len)
            color, name = NORM_COLORS[norm], f"{NORM_NAMES[norm]}, lr {lr_text(lr)}"
            for b in range(blocks):
                rows = _padded([[w[b] for w in r["weight_norm"]] for r in runs], len(steps))
                mean = _add_band(fig, steps, rows, color, log=True, row=1, col=b + 1)
                fig.add_trace(
                    go.Scatter(
                        x=steps,
                        y=mean,
                        name=name,
                        legendgroup=name,
                        showlegend=b == 0,
                        mode="lines+markers",
                        line=dict(color=color, dash=DASHES[norm], width=2.5 if lr > 0.5 else 1.5),
                        marker=dict(symbol=symbols[lr], size=6, color=color, maxdisplayed=6),
                        hovertemplate="step %{x}: ‖W‖ %{y:.3g}<extra>" + name + "</extra>",
                    ),
                    row=1,
                    col=b + 1,
                )
    details = (
        f"Frobenius norm of each block's conv weight, every {EVAL_EVERY} steps; geometric mean "
        f"± sd over seeds. Block 1 grew with BN at lr {lr_text(NORM_LRS[0])}: "
        f"{found['batch'].mark}; without: {found['none'].mark}"
    )
    return _finish(
        fig,
        TITLE_NORM,
        y_title=Y_NORM + " (log scale)",
        note=details,
        log_y=True,
        panel_titles=True,
    )


def effective_steps(r: dict, block: int = BLOCK) -> list[float]:
    """lr/‖W‖² of one block's conv at each evaluation of a sweep run."""
    return [r["lr"] / w[block] ** 2 for w in r["weight_norm"]]


def _step_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    for k, lr in enumerate(SWEEP_LRS):
        runs = list(by_seed(results, label_sweep("batch", lr)).values())
        if not runs:
            continue
        steps = max((r["eval_steps"] for r in runs), key=len)
        color, name = layer_color(k), f"lr {lr_text(lr)}"
        rows = _padded([effective_steps(r) for r in runs], len(steps))
        mean = _add_band(fig, steps, rows, color, log=True)
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=mean,
                name=name,
                mode="lines+markers",
                line=dict(color=color),
                marker=dict(symbol=layer_symbol(k), size=6, color=color, maxdisplayed=6),
                hovertemplate="step %{x}: lr/‖W‖² %{y:.3g}<extra>BatchNorm, " + name + "</extra>",
            )
        )
    details = (
        f"BatchNorm runs of the sweep; ‖W‖ of block 1's conv, every {EVAL_EVERY} steps; geometric "
        "mean ± sd over seeds. BN(cWx) = BN(Wx): a longer W takes smaller effective steps"
    )
    return _finish(fig, TITLE_STEP, y_title=Y_STEP + " (log scale)", note=details, log_y=True)


def _sweep_labels(norms=NORMS, lrs=SWEEP_LRS) -> tuple[str, ...]:
    return tuple(label_sweep(n, lr) + "," for n in norms for lr in lrs)


FIGURES = (
    Chart(TITLE_SWEEP, _sweep_figure, _sweep_labels(), "learning rate (log scale)", Y_SWEEP),
    Chart(
        TITLE_PROBE,
        _probe_figure,
        tuple(label_init(n) for n in NORMS) + _sweep_labels(lrs=(PROBE_TRAIN_LR,)),
        "step size lr (log scale)",
        Y_PROBE,
    ),
    Chart(TITLE_DEEP, _deep_figure, tuple(label_deep(n) for n in NORMS), "block (depth)", Y_DEEP),
    Chart(TITLE_NORM, _norm_figure, _sweep_labels(lrs=NORM_LRS), STEP_AXIS, Y_NORM),
    Chart(TITLE_STEP, _step_figure, _sweep_labels(norms=("batch",)), STEP_AXIS, Y_STEP),
)


# ---------------------------------------------------------------- explanation


def _values(results: Results, label: str, fn: Callable[[dict], float]) -> list[float]:
    return list(across(results, label, fn).values())


def _span(values: list[float], unit: str = "") -> str:
    """The range over seeds of a quantity that spans orders of magnitude: '5.1–15'."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    low, high = min(finite), max(finite)
    if num(low, 2) == num(high, 2):
        return num(low, 2) + unit
    return f"{_short(low)}–{_short(high)}{unit}"


def _short(value: float) -> str:
    """Two significant digits, thousands separated ('3,600'), powers of ten from a million."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value:.1e}"
    if abs(value) >= 100:
        return f"{float(f'{value:.2g}'):,.0f}"
    return f"{value:.2g}"


def _lrs(lrs: list[float]) -> str:
    """'0.3–3' for neighbours in the sweep, else '0.1, 1'."""
    if not lrs:
        return ""
    idx = [SWEEP_LRS.index(lr) for lr in lrs]
    if len(lrs) > 1 and idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{lr_text(lrs[0])}–{lr_text(lrs[-1])}"
    return ", ".join(lr_text(lr) for lr in lrs)


def _unanimous(v: Verdict) -> bool:
    return v.agree == v.seeds or v.against == v.seeds


def _tolerated(per_lr: dict) -> list[float]:
    """The lrs at which BN learned and beat no norm, by the seeds' verdicts."""
    return [lr for lr in SWEEP_LRS if per_lr[lr]["batch"].holds and per_lr[lr]["beats"].holds]


INTRO = (
    "Ioffe & Szegedy (2015, section 3.3) report that BN tolerates much higher learning rates; "
    "Bjorck et al. (2018) show one reason: without BN, large steps make the loss and the "
    "activations blow up with depth. Another is **scale invariance**: BN(cWx) = BN(Wx) for any "
    "c > 0, so the loss does not depend on the length of a weight vector that feeds BN (strictly, "
    "of each filter). Its gradient is then orthogonal to W and shrinks as 1/‖W‖; a plain SGD "
    "step, at right angles to W, can only lengthen it (with momentum, nearly so); and the "
    "effective learning rate is about lr/‖W‖² (van Laarhoven 2017; Arora, Li & Lyu 2019): a "
    "large step lengthens W, and the steps after it shrink. None of this makes a large "
    "learning rate safe: γ, β and the linear head are not scale-invariant. Measured here with "
    "SGD (momentum 0.9); the live run can switch to Adam, whose steps do not follow the "
    "gradient's size."
)


def _explain_sweep(results: Results) -> list[str]:
    per_lr = sweep_verdicts(results)
    if not any(by_seed(results, label_sweep(n, lr)) for n in NORMS for lr in SWEEP_LRS):
        return ["The learning-rate sweep is being measured."]
    lines = [
        f"**Sweep** (SGD with momentum 0.9, {STEPS} steps, widths {'-'.join(map(str, WIDTHS))}, "
        f"batch {BATCH_SIZE}; final test accuracy in eval mode = the mean of the last evaluations "
        f"(every {EVAL_EVERY} steps), or, for a run whose loss exploded, its accuracy when it "
        "stopped; mean ± sd over seeds; chance is 10%):"
    ]
    for lr in SWEEP_LRS:
        parts = []
        for norm in NORMS:
            runs = by_seed(results, label_sweep(norm, lr))
            if not runs:
                parts.append(f"{NORM_NAMES[norm]} …")
                continue
            text = f"{NORM_NAMES[norm]} {Spread.of(map(final_acc, runs.values())).text(100, '%')}"
            diverged = sum(r["status"] == "diverged" for r in runs.values())
            if diverged:
                text += f" ({diverged} of {len(runs)} diverged)"
            parts.append(text)
        verdict_texts = " ".join(v.text for v in per_lr[lr].values())
        lines.append(f"- lr {lr_text(lr)}: {', '.join(parts)}. {verdict_texts}")
    if any(v.pending for per in per_lr.values() for v in per.values()):
        lines.append("The rest of the sweep is being measured.")
        return ["\n".join(lines)]
    summary = []
    both = _tolerated(per_lr)
    if both:
        summary.append(f"So here BN learned, and beat no norm, at lr {_lrs(both)}.")
        failed_none = [lr for lr in both if per_lr[lr]["none"].holds is False]
        if failed_none:
            summary.append(f"No norm did not learn at lr {_lrs(failed_none)}.")
    else:
        summary.append(
            "So here no learning rate of the sweep let BN learn and beat no norm across the "
            "seeds: BN did **not** measurably tolerate larger learning rates at this scale."
        )
    failed = [lr for lr in SWEEP_LRS if per_lr[lr]["batch"].holds is False]
    if failed:
        summary.append(
            f"The tolerance has a limit: at lr {_lrs(failed)} BN did not learn either (see the "
            "depth-6 runs below)."
        )
    split = [lr for lr in SWEEP_LRS if not all(map(_unanimous, per_lr[lr].values()))]
    if split:
        summary.append(
            f"At lr {_lrs(split)} the seeds did not all agree on every finding (see the counts), "
            "so other seeds may read differently there."
        )
    return ["\n".join(lines), " ".join(summary)]


def _explain_probe(results: Results) -> list[str]:
    found = probe_verdicts(results)
    init = {n: list(by_seed(results, label_init(n)).values()) for n in NORMS}
    trained = {n: list(_trained_probe(results, n).values()) for n in NORMS}
    if not all(init.values()) and not all(trained.values()):
        return ["The one-step loss probe is being measured."]
    at = lr_text(PROBE_QUOTE_LR)

    def ratios(probes):
        return _span([10 ** probe_log(p) for p in probes])

    def grads(probes):
        return Spread.of(p["grad_norm"] for p in probes).text()

    parts = []
    for when, probes in (
        ("at initialisation", init),
        (f"after {STEPS} steps at lr {lr_text(PROBE_TRAIN_LR)}", trained),
    ):
        if all(probes.values()):
            parts.append(
                f"{when}, ×{ratios(probes['batch'])} with BN and ×{ratios(probes['none'])} "
                f"without (gradient norms {grads(probes['batch'])} and {grads(probes['none'])})"
            )
    text = (
        f"**One gradient step** (L(w − lr·g) / L(w), g the gradient at w on one batch; the "
        f"geometric mean over {PROBE_BATCHES} batches, ranges over the seeds): a step of lr {at} "
        "multiplied the loss " + "; ".join(parts) + ". "
    )
    text += " ".join(v.text for v in found.values())
    if found["init"].holds is False and found["trained"].holds:
        text += (
            " So at initialisation the network without BN was the less fragile one along its "
            "gradient, but once trained its loss rose far more along the gradient than BN's: "
            "the smoother landscape Santurkar et al. (2018) describe."
        )
    elif found["trained"].holds:
        text += (
            " After training, the loss without BN rose more along the gradient than with BN: "
            "the smoother landscape Santurkar et al. (2018) describe."
        )
    elif not found["trained"].pending:
        text += (
            " After training, the loss without BN did **not** measurably rise more along the "
            "gradient than with BN here, unlike the smoother landscape Santurkar et al. (2018) "
            "describe."
        )
    if not all(map(_unanimous, found.values())):
        text += " The seeds did not all agree here, so other seeds may read differently."
    return [text]


def _exploded(runs: list[dict]) -> int:
    return sum(r["status"] == "diverged" for r in runs)


def _explain_deep(results: Results) -> list[str]:
    bn = list(by_seed(results, label_deep("batch")).values())
    none = list(by_seed(results, label_deep("none")).values())
    if not bn or not none:
        return ["The depth-6 activation scales are being measured."]
    found = deep_verdicts(results)
    blocks = len(DEEP_WIDTHS)
    setup = (
        f"**Depth {blocks} at lr {lr_text(DEEP_LR)}** (widths {'-'.join(map(str, DEEP_WIDTHS))}, "
        f"the first {DEEP_STEPS} steps; 'last' = step {DEEP_STEPS}, or the forward pass whose "
        "loss exploded; ranges over the seeds): "
    )
    largest = [max(r["pre_norm_std"][-1]) for r in bn]
    top = max(range(len(bn)), key=lambda i: largest[i])
    top_block = int(np.argmax(bn[top]["pre_norm_std"][-1])) + 1
    growth = [max(w / w0 for w, w0 in zip(r["weight_norm"][-1], r["weight_norm"][0])) for r in bn]
    post_bn = [x for r in bn for x in r["post_act_std"][-1]]
    sentences = [
        f"the loss exploded (non-finite, or over {EXPLODED:g} times its first value) in "
        f"{_exploded(none)} of {len(none)} runs without BN and in {_exploded(bn)} of {len(bn)} "
        "with BN",
        "without BN the post-activation std at the last forward pass went from "
        f"{_span([r['post_act_std'][-1][0] for r in none])} in block 1 to "
        f"{_span([r['post_act_std'][-1][-1] for r in none])} in block {blocks}",
        "with BN the conv outputs, the norm's input, did not stay small: their largest std over "
        f"the blocks at the last forward pass was {_span(largest)} (the largest, "
        f"{_short(largest[top])}, in block {top_block} at step {bn[top]['steps'][-1]}), against "
        f"{_span([max(r['pre_norm_std'][0]) for r in bn])} at step 1, and the conv weights "
        f"grew with them (each run's largest ‖W‖ growth over the blocks: ×{_span(growth)}); "
        f"the post-activation std, whose scale after the norm is set by γ and β, ranged over "
        f"{_span(post_bn)}",
    ]
    text = setup + "; ".join(sentences) + ". " + " ".join(v.text for v in found.values())
    text += (
        " BN divides the conv's scale out of the forward pass (BN(cWx) = BN(Wx)), so that growth "
        "does not pass into the next block; it stays in the weights, where it shrinks their "
        "effective steps, lr/‖W‖². γ, β and the linear head are not scale-invariant and get no "
        "such brake."
    )
    if sweep_verdicts(results)[DEEP_LR]["batch"].holds is False:
        text += (
            f" And lr {lr_text(DEEP_LR)} was too large for BN as well: its sweep did not learn "
            "there."
        )
    if not (_unanimous(found["steps"]) and _unanimous(found["depth"])):
        text += (
            " The seeds did not all agree on how the two networks compare here: with so few "
            "exploded runs, other seeds may read differently."
        )
    return [text]


def _explain_norms(results: Results) -> list[str]:
    found = norm_verdicts(results)
    if all(v.pending for v in found.values()):
        return ["The weight norms of the sweep's runs are being measured."]
    parts, starts = [], {}
    for norm in NORMS:
        for lr in NORM_LRS:
            runs = by_seed(results, label_sweep(norm, lr))
            starts |= {s: r["weight_norm"][0][BLOCK] for s, r in runs.items()}  # one per seed
            runs = list(runs.values())
            if runs:
                end = Spread.of(r["weight_norm"][-1][BLOCK] for r in runs)
                parts.append(f"{end.text()} with {NORM_NAMES[norm]} at lr {lr_text(lr)}")
    text = (
        f"**The weight norm over training** (‖W‖ of block {BLOCK + 1}'s conv in the sweep's runs, "
        f"mean ± sd over seeds): from {Spread.of(starts.values()).text()} at initialisation (the "
        "same initial weights with and without BN) to " + ", ".join(parts) + f" after {STEPS} "
        "steps. "
    )
    text += " ".join(v.text for v in found.values())
    if found["more"].holds is not True and not found["more"].pending:
        text += (
            " Without BN the weights change length too, as they learn; but there a longer W "
            "changes what the network computes, while with BN it changes only the size of the "
            "steps."
        )
    changes = []
    for lr in (NORM_LRS[0], NORM_LRS[-1], SWEEP_LRS[-1]):
        runs = list(by_seed(results, label_sweep("batch", lr)).values())
        if runs:
            then = _span([effective_steps(r)[0] for r in runs])
            now = _span([effective_steps(r)[-1] for r in runs])
            changes.append(f"from {then} to {now} at lr {lr_text(lr)}")
    if changes:
        text += (
            f" With BN, the effective step lr/‖W‖² of block {BLOCK + 1} went "
            + ", ".join(changes)
            + f" (initialisation → after {STEPS} steps, ranges over the seeds): as ‖W‖ grew, "
            "the network shrank its own steps."
        )
    return [text]


def _explain_live(run: Run | None, twin: Run | None) -> list[str]:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return []
    text = (
        f"**Live run** (lr {lr_text(run.setting_at('lr'))}, {run.config.optimizer}), "
        f"{run.num_steps} steps so far: the main network "
        f"({NORM_NAMES.get(run.config.norm, run.config.norm)}) was at "
        f"{pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}"
    )
    if run.status == "diverged":
        text += f" (diverged at step {run.diverged_step})"
    if twin is not None and twin.eval_steps:
        name = NORM_NAMES.get(twin.config.norm, twin.config.norm)
        text += (
            f"; the twin ({name}) at {pct(twin.acc_running_stats[-1])} at step "
            f"{twin.eval_steps[-1]}"
        )
        if twin.status == "diverged":
            text += f" (diverged at step {twin.diverged_step})"
    return [
        text + ". Press **Measure ‖W‖** to compare the main network's conv weight norms, and "
        "its effective step, with those at initialisation."
    ]


def _not_reproduced(results: Results) -> str:
    """The first sentence when a published finding does not reproduce here; '' otherwise."""
    per_lr = sweep_verdicts(results)
    parts = []
    if not any(v.pending for per in per_lr.values() for v in per.values()) and not _tolerated(
        per_lr
    ):
        parts.append(
            "Ioffe & Szegedy's (2015) higher learning rates: no lr of the sweep let BN learn and "
            "beat no norm across the seeds"
        )
    deep = deep_verdicts(results)["depth"]
    if not deep.pending and deep.holds is not True:
        bn = list(by_seed(results, label_deep("batch")).values())
        none = list(by_seed(results, label_deep("none")).values())
        why = (
            f"within {DEEP_STEPS} steps the loss exploded in {_exploded(none)} of {len(none)} "
            f"runs without BN and in {_exploded(bn)} of {len(bn)} with BN"
        )
        if per_lr[DEEP_LR]["batch"].holds is False:
            why += (
                f", and lr {lr_text(DEEP_LR)} is past BN's own range (its sweep did not learn "
                "there)"
            )
        if not _unanimous(deep):
            why += (
                f"; the growth was larger without BN in {deep.agree} of {deep.seeds} seeds, too "
                "unevenly to count, so other seeds may read differently"
            )
        parts.append(
            f"Bjorck et al.'s (2018) contrast, activations that grow with depth without BN but "
            f"not with it, did not separate the two networks at depth {len(DEEP_WIDTHS)} and lr "
            f"{lr_text(DEEP_LR)}: {why}"
        )
    trained = probe_verdicts(results)["trained"]
    if not trained.pending and trained.holds is not True:
        parts.append(
            "Santurkar et al.'s (2018) smoother landscape: after training, one large step did not "
            "measurably raise the loss more without BN than with it"
        )
    if not parts:
        return ""
    return "Not reproduced here, at this scale: " + "; ".join(parts) + "."


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    first = _not_reproduced(results)
    lines = ([first] if first else []) + [INTRO]
    if not results:
        lines.append("The learning-rate sweep and the probes are being measured.")
    else:
        lines += _explain_sweep(results) + _explain_norms(results)
        lines += _explain_probe(results) + _explain_deep(results)
    lines += _explain_live(run, twin)
    return "\n\n".join(lines)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """The sweep's verdicts in two lines."""
    per_lr = sweep_verdicts(results or {})
    if any(v.pending for per in per_lr.values() for v in per.values()):
        return "Measuring the learning-rate sweep…"
    both = _tolerated(per_lr)
    seeds = per_lr[SWEEP_LRS[0]]["beats"].seeds
    if not both:
        return (
            f"Over {seeds} seeds BatchNorm did **not** learn and beat no norm at any learning "
            "rate of the sweep."
        )
    text = f"Over {seeds} seeds BatchNorm learned, and beat no norm, at lr **{_lrs(both)}**."
    failed = [lr for lr in SWEEP_LRS if per_lr[lr]["batch"].holds is False]
    if failed:
        text += f" At lr {_lrs(failed)} it failed too."
    return text


# ---------------------------------------------------------------- the action


@torch.no_grad()
def measure_weights(trainer) -> dict:
    """‖W‖ of each block's conv now and at initialisation (rebuilt from the run's seed: the
    initial weights are deterministic), with lr/‖W‖² at the lr of step 1 and the lr now."""
    data, run = trainer.data, trainer.run
    channels, side = data.x_train.shape[1], data.x_train.shape[2]
    initial = build_model(trainer.config, channels, len(data.classes), side)
    return {
        "step": int(trainer.steps_done),
        "norm": trainer.config.norm,
        "placement": trainer.config.placement,
        "optimizer": trainer.config.optimizer,
        "lr_then": float(run.setting_at("lr", 1)),
        "lr_now": float(run.setting_at("lr")),
        "then": weight_norms(initial),
        "now": weight_norms(trainer.model),
    }


def render_weights(result: dict) -> str:
    then, now = result["then"], result["now"]
    lr0, lr1 = result["lr_then"], result["lr_now"]
    rows = [
        "| block | ‖W‖ at init | ‖W‖ now | growth | lr/‖W‖² at init | lr/‖W‖² now |",
        "|---|---|---|---|---|---|",
    ]
    for b, (w0, w) in enumerate(zip(then, now)):
        rows.append(
            f"| {b + 1} | {num(w0)} | {num(w)} | ×{num(w / w0)} | {num(lr0 / w0**2)} | "
            f"{num(lr1 / w**2)} |"
        )
    lrs = lr_text(lr1) if lr0 == lr1 else f"{lr_text(lr0)} at step 1, {lr_text(lr1)} now"
    head = (
        f"At step {result['step']} (lr {lrs}), ‖W‖ of each block's conv against the same "
        "weights at initialisation, rebuilt from the run's seed:"
    )
    norm = NORM_NAMES.get(result["norm"], result["norm"])
    if result["norm"] == "none":
        tail = (
            "Without a norm after the conv, the network's output depends on ‖W‖, so lr/‖W‖² is "
            "not an effective step here; it is shown to compare with a twin that has one."
        )
    elif result["placement"] != "before":
        tail = (
            f"Here {norm} comes after the activation, and the conv has a bias, so the conv "
            "weights are not scale-invariant and lr/‖W‖² is only a rough guide."
        )
    else:
        tail = (
            f"{norm} makes each conv filter scale-invariant, so the effective step is about "
            "lr/‖W‖²: as ‖W‖ grows, the same lr moves the weights' direction less."
        )
    if result["optimizer"] != "sgd":
        tail += " The formula is SGD's: Adam sizes its steps itself, so read it as a rough guide."
    return head + "\n\n" + "\n".join(rows) + "\n\n" + tail


WEIGHTS_ACTION = Action(
    label="Measure ‖W‖",
    fn=measure_weights,
    render=render_weights,
    help="‖W‖ of each block's conv now and at initialisation (the same seed rebuilds the initial "
    "weights), and the effective step lr/‖W‖² then and now.",
)

SCENARIO = Scenario(
    id="high-lr",
    title="Higher learning rates with BatchNorm",
    summary="Does BatchNorm let a network train at learning rates where it would otherwise fail?",
    view="Training",
    preset=dict(dataset="shapes", norm="batch", optimizer="sgd", lr=1.0, steps=300, twin="none"),
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(WEIGHTS_ACTION,),
)
