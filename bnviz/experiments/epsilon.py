"""Experiments of the 'epsilon' scenario: BatchNorm divides by sqrt(var + eps), so where a
channel's variance is tiny eps competes with it. The built-in data has unit variance per input
channel, so the jobs make the situation explicitly: the input images are multiplied by 1e-3
(a transformation of the data; nothing else changes). Two kinds of job: the first BN's gain at
init against eps (no training; it depends on the seed through the initial conv weights), and a
short training run with one eps in every BN layer."""

from __future__ import annotations

import copy
import dataclasses

import torch

from .. import datasets
from ..config import TrainConfig
from ..measure import norm_inputs
from ..trainer import Trainer
from .common import clean, final_loss, float_list

INPUT_SCALE = 1e-3  # the inputs are multiplied by this: variance x 1e-6
EPS_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the gain at init
WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 150
FINAL_EVALS = 3  # test accuracy at the last evaluations (evidence.LAST_EVALS)...
EVAL_GAP = 10  # ...this many steps apart: steps 130, 140 and 150


def scaled_data(scale: float) -> datasets.Dataset:
    """The shapes data set with its inputs multiplied by `scale`: images are converted to tensors
    as (x / 255 - mean) / std, so dividing std by `scale` multiplies every input by `scale`."""
    data = datasets.load("shapes")
    return dataclasses.replace(data, std=tuple(s / scale for s in data.std))


def _trainer(scale: float, eps: float, widths, seed: int, steps: int) -> Trainer:
    config = TrainConfig(
        widths=tuple(widths),
        batch_size=BATCH_SIZE,
        eps=eps,
        steps=steps,
        seed=seed,
        snapshot_every=max(steps, 1),
        eval_every=max(steps, 1),
    )
    return Trainer(config, scaled_data(scale))


@torch.no_grad()
def measure_gain(trainer: Trainer, eps: float, x: torch.Tensor | None = None) -> dict:
    """The first BN's per-channel input variance over the held-out images (biased, over
    images x H x W, in float64), the gain 1/sqrt(var + eps) computed from it, and the gain the
    layer actually applies: a copy of the first BN with this eps, run in training mode on that
    input, scales each channel's standard deviation by std(out) / std(in) = |gamma| / sqrt(var
    + eps) (gamma is 1 at init; divided out after training). x: that input, if already known."""
    if x is None:
        x = norm_inputs(trainer, 0, trainer.eval_x)
    var = x.double().var(dim=(0, 2, 3), unbiased=False)
    bn = copy.deepcopy(trainer.model.blocks[0].norm)
    bn.eps = eps
    bn.train()
    out_std = bn(x).double().std(dim=(0, 2, 3), unbiased=False)
    gamma = bn.weight.double().abs() if bn.weight is not None else torch.ones_like(var)
    return {
        "var": float_list(var),
        "gain": float_list(1 / (var + eps).sqrt()),
        "gain_measured": float_list(out_std / var.sqrt() / gamma),
        "out_std": float_list(out_std),
    }


@torch.no_grad()
def block_variances(trainer: Trainer, eps: float) -> list[list[float]]:
    """Each BN's per-channel input variance at this eps, with every BN in training mode (batch
    statistics over the held-out images), on a copy of the model: a BN whose eps dominates
    passes a weaker signal to the next block."""
    model = copy.deepcopy(trainer.model)
    out: list[list[float]] = []
    hooks = []
    for block in model.blocks:
        block.norm.eps = eps
        hooks.append(
            block.norm.register_forward_pre_hook(
                lambda m, args: out.append(
                    float_list(args[0].double().var(dim=(0, 2, 3), unbiased=False))
                )
            )
        )
    model.train()
    model(trainer.eval_x)
    for h in hooks:
        h.remove()
    return out


def gain_at_init(
    seed: int = 0, eps_grid: tuple = EPS_GRID, scale: float = INPUT_SCALE, widths: tuple = WIDTHS
) -> dict:
    """The first BN's gain per channel at init for every eps of the grid (no training), and how
    many channels of each block have eps >= their input variance at that eps. The variances
    depend on the seed through the initial conv weights."""
    trainer = _trainer(scale, eps_grid[0], widths, seed, 1)
    x = norm_inputs(trainer, 0, trainer.eval_x)  # the same for every eps
    rows = [measure_gain(trainer, eps, x) for eps in eps_grid]
    dominated = []
    for eps in eps_grid:
        variances = block_variances(trainer, eps)
        dominated.append([int(sum(eps >= v for v in block)) for block in variances])
    return {
        "seed": seed,
        "scale": scale,
        "images": len(trainer.eval_y),
        "eps": [float(e) for e in eps_grid],
        "var": rows[0]["var"],
        "gain": [r["gain"] for r in rows],
        "gain_measured": [r["gain_measured"] for r in rows],
        "out_std": [r["out_std"] for r in rows],
        "channels": [int(w) for w in widths],
        "dominated": dominated,
    }


def train_with_eps(
    eps: float,
    seed: int = 0,
    scale: float = INPUT_SCALE,
    steps: int = STEPS,
    widths: tuple = WIDTHS,
) -> dict:
    """Train with this eps (in every BN layer) on inputs multiplied by `scale`; test accuracy in
    eval mode and with batch statistics at the last FINAL_EVALS evaluations (EVAL_GAP steps
    apart), and the first BN's variance and gain after training."""
    trainer = _trainer(scale, eps, widths, seed, steps)
    evals = [steps - k * EVAL_GAP for k in reversed(range(FINAL_EVALS)) if steps > k * EVAL_GAP]
    eval_steps, acc, acc_batch = [], [], []
    for target in evals:
        trainer.step(target - trainer.steps_done)
        if trainer.steps_done != target:  # diverged or failed
            break
        running, batch = trainer.accuracy()
        eval_steps.append(target)
        acc.append(clean(running))
        acc_batch.append(clean(batch))
    if not trainer.finished:  # no evaluation asked for at the end
        trainer.step(steps - trainer.steps_done)
    run = trainer.run
    after = measure_gain(trainer, eps)
    return {
        "eps": float(eps),
        "scale": scale,
        "seed": seed,
        "steps": run.num_steps,
        "status": run.status,
        "eval_steps": eval_steps,
        "acc": acc,
        "acc_batch": acc_batch,
        "loss": clean(final_loss(run)),
        "var_after": after["var"],
        "gain_after": after["gain"],
        "gain_after_measured": after["gain_measured"],
    }
