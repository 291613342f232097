"""The classroom scenarios, in teaching order, by id. Each module defines SCENARIO."""

from __future__ import annotations

from . import basics
from .base import Action, Job, Results, Scenario, job

FREE_PLAY = "free-play"
_MODULES = (basics,)
SCENARIOS: dict[str, Scenario] = {m.SCENARIO.id: m.SCENARIO for m in _MODULES}

__all__ = ["FREE_PLAY", "SCENARIOS", "Action", "Job", "Results", "Scenario", "job"]
