"""Scenario 'batch-coupling': in train mode an example's output depends on its batch mates,
because BatchNorm normalizes it with the batch's mean μ_B and variance σ²_B (Ioffe & Szegedy
2015, section 3). One fixed image with its batch mates drawn again and again, in train and in
eval mode; the backward pass of section 3 written out by hand and checked against autograd,
with the share of the gradient that flows through μ_B and σ²_B; ghost batch norm (Hoffer,
Hubara & Soudry 2017; Keras's virtual_batch_size) at ghost sizes 2 to 64 in batches of 64; and
an action that swaps the batch mates of one test image of the live network. The runs are in
bnviz/experiments/batch_coupling.py."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch

from ..batchnorm import BatchNorm2d as ScratchBatchNorm2d
from ..config import NORM_NAMES
from ..experiments import batch_coupling as x
from ..experiments.batch_coupling import GHOST_SIZES, fixed_image_outputs
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS
from ..record import Run
from ..trainer import to_tensor
from .base import Action, Chart, Results, Scenario
from .common import finish, num, pct
from .evidence import SEEDS, Spread, Verdict, across, by_seed, compare, final, sweep

COUPLING = "one fixed image, batch mates redrawn"
CHECK = "backward pass by hand against autograd"
WHOLE = max(GHOST_SIZES)  # ghost batch = the whole batch: ordinary BatchNorm
SMALL_GHOSTS = tuple(g for g in GHOST_SIZES if g < WHOLE)
TOLERANCE = 1e-12  # hand-written and autograd gradients agree: relative to the largest entry
NEGLIGIBLE = 0.01  # the gradient through μ_B and σ²_B counts when above 1% of the whole
LIVE_SETS = 3  # the action: sets of batch mates drawn for the fixed image
TRAIN, EVAL = NORM_COLORS["batch"], NEUTRAL


def ghost_label(g: int) -> str:
    return f"ghost batch {g} of {x.GHOST_BATCH}"


def jobs(seeds=SEEDS) -> list:
    out = sweep(COUPLING, x.coupling, seeds) + sweep(CHECK, x.backward_check, seeds)
    for g in GHOST_SIZES:
        out += sweep(ghost_label(g), x.ghost_run, seeds, ghost=g)
    return out


# ---------------------------------------------------------------- numbers per seed


def loss_sd(results: Results, mode: str) -> dict[int, float]:
    """{seed: sd of the fixed image's loss over its sets of batch mates} in one mode."""
    return across(results, COUPLING, lambda r: r[mode]["loss_sd"])


def grad_spread(results: Results, mode: str) -> dict[int, float]:
    """{seed: relative spread of the fixed image's gradient over its sets of batch mates}."""
    return across(results, COUPLING, lambda r: r[mode]["grad"]["relative"])


def agreement(results: Results) -> dict[int, float]:
    """{seed: −log10 of the largest |hand − autograd| over the largest gradient entry}."""

    def digits(r: dict) -> float:
        rel = r["largest_difference"] / r["largest_gradient"]
        return -math.log10(rel) if rel > 0 else 300.0  # bit-identical: as good as it gets

    return across(results, CHECK, digits)


def through_stats(results: Results, block: int = 0) -> dict[int, float]:
    """{seed: ‖∂ℓ/∂x − ∂ℓ/∂x with constant statistics‖ / ‖∂ℓ/∂x‖ at one block's norm}."""
    return across(results, CHECK, lambda r: r["share_through_stats"][block])


def ghost_acc(results: Results, g: int) -> dict[int, float]:
    """{seed: final test accuracy in eval mode (mean of the last evaluations)}."""
    return across(results, ghost_label(g), lambda r: final(r["acc_eval"]))


def ghost_gap(results: Results, g: int) -> dict[int, float]:
    """{seed: eval-mode − train-mode test loss, mean of the last evaluations}: how much worse
    the network does with its running estimates than with the statistics it trained with."""
    return across(
        results,
        ghost_label(g),
        lambda r: final([e - t for e, t in zip(r["loss_eval"], r["loss_train"])]),
    )


# ---------------------------------------------------------------- verdicts


def coupling_verdicts(results: Results) -> dict[str, Verdict]:
    return {
        "loss": compare(
            "coupling: loss",
            "in train mode the fixed image's loss varied more across its sets of batch mates "
            "than in eval mode (sd over the sets)",
            "in eval mode the fixed image's loss varied more across its sets of batch mates "
            "than in train mode (sd over the sets)",
            loss_sd(results, "train"),
            loss_sd(results, "eval"),
        ),
        "grad": compare(
            "coupling: gradient",
            "in train mode the fixed image's gradient varied more across its sets of batch "
            "mates than in eval mode (spread relative to its mean's norm)",
            "in eval mode the fixed image's gradient varied more across its sets of batch "
            "mates than in train mode (spread relative to its mean's norm)",
            grad_spread(results, "train"),
            grad_spread(results, "eval"),
            scale=100,
            unit="%",
        ),
    }


def check_verdicts(results: Results) -> dict[str, Verdict]:
    return {
        "agree": compare(
            "backward by hand = autograd",
            f"the hand-written backward pass agreed with autograd to better than {TOLERANCE:g} "
            "of the largest gradient entry (compared in orders of magnitude, log10)",
            f"the hand-written backward pass differed from autograd by more than {TOLERANCE:g} "
            "of the largest gradient entry (compared in orders of magnitude, log10)",
            agreement(results),
            -math.log10(TOLERANCE),
        ),
        "through": compare(
            "gradient through the batch statistics",
            f"the gradient through μ_B and σ²_B at block 1's norm was more than "
            f"{NEGLIGIBLE:.0%} of the size of the whole input gradient",
            f"the gradient through μ_B and σ²_B at block 1's norm was less than "
            f"{NEGLIGIBLE:.0%} of the size of the whole input gradient",
            through_stats(results),
            NEGLIGIBLE,
            scale=100,
            unit=" pp",
        ),
    }


def ghost_verdicts(results: Results) -> dict[int, dict[str, Verdict]]:
    whole = ghost_acc(results, WHOLE)
    whole_gap = ghost_gap(results, WHOLE)
    out = {}
    for g in SMALL_GHOSTS:
        out[g] = {
            "acc": compare(
                f"ghost {g}: accuracy",
                f"ghost batches of {g} reached a higher final test accuracy than normalizing "
                f"over the whole batch of {WHOLE}",
                f"normalizing over the whole batch of {WHOLE} reached a higher final test "
                f"accuracy than ghost batches of {g}",
                ghost_acc(results, g),
                whole,
                scale=100,
                unit=" pp",
            ),
            "gap": compare(  # the claim the figure marks: a smaller gap (whole − ghost > 0)
                f"ghost {g}: train/eval gap",
                f"ghost batches of {g} left a smaller train/eval gap (eval-mode − train-mode "
                f"test loss) than the whole batch of {WHOLE}",
                f"ghost batches of {g} left a larger train/eval gap (eval-mode − train-mode "
                f"test loss) than the whole batch of {WHOLE}",
                whole_gap,
                ghost_gap(results, g),
            ),
        }
    return out


def verdicts(results: Results) -> list[Verdict]:
    results = results or {}
    out = list(coupling_verdicts(results).values()) + list(check_verdicts(results).values())
    for per in ghost_verdicts(results).values():
        out += list(per.values())
    return out


# ---------------------------------------------------------------- figures

TITLE_COUPLING = "One fixed image's loss, batch mates redrawn"
TITLE_THROUGH = "Gradient through μ_B and σ²_B, per block"
TITLE_GHOST = "Ghost batch norm: final test accuracy"
TITLE_GAP = "Ghost batch norm: train/eval gap"
Y_COUPLING = "loss of the fixed image"
Y_THROUGH = "‖through μ_B, σ²_B‖ / ‖∂ℓ/∂x‖ (%)"
Y_GHOST = "test accuracy, eval mode (%)"
Y_GAP = "test loss, eval − train mode"
X_GHOST = "ghost batch size g (images normalized together)"


def coupling_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    runs = by_seed(results, COUPLING)
    for mode, color, symbol in (
        ("train", TRAIN, NORM_SYMBOLS["batch"]),
        ("eval", EVAL, "line-ew-open"),
    ):
        xs, ys = [], []
        for s, r in runs.items():
            xs += [f"seed {s}"] * len(r[mode]["loss"])
            ys += r[mode]["loss"]
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="markers",
            name=f"{mode} mode, one dot a set of batch mates",
            marker=dict(
                color=color,
                symbol=symbol,
                size=9 if mode == "train" else 22,
                opacity=0.7,
                line=dict(width=3 if mode == "eval" else 0),
            ),
            hovertemplate=f"{mode} mode<br>%{{x}}<br>loss %{{y:.4f}}<extra></extra>",
        )
    v = coupling_verdicts(results)["loss"]
    note = f"train mode: the dots spread; eval mode: one value, whatever the mates. {v.mark}"
    return finish(fig, TITLE_COUPLING, None, Y_COUPLING, note=note)


def through_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    runs = by_seed(results, CHECK)
    blocks = len(next(iter(runs.values()))["share_through_stats"])
    names = [f"block {b + 1}" for b in range(blocks)]
    for s, r in runs.items():
        fig.add_scatter(
            x=names,
            y=[100 * v for v in r["share_through_stats"]],
            mode="markers",
            name="one seed",
            legendgroup="seeds",
            showlegend=s == min(runs),
            marker=dict(color=TRAIN, symbol=NORM_SYMBOLS["batch"], size=9, opacity=0.6),
            hovertemplate=f"seed {s}<br>%{{x}}: %{{y:.1f}}%<extra></extra>",
        )
    spreads = [Spread.of(through_stats(results, b).values()) for b in range(blocks)]
    fig.add_scatter(
        x=names,
        y=[100 * sp.mean for sp in spreads],
        error_y=dict(type="data", array=[100 * (sp.sd if sp.n > 1 else 0) for sp in spreads]),
        mode="markers",
        name="mean ± sd over seeds",
        marker=dict(color=NEUTRAL, symbol="line-ew-open", size=22, line=dict(width=3)),
        hovertemplate="%{x}: mean %{y:.1f}%<extra></extra>",
    )
    fig.update_yaxes(rangemode="tozero")
    found = check_verdicts(results)
    largest = max(r["largest_difference"] for r in runs.values())
    note = (
        f"by hand vs autograd: largest difference {largest:.1e} (float64), "
        f"{found['agree'].mark}. Block 1 above {NEGLIGIBLE:.0%}: {found['through'].mark}"
    )
    return finish(fig, TITLE_THROUGH, None, Y_THROUGH, note=note)


def _ghost_figure(results: Results, values, title: str, y_title: str, key: str) -> go.Figure:
    fig = go.Figure()
    found = ghost_verdicts(results)
    xs, means, sds, seed_x, seed_y, seed_text = [], [], [], [], [], []
    for g in GHOST_SIZES:
        per = values(results, g)
        if not per:
            continue
        sp = Spread.of(per.values())
        xs.append(str(g))
        means.append(100 * sp.mean)
        sds.append(100 * sp.sd if sp.n > 1 else 0.0)
        for s, v in per.items():
            seed_x.append(str(g))
            seed_y.append(100 * v)
            seed_text.append(f"seed {s}")
    fig.add_scatter(
        x=seed_x,
        y=seed_y,
        mode="markers",
        name="one seed",
        marker=dict(color=TRAIN, symbol=NORM_SYMBOLS["batch"], size=9, opacity=0.5),
        text=seed_text,
        hovertemplate="g %{x}, %{text}: %{y:.1f}<extra></extra>",
    )
    fig.add_scatter(
        x=xs,
        y=means,
        error_y=dict(type="data", array=sds),
        mode="lines+markers",
        name="mean ± sd over seeds",
        line=dict(color=NEUTRAL, dash="dash"),
        marker=dict(color=NEUTRAL, symbol="diamond", size=11),
        hovertemplate="g %{x}: mean %{y:.1f}<extra></extra>",
    )
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=[str(g) for g in GHOST_SIZES]
    )
    marks = "; ".join(f"g {g} vs {WHOLE}: {found[g][key].mark}" for g in SMALL_GHOSTS)
    return finish(fig, title, X_GHOST, y_title, note=marks)


def ghost_figure(results: Results) -> go.Figure:
    return _ghost_figure(results, ghost_acc, TITLE_GHOST, Y_GHOST, "acc")


def gap_figure(results: Results) -> go.Figure:
    return _ghost_figure(results, ghost_gap, TITLE_GAP, Y_GAP, "gap")


GHOSTS = tuple(ghost_label(g) for g in GHOST_SIZES)
FIGURES = (
    Chart(TITLE_COUPLING, coupling_figure, (COUPLING,), "", Y_COUPLING),
    Chart(TITLE_THROUGH, through_figure, (CHECK,), "", Y_THROUGH),
    Chart(TITLE_GHOST, ghost_figure, GHOSTS, X_GHOST, Y_GHOST),
    Chart(TITLE_GAP, gap_figure, GHOSTS, X_GHOST, Y_GAP),
)


# ---------------------------------------------------------------- explanation

INTRO = (
    "In train mode BatchNorm normalizes each value with the batch's own mean μ_B and variance "
    "σ²_B (Ioffe & Szegedy 2015, section 3), so an example's output, its loss and its gradient "
    "depend on which other examples share its batch. In eval mode the running estimates take "
    "their place and each example is computed on its own."
)
DISTRIBUTED = (
    "**The distributed face of the same fact.** Across several GPUs each normalizes over its "
    "own images: the batch BatchNorm sees is the images per GPU, not the global batch. That is "
    "why Wu & He (2018) put BatchNorm's error against images per GPU: below a few images per "
    "GPU the statistics get noisy whatever the global batch. SyncBN (synchronized BatchNorm) "
    "gathers μ_B and σ²_B across the GPUs so that every example is normalized with the whole "
    "global batch: more batch mates, at the price of communication in every layer, forward "
    "and backward (the gradient through μ_B and σ²_B must be summed across GPUs too)."
)
GHOST_CLAIM = (
    "**Ghost batch norm** (Hoffer, Hubara & Soudry 2017; Keras's "
    "`BatchNormalization(virtual_batch_size=…)`) goes the other way: it normalizes small "
    "sub-batches of a large batch separately, on one machine, to keep the noise of small-batch "
    "statistics; Hoffer et al. found it narrowed the generalization gap of large-batch "
    "training."
)


def _first(results: Results) -> str:
    """The first sentence when the published ghost-batch finding did not reproduce."""
    found = ghost_verdicts(results)
    acc = [found[g]["acc"] for g in SMALL_GHOSTS]
    if any(v.pending for v in acc) or any(v.holds for v in acc):
        return ""
    runs = by_seed(results, ghost_label(WHOLE))
    r = next(iter(runs.values()))
    return (
        f"Not reproduced here: Hoffer et al.'s (2017) better accuracy with ghost batches; no "
        f"ghost size beat normalizing over the whole batch of {r['batch_size']} across the seeds "
        f"after {r['steps']} steps (a call other seeds can tip for the middle sizes), in a small "
        "batch and a short run, not the large-batch training their finding is about."
    )


def _coupling_lines(results: Results) -> list[str]:
    runs = by_seed(results, COUPLING)
    if not runs:
        return ["The fixed image's batch mates are being redrawn…"]
    r = next(iter(runs.values()))
    found = coupling_verdicts(results)
    train_sd = Spread.of(loss_sd(results, "train").values())
    logits = Spread.of(
        across(results, COUPLING, lambda q: q["train"]["logits"]["largest"]).values()
    )
    grad = Spread.of(grad_spread(results, "train").values())
    eval_max = max(
        max(q["eval"]["loss_range"], q["eval"]["logits"]["largest"], q["eval"]["grad"]["largest"])
        for q in runs.values()
    )
    flips = sum(len(set(q["train"]["predicted"])) > 1 for q in runs.values())
    eval_text = (
        "exactly 0: the same loss, logits and gradient, bit for bit, whatever the mates"
        if eval_max == 0
        else f"at most {num(eval_max)} (floating-point rounding, no dependence on the mates)"
    )
    return [
        f"**One image, new batch mates.** A network of widths {tuple(r['widths'])} trained "
        f"{r['warmup']} steps; the first held-out image, in a batch of {r['batch_size']} with "
        f"{r['mates']} training images as batch mates, drawn {r['mate_sets']} times; the running "
        f"estimates are not updated while measuring. In train mode the image's loss moved by "
        f"{train_sd.text()} (sd over the sets of mates; mean ± sd over {train_sd.n} seeds), "
        f"its largest logit change was {logits.text()} and its parameter gradient moved by "
        f"{grad.text(100, '%')} of its norm; its predicted class changed with the mates in "
        f"{flips} of {len(runs)} seeds. In eval mode the largest change of any of them was "
        f"{eval_text}.",
        "",
        f"- {found['loss'].text}",
        f"- {found['grad'].text}",
    ]


def _check_lines(results: Results) -> list[str]:
    runs = by_seed(results, CHECK)
    if not runs:
        return ["The backward pass by hand is being checked against autograd…"]
    r = next(iter(runs.values()))
    found = check_verdicts(results)
    largest = max(q["largest_difference"] for q in runs.values())
    blocks = len(r["share_through_stats"])
    shares = " and ".join(  # the first block and the last (every block: the figure)
        f"block {b + 1} {Spread.of(through_stats(results, b).values()).text(100, '%')}"
        for b in sorted({0, blocks - 1})
    )
    param = Spread.of(across(results, CHECK, "param_share_through_stats").values())
    sums = max(max(q["channel_sum"]) for q in runs.values())
    const = Spread.of(across(results, CHECK, lambda q: max(q["channel_sum_constants"])).values())
    return [
        "**The gradient through μ_B and σ²_B.** Section 3 of Ioffe & Szegedy gives the "
        "backward pass: ∂ℓ/∂x̂ = ∂ℓ/∂y·γ; ∂ℓ/∂σ² = Σ ∂ℓ/∂x̂·(x − μ_B)·(−½)(σ²_B + ε)^(−3/2); "
        "∂ℓ/∂μ = Σ ∂ℓ/∂x̂·(−1/√(σ²_B + ε)) + ∂ℓ/∂σ²·Σ −2(x − μ_B)/m; ∂ℓ/∂x = "
        "∂ℓ/∂x̂/√(σ²_B + ε) + ∂ℓ/∂σ²·2(x − μ_B)/m + ∂ℓ/∂μ/m. Written out by hand "
        f"(bnviz/experiments/batch_coupling.py) and run in every block of the same network, in "
        f"float64, on a batch of {r['batch_size']}: the largest difference from autograd over "
        f"every parameter and every norm input, in {len(runs)} seeds, was {largest:.1e}. The "
        "first term alone is what the gradient would be if μ_B and σ²_B were constants; the "
        "other two are the gradient through them, where each example's gradient picks up every "
        f"batch mate's. Its size, over the whole input gradient: {shares} (mean ± sd over "
        f"seeds). Treating the statistics as constants changes the parameter gradient of the whole "
        f"network by {param.text(100, '%')} of its norm: not a small correction. "
        f"Through the statistics, each channel's input gradient sums to 0 over the batch (at "
        f"most {sums:.1e} of its absolute sum here: shifting a whole channel changes nothing "
        f"after normalization); with them as constants it does not ({const.text(100, '%')}).",
        "",
        f"- {found['agree'].text}",
        f"- {found['through'].text}",
    ]


def _ghost_lines(results: Results) -> list[str]:
    runs = {g: by_seed(results, ghost_label(g)) for g in GHOST_SIZES}
    if not any(runs.values()):
        return [GHOST_CLAIM, "", "The ghost-batch runs are being measured…"]
    r = next(iter(next(v for v in runs.values() if v).values()))
    rows = []
    for g in GHOST_SIZES:
        if not runs[g]:
            rows.append(f"- g = {g}: being measured…")
            continue
        acc = Spread.of(ghost_acc(results, g).values()).text(100, "%")
        gap = Spread.of(ghost_gap(results, g).values()).text()
        rows.append(f"- g = {g}: test accuracy {acc}, train/eval gap {gap} ({len(runs[g])} seeds)")
    setup = (
        f"Measured here: batches of {r['batch_size']} split into ghost batches of g images, "
        f"each normalized with its own μ and σ² (a module that replaces every block's BatchNorm; "
        f"g = {WHOLE} is ordinary BatchNorm); the running estimates average the ghost batches' "
        f"statistics, as Keras does. Widths {tuple(r['widths'])}, SGD at lr {r['lr']:g}, "
        f"{r['steps']} steps; final numbers are means of the evaluations at steps "
        f"{', '.join(map(str, r['eval_steps']))} on held-out images; the train/eval gap is "
        "the test loss in eval mode (running estimates) minus the test loss in train mode (ghost "
        "statistics, test batches of the same size): positive when the running estimates do "
        "worse than the statistics the network trained with. Mean ± sd over seeds:"
    )
    found = ghost_verdicts(results)
    verdict_lines = [f"- {found[g][k].text}" for g in SMALL_GHOSTS for k in ("acc", "gap")]
    first, middle, last = SMALL_GHOSTS[0], SMALL_GHOSTS[1], SMALL_GHOSTS[-1]
    fragile = (
        f"The calls nearest the whole batch are fragile. In another five seeds (`python -m bnviz "
        f"replicate`) the gap verdicts at ghost sizes {first} to {SMALL_GHOSTS[-2]} and the "
        f"accuracy verdict at {first} came out the same; the gap at {last} did not (no "
        f"difference either way there), and the accuracy differences of a few points among "
        f"ghost sizes {middle} to {last} and the whole batch stayed not distinguishable. With "
        "small ghost batches the eval-mode loss came out below the train-mode loss; a likely "
        "reason: each small ghost batch's own statistics are noisy, and the running estimates "
        "average that noise away."
    )
    return [
        GHOST_CLAIM,
        "",
        setup,
        "",
        *rows,
        "",
        "Verdicts, seed by seed:",
        "",
        *verdict_lines,
        "",
        fragile,
    ]


def _live(run: Run | None) -> str:
    if run is None:
        return ""
    norm = NORM_NAMES.get(run.config.norm, run.config.norm)
    return (
        f"Press **Swap batch mates** to draw {LIVE_SETS} new batches of mates for one test image "
        f"of the main network ({norm}, batch {run.config.batch_size}) and see its loss and "
        "prediction in train and in eval mode."
    )


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    first = _first(results)
    lines = ([first, ""] if first else []) + [INTRO, ""]
    lines += _coupling_lines(results) + [""] + _check_lines(results) + [""]
    lines += _ghost_lines(results) + ["", DISTRIBUTED]
    live = _live(run)
    if live:
        lines += ["", live]
    return "\n".join(lines)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    v = coupling_verdicts(results or {})["loss"]
    if v.pending:
        return "Measuring how one image's loss depends on its batch mates…"
    if v.holds:
        sd = Spread.of(loss_sd(results, "train").values()).text()
        still = all(value == 0 for value in loss_sd(results, "eval").values())
        return (
            f"In train mode one image's loss moved by **{sd}** with its batch mates "
            f"({v.agree} of {v.seeds} seeds). In eval mode it "
            + ("did not move." if still else "moved less.")
        )
    return "One image's loss did not measurably depend on its batch mates here."


# ---------------------------------------------------------------- the action


def swap_batch_mates(trainer, sets: int = LIVE_SETS) -> dict:
    """The first held-out image of the live network with `sets` sets of batch mates drawn at
    random from the training set (a batch of the run's batch size): its loss, predicted class
    and the probability of its true class, in train mode (batch statistics, the running
    estimates left untouched) and in eval mode. The network is not changed."""
    model = x._frozen_stats(trainer.model)  # a copy: nothing of the live network moves
    for m in model.modules():  # the from-scratch BatchNorm too: its running estimates stay put
        if isinstance(m, ScratchBatchNorm2d):
            m.momentum = 0.0
    data = trainer.data
    image, label = trainer.eval_x[0], trainer.eval_y[0]
    size = trainer.batch_size
    rng = np.random.default_rng()
    rows = []
    for k in range(sets):
        idx = rng.choice(len(data.y_train), max(size - 1, 0), replace=False)
        mates = to_tensor(data, data.x_train[idx])
        row = {"set": k + 1}
        for mode in ("train", "eval"):
            model.train(mode == "train")
            try:
                loss, logits, _ = fixed_image_outputs(model, image, label, mates)
            except ValueError as e:  # one value per channel: batch statistics undefined
                row[mode] = {"error": str(e)[:120]}
                continue
            probs = torch.softmax(logits, 0)
            row[mode] = {
                "loss": loss,
                "predicted": int(logits.argmax()),
                "p_true": float(probs[int(label)]),
            }
        rows.append(row)
    return {
        "step": int(trainer.steps_done),
        "norm": trainer.config.norm,
        "batch_size": size,
        "label": int(label),
        "classes": list(data.classes),
        "rows": rows,
    }


def _cell(entry: dict, classes: list) -> str:
    if "error" in entry:
        return "n/a | n/a | n/a"
    name = classes[entry["predicted"]] if entry["predicted"] < len(classes) else entry["predicted"]
    return f"{num(entry['loss'], 4)} | {name} | {pct(entry['p_true'])}"


def render_swap(result: dict) -> str:
    classes, rows = result["classes"], result["rows"]
    true = classes[result["label"]] if result["label"] < len(classes) else result["label"]
    head = (
        f"At step {result['step']}, test image 1 (true class: {true}) in a batch of "
        f"{result['batch_size']} with {result['batch_size'] - 1} random training images as "
        "batch mates, drawn anew each row:"
    )
    table = [
        "| mates | train: loss | train: predicted | train: p(true) | eval: loss | "
        "eval: predicted | eval: p(true) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| set {row['set']} | {_cell(row['train'], classes)} | {_cell(row['eval'], classes)} |"
        )
    train = [r["train"]["loss"] for r in rows if "loss" in r["train"]]
    evals = [r["eval"]["loss"] for r in rows if "loss" in r["eval"]]
    norm = NORM_NAMES.get(result["norm"], result["norm"])
    if result["norm"] != "batch":
        tail = (
            f"The main network uses {norm}, which normalizes each image on its own: train and "
            "eval mode agree and the batch mates change nothing."
        )
    elif any("error" in r["train"] for r in rows):
        tail = (
            rows[0]["train"].get("error", "")
            + " (train mode needs more than one value per channel)."
        )
    else:
        spread = max(train) - min(train) if train else math.nan
        same = len(set(evals)) == 1
        tail = (
            f"In train mode the loss moved by {num(spread, 3)} between the sets of mates; in "
            "eval mode it was "
            + ("the same every time." if same else f"within {num(max(evals) - min(evals), 3)}.")
        )
    return head + "\n\n" + "\n".join(table) + "\n\n" + tail


SWAP_ACTION = Action(
    label="Swap batch mates",
    fn=swap_batch_mates,
    render=render_swap,
    help=f"One test image with {LIVE_SETS} random sets of batch mates: its loss and prediction "
    "in train mode (batch statistics) and in eval mode (running estimates). The network is not "
    "changed.",
)

SCENARIO = Scenario(
    id="batch-coupling",
    title="Batch mates: an example's output depends on its batch",
    summary="Does one image's output, loss and gradient change when the other images of its "
    "batch change?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "batch_size": 16, "twin": "off"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(SWAP_ACTION,),
)
