"""Measurements on a trainer's current model, beyond what every step records: how noisy batch
statistics are at a batch size, and a live check of the from-scratch BatchNorm against torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batchnorm import BatchNorm2d
from .trainer import Trainer, to_tensor


@dataclass(frozen=True)
class BatchNoise:
    """A channel's batch mean and biased variance over many batches of one size, against the
    same statistics over the whole held-out set (the values a running average aims for)."""

    layer: int
    channel: int
    batch_size: int
    batch_means: np.ndarray  # one per batch
    batch_vars: np.ndarray
    full_mean: float
    full_var: float


def norm_inputs(trainer: Trainer, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The input of block `layer`'s norm for images x, in eval mode (no buffer changes)."""
    captured = []
    norm = trainer.model.blocks[layer].norm
    handle = norm.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    try:
        with torch.no_grad(), trainer.unrecorded():
            trainer.model.eval()
            trainer.model(x)
    finally:
        trainer.model.train()
        handle.remove()
    return captured[0]


def batch_noise(
    trainer: Trainer, layer: int, channel: int, batch_size: int | None = None, batches: int = 64
) -> BatchNoise:
    """Scatter of one channel's batch statistics at `batch_size` (default: the training batch
    size), drawn from the held-out images without replacement within each batch."""
    batch_size = batch_size or trainer.batch_size
    x = trainer.eval_x
    values = norm_inputs(trainer, layer, x)[:, channel]  # images x H x W
    rng = np.random.default_rng([trainer.config.seed, 2, batch_size])
    size = min(batch_size, len(values))
    means, variances = [], []
    for _ in range(batches):
        batch = values[torch.from_numpy(rng.choice(len(values), size, replace=False))]
        means.append(float(batch.mean()))
        variances.append(float(batch.var(unbiased=False)))
    return BatchNoise(
        layer=layer,
        channel=channel,
        batch_size=size,
        batch_means=np.array(means),
        batch_vars=np.array(variances),
        full_mean=float(values.mean()),
        full_var=float(values.var(unbiased=False)),
    )


@dataclass(frozen=True)
class ScratchCheck:
    """bnviz.BatchNorm2d against torch.nn.BatchNorm2d on the same input and parameters."""

    shape: tuple[int, ...]
    max_abs_diff_output: float
    max_abs_diff_running_mean: float
    max_abs_diff_running_var: float


def check_scratch_against_torch(trainer: Trainer, layer: int = 0) -> ScratchCheck:
    """Feed the current training batch's input of block `layer`'s norm through both
    implementations (training mode, this run's gamma, beta, eps, momentum)."""
    data = trainer.data
    idx = np.arange(min(trainer.batch_size, len(data.y_train)))
    x = norm_inputs(trainer, layer, to_tensor(data, data.x_train[idx]))
    channels = x.shape[1]
    source = trainer.model.blocks[layer].norm
    momentum = getattr(source, "momentum", trainer.config.momentum)
    eps = getattr(source, "eps", trainer.config.eps)
    ours = BatchNorm2d(channels, eps=eps, momentum=momentum)
    reference = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    with torch.no_grad():
        for bn in (ours, reference):
            if getattr(source, "weight", None) is not None:
                bn.weight.copy_(source.weight)
                bn.bias.copy_(source.bias)
        y_ours, y_ref = ours(x), reference(x)

    def diff(a, b):
        return float((a - b).abs().max())

    return ScratchCheck(
        shape=tuple(x.shape),
        max_abs_diff_output=diff(y_ours, y_ref),
        max_abs_diff_running_mean=diff(ours.running_mean, reference.running_mean),
        max_abs_diff_running_var=diff(ours.running_var, reference.running_var),
    )


@torch.no_grad()
def precise_statistics(trainer: Trainer, batches: int = 50) -> dict:
    """Ioffe & Szegedy's Algorithm 2: replace each BatchNorm's running mean and variance by a
    plain average over `batches` training batches (train mode, no gradient, weights fixed),
    then measure test accuracy again. Changes the live model's buffers; returns the numbers."""
    norms = [
        b.norm for b in trainer.model.blocks if getattr(b.norm, "running_mean", None) is not None
    ]
    before, _ = trainer.accuracy()
    if not norms:
        return {"acc_before": before, "acc_after": before, "batches": 0, "applicable": False}
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: every batch weighs the same
    data, rng = trainer.data, np.random.default_rng([trainer.config.seed, 3])
    trainer.model.train()
    try:
        with trainer.unrecorded():
            for _ in range(batches):
                idx = rng.choice(len(data.y_train), trainer.batch_size, replace=False)
                trainer.model(to_tensor(data, data.x_train[idx]))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    after, _ = trainer.accuracy()
    return {"acc_before": before, "acc_after": after, "batches": batches, "applicable": True}
