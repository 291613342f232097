"""One browser session's training: the main network and its twin in lockstep, and play state.
Plain Python (no streamlit), so it can be tested on its own."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from ..config import LIVE_FIELDS, MAX_STEPS, MAX_STEPS_X_CHANNELS, TrainConfig
from ..record import Run
from ..trainer import Lockstep, Trainer

log = logging.getLogger(__name__)
NO_TWIN = "off"
QUANTUM_SECONDS = 20.0  # a session trains this long before yielding its thread to a waiting one
# No redraw for this long and the tab is taken for gone, so training stops. Generous: browsers
# slow the timers of hidden tabs down to once a minute.
STALE_SECONDS = 90.0
SPEED_WINDOW = 30  # steps/s is measured over the latest steps
CONTINUE_STEPS = 300  # Continue adds this many to a spent budget: the default run's length


def queue_text(position: int, threads: int) -> str:
    """Where a job waiting for a training thread stands, in words: position k waits for the
    k-th thread to come free while all `threads` are busy."""
    suffix = (
        "th" if 10 <= position % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(position % 10, "th")
    )
    return f"waiting for a free trainer ({threads} of {threads} busy), {position}{suffix} in line"


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
    steps_left: int = 0  # steps still to take for "Step 10", playing or not
    steps_per_second: float = 0.0
    stopped: bool = False  # the page let go of this session: it never trains again
    error: str = ""  # a bug stopped its training (the run record itself is intact)
    key: tuple = field(default=())
    seen: float = field(default_factory=time.monotonic)  # the latest redraw of the page
    serial: str = field(default_factory=lambda: uuid.uuid4().hex)  # identifies this run
    # Streamlit may start a new script run while the old one is still inside a training step;
    # everything that touches the model holds this lock.
    guard: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def start(cls, config: TrainConfig, twin_norm: str, opening: Lockstep | None = None) -> Session:
        """A fresh run of config, with a twin (or none) that differs in normalization and in the
        conv biases that go with it (a conv feeding a norm has none; one feeding none has).
        Given `opening` (a Lockstep of the same configs, shared by every session that asks for
        them and never stepped), it continues from a clone of it."""
        lock = opening.clone() if opening is not None else cls.lockstep(config, twin_norm)
        return cls(config, twin_norm, lock, key=structural_key(config, twin_norm))

    @staticmethod
    def lockstep(config: TrainConfig, twin_norm: str) -> Lockstep:
        configs = [config]
        if twin_norm != NO_TWIN:
            configs.append(config.replace(norm=twin_norm))
        return Lockstep(configs)

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
        if self.replay is not None:
            return self.replay.twin  # saved with the run, if it had one
        if self.lock is None or len(self.lock.trainers) < 2:
            return None
        return self.lock.runs[1]

    @property
    def finished(self) -> bool:
        return self.replay is not None or bool(self.error) or self.run.status != "running"

    @property
    def state(self) -> str:
        """playing, paused, finished, diverged, failed, stopped or replay."""
        if self.replay is not None:
            return "replay"
        if self.error:
            return "failed"
        status = self.run.status
        if status == "completed":
            return "finished"
        if status != "running":
            return status
        return "playing" if self.playing else "paused"

    @property
    def wants_training(self) -> bool:
        return not (self.finished or self.stopped) and (self.playing or self.steps_left > 0)

    def touch(self) -> None:
        """The page was drawn just now: its tab is open."""
        self.seen = time.monotonic()

    def advance(self, steps: int) -> int:
        """Train `steps` steps on this thread (tests and scripts; the app trains on the
        worker, see train()); returns how many were taken."""
        start, done = time.perf_counter(), 0
        while not self.finished and done < steps:
            with self.guard:
                self.lock.step(1)
            done += 1
        elapsed = time.perf_counter() - start
        if done and elapsed > 0:
            self.steps_per_second = done / elapsed
        self._settle()
        return done

    def train(
        self,
        others_waiting: Callable[[], bool] = lambda: False,
        connected: Callable[[], bool] = lambda: True,
    ) -> int:
        """Run on a worker thread: train while playing or steps are left, one step at a time
        so that Pause stops within a step. Stops when the browser has gone (not connected(),
        or no redraw for STALE_SECONDS); gives up the thread after QUANTUM_SECONDS when
        other sessions wait for one. Returns the steps taken."""
        start, done = time.perf_counter(), 0
        times = deque([start], maxlen=SPEED_WINDOW + 1)
        while self.wants_training:
            if not connected() or time.monotonic() - self.seen > STALE_SECONDS:
                self.playing, self.steps_left = False, 0
                break
            try:
                with self.guard:
                    self.lock.step(1)
            except Exception as e:  # a bug in bnviz: this session stops and says so
                log.exception("bnviz: training failed")
                self.error = (
                    f"Training stopped at step {self.run.num_steps + 1} by an error in bnviz "
                    f"({type(e).__name__}: {str(e)[:200]}). Press Reset to start again."
                )
                break
            self.steps_left = max(0, self.steps_left - 1)
            done += 1
            times.append(time.perf_counter())  # the speed of the latest steps
            self.steps_per_second = (len(times) - 1) / (times[-1] - times[0])
            if times[-1] - start > QUANTUM_SECONDS and others_waiting():
                break  # the page queues this session again on its next redraw
        self._settle()
        return done

    def _settle(self) -> None:
        if self.finished:
            self.playing, self.steps_left = False, 0

    def stop(self) -> None:
        """Stop training (within a step): the page has let go of this session."""
        self.stopped, self.playing, self.steps_left = True, False, 0

    def frame(self) -> Frame:
        """What to draw now: copies of the records that later steps leave alone, so drawing
        does not hold up training."""
        with self.guard:
            twin = self.twin
            return Frame(
                self,
                self.run.frozen(),
                twin.frozen() if twin is not None else None,
                self.state,
                self.steps_per_second,
            )

    @property
    def more_steps(self) -> int:
        """How many steps Continue adds to the budget: none while steps are left, else
        CONTINUE_STEPS, or fewer where the caps of config.py stop it (0: none at all)."""
        config = self.run.config
        if self.run.num_steps < config.steps:
            return 0
        cap = min(MAX_STEPS, MAX_STEPS_X_CHANNELS // sum(config.widths))
        return max(0, min(CONTINUE_STEPS, cap - config.steps))

    @property
    def can_go_on(self) -> bool:
        """Whether Continue can reopen this run (see go_on)."""
        ended = self.replay is None and not self.error and self.run.status != "running"
        return ended and (self.run.num_steps < self.run.config.steps or self.more_steps > 0)

    def go_on(self, changes: dict, play: bool = True) -> None:
        """Continue a run that ended, or fork a live one at its current step: `changes` to
        live settings apply from the next step (Trainer.set), an ended run reopens from its
        last recorded step (Lockstep.resume, with more_steps more in its budget), and the
        record as it stood is kept as run.parent, so that the figures draw where the branch
        starts and how the run before it ended."""
        with self.guard:
            parent = self.run.frozen()
            if self.run.status != "running":
                self.lock.resume(self.more_steps)
            if changes:
                self.lock.set(**changes)
            self.run.parent = parent
            self.playing = play

    def pending_changes(self, config: TrainConfig) -> list[str]:
        """The live fields whose value in config differs from the one in force."""
        run = self.lock.trainers[0].run
        return [k for k in LIVE_FIELDS if getattr(config, k) != run.setting_at(k)]

    def apply_live_changes(self, config: TrainConfig) -> list[str]:
        """Apply changed batch size / eps / momentum / lr from the next step on."""
        changes = {k: getattr(config, k) for k in self.pending_changes(config)}
        if changes:
            self.lock.set(**changes)
        return list(changes)


def replace(state: MutableMapping, new: Session | None) -> None:
    """Make `new` the session in `state` (st.session_state), or drop it with None. The session
    it replaces stops training at once instead of holding a training thread for nobody."""
    old = state.get("session")
    if old is not None and old is not new:
        old.stop()
    if new is None:
        state.pop("session", None)
    else:
        state["session"] = new


@dataclass(frozen=True)
class Frame:
    """One redraw's view of a session: the views read runs from here while training goes on.
    Live measurements on the model go through `session`, under `session.guard`."""

    session: Session
    run: Run
    twin: Run | None
    state: str
    steps_per_second: float

    @property
    def replay(self) -> Run | None:
        return self.session.replay

    @property
    def trainer(self) -> Trainer | None:
        return self.session.trainer

    @property
    def guard(self) -> threading.RLock:
        return self.session.guard

    @property
    def serial(self) -> str:
        return self.session.serial

    @property
    def playing(self) -> bool:
        return self.state == "playing"
