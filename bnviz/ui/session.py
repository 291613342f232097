"""One browser session: the run it shows (a branch of the server's run tree, bnviz/runtree.py,
which it rides with every session of the same history, or a lecturer's that it follows), and
its own play state. Plain Python (no streamlit), so it can be tested on its own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from .. import runtree
from ..config import LIVE_FIELDS, MAX_STEPS, MAX_STEPS_X_CHANNELS, TrainConfig
from ..record import Run
from ..runtree import Branch, Lead, RunTree
from ..trainer import Lockstep, Trainer

log = logging.getLogger(__name__)
NO_TWIN = "off"
# No redraw for this long and the tab is taken for gone, so training stops. Generous: browsers
# slow the timers of hidden tabs down to once a minute.
STALE_SECONDS = 90.0
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


@dataclass(eq=False)
class Session:
    """The live run of one browser session (or a replayed run, with no trainer behind it).
    The training itself is a Branch of the server's run tree (bnviz/runtree.py), which other
    sessions with the same history may ride too; play state and every view stay per session."""

    config: TrainConfig
    twin_norm: str = NO_TWIN
    branch: Branch | None = None
    replay: Run | None = None
    playing: bool = False
    steps_left: int = 0  # steps still to take for "Step 10", playing or not
    stopped: bool = False  # the page let go of this session: it never trains again
    key: tuple = field(default=())
    seen: float = field(default_factory=time.monotonic)  # the latest redraw of the page
    connected: Callable[[], bool] = lambda: True  # whether its browser tab is still open
    tree: RunTree = field(default_factory=lambda: runtree.tree, repr=False)  # the server's
    _guard: threading.RLock = field(default_factory=threading.RLock, repr=False)  # replays
    _speed: float = 0.0  # steps/s of advance() (tests and scripts)
    # A follower watches another session's run, read-only (runtree.Lead): it never rides a
    # branch, so it can neither train nor change one.
    lead: Lead | None = None
    held: bool = False  # a follower that paused its own display: it shows a copy of its own
    orphaned: bool = False  # its lead ended or expired: it keeps a copy of the run so far

    def __post_init__(self) -> None:
        self.tree.enter(self)

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        twin_norm: str,
        opening: Lockstep | None = None,
        tree: RunTree | None = None,
    ) -> Session:
        """A fresh run of config, with a twin (or none) that differs in normalization and in the
        conv biases that go with it (a conv feeding a norm has none; one feeding none has).
        Given `opening` (a Lockstep of the same configs, shared by every session that asks for
        them and never stepped), it continues from a clone of it."""
        lock = opening.clone() if opening is not None else cls.lockstep(config, twin_norm)
        session = cls(
            config, twin_norm, key=structural_key(config, twin_norm), tree=tree or runtree.tree
        )
        session.tree.ride(session, Branch(lock, config, twin_norm))
        return session

    @classmethod
    def following(cls, lead: Lead) -> Session:
        """A follower of `lead`'s live run."""
        leader = lead.session
        follower = cls(leader.config, leader.twin_norm, key=leader.key, lead=lead)
        lead.followers.add(follower)
        follower.follow()
        return follower

    def follow(self) -> None:
        """A follower's redraw: it shows the lead's run as it is now, unless its display is
        held; once the lead has ended or expired it keeps a copy of the run so far."""
        lead = self.lead
        if lead is None or self.held or self.orphaned:
            return
        if not lead.live:
            self.orphaned = True
            lead.followers.discard(self)
            if self.branch is not None:
                self.branch = self.branch.copy()
            return
        leader = lead.session
        self.config, self.twin_norm, self.key = leader.config, leader.twin_norm, leader.key
        self.branch, self.replay = leader.branch, leader.replay

    def hold(self, held: bool) -> None:
        """A follower pauses its own display (a copy of the run as it is: nothing it shows
        moves) or follows the live run again."""
        if held and not self.held and self.branch is not None:
            self.branch = self.branch.copy()
        self.held = held
        self.follow()

    def copy(self) -> Session:
        """A session of its own that goes on from what this follower shows ("take a copy"):
        a private branch, which it trains and changes as any session does."""
        mine = Session(
            self.config, self.twin_norm, replay=self.replay, key=self.key, tree=self.tree
        )
        if self.branch is not None:
            self.tree.ride(mine, self.branch.copy())
        return mine

    @property
    def leader(self) -> Session | None:
        """The session a live follower shows (None: not a follower, or it no longer follows)."""
        if self.lead is None or self.held or self.orphaned:
            return None
        return self.lead.session

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
    def lock(self) -> Lockstep | None:
        return self.branch.lock if self.branch is not None else None

    @property
    def guard(self) -> threading.RLock:
        """Held by everything that touches the model (its branch's lock)."""
        return self.branch.guard if self.branch is not None else self._guard

    @property
    def serial(self) -> str:
        """Names the run this session shows: a new one when it moves to another branch."""
        return self.branch.serial if self.branch is not None else f"replay {id(self.replay)}"

    @property
    def error(self) -> str:
        return self.branch.error if self.branch is not None else ""

    @property
    def steps_per_second(self) -> float:
        return self.branch.steps_per_second if self.branch is not None else self._speed

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
    def riders(self) -> int:
        """How many sessions (this one included) ride its branch."""
        return len(self.branch.riders) if self.branch is not None else 0

    @property
    def finished(self) -> bool:
        return self.replay is not None or bool(self.error) or self.run.status != "running"

    @property
    def state(self) -> str:
        """playing, paused, finished, diverged, failed, stopped or replay."""
        if self.leader is not None:
            return self.leader.state  # the lecturer's
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
        """Playing or with steps left, and its tab still open (a closed tab wants nothing,
        whether or not a trainer has noticed yet)."""
        wants = not (self.finished or self.stopped) and (self.playing or self.steps_left > 0)
        return wants and self.alive()

    def touch(self) -> None:
        """The page was drawn just now: its tab is open."""
        self.seen = time.monotonic()

    def alive(self) -> bool:
        """Whether its tab is open: connected, and drawn within STALE_SECONDS."""
        return self.connected() and time.monotonic() - self.seen <= STALE_SECONDS

    def advance(self, steps: int) -> int:
        """Train `steps` steps on this thread (tests and scripts; the app trains on the
        worker, see train()); returns how many were taken."""
        branch = self.tree.own(self) if self.riders > 1 else self.branch  # others stay put
        start, done = time.perf_counter(), 0
        while not self.finished and done < steps:
            with branch.guard:
                branch.lock.step(1)
            done += 1
        branch.refresh()
        elapsed = time.perf_counter() - start
        if done and elapsed > 0:
            self._speed = branch.steps_per_second = done / elapsed
        self._settle()
        return done

    def board(self) -> Branch:
        """The branch to train now: a known one of the same history, or its own (RunTree.board)."""
        return self.tree.board(self)

    def train(
        self,
        others_waiting: Callable[[], bool] = lambda: False,
        connected: Callable[[], bool] | None = None,
    ) -> int:
        """Run on a worker thread: train this session's branch while it or another rider
        plays it (Branch.train). Returns the steps taken."""
        if connected is not None:
            self.connected = connected
        done = self.board().train(self.tree, others_waiting)
        self._settle()
        return done

    def _settle(self) -> None:
        if self.finished:
            self.playing, self.steps_left = False, 0

    def stop(self) -> None:
        """Stop training (within a step): the page has let go of this session."""
        self.stopped, self.playing, self.steps_left = True, False, 0
        self.tree.leave(self)

    def frame(self, settled: bool = False) -> Frame:
        """What to draw now: copies of the records that later steps leave alone, so drawing
        does not hold up training (Branch.picture); settled, as they were at most a second
        ago (Branch.settled_picture: live charts)."""
        branch = self.branch  # read once: the session may move to another between steps
        if branch is None:
            twin = self.replay.twin
            return Frame(self, self.replay.frozen(), twin and twin.frozen(), "replay", 0.0)
        run, twin = branch.settled_picture() if settled else branch.picture()
        return Frame(self, run, twin, self.state, branch.steps_per_second, branch)

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
        starts and how the run before it ended. A branch others ride is copied first."""
        branch = self.tree.own(self)
        with branch.guard:
            parent = self.run.frozen()
            if self.run.status != "running":
                branch.resume(self.more_steps)
            branch.set(changes)
            self.run.parent = parent
            branch.refresh()
            self.playing = play

    def pending_changes(self, config: TrainConfig) -> list[str]:
        """The live fields whose value in config differs from the one in force."""
        run = self.lock.trainers[0].run
        return [k for k in LIVE_FIELDS if getattr(config, k) != run.setting_at(k)]

    def apply_live_changes(self, config: TrainConfig) -> list[str]:
        """Apply changed batch size / eps / momentum / lr from the next step on (on a copy of
        the branch if others ride it: this session branches off here)."""
        changes = {k: getattr(config, k) for k in self.pending_changes(config)}
        if changes:
            self.tree.own(self).set(changes)
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
    branch: Branch | None = None  # the training it was read from (None: a replay)

    @property
    def replay(self) -> Run | None:
        return self.session.replay

    @property
    def trainer(self) -> Trainer | None:
        return self.branch.lock.trainers[0] if self.branch is not None else None

    @property
    def guard(self) -> threading.RLock:
        return self.branch.guard if self.branch is not None else self.session.guard

    @property
    def serial(self) -> str:
        return self.branch.serial if self.branch is not None else self.session.serial

    @property
    def content(self) -> tuple | None:
        """What determines every record drawn from this frame: its branch's history and how
        far each run has got (training is deterministic). None where nothing guarantees it:
        a replay, or a branch stopped by a fault."""
        if self.branch is None or self.branch.broken:
            return None
        twin = self.twin
        return (
            self.branch.identity,
            (self.run.num_steps, self.run.status),
            None if twin is None else (twin.num_steps, twin.status),
        )

    @property
    def riders(self) -> int:
        """How many sessions ride the branch it was read from (this one included)."""
        return len(self.branch.riders) if self.branch is not None else 0

    @property
    def playing(self) -> bool:
        return self.state == "playing"
