"""One browser session's training: the main network and its twin in lockstep, and play state.
Plain Python (no streamlit), so it can be tested on its own."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from ..config import TrainConfig
from ..record import Run
from ..trainer import LIVE_FIELDS, Lockstep, Trainer

NO_TWIN = "off"


def structural_key(config: TrainConfig, twin_norm: str) -> tuple:
    """Everything whose change needs a fresh run."""
    d = config.to_dict()
    return tuple((k, str(v)) for k, v in d.items() if k not in LIVE_FIELDS) + (twin_norm,)


@dataclass
class Session:
    """The live run of one browser session (or a replayed run, with no trainer behind it)."""

    config: TrainConfig
    twin_norm: str = NO_TWIN
    lock: Lockstep | None = None
    replay: Run | None = None
    playing: bool = False
    steps_per_second: float = 0.0
    key: tuple = field(default=())
    serial: str = field(default_factory=lambda: uuid.uuid4().hex)  # identifies this run
    # Streamlit may start a new script run while the old one is still inside a training step;
    # everything that touches the model holds this lock.
    guard: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def start(cls, config: TrainConfig, twin_norm: str) -> Session:
        """A fresh run of config, with a twin that differs only in normalization (or none)."""
        configs = [config]
        if twin_norm != NO_TWIN:
            configs.append(config.replace(norm=twin_norm))
        return cls(config, twin_norm, Lockstep(configs), key=structural_key(config, twin_norm))

    @classmethod
    def replaying(cls, run: Run) -> Session:
        return cls(run.config, replay=run)

    @property
    def trainer(self) -> Trainer | None:
        return self.lock.trainers[0] if self.lock else None

    @property
    def run(self) -> Run:
        return self.replay if self.replay is not None else self.lock.runs[0]

    @property
    def twin(self) -> Run | None:
        if self.lock is None or len(self.lock.trainers) < 2:
            return None
        return self.lock.runs[1]

    @property
    def finished(self) -> bool:
        return self.replay is not None or self.run.status != "running"

    @property
    def state(self) -> str:
        """playing, paused, finished, diverged, failed, stopped or replay."""
        if self.replay is not None:
            return "replay"
        status = self.run.status
        if status == "completed":
            return "finished"
        if status != "running":
            return status
        return "playing" if self.playing else "paused"

    def advance(self, steps: int | None = None, seconds: float | None = None) -> int:
        """Train `steps` steps, or as many as fit in `seconds`; returns how many were taken."""
        if self.finished:
            return 0
        start, done = time.perf_counter(), 0
        while not self.finished and (steps is None or done < steps):
            self.lock.step(1)
            done += 1
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
        elapsed = time.perf_counter() - start
        if done and elapsed > 0:
            self.steps_per_second = done / elapsed
        if self.finished:
            self.playing = False
        return done

    def pending_changes(self, config: TrainConfig) -> list[str]:
        """The live fields whose value in config differs from the one in force."""
        settings = self.lock.trainers[0].settings
        return [k for k in LIVE_FIELDS if getattr(config, k) != settings[k]]

    def apply_live_changes(self, config: TrainConfig) -> list[str]:
        """Apply changed batch size / eps / momentum / lr from the next step on."""
        changes = {k: getattr(config, k) for k in self.pending_changes(config)}
        if changes:
            self.lock.set(**changes)
        return list(changes)
