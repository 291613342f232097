"""The normalization family's runs: BatchNorm, LayerNorm, InstanceNorm, GroupNorm and no
normalization, each trained on the batches and from the initial conv weights its seed gives
(exactly what bnviz.Lockstep gives the same config), summarised as curves."""

from __future__ import annotations

from ..config import TrainConfig
from ..trainer import train
from . import common

NORMS = ("batch", "none", "group", "layer", "instance")
WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 400
EVAL_EVERY = 25


def train_norm(norm: str, seed: int = 0, steps: int = STEPS, widths: tuple = WIDTHS) -> dict:
    """Train one normalization. A run alone equals the same config in a bnviz.Lockstep: the
    batches come from the seed, and conv/linear weights are drawn per tensor name from it."""
    config = TrainConfig(
        widths=tuple(widths),
        norm=norm,
        batch_size=BATCH_SIZE,
        steps=steps,
        seed=seed,
        eval_every=min(EVAL_EVERY, steps),
        snapshot_every=steps,
    )
    run = train(config)
    return {"norm": norm, "seed": seed, "widths": list(widths), **common.curves(run)}
