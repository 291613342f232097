"""Experiments of the 'sigmoid-drift' scenario: Ioffe & Szegedy's Fig. 1 network (three fully
connected hidden layers of 100 sigmoids, batches of 60) on the built-in shapes, with and without
BatchNorm; the 15th/50th/85th percentiles of the sigmoids' inputs over each training batch."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import TrainConfig
from ..trainer import PERCENTILES, Trainer
from .common import clean, clean_list

WIDTHS = (100, 100, 100)  # Ioffe & Szegedy (2015), Fig. 1: 3 hidden layers of 100 sigmoids
BATCH_SIZE = 60  # their batch size
LR = 0.1  # SGD (momentum 0.9), the same for both networks
STEPS = 1000
SNAPSHOT_EVERY = 10  # the sigmoids' input percentiles, every 10 steps
EVALS = 20  # test-accuracy measurements per run (eval mode), after step 0
WINDOW = 0.05  # early / late: the first / last 5% of the snapshots
UNIT = 0  # the unit drawn: the first sigmoid of the last hidden layer


def drift_run(
    norm: str,
    seed: int = 0,
    lr: float = LR,
    steps: int = STEPS,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """Train the sigmoid MLP with `norm` ('batch' or 'none'); return test accuracy (eval mode)
    against steps, the 15/50/85th percentiles over each snapshot's training batch of one
    sigmoid's input (UNIT of the last hidden layer), and how far the inputs of every sigmoid of
    that layer moved between the first and the last WINDOW of the snapshots."""
    config = TrainConfig(
        dataset="shapes",
        arch="mlp",
        norm=norm,
        activation="sigmoid",
        widths=tuple(widths),
        batch_size=batch_size,
        lr=lr,
        steps=steps,
        seed=seed,
    )
    trainer = Trainer(config)
    seen: list[torch.Tensor] = []
    capture = [False]

    def keep(module, inputs, output):  # the sigmoid's input: batch x units (1x1 maps)
        if capture[0]:
            seen.append(inputs[0].detach()[:, :, 0, 0].clone())

    trainer.model.blocks[-1].act.register_forward_hook(keep)
    every_eval = max(1, steps // EVALS)
    eval_steps, accuracy = [0], [trainer.eval_accuracy()]
    snapshot_steps: list[int] = []
    status, diverged_step = "completed", None
    for step in range(1, steps + 1):
        x, y = trainer.next_batch()
        capture[0] = (step - 1) % SNAPSHOT_EVERY == 0
        loss = trainer.plain_step(x, y)
        capture[0] = False
        if not math.isfinite(loss):
            status, diverged_step = "diverged", step
            break
        if len(seen) > len(snapshot_steps):
            snapshot_steps.append(step)
        if step % every_eval == 0 or step == steps:
            eval_steps.append(step)
            accuracy.append(trainer.eval_accuracy())
    # percentiles over the batch, per unit: snapshots x 3 x units
    per_unit = np.stack([percentiles_per_unit(s.numpy()) for s in seen[: len(snapshot_steps)]])
    unit = per_unit[:, :, UNIT]
    return {
        "norm": norm,
        "seed": seed,
        "lr": float(lr),
        "steps": steps,
        "batch_size": batch_size,
        "widths": list(widths),
        "inputs": trainer.model.blocks[0].conv.in_channels,  # the flattened image's pixels
        "status": status,
        "diverged_step": diverged_step,
        "eval_steps": eval_steps,
        "acc": clean_list(accuracy),
        "unit": UNIT,
        "layer": len(widths),
        "snapshot_steps": snapshot_steps,
        "p15": clean_list(unit[:, 0]),
        "p50": clean_list(unit[:, 1]),
        "p85": clean_list(unit[:, 2]),
        **layer_drift(per_unit),
    }


def percentiles_per_unit(values: np.ndarray) -> np.ndarray:
    """3 x units: PERCENTILES over the batch of each unit's values (batch x units), as
    trainer.percentiles computes them for one unit (np.percentile's linear method)."""
    ordered = np.sort(values, axis=0)
    position = np.asarray(PERCENTILES) / 100 * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    fraction = (position - low)[:, None]
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def layer_drift(per_unit: np.ndarray, window: float = WINDOW) -> dict:
    """How far the sigmoids' inputs moved, from per-unit percentiles (snapshots x 3 x units):
    each unit's median and 15-85 width averaged over the first and the last `window` of the
    snapshots. median_shift: the layer's mean |late - early| median; width_factor: the factor by
    which a unit's 15-85 width changed, up or down (geometric mean over the layer's units,
    exp(mean |log(late / early)|)); and the same for the drawn UNIT alone."""
    n = len(per_unit)
    if n < 2:
        return {"median_shift": math.nan, "width_factor": math.nan, "snapshots_each": 0}
    k = max(1, int(round(n * window)))
    early, late = per_unit[:k].mean(0), per_unit[-k:].mean(0)  # 3 x units
    shift = np.abs(late[1] - early[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(np.log((late[2] - late[0]) / (early[2] - early[0])))
    return {
        "median_shift": clean(shift.mean()),
        "unit_median_shift": clean(shift[UNIT]),
        "early_median": clean(early[1, UNIT]),
        "late_median": clean(late[1, UNIT]),
        "early_width": clean(early[2, UNIT] - early[0, UNIT]),
        "late_width": clean(late[2, UNIT] - late[0, UNIT]),
        "width_factor": clean(np.exp(np.nanmean(change))),
        "snapshots_each": k,
    }
