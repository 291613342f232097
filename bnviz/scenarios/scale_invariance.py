"""Scenario 'scale-invariance': why BatchNorm lets the weights' scale go. BN(cWx) = BN(Wx), so
the loss does not depend on the length of a conv weight that feeds BN; its gradient is
orthogonal to W and shrinks as 1/c; plain SGD then lengthens W, and the effective step lr/‖W‖²
falls; weight decay holds ‖W‖ back, which keeps that step larger (van Laarhoven 2017; Zhang et
al. 2019). Measured over seeds with and without weight decay, with a check at initialisation,
and live with an action on the app's network. The runs are in
bnviz/experiments/scale_invariance.py; the ‖W‖ helper and the 'Measure ‖W‖' action are
high-lr's."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from ..config import NORM_NAMES
from ..datasets import Dataset
from ..experiments.scale_invariance import (
    EVAL_EVERY,
    LR,
    WEIGHT_DECAYS,
    WIDTHS,
    init_check,
    scale_check,
    wd_run,
)
from ..plot import HEAD_SYMBOL, NEUTRAL, STEP_AXIS, layer_color, layer_symbol, line_markers, rgba
from ..record import Run
from ..trainer import to_tensor
from .base import Action, Chart, Results, Scenario
from .common import finish, lr_text, num, pct, subplots
from .evidence import SEEDS, Spread, Verdict, across, band, by_seed, compare, final, sweep
from .high_lr import WEIGHTS_ACTION

WD = WEIGHT_DECAYS[-1]
BLOCKS = len(WIDTHS)
COLORS = {0.0: layer_color(1), WD: layer_color(0)}
SYMBOLS = {0.0: "square", WD: "circle"}
DASHES = {0.0: "dash", WD: "solid"}
LABEL_CHECK = "scale check at init"
TITLE_NORM = "Conv weight norm ‖W‖, with and without wd"
TITLE_STEP = "Effective step lr/‖W‖², with and without wd"
TITLE_COS = "cos(W, ∇W) during training"
TITLE_CHECK = "Scaling one layer's weights by c, at init"
Y_NORM = "‖W‖ of the block's conv"
Y_STEP = "lr / ‖W‖²"
Y_COS = "|cos(W, ∇W)|"
X_CHECK = "scale factor c (log scale)"
Y_CHECK = "change (log scale)"


def wd_text(wd: float) -> str:
    return f"weight decay {wd:g}" if wd else "no weight decay"


def label_run(wd: float) -> str:
    return f"SGD, {wd_text(wd)}"


# ---------------------------------------------------------------- jobs


def jobs(seeds=SEEDS):
    """Seed by seed: the run without and with weight decay (same initial weights and batches),
    and the scale check at initialisation."""
    out = []
    for seed in seeds:
        for wd in WEIGHT_DECAYS:
            out += sweep(label_run(wd), wd_run, (seed,), weight_decay=wd)
        out += sweep(LABEL_CHECK, init_check, (seed,))
    return out


# ---------------------------------------------------------------- reading results


def end_norm(r: dict, block: int) -> float:
    return r["weight_norm"][-1][block]


def effective_steps(r: dict, block: int) -> list[float]:
    """lr/‖W‖² of one block's conv at each evaluation."""
    return [r["lr"] / w[block] ** 2 for w in r["weight_norm"]]


def min_growth(r: dict) -> float:
    """The smallest ‖W‖ growth over the blocks (end over initialisation), minus 1, in %."""
    return 100 * (min(w / w0 for w, w0 in zip(r["weight_norm"][-1], r["weight_norm"][0])) - 1)


def conv_cos(r: dict) -> float:
    """The largest |cos(W, ∇W)| of any block's conv at any measured step."""
    return max(abs(c) for row in r["cos"] for c in row[:-1])


def head_cos(r: dict) -> float:
    """The head weight's |cos(W, ∇W)|, mean over the measured steps."""
    return float(np.mean([abs(row[-1]) for row in r["cos"]]))


def _rows(r: dict, layer: str) -> list[dict]:
    return [row for row in r["rows"] if row["layer"] == layer]


def check_conv_diff(r: dict) -> float:
    """The largest logit change when block 1's conv weights were scaled, over every c."""
    return max(row["max_diff"] for row in _rows(r, "conv"))


def check_head_diff(r: dict) -> float:
    """The smallest logit change when the head's weights were scaled, over every c."""
    return min(row["max_diff"] for row in _rows(r, "head"))


def _runs(results: Results, wd: float) -> list[dict]:
    return list(by_seed(results, label_run(wd)).values())


# ---------------------------------------------------------------- verdicts


def verdicts(results: Results) -> list[Verdict]:
    none, decay = label_run(0.0), label_run(WD)
    with_wd = f"with weight decay {WD:g}"
    out = [
        compare(
            "invariant",
            "scaling the head's weights changed the logits more than scaling block 1's conv "
            "weights did, at every c",
            "scaling block 1's conv weights changed the logits more than scaling the head's did",
            across(results, LABEL_CHECK, check_head_diff),
            across(results, LABEL_CHECK, check_conv_diff),
        ),
        compare(
            "orthogonal",
            "the head's gradient was further from orthogonal to its weights than any conv's",
            "some conv's gradient was further from orthogonal to its weights than the head's",
            across(results, none, head_cos),
            across(results, none, conv_cos),
        ),
        compare(
            "grows",
            "without weight decay every block's ‖W‖ ended larger than at initialisation",
            "without weight decay some block's ‖W‖ ended smaller than at initialisation",
            across(results, none, min_growth),
            0.0,
            unit="% for the block that grew least",
        ),
    ]
    for b in range(BLOCKS):
        n0 = across(results, none, lambda r, b=b: end_norm(r, b))
        n1 = across(results, decay, lambda r, b=b: end_norm(r, b))
        shrink = {s: 100 * (1 - n1[s] / n0[s]) for s in sorted(set(n0) & set(n1))}
        out.append(
            compare(
                f"smaller-{b + 1}",
                f"block {b + 1}'s ‖W‖ ended smaller {with_wd} than without",
                f"block {b + 1}'s ‖W‖ ended larger {with_wd} than without",
                shrink,
                0.0,
                unit="% smaller",
            )
        )
    for b in range(BLOCKS):
        e0 = across(results, none, lambda r, b=b: effective_steps(r, b)[-1])
        e1 = across(results, decay, lambda r, b=b: effective_steps(r, b)[-1])
        gain = {s: 100 * (e1[s] / e0[s] - 1) for s in sorted(set(e0) & set(e1))}
        out.append(
            compare(
                f"step-{b + 1}",
                f"block {b + 1}'s effective step lr/‖W‖² ended larger {with_wd} than without",
                f"block {b + 1}'s effective step lr/‖W‖² ended smaller {with_wd} than without",
                gain,
                0.0,
                unit="% larger",
            )
        )
    out.append(
        compare(
            "accuracy",
            f"the final test accuracy was higher {with_wd} than without",
            f"the final test accuracy was lower {with_wd} than without",
            across(results, decay, lambda r: final(r["acc"])),
            across(results, none, lambda r: final(r["acc"])),
            scale=100,
            unit=" pp",
        )
    )
    return out


def _by_key(results: Results) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures


def _band(fig, x, rows, color, name, symbol, dash, *, log=False, row=None, col=None, legend=True):
    """Mean ± sd over seeds (in log10 when `log`: a geometric mean) as a band and a line."""
    arr = np.asarray(rows, dtype=np.float64)
    if log:
        arr = np.log10(np.where(arr > 0, arr, np.nan))
    mean, low, high = band(arr)
    if log:
        mean, low, high = (10**v for v in (mean, low, high))
    where = dict(row=row, col=col) if row else {}
    edge = dict(mode="lines", line=dict(width=0, color=color), hoverinfo="skip", showlegend=False)
    fig.add_trace(go.Scatter(x=list(x), y=low, legendgroup=name, **edge), **where)
    fig.add_trace(
        go.Scatter(
            x=list(x),
            y=high,
            fill="tonexty",
            fillcolor=rgba(color, 0.18),
            legendgroup=name,
            **edge,
        ),
        **where,
    )
    fig.add_trace(
        go.Scatter(
            x=list(x),
            y=mean,
            name=name,
            legendgroup=name,
            showlegend=legend,
            mode="lines+markers",
            line=dict(color=color, dash=dash, width=2.5),
            marker=line_markers(symbol, color),
            hovertemplate="step %{x}: %{y:.3g}<extra>" + name + "</extra>",
        ),
        **where,
    )


def _per_block(results: Results, title, y_title, value, log, key, marks) -> go.Figure:
    fig = subplots([f"block {b + 1}" for b in range(BLOCKS)], rows=1, cols=BLOCKS)
    for wd in WEIGHT_DECAYS:
        runs = _runs(results, wd)
        if not runs:
            continue
        runs = [r for r in runs if r["eval_steps"] == runs[0]["eval_steps"]]
        name = f"{wd_text(wd)}, mean of {len(runs)} seeds"
        for b in range(BLOCKS):
            _band(
                fig,
                runs[0]["eval_steps"],
                [value(r, b) for r in runs],
                COLORS[wd],
                name,
                SYMBOLS[wd],
                DASHES[wd],
                log=log,
                row=1,
                col=b + 1,
                legend=b == 0,
            )
    found = _by_key(results)
    note = (
        f"SGD (momentum 0.9), lr {lr_text(LR)}, weight decay 0 or {WD:g}, every {EVAL_EVERY} "
        f"steps; band: ± sd over seeds. {marks}? "
        + "; ".join(f"block {b + 1}: {found[f'{key}-{b + 1}'].mark}" for b in range(BLOCKS))
    )
    fig = finish(fig, title, y_title=y_title + (" (log scale)" if log else ""), note=note)
    fig.update_layout(legend_traceorder="normal")
    return fig.update_yaxes(type="log") if log else fig


def norm_figure(results: Results) -> go.Figure:
    return _per_block(
        results,
        TITLE_NORM,
        Y_NORM,
        lambda r, b: [w[b] for w in r["weight_norm"]],
        False,
        "smaller",
        "Smaller with weight decay",
    )


def step_figure(results: Results) -> go.Figure:
    return _per_block(
        results,
        TITLE_STEP,
        Y_STEP,
        effective_steps,
        True,
        "step",
        "Larger with weight decay",
    )


def cos_figure(results: Results) -> go.Figure:
    """|cos(W, ∇W)| of each conv and of the head at each measured step, runs without weight
    decay: one dot per seed, a line through the geometric mean."""
    fig = go.Figure()
    runs = _runs(results, 0.0)
    if runs:
        steps = runs[0]["cos_steps"]
        runs = [r for r in runs if r["cos_steps"] == steps]
        layers = len(runs[0]["cos"][0])
        for i in range(layers):
            head = i == layers - 1
            name = "head (not scale-invariant)" if head else f"block {i + 1}'s conv"
            color = NEUTRAL if head else layer_color(i)
            symbol = HEAD_SYMBOL if head else layer_symbol(i)
            values = np.abs([[row[i] for row in r["cos"]] for r in runs])
            floor = np.where(values > 0, values, np.nan)
            mean = 10 ** np.nanmean(np.log10(floor), axis=0)
            fig.add_scatter(
                x=[s for _ in runs for s in steps],
                y=floor.ravel(),
                mode="markers",
                legendgroup=name,
                showlegend=False,
                marker=dict(color=color, symbol=symbol, size=5, opacity=0.45),
                hovertemplate="step %{x}: |cos| %{y:.2g} (one seed)<extra>" + name + "</extra>",
            )
            fig.add_scatter(
                x=steps,
                y=mean,
                name=name,
                legendgroup=name,
                mode="lines+markers",
                line=dict(color=color, width=2.5, dash="dot" if head else "solid"),
                marker=line_markers(symbol, color),
                hovertemplate="step %{x}: |cos| %{y:.2g} (geometric mean)<extra>"
                + name
                + "</extra>",
            )
    note = (
        f"no weight decay; dots: seeds, line: geometric mean. Head further from orthogonal than "
        f"every conv: {_by_key(results)['orthogonal'].mark}"
    )
    fig = finish(fig, TITLE_COS, y_title=Y_COS + " (log scale)", note=note)
    return fig.update_yaxes(type="log")


def check_figure(results: Results) -> go.Figure:
    """Per c: the largest logit change and ‖∇W‖ after/before, block 1's conv and the head, one
    dot per seed; 1/c for reference."""
    fig = subplots(("largest logit change", "‖∇W‖ after / before"), rows=1, cols=2)
    checks = list(by_seed(results, LABEL_CHECK).values())
    for layer, name, color, symbol in (
        ("conv", "block 1's conv", layer_color(0), layer_symbol(0)),
        ("head", "head", NEUTRAL, HEAD_SYMBOL),
    ):
        for col, key in ((1, "max_diff"), (2, "grad_ratio")):
            xs = [row["c"] for r in checks for row in _rows(r, layer)]
            ys = [row[key] for r in checks for row in _rows(r, layer)]
            fig.add_scatter(
                x=xs,
                y=[y if y > 0 else np.nan for y in ys],
                mode="markers",
                name=f"{name}, one dot a seed",
                legendgroup=layer,
                showlegend=col == 1,
                marker=dict(color=color, symbol=symbol, size=9, opacity=0.7),
                hovertemplate="c %{x:g}: %{y:.3g}<extra>" + name + "</extra>",
                row=1,
                col=col,
            )
    if checks:
        cs = sorted({row["c"] for row in _rows(checks[0], "conv")})
        fig.add_scatter(
            x=cs,
            y=[1 / c for c in cs],
            mode="lines",
            name="1/c",
            line=dict(color=NEUTRAL, dash="dot"),
            hoverinfo="skip",
            row=1,
            col=2,
        )
    note = (
        f"train mode, the run's first batch, {len(checks)} seeds. Head changed the logits more: "
        f"{_by_key(results)['invariant'].mark}"
    )
    fig = finish(fig, TITLE_CHECK, X_CHECK, Y_CHECK, note=note, panel_titles=True)
    return fig.update_xaxes(type="log").update_yaxes(type="log")


_RUN_LABELS = tuple(label_run(wd) + "," for wd in WEIGHT_DECAYS)
FIGURES = (
    Chart(TITLE_CHECK, check_figure, (LABEL_CHECK,), X_CHECK, Y_CHECK),
    Chart(TITLE_COS, cos_figure, (label_run(0.0) + ",",), STEP_AXIS, Y_COS),
    Chart(TITLE_NORM, norm_figure, _RUN_LABELS, STEP_AXIS, Y_NORM),
    Chart(TITLE_STEP, step_figure, _RUN_LABELS, STEP_AXIS, Y_STEP),
)


# ---------------------------------------------------------------- explanation

INTRO = (
    "**Scale invariance.** A conv whose output feeds BatchNorm can be multiplied by any c > 0 "
    "without changing what the network computes: BN(cWx) = BN(Wx), since the batch mean and "
    "standard deviation scale by c too (exactly, but for ε). So the loss does not depend on "
    "‖W‖, only on W's direction; its gradient is orthogonal to W (no component along W changes "
    "the loss), and it shrinks as 1/c: ∇L(cW) = ∇L(W)/c. A plain SGD step at right angles to W "
    "can only lengthen it (with momentum, nearly so), and a longer W turns less for the same "
    "step: the effective learning rate is about lr/‖W‖², which falls as training lengthens W. "
    "Weight decay shortens W at every step: with BN it does not regularize the function (the "
    "output does not care about ‖W‖), it keeps the effective learning rate up (van Laarhoven "
    "2017, *L2 regularization versus batch and weight normalization*; Zhang et al. 2019, *Three "
    "mechanisms of weight decay regularization*)."
)
LIMITS = (
    "**Where it does not hold:** without a norm after the conv (scaling W scales the output); "
    "with the norm after the activation (the conv then has a bias and the activation sits "
    "between W and the norm); and for the layers no norm follows: the linear head, and BN's own "
    "γ and β, which set the scale after normalizing. In eval mode, the running statistics were "
    "collected with the old W: scaling W without rescaling them changes the output."
)
PUBLISHED = {
    "smaller": "weight decay keeps ‖W‖ smaller",
    "step": "weight decay keeps the effective step lr/‖W‖² larger",
}


def _not_reproduced(found: dict[str, Verdict]) -> str:
    """The first sentence when a published finding did not hold in every block, else ''."""
    failed = []
    for key, what in PUBLISHED.items():
        vs = [found[f"{key}-{b + 1}"] for b in range(BLOCKS)]
        if any(v.pending for v in vs):
            continue
        missed = [str(b + 1) for b, v in enumerate(vs) if v.holds is not True]
        if missed:
            blocks = "block" + ("s " if len(missed) > 1 else " ") + ", ".join(missed)
            failed.append(f"that {what} (not across the seeds in {blocks})")
    if not failed:
        return ""
    return (
        "Not reproduced here, at this scale, in every block: van Laarhoven's (2017) finding "
        + "; and ".join(failed)
        + "."
    )


def _spread(values) -> str:
    return Spread.of(values).text()


def _explain_check(results: Results, found) -> str:
    checks = list(by_seed(results, LABEL_CHECK).values())
    if not checks:
        return "The scale check at initialisation is being measured."
    ratio = Spread.of(row["grad_ratio"] * row["c"] for r in checks for row in _rows(r, "conv"))
    conv = max(check_conv_diff(r) for r in checks)
    head = min(check_head_diff(r) for r in checks)
    first = checks[0]
    text = (
        f"**At initialisation** (widths {'-'.join(map(str, first['widths']))}, train mode, the "
        f"run's first batch of {first['batch_size']}, {len(checks)} seeds): scaling block 1's conv "
        f"weights by c changed no logit by more than {num(conv, 2)}, while scaling the head's "
        f"changed them by at least {num(head, 2)}. "
        + found["invariant"].text
        + " The gradient of the scaled conv weights, ‖∇W‖ after over before, times c (1 if the "
        f"gradient shrinks as 1/c), was {ratio.text()} over every c and seed."
    )
    return text


def _explain_runs(results: Results, found) -> str:
    r0, r1 = _runs(results, 0.0), _runs(results, WD)
    if not r0:
        return "The training runs are being measured."
    first = r0[0]
    setup = (
        f"**Training** (BatchNorm before ReLU, widths {'-'.join(map(str, first['widths']))}, "
        f"batch {first['batch_size']}, SGD with momentum 0.9 at lr {lr_text(first['lr'])}, "
        f"{first['steps']} steps; weight decay {WD:g} as L2 on every parameter, the same "
        "initial weights and batches; mean ± sd over seeds). "
    )
    cosh = Spread.of(head_cos(r) for r in r0)
    parts = [
        "Without weight decay, |cos(W, ∇W)| of the convs was at most "
        f"{num(max(conv_cos(r) for r in r0), 2)} (the largest over every conv, measured step "
        f"and seed), against {cosh.text()} for the head (mean over the measured steps). "
        + found["orthogonal"].text
        + " "
        + found["grows"].text,
    ]
    block = (
        f"Block 1's ‖W‖ went from {_spread(r['weight_norm'][0][0] for r in r0)} at "
        f"initialisation to {_spread(end_norm(r, 0) for r in r0)} after {first['steps']} steps "
        "without weight decay"
    )
    if r1:
        block += f", {_spread(end_norm(r, 0) for r in r1)} with"
    block += (
        f"; its effective step lr/‖W‖² from {_spread(effective_steps(r, 0)[0] for r in r0)} to "
        f"{_spread(effective_steps(r, 0)[-1] for r in r0)} without"
    )
    if r1:
        block += f", {_spread(effective_steps(r, 0)[-1] for r in r1)} with"
    parts.append(block + " (every block: the figures).")
    parts += [found[f"smaller-{b + 1}"].text for b in range(BLOCKS)]
    parts += [found[f"step-{b + 1}"].text for b in range(BLOCKS)]
    if r1:
        acc0 = Spread.of(final(r["acc"]) for r in r0).text(100, "%")
        acc1 = Spread.of(final(r["acc"]) for r in r1).text(100, "%")
        parts.append(
            f"Final test accuracy (eval mode, the mean of the last evaluations): {acc0} without "
            f"weight decay, {acc1} with. " + found["accuracy"].text
        )
        acc = found["accuracy"]
        if acc.holds is None and not acc.pending:
            parts.append(
                "At this scale weight decay's effect on accuracy is not measurable; what it "
                "changes measurably is the size of the steps."
            )
        elif not acc.pending:
            parts.append(
                "Weight decay also acts on γ, β and the head, which are not scale-invariant, so "
                "this accuracy difference is not the effective step's alone."
            )
    return setup + " ".join(parts)


def _explain_live(run: Run | None) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return (
            "**Live:** press **Scale one conv by c** to check BN(cWx) = BN(Wx) on the app's own "
            "network, and **Measure ‖W‖** for its weight norms."
        )
    name = NORM_NAMES.get(run.config.norm, run.config.norm)
    return (
        f"**Live run** ({name}, placement {run.config.placement}, lr "
        f"{lr_text(run.setting_at('lr'))}), {run.num_steps} steps so far, "
        f"{pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}. Press "
        "**Scale one conv by c** to multiply block 1's conv weights by c on a copy of this "
        "network and compare its output and gradient, and **Measure ‖W‖** for its weight norms "
        "against initialisation."
    )


def _topic(key: str) -> str:
    """What a verdict is about, in a few words ('smaller-1': "block 1's ‖W‖")."""
    kind, _, block = key.partition("-")
    return {
        "invariant": "the logit changes",
        "orthogonal": "the cosines",
        "grows": "the growth of ‖W‖",
        "smaller": f"block {block}'s ‖W‖",
        "step": f"block {block}'s effective step",
        "accuracy": "the final accuracy",
    }[kind]


def _fragile(found: dict[str, Verdict]) -> str:
    """A sentence naming the verdicts whose seeds did not all agree, else ''."""
    split = [_topic(v.key) for v in found.values() if not v.pending and v.agree and v.against]
    if not split:
        return ""
    topics = ", ".join(split[:-1]) + " and " + split[-1] if len(split) > 1 else split[0]
    return (
        f"Fragile at this scale: the seeds did not all agree on {topics}, so other seeds may "
        "read differently there."
    )


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    found = _by_key(results)
    first = _not_reproduced(found)
    lines = ([first] if first else []) + [INTRO]
    lines += [_explain_check(results, found), _explain_runs(results, found)]
    fragile = _fragile(found)
    lines += ([fragile] if fragile else []) + [LIMITS]
    lines.append(_explain_live(run))
    return "\n\n".join(lines)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """The blocks where weight decay kept ‖W‖ smaller and the effective step larger."""
    found = _by_key(results or {})
    pairs = [(found[f"smaller-{b + 1}"], found[f"step-{b + 1}"]) for b in range(BLOCKS)]
    if any(v.pending for pair in pairs for v in pair) or found["grows"].pending:
        return "Measuring ‖W‖ and the effective step with and without weight decay…"
    grew = "grew every conv's ‖W‖" if found["grows"].holds else "did not grow every ‖W‖"
    held = [b for b, (n, e) in enumerate(pairs) if n.holds and e.holds]
    if not held:
        return (
            f"With BN, plain SGD {grew}. Weight decay did not keep any block's ‖W‖ measurably "
            "smaller across the seeds."
        )
    which = "every block" if len(held) == BLOCKS else "block" + ("s " if len(held) > 1 else " ")
    if len(held) < BLOCKS:
        which += " and ".join(str(b + 1) for b in held)
    agree = min(v.agree for b in held for v in pairs[b])
    seeds = pairs[held[0]][0].seeds
    count = f"{agree} of {seeds} seeds" + (" each" if agree == seeds else " or more")
    return (
        f"With BN, plain SGD {grew}. Weight decay kept it smaller in {which} ({count}), so the "
        "effective step lr/‖W‖² stayed larger."
    )


# ---------------------------------------------------------------- the action


def _probe_batch(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training images, at the batch size in force but at least two (train mode needs
    two values per channel in an MLP): the run's own batch order (its next batches) is left
    untouched."""
    data: Dataset = trainer.data
    n = min(max(trainer.batch_size, 2), len(data.y_train))
    return to_tensor(data, data.x_train[:n]), torch.from_numpy(data.y_train[:n].copy())


def scale_live(trainer) -> dict:
    """scale_check on a copy of the live main network: block 1's conv and the head scaled by
    each c, on the first training images in train mode (batch statistics)."""
    x, y = _probe_batch(trainer)
    with trainer.unrecorded():
        check = scale_check(trainer.model, x, y)
    return {
        "step": int(trainer.steps_done),
        "norm": trainer.config.norm,
        "placement": trainer.config.placement,
        "images": len(y),
        **check,
    }


def render_scale(result: dict) -> str:
    rows = [
        "| layer scaled | c | largest logit change | ‖∇W‖ after / before | 1/c (if invariant) |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        layer = "block 1's conv" if row["layer"] == "conv" else "head"
        rows.append(
            f"| {layer} | {row['c']:g} | {num(row['max_diff'], 2)} | {num(row['grad_ratio'], 4)} | "
            f"{num(1 / row['c'])} |"
        )
    conv = [row for row in result["rows"] if row["layer"] == "conv"]
    largest = max(row["max_diff"] for row in conv)
    deviation = max(abs(row["grad_ratio"] * row["c"] - 1) for row in conv)
    scale = conv[0]["logit_scale"]
    head = (
        f"At step {result['step']}, on a copy of the network, train mode, {result['images']} "
        f"training images: the largest logit was {num(scale)} in size; cos(W, ∇W) of block 1's "
        f"conv was {num(result['cos'], 2)}."
    )
    norm = NORM_NAMES.get(result["norm"], result["norm"])
    if result["norm"] != "none" and result["placement"] == "before":
        tail = (
            f"{norm} follows block 1's conv, so scaling its weights changed no logit by more than "
            f"{num(largest, 2)} (rounding and ε), and ‖∇W‖ times c stayed within "
            f"{num(100 * deviation, 2)}% of 1: the gradient shrank as 1/c. The head is not "
            "followed by a norm: scaling it changes the output."
        )
    elif result["norm"] == "none":
        tail = (
            "Without a norm, scaling block 1's conv changed the logits by up to "
            f"{num(largest, 2)}: nothing divides the scale back out, so the weights are not "
            "scale-invariant here."
        )
    else:
        tail = (
            f"Here {norm} comes after the activation and the conv has a bias, so scaling its "
            f"weights changed the logits by up to {num(largest, 2)}: not scale-invariant."
        )
    return head + "\n\n" + "\n".join(rows) + "\n\n" + tail


SCALE_ACTION = Action(
    label="Scale one conv by c",
    fn=scale_live,
    render=render_scale,
    help="On a copy of the network: multiply block 1's conv weights (and, for contrast, the "
    "head's) by c and compare the output and that layer's gradient with the unscaled copy.",
)

SCENARIO = Scenario(
    id="scale-invariance",
    title="Scale invariance: why BN lets the weights' scale go",
    summary="If BatchNorm divides out a conv's scale, what happens to ‖W‖, its gradient and "
    "the effective learning rate, with and without weight decay?",
    view="Training",
    preset=dict(
        dataset="shapes",
        norm="batch",
        placement="before",
        optimizer="sgd",
        lr=0.1,
        steps=300,
        twin="off",
    ),
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(SCALE_ACTION, WEIGHTS_ACTION),
)
