"""Experiments of the 'placement' scenario: BatchNorm before the activation (Ioffe & Szegedy's
choice) against after it, on the same data, batches and initial conv weights, for relu and
sigmoid; one run per (activation, placement, seed)."""

from __future__ import annotations

import math

from ..config import TrainConfig
from ..trainer import Trainer
from .common import CURVE_POINTS, clean_list

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 250
EVAL_EVERY = 25


def train_placement(
    activation: str,
    placement: str,
    seed: int = 0,
    steps: int = STEPS,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
) -> dict:
    """Train one (activation, placement, seed) with plain steps (nothing recorded but what is
    returned): test accuracy in eval mode every EVAL_EVERY steps (step 0 included), and the
    training loss averaged over windows of steps."""
    config = TrainConfig(
        widths=tuple(widths),
        activation=activation,
        placement=placement,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
    )
    trainer = Trainer(config)
    eval_every = min(EVAL_EVERY, steps)
    eval_steps, accuracy, losses = [0], [trainer.eval_accuracy()], []
    status = "completed"
    for step in range(1, steps + 1):
        x, y = trainer.next_batch()
        loss = trainer.plain_step(x, y)
        if not math.isfinite(loss):
            status = "diverged"
            break
        losses.append(loss)
        if step % eval_every == 0 or step == steps:
            eval_steps.append(step)
            accuracy.append(trainer.eval_accuracy())
    size = max(1, math.ceil(len(losses) / CURVE_POINTS))
    windows = [losses[a : a + size] for a in range(0, len(losses), size)]
    return {
        "activation": activation,
        "placement": placement,
        "seed": seed,
        "lr": config.lr,
        "steps": steps,
        "batch_size": batch_size,
        "widths": list(widths),
        "status": status,
        "steps_done": len(losses),
        "eval_steps": eval_steps,
        "acc": clean_list(accuracy),
        "loss_steps": [min((k + 1) * size, len(losses)) for k in range(len(windows))],
        "loss": clean_list([sum(w) / len(w) for w in windows]),
    }
