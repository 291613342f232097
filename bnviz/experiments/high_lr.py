"""Experiments of the scenario 'high-lr' (bnviz/scenarios/high_lr.py): a learning-rate sweep
with and without BatchNorm that also tracks each block's conv weight norm ‖W‖, the loss after
one plain gradient step of many sizes, and the activation scale per block of a deeper network
during its first steps at a large learning rate. One seed per call; the scenario runs seeds."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..trainer import Trainer
from .common import clean, clean_list

WIDTHS = (8, 16, 32)
BATCH_SIZE = 64
STEPS = 150
EVAL_EVERY = 15  # test accuracy (eval mode) and ‖W‖ every this many steps
PROBE_BATCHES = 4  # the one-step probe's ratio: a geometric mean over this many batches
PROBE_LRS = tuple(float(f"{10 ** (e / 4):.3g}") for e in range(-12, 9))  # 1e-3 .. 100
DEEP_WIDTHS = (8, 16, 32, 64, 128, 128)  # depth 6
DEEP_LR = 10.0
DEEP_STEPS = 12


def weight_norms(model) -> list[float]:
    """‖W‖ (Frobenius norm) of each block's conv weight."""
    return [clean(block.conv.weight.detach().double().norm()) for block in model.blocks]


def lr_run(
    norm: str,
    lr: float,
    seed: int,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    steps: int = STEPS,
    eval_every: int = EVAL_EVERY,
    probe_lrs: tuple[float, ...] = (),
) -> dict:
    """Train one network with SGD (momentum 0.9) at one learning rate. Every `eval_every` steps:
    test accuracy in eval mode (running statistics) and ‖W‖ of each block's conv. A run whose
    loss explodes stops there (the trainer's divergence rule) and is measured as it stood. With
    `probe_lrs`, the one-step loss probe (`probe`) is measured on the trained network too."""
    config = TrainConfig(
        norm=norm,
        lr=lr,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    run = trainer.run
    eval_steps, acc, norms = [0], [clean(run.acc_running_stats[0])], [weight_norms(trainer.model)]
    while not trainer.finished:
        trainer.step(1)
        done = trainer.steps_done
        if done > eval_steps[-1] and (run.status == "diverged" or done % eval_every == 0):
            eval_steps.append(done)
            acc.append(clean(trainer.eval_accuracy()))
            norms.append(weight_norms(trainer.model))
    out = {
        "norm": norm,
        "lr": float(lr),
        "seed": seed,
        "steps": steps,
        "steps_done": run.num_steps,
        "status": run.status,
        "diverged_step": run.diverged_step,
        "eval_steps": eval_steps,
        "acc": acc,
        "weight_norm": norms,
    }
    if probe_lrs:
        out["probe"] = probe(trainer, probe_lrs)
    return out


@torch.no_grad()
def _loss(model, x, y) -> float:
    return float(F.cross_entropy(model(x), y))


def probe(
    trainer: Trainer, lrs: tuple[float, ...] = PROBE_LRS, batches: int = PROBE_BATCHES
) -> dict:
    """L(w − lr·g) / L(w) for each lr, on each of the trainer's next `batches` batches: g is the
    gradient at w on that batch (train mode: BN uses the batch's statistics); the ratio is the
    geometric mean over the batches (one batch is noisy). The weights are put back after. A
    loss that overflows makes that lr's ratio NaN."""
    model = trainer.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    logs, losses, grad_norms = [], [], []
    with trainer.unrecorded():
        for _ in range(batches):
            x, y = trainer.next_batch()
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params)
            base = float(loss.detach())
            row = []
            with torch.no_grad():
                for lr in lrs:
                    for p, w, g in zip(params, start, grads):
                        p.copy_(w - lr * g)
                    ratio = _loss(model, x, y) / base
                    row.append(math.log(ratio) if math.isfinite(ratio) and ratio > 0 else math.inf)
                for p, w in zip(params, start):
                    p.copy_(w)
            logs.append(row)
            losses.append(base)
            grad_norms.append(float(torch.sqrt(sum((g * g).sum() for g in grads))))
    ratios = [clean(math.exp(sum(col) / batches)) for col in zip(*logs)]
    return {
        "step": trainer.steps_done,
        "batches": batches,
        "lrs": [float(lr) for lr in lrs],
        "ratio": ratios,
        "loss": clean(sum(losses) / batches),
        "grad_norm": clean(sum(grad_norms) / batches),
    }


def loss_ratio_at_init(
    norm: str,
    seed: int,
    lrs: tuple[float, ...] = PROBE_LRS,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """The one-step loss probe at initialisation, on the run's first batch."""
    config = TrainConfig(norm=norm, widths=widths, batch_size=batch_size, seed=seed, steps=1)
    return {"norm": norm, "seed": seed, **probe(Trainer(config), lrs)}


def activation_scale(
    norm: str,
    seed: int,
    lr: float = DEEP_LR,
    widths: tuple[int, ...] = DEEP_WIDTHS,
    steps: int = DEEP_STEPS,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """Standard deviation of each block's conv output (the norm's input) and post-activation
    values over the training batch at each of the first `steps` steps at a large lr (the forward
    pass whose loss exploded is the last row), and ‖W‖ of each block's conv at initialisation
    and after each completed step."""
    config = TrainConfig(
        norm=norm,
        lr=lr,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    pre: list[float] = [math.nan] * len(widths)
    post: list[float] = [math.nan] * len(widths)

    def hook(store, i):
        def record(module, inputs, output):
            if trainer.recording:  # the training forward pass only
                value = inputs[0] if store is pre else output
                store[i] = clean(value.detach().double().std())

        return record

    handles = []
    for i, block in enumerate(trainer.model.blocks):
        handles.append(block.norm.register_forward_hook(hook(pre, i)))
        handles.append(block.act.register_forward_hook(hook(post, i)))
    pre_rows, post_rows, losses = [], [], []
    norm_rows = [weight_norms(trainer.model)]
    try:
        while not trainer.finished:
            trainer.step(1)
            pre_rows.append(list(pre))
            post_rows.append(list(post))
            if trainer.run.num_steps > len(losses):  # a completed step (not the one that diverged)
                losses.append(clean(trainer.run.metric("train_loss")[-1]))
                norm_rows.append(weight_norms(trainer.model))
    finally:
        for h in handles:
            h.remove()
    run = trainer.run
    return {
        "norm": norm,
        "seed": seed,
        "lr": float(lr),
        "widths": list(widths),
        "steps": list(range(1, len(pre_rows) + 1)),
        "pre_norm_std": pre_rows,
        "post_act_std": post_rows,
        "weight_norm": norm_rows,
        "train_loss": clean_list(losses),
        "status": run.status,
        "diverged_step": run.diverged_step,
    }
