"""Experiments of the 'momentum-lag' scenario: one training run with BatchNorm at one momentum,
its running statistics against the batch statistics they average, and eval accuracy with the
running averages against eval accuracy after recomputing precise statistics (Ioffe & Szegedy
2015, Algorithm 2) at each of the last evaluations.

Momentum changes only BatchNorm's running buffers, which training mode never reads: the runs of
one seed train identically at every momentum (the loss digest shows it), so their accuracies
with precise statistics are the same too, and what differs is the running averages alone."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..config import TrainConfig
from ..measure import precise_statistics
from ..series import stride
from ..trainer import Trainer
from .common import clean, clean_list, final_loss, float_list

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 300
LR = 0.05
EVAL_EVERY = 20
LAYER = -1  # the last block
CHANNEL = 0
PRECISE_BATCHES = 50
PRECISE_AT = 3  # precise statistics at each of the last evaluations (evidence.LAST_EVALS)
MEAN_POINTS = 100  # the running and batch means drawn, at most this many steps
RECENT = 20  # the lag: the final running mean against the mean of the last RECENT batches


def precise_and_restore(trainer: Trainer, batches: int = PRECISE_BATCHES) -> dict:
    """Precise statistics on the trainer's model (Ioffe & Szegedy, Algorithm 2), measured and
    then undone: the run goes on with its own running averages, so its recorded statistics and
    the update formula stay consistent. The training batches are drawn from their own
    generator, not from the run's, so training continues exactly as it would have."""
    blocks = trainer.model.blocks
    norms = [b.norm for b in blocks if getattr(b.norm, "running_mean", None) is not None]
    saved = [{k: v.clone() for k, v in n.state_dict().items()} for n in norms]
    try:
        return precise_statistics(trainer, batches=batches)
    finally:
        with torch.no_grad():
            for n, state in zip(norms, saved):
                n.load_state_dict(state)


def _digest(values) -> str:
    """A short fingerprint of a loss curve: equal digests, identical training."""
    data = np.asarray(values, dtype=np.float64).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def momentum_run(
    momentum: float | None,
    seed: int = 0,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    steps: int = STEPS,
    lr: float = LR,
    eval_every: int = EVAL_EVERY,
    channel: int = CHANNEL,
    precise_batches: int = PRECISE_BATCHES,
    precise_at: int = PRECISE_AT,
) -> dict:
    """Train with BN at one momentum; return one channel's batch and running mean (last block)
    at up to MEAN_POINTS steps and the lag of its final running mean, eval accuracy with running
    and with batch statistics against steps, and eval accuracy after recomputing precise
    statistics at each of the last `precise_at` evaluations (the buffers put back each time)."""
    config = TrainConfig(
        momentum=momentum,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        seed=seed,
        snapshot_every=steps,
        eval_every=eval_every,
    )
    trainer = Trainer(config)
    at = [steps - k * eval_every for k in reversed(range(precise_at)) if steps > k * eval_every]
    precise_steps, before, after = [], [], []
    for target in at:
        trainer.step(target - trainer.steps_done)
        if trainer.steps_done != target:  # diverged or failed: no later evaluation
            break
        p = precise_and_restore(trainer, precise_batches)
        precise_steps.append(target)
        before.append(clean(p["acc_before"]))
        after.append(clean(p["acc_after"]))
    if not trainer.finished:  # no evaluation asked for at the end
        trainer.step(steps - trainer.steps_done)
    run = trainer.run
    layer = len(widths) + LAYER if LAYER < 0 else LAYER
    batch_mean = np.asarray(run.layer_stat(layer, "batch_mean")[:, channel], dtype=np.float64)
    running_mean = np.asarray(run.layer_stat(layer, "running_mean")[:, channel], np.float64)
    idx = stride(run.num_steps, MEAN_POINTS)
    recent = float(batch_mean[-RECENT:].mean()) if len(batch_mean) else float("nan")
    final_running = float(running_mean[-1]) if len(running_mean) else float("nan")
    return {
        "momentum": momentum,
        "seed": seed,
        "steps": run.num_steps,
        "batch_size": batch_size,
        "lr": float(lr),
        "widths": list(widths),
        "status": run.status,
        "block": layer + 1,
        "channel": channel,
        "mean_steps": [int(s) for s in run.steps[idx]],
        "batch_mean": clean_list(batch_mean[idx]),
        "running_mean": clean_list(running_mean[idx]),
        "recent_batches": RECENT,
        "recent_batch_mean": clean(recent),
        "final_running_mean": clean(final_running),
        "lag": clean(abs(final_running - recent)),
        "eval_steps": [int(s) for s in run.eval_steps],
        "acc_running": float_list(run.acc_running_stats),
        "acc_batch": float_list(run.acc_batch_stats),
        "precise_steps": precise_steps,
        "precise_before": before,
        "precise_after": after,
        "precise_batches": precise_batches,
        "final_loss": clean(final_loss(run)),
        "loss_digest": _digest(run.metric("train_loss")),
    }
