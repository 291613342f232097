"""The 'tiny-batches' experiments: BatchNorm and GroupNorm trained at one batch size until the
test error levels off, then tested over the last few evaluations. BatchNorm is tested with
precise statistics (Ioffe & Szegedy's Algorithm 2: its running mean and variance recomputed
from training batches of the same size, bnviz.measure.precise_statistics), so a running average
that lags the weights does not count against it; its lagging running averages (plain eval mode)
are kept beside them."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..measure import precise_statistics
from ..trainer import Trainer
from .common import clean

EVALS = 10  # test error measured every tenth of the training, in eval mode
LAST = 3  # the final error: the mean of the last LAST evaluations (precise statistics for BN)
PRECISE_IMAGES = 1000  # training images behind the precise statistics, at every batch size
DECAY_AT = 0.7  # the learning rate drops tenfold after this fraction of the steps


def _buffers(trainer: Trainer) -> list[torch.Tensor]:
    return [b.clone() for b in trainer.model.buffers()]


def _restore(trainer: Trainer, saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, value in zip(trainer.model.buffers(), saved):
            buffer.copy_(value)


def _precise(trainer: Trainer) -> tuple[float, float]:
    """Test error with the running averages and with precise statistics; the running buffers
    are put back after, so training goes on from the same state."""
    saved = _buffers(trainer)
    batches = max(1, math.ceil(PRECISE_IMAGES / trainer.batch_size))
    r = precise_statistics(trainer, batches=batches)
    _restore(trainer, saved)
    return 1 - r["acc_before"], 1 - r["acc_after"]


def batch_run(
    norm: str,
    batch_size: int,
    steps: int,
    lr: float,
    widths: tuple[int, ...] = (8, 16),
    seed: int = 0,
) -> dict:
    """Train `steps` plain SGD steps (momentum 0.9) at this batch size and lr, lr / 10 after
    DECAY_AT of them (as Wu & He divide theirs, so each run settles). Test error in
    eval mode at every tenth of the training (`error`: running averages for BatchNorm); at the
    last LAST evaluations BatchNorm is also tested with precise statistics (`error_precise`;
    GroupNorm has no running statistics, so its two are the same)."""
    config = TrainConfig(
        norm=norm,
        widths=tuple(widths),
        batch_size=batch_size,
        lr=lr,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    at = [round(steps * (k + 1) / EVALS) for k in range(EVALS)]
    decay = round(DECAY_AT * steps)
    error, precise, done, status = [], [], 0, "completed"
    for i, target in enumerate(at):
        for stop in (decay, target) if done < decay <= target else (target,):
            status, n = trainer.plain_steps(stop - done)
            done += n
            if status != "completed":
                break
            if stop == decay:
                trainer.set(lr=lr / 10)
        if status != "completed":
            break
        if norm == "batch" and i >= EVALS - LAST:
            running, exact = _precise(trainer)
        else:
            running = exact = 1 - trainer.eval_accuracy()
        error.append(clean(running))
        if i >= EVALS - LAST:
            precise.append(clean(exact))
    return {
        "norm": norm,
        "batch_size": batch_size,
        "steps": steps,
        "steps_done": done,
        "lr": lr,
        "status": status,
        "eval_steps": at[: len(error)],
        "error": error,
        "error_precise": precise,
    }
