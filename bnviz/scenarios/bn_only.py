"""Scenario 'bn-only': training BatchNorm and only BatchNorm (Frankle, Schwab & Morcos 2021).
Every conv and linear weight and bias stays at its random initial value and only BN's gamma and
beta learn; compared with training the same number of randomly chosen conv/linear weights
instead, with training everything, and with chance. Same network, initial weights, batches and
optimizer for every variant."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from .. import optim
from ..config import TrainConfig
from ..experiments.common import clean
from ..plot import NEUTRAL, NORM_COLORS
from ..record import Run
from ..trainer import Trainer
from .base import Results, Scenario, job
from .common import finish, finite_mean, mean_rows, note, pct

VARIANTS = ("bn_only", "random", "full")
LABELS = {
    "bn_only": "only γ and β",
    "random": "as many random weights",
    "full": "all parameters",
}
COLORS = {"bn_only": NORM_COLORS["batch"], "random": NORM_COLORS["none"], "full": NEUTRAL}
DASHES = {"bn_only": "solid", "random": "dash", "full": "dot"}
SEEDS = (0, 1)
WIDTHS = (8, 16, 32, 64, 128)  # depth 5, width 8 in the sidebar's terms: 248 channels
BATCH_SIZE = 32
LR = 0.05  # Adam, for every variant
STEPS = 200
EVAL_EVERY = 50
SMALL_GAMMA = 0.1  # |gamma| below this (from 1 at init): the channel is nearly switched off
MASK_STREAM = 101  # random-generator stream of the random-subset mask


# ---------------------------------------------------------------- the experiment


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(BatchNorm gammas and betas, every conv and linear weight and bias) of a bnviz Net."""
    affine = [p for block in model.blocks for p in (block.norm.weight, block.norm.bias)]
    weights = [
        p for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) for p in m.parameters()
    ]
    return affine, weights


def random_masks(weights: list[nn.Parameter], count: int, seed: int) -> list[torch.Tensor]:
    """0/1 masks over `weights` with exactly `count` ones in all, chosen uniformly at random
    (without replacement) over every entry, from a generator seeded by `seed`."""
    sizes = [p.numel() for p in weights]
    chosen = np.random.default_rng([seed, MASK_STREAM]).choice(sum(sizes), count, replace=False)
    flat = np.zeros(sum(sizes), dtype=np.float32)
    flat[chosen] = 1
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    return [torch.from_numpy(m.reshape(p.shape)) for m, p in zip(pieces, weights)]


def train_variant(trainer: Trainer, variant: str, steps: int, eval_every: int) -> dict:
    """Train `trainer.model` for `steps` steps of Adam (lr from its config) on its batches:
    'bn_only' trains gamma and beta, with every conv/linear weight and bias frozen at its
    current value; 'random' trains as many randomly chosen conv/linear entries as there are
    gammas and betas (the other entries' gradients are zeroed, gamma and beta frozen at 1 and
    0); 'full' trains everything. Running statistics update as usual (they are buffers, not
    parameters). Test accuracy in eval mode at step 0 and every `eval_every` steps."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    model, data, config = trainer.model, trainer.data, trainer.config
    affine, weights = parameter_groups(model)
    everything = affine + weights
    initial = [p.detach().clone() for p in everything]
    count = sum(p.numel() for p in affine)
    masks: list[torch.Tensor] = []
    if variant == "bn_only":
        trained = affine
    elif variant == "random":
        trained = weights
        masks = random_masks(weights, count, config.seed)
    else:
        trained = everything
    for p in everything:
        p.requires_grad_(any(p is q for q in trained))
    optimizer = optim.Adam(trained, lr=config.lr)
    fresh = trainer.steps_done == 0 and trainer.run.eval_steps == [0]
    # a fresh Trainer has measured step 0 already (the same eval-mode accuracy)
    start_acc = trainer.run.acc_running_stats[0] if fresh else clean(trainer.eval_accuracy())
    eval_steps, test_acc = [0], [start_acc]
    diverged_step = None

    def mask_gradients():
        for p, mask in zip(weights, masks):
            p.grad.mul_(mask)  # only the chosen entries learn (Adam moves zero-gradient ones by 0)

    for step in range(1, steps + 1):
        x, y = trainer.next_batch(config.batch_size)
        loss = trainer.plain_step(x, y, optimizer=optimizer, after_backward=mask_gradients)
        if not math.isfinite(loss):
            diverged_step = step
            break
        if step % eval_every == 0 or step == steps:
            eval_steps.append(step)
            test_acc.append(clean(trainer.eval_accuracy()))
    if diverged_step is not None and eval_steps[-1] != diverged_step - 1:
        eval_steps.append(diverged_step - 1)
        test_acc.append(clean(trainer.eval_accuracy()))
    # what moved: every frozen (or masked-out) entry must still equal its initial value exactly
    learns = {id(p): torch.ones_like(p) for p in trained}
    learns.update({id(p): mask for p, mask in zip(weights, masks)})
    trainable = [learns.get(id(p), torch.zeros_like(p)) for p in everything]
    with torch.no_grad():
        moved = [(p - p0).abs() for p, p0 in zip(everything, initial)]
        frozen_change = max(float((m * (1 - t)).max()) for m, t in zip(moved, trainable))
        changed = int(sum(int((m > 0).sum()) for m in moved))
    gammas = [block.norm.weight.detach().tolist() for block in model.blocks]
    magnitudes = np.abs(np.concatenate([np.asarray(g) for g in gammas]))
    return {
        "variant": variant,
        "trainable": int(sum(float(t.sum()) for t in trainable)),
        "affine_params": count,
        "total_params": sum(p.numel() for p in everything),
        "changed": changed,
        "frozen_max_change": frozen_change,
        "eval_steps": eval_steps,
        "test_acc": test_acc,
        "final_acc": test_acc[-1],
        "chance": 1 / len(data.classes),
        "gamma": gammas,
        "small_gamma_fraction": float((magnitudes < SMALL_GAMMA).mean()),
        "diverged_step": diverged_step,
    }


def train_subset(
    variant: str,
    seed: int = 0,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    steps: int = STEPS,
    eval_every: int = EVAL_EVERY,
) -> dict:
    """One job: a fresh network (initial weights and batches from `seed`) trained by
    train_variant, with its settings."""
    config = TrainConfig(
        widths=widths,
        batch_size=batch_size,
        optimizer="adam",
        lr=lr,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    result = train_variant(Trainer(config), variant, steps, eval_every)
    settings = dict(widths=list(widths), batch_size=batch_size, lr=float(lr), steps=steps)
    return {**result, "seed": seed, **settings}


def jobs():
    return [
        job(f"{LABELS[v]}, seed {seed}", train_subset, variant=v, seed=seed)
        for seed in SEEDS
        for v in VARIANTS
    ]


# ---------------------------------------------------------------- reading results


def runs_of(results: Results, variant: str) -> list[dict]:
    """The finished runs of one variant, by seed."""
    rows = [r for r in results.values() if r.get("variant") == variant and "test_acc" in r]
    return sorted(rows, key=lambda r: r["seed"])


def summary(runs: list[dict]) -> dict:
    """Means over seeds."""
    if not runs:
        return {}
    return {
        "seeds": [r["seed"] for r in runs],
        "final_acc": finite_mean(r["final_acc"] for r in runs),
        "trainable": runs[0]["trainable"],
        "total_params": runs[0]["total_params"],
        "frozen_max_change": max(r["frozen_max_change"] for r in runs),
        "small_gamma_fraction": finite_mean(r["small_gamma_fraction"] for r in runs),
        "chance": runs[0]["chance"],
        "diverged": [r["seed"] for r in runs if r.get("diverged_step")],
    }


def _legend(variant: str, runs: list[dict]) -> str:
    n = len(runs)
    count = f"{runs[0]['trainable']:,}" if runs else "?"
    what = {
        "bn_only": f"only γ and β ({count} params)",
        "random": f"{count} random conv/linear weights",
        "full": f"all {count} params",
    }[variant]
    return f"{what}, mean of {n} seed{'s' * (n > 1)}"


# ---------------------------------------------------------------- figures


def accuracy_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    chance = None
    for variant in VARIANTS:
        runs = runs_of(results, variant)
        if not runs:
            continue
        chance = runs[0]["chance"]
        longest = max(runs, key=lambda r: len(r["eval_steps"]))
        mean = mean_rows([r["test_acc"] for r in runs])
        fig.add_trace(
            go.Scatter(
                x=longest["eval_steps"][: len(mean)],
                y=100 * mean,
                mode="lines+markers",
                name=_legend(variant, runs),
                line=dict(color=COLORS[variant], dash=DASHES[variant], width=2),
                marker=dict(size=6),
            )
        )
    fig.update_yaxes(range=[0, 100])
    if chance is not None:
        fig.add_hline(
            y=100 * chance,
            line=dict(color=NEUTRAL, dash="dot", width=1),
            annotation_text=f"chance {chance:.0%}",
            annotation_position="bottom right",
        )
    if not fig.data:
        note(fig)
    title = "Test accuracy, frozen random weights"
    return finish(fig, title, y_title="test accuracy, eval mode (%)")


def gamma_figure(results: Results) -> go.Figure:
    fig = go.Figure()
    for variant in ("bn_only", "full"):
        runs = runs_of(results, variant)
        if not runs:
            continue
        values = np.abs(np.concatenate([np.asarray(g) for r in runs for g in r["gamma"]]))
        fig.add_trace(
            go.Histogram(
                x=values,
                xbins=dict(start=0, size=0.05),
                name=f"{'only γ and β' if variant == 'bn_only' else 'all parameters'} trained "
                f"({len(values)} channels)",
                marker=dict(color=COLORS[variant]),
                opacity=0.65,
            )
        )
    fig.update_layout(barmode="overlay")
    if fig.data:
        fig.add_vline(
            x=SMALL_GAMMA,
            line=dict(color=NEUTRAL, dash="dot", width=1),
            annotation_text=f"|γ| = {SMALL_GAMMA:g}",
            annotation_position="top right",
        )
    else:
        note(fig)
    return finish(
        fig,
        "|γ| after training",
        "|γ| (1 at init)",
        "channels",
        note="every channel of every block, all seeds",
    )


def figures(results: Results) -> list[go.Figure]:
    return [accuracy_figure(results), gamma_figure(results)]


# ---------------------------------------------------------------- explanation

CLAIM = (
    "**Frankle, Schwab & Morcos (2021), *Training BatchNorm and Only BatchNorm*:** with every "
    "conv and linear weight frozen at its random initial value, training only BatchNorm's "
    "per-channel scale γ and shift β reaches accuracy far above chance, more than training the "
    "same number of randomly chosen other weights; and many γ shrink towards 0, which switches "
    "those channels off."
)


def _live(run: Run | None) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    return (
        f" The live run trains every parameter of its network: "
        f"{pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}."
    )


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    found = {v: runs_of(results, v) for v in VARIANTS}
    if not any(found.values()):
        return CLAIM + "\n\nThe variants are being measured…" + _live(run)
    if not found["bn_only"]:
        return CLAIM + "\n\nThe BN-only networks are being measured…" + _live(run)
    first = found["bn_only"][0]
    setup = (
        f"Measured here: widths {tuple(first['widths'])}, batch {first['batch_size']}, Adam at "
        f"lr {first['lr']:g} for every variant, {first['steps']} steps, the same initial weights "
        f"and batches; test accuracy in eval mode (running statistics) on 500 held-out images."
    )
    s = {v: summary(runs) for v, runs in found.items()}
    bn = s["bn_only"]
    chance = bn["chance"]
    seeds = ", ".join(map(str, bn["seeds"]))
    lines = [
        CLAIM,
        "",
        setup,
        "",
        f"- **Only γ and β** ({bn['trainable']:,} of {bn['total_params']:,} parameters): "
        f"{pct(bn['final_acc'])} (mean of seeds {seeds}); chance is {pct(chance)}.",
    ]
    if found["random"]:
        r = s["random"]
        lines.append(
            f"- **{r['trainable']:,} randomly chosen conv/linear weights** instead (γ, β frozen "
            f"at 1 and 0): {pct(r['final_acc'])}."
        )
    else:
        lines.append("- The random-subset baseline is being measured…")
    if found["full"]:
        f = s["full"]
        lines.append(
            f"- **All {f['trainable']:,} parameters**, for context: {pct(f['final_acc'])}."
        )
    frozen = bn["frozen_max_change"]
    lines.append(
        "- Frozen weights: "
        + (
            "bit-for-bit equal to their initial values after training."
            if frozen == 0
            else f"changed by up to {frozen:.3g} (they should not have)."
        )
    )
    gamma = (
        f"- **|γ| < {SMALL_GAMMA:g}** (from 1 at init): {pct(bn['small_gamma_fraction'])} of "
        "the channels after BN-only training"
    )
    if found["full"]:
        gamma += f", {pct(s['full']['small_gamma_fraction'])} after full training"
    lines.append(gamma + ".")
    lines += ["", _verdict(s)]
    for v, summ in s.items():
        if summ and summ["diverged"]:
            lines.append(f"The {LABELS[v]} run of seed {summ['diverged'][0]} diverged.")
    return "\n".join(lines) + _live(run)


def _gains(s: dict) -> tuple[float, float | None]:
    """BN-only training's mean accuracy above chance, and above training as many random
    weights (None before those are measured), from the variants' summaries."""
    bn = s["bn_only"]
    random = bn["final_acc"] - s["random"]["final_acc"] if s.get("random") else None
    return bn["final_acc"] - bn["chance"], random


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """BN-only training against chance and random weights in two lines, from the numbers the
    explanation quotes."""
    found = {v: runs_of(results or {}, v) for v in VARIANTS}
    if sum(len(runs) for runs in found.values()) < len(jobs()):
        return "Measuring networks that train only BatchNorm's γ and β…"
    s = {v: summary(runs) for v, runs in found.items()}
    bn = s["bn_only"]
    _, diff = _gains(s)
    text = (
        f"With every conv and linear weight frozen, training only γ and β reached "
        f"**{pct(bn['final_acc'])}** (chance {pct(bn['chance'])}), "
        f"{100 * abs(diff):.1f} points " + ("more" if diff > 0 else "less")
    )
    return text + " than training as many random weights."


def _verdict(s: dict) -> str:
    """One sentence from the numbers."""
    bn = s["bn_only"]
    above, diff = _gains(s)
    text = (
        f"So here, training only γ and β reached {100 * above:.1f} percentage points "
        + ("above" if above >= 0 else "below")
        + " chance"
    )
    if s.get("random"):
        text += (
            f", and {100 * abs(diff):.1f} points "
            + ("more" if diff > 0 else "less")
            + " than training as many random weights"
        )
    if s.get("full"):
        text += f" (training everything: {pct(s['full']['final_acc'])})"
    text += "."
    if s.get("full"):
        more = bn["small_gamma_fraction"] > s["full"]["small_gamma_fraction"]
        text += (
            " More γ shrank towards 0 with BN-only training than with full training, as Frankle "
            "et al. observed."
            if more
            else " No more γ shrank towards 0 with BN-only training than with full training here."
        )
    return text


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
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
