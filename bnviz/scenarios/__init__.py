"""The classroom scenarios, in teaching order, by id. Each module defines SCENARIO."""

from __future__ import annotations

from . import (
    basics,
    batch_coupling,
    bn_only,
    covariate_shift,
    epsilon,
    fold_bn,
    high_lr,
    momentum_lag,
    norm_family,
    placement,
    scale_invariance,
    sigmoid_drift,
    tiny_batches,
    train_vs_eval,
)
from .base import Action, Chart, Job, Results, Scenario, job

FREE_PLAY = "free-play"
_MODULES = (
    basics,
    train_vs_eval,
    batch_coupling,
    fold_bn,
    momentum_lag,
    epsilon,
    tiny_batches,
    high_lr,
    scale_invariance,
    sigmoid_drift,
    placement,
    norm_family,
    covariate_shift,
    bn_only,
)
SCENARIOS: dict[str, Scenario] = {m.SCENARIO.id: m.SCENARIO for m in _MODULES}

__all__ = ["FREE_PLAY", "SCENARIOS", "Action", "Chart", "Job", "Results", "Scenario", "job"]
