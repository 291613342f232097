"""Training BatchNorm and only BatchNorm (Frankle, Schwab & Morcos 2021): every conv and linear
weight and bias stays at its random initial value and only BN's gamma and beta learn; compared
with training the same number of randomly chosen conv/linear weights instead, and with training
everything. Same network, initial weights, batches and optimizer for every variant."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import optim
from ..config import TrainConfig
from ..trainer import Trainer
from .common import clean

VARIANTS = ("bn_only", "random", "full")
WIDTHS = (8, 16, 32, 64, 128)  # depth 5, width 8 in the sidebar's terms: 248 channels
BATCH_SIZE = 32
LR = 0.05  # Adam, for every variant
STEPS = 200
EVAL_EVERY = 25
SMALL_GAMMA = 0.1  # |gamma| below this (from 1 at init): the channel is nearly switched off
MASK_STREAM = 101  # random-generator stream of the random-subset mask


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
