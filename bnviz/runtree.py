"""Identical live training computed once: the run tree that every session of a server shares.

Training is deterministic: a run's records follow from its configuration (seed included), its
twin, and its history of live changes, each with the step at which it applied. That is a run's
identity. Sessions whose identities agree share one `Branch`: one trainer advances it, and every
session riding it reads the new records. A session that changes a setting while others ride its
branch branches off, at that step, from a copy; from then on it trains its own branch, which
others with the same history can join when they press Play.

A session rides a branch while it wants training (Play, Step 10). One that stops wanting it
while others still do (Pause, the end of its ten steps) gets a copy of the branch at that step,
so that its pictures and measurements hold still (a closed tab just leaves); the trainer goes
on for the others, and stops when nobody plays it. A run nobody plays is not joined. Followers
(Leads, below) watch another session's branch without riding it. Plain Python, no streamlit.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cache import describe
from .config import TrainConfig
from .record import Run
from .trainer import Lockstep

if TYPE_CHECKING:
    from .ui.session import Session  # a rider: anything with the attributes used below

log = logging.getLogger(__name__)
QUANTUM_SECONDS = 20.0  # a branch trains this long before yielding its thread to a waiting one
SPEED_WINDOW = 30  # steps/s is measured over the latest steps
MAX_IDLE = 8  # branches nobody rides that the tree keeps for later joiners, most recent first
PAGE_SECONDS = 30.0  # a session drawn within this long counts as an open page
SETTLE_SECONDS = 1.0  # live charts of one branch draw the same records within this long


class Branch:
    """One training (a Lockstep of the main network and its twin) and its identity."""

    def __init__(self, lock: Lockstep, config: TrainConfig, twin: str, history: tuple = ()) -> None:
        self.lock, self.config, self.twin, self.history = lock, config, twin, history
        self.serial = uuid.uuid4().hex  # names this branch: worker jobs, held figures
        # Streamlit may start a new script run while a step is under way: everything that
        # touches the model holds this lock.
        self.guard = threading.RLock()
        self.riders: weakref.WeakSet[Session] = weakref.WeakSet()
        self.error = ""  # a bug stopped its training (the records themselves are intact)
        self.steps_per_second = 0.0
        self._picture = self._freeze()
        self._settled, self._settled_at = self._picture, time.monotonic()

    def _freeze(self) -> tuple[Run, Run | None]:
        runs = self.lock.runs
        return runs[0].frozen(), (runs[1].frozen() if len(runs) > 1 else None)

    def refresh(self) -> None:
        """Freeze the records anew after a change outside a step (a setting, Continue)."""
        with self.guard:
            self._picture = self._settled = self._freeze()
            self._settled_at = time.monotonic()

    def picture(self) -> tuple[Run, Run | None]:
        """Its records frozen (Run.frozen): as they stand when no step is under way, else as
        the last step left them. Drawing never waits for a step: with a class of sessions
        on one branch, a lock they all waited on would hold up every page and the trainer."""
        if self.guard.acquire(blocking=False):
            try:
                self._picture = self._freeze()
            finally:
                self.guard.release()
        return self._picture

    def settled_picture(self) -> tuple[Run, Run | None]:
        """The picture as it was at most SETTLE_SECONDS ago: while a branch plays, the charts of
        all its riders are drawn from the same records within a second, so that each figure is
        built once a second for all of them (bnviz/ui/views/common.py), not once a page."""
        now = time.monotonic()
        if now - self._settled_at >= SETTLE_SECONDS:
            self._settled, self._settled_at = self.picture(), now
        return self._settled

    @property
    def identity(self) -> tuple:
        """What determines every record: configuration, twin, and the changes with their step."""
        return (self.config, self.twin, self.history)

    @property
    def steps(self) -> int:
        return self.lock.trainers[0].steps_done

    @property
    def broken(self) -> bool:
        """Stopped by something other than its own arithmetic (a bug, memory): its history
        does not say what the next session would see, so nobody joins it."""
        return bool(self.error) or self.lock.runs[0].status == "failed"

    @property
    def finished(self) -> bool:
        return bool(self.error) or self.lock.runs[0].status != "running"

    def copy(self) -> Branch:
        """A private copy that continues exactly as this branch would (same identity)."""
        with self.guard:
            copied = Branch(self.lock.clone(), self.config, self.twin, self.history)
            copied.steps_per_second = self.steps_per_second
            return copied

    def set(self, changes: dict) -> None:
        """Change live settings from the next step on (Trainer.set), in the history too."""
        if changes:
            with self.guard:
                self.lock.set(**changes)
                self.history += ((self.steps, "set", tuple(sorted(changes.items()))),)
                self.refresh()

    def resume(self, extra_steps: int) -> None:
        """Reopen a run that ended (Lockstep.resume), in the history too."""
        with self.guard:
            self.lock.resume(extra_steps)
            self.history += ((self.steps, "resume", extra_steps),)
            self.refresh()

    def wanting(self) -> list[Session]:
        """The riders that want it to train (Session.wants_training: a closed tab does not);
        those whose tab has gone stop playing."""
        riders = list(self.riders)
        for rider in riders:
            if rider.playing and not rider.alive():
                rider.playing, rider.steps_left = False, 0
        return [r for r in riders if r.wants_training]

    def train(self, tree: RunTree, others_waiting: Callable[[], bool] = lambda: False) -> int:
        """Run on a worker thread: step while any rider wants it, one step at a time so that
        Pause stops within a step; give the thread up after QUANTUM_SECONDS when other
        branches wait for one. Before each step, riders that no longer want training get a
        copy of the branch as it stands. Returns the steps taken."""
        start, done = time.perf_counter(), 0
        times = deque([start], maxlen=SPEED_WINDOW + 1)
        # one line per stint in the server's log: bench/bench_class.py counts the trainers
        log.info(
            "bnviz train: %s %s from step %d", self.serial[:12], describe(self.identity), self.steps
        )
        while not self.finished:
            if not tree.hold_still(self):
                break
            try:
                with self.guard:
                    self.lock.step(1)
                    self._picture = self._freeze()
            except Exception as e:  # a bug in bnviz: this branch stops and says so
                log.exception("bnviz: training failed")
                self.error = (
                    f"Training stopped at step {self.lock.runs[0].num_steps + 1} by an error "
                    f"in bnviz ({type(e).__name__}: {str(e)[:200]}). Press Reset to start again."
                )
                break
            for rider in list(self.riders):
                rider.steps_left = max(0, rider.steps_left - 1)
            done += 1
            times.append(time.perf_counter())  # the speed of the latest steps
            self.steps_per_second = (len(times) - 1) / (times[-1] - times[0])
            if times[-1] - start > QUANTUM_SECONDS and others_waiting():
                break  # the riders' pages queue it again on their next redraw
        if self.finished:
            for rider in list(self.riders):
                rider.playing, rider.steps_left = False, 0
        return done


class RunTree:
    """The branches of a server, by identity, and which session rides which."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._lock = threading.RLock()
        self._branches: OrderedDict[tuple, Branch] = OrderedDict()
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    def enter(self, session: Session) -> None:
        """A new session of this server (see pages)."""
        with self._lock:
            self._sessions.add(session)

    def pages(self) -> int:
        """Sessions whose page was drawn within PAGE_SECONDS: the pages open on this server,
        playing or not (any may press Play at any moment)."""
        with self._lock:
            sessions = list(self._sessions)
        now = time.monotonic()
        return sum(not s.stopped and now - s.seen <= PAGE_SECONDS for s in sessions)

    def ride(self, session: Session, branch: Branch) -> None:
        """Make `branch` the one `session` rides (and no other)."""
        with self._lock:
            old = session.branch
            if old is not None and old is not branch:
                old.riders.discard(session)
            session.branch = branch
            branch.riders.add(session)

    def leave(self, session: Session) -> None:
        """The session lets go of its branch (it stopped; a new run replaced it)."""
        with self._lock:
            if session.branch is not None:
                session.branch.riders.discard(session)
                self._evict()

    def board(self, session: Session) -> Branch:
        """Before `session` trains: the branch to train. A known branch of the same identity
        that is training now is joined when it is at least as far (at the same step exactly
        for Step 10: a step must not jump ahead); the session's own is made known when it is
        further on, and the riders that play the one it passes move over to it. A branch
        nobody plays (finished, paused) is not joined: the session trains its own and watches
        it learn. Idempotent."""
        with self._lock:
            mine = session.branch
            if mine.broken:
                return mine
            known = self._branches.get(mine.identity)
            if known is mine:
                self._branches.move_to_end(mine.identity)
                return mine
            if known is not None and not known.broken and known.wanting():  # training now
                if known.steps > mine.steps and not session.playing:
                    return mine  # a few steps of its own: trained privately, not shared
                if known.steps >= mine.steps:
                    self.ride(session, known)
                    self._branches.move_to_end(known.identity)
                    return known
                for rider in known.wanting():  # it is behind: its players jump ahead
                    self.ride(rider, mine)
            self._branches[mine.identity] = mine
            self._branches.move_to_end(mine.identity)
            self._evict()
            return mine

    def own(self, session: Session) -> Branch:
        """Before `session` changes its run: a branch that only it rides. That is a copy when
        others ride the one it is on; else that one, no longer known by its old identity."""
        with self._lock:
            branch = session.branch
            if any(r is not session for r in branch.riders):
                self.ride(session, branch.copy())
            elif self._branches.get(branch.identity) is branch:
                del self._branches[branch.identity]
            return session.branch

    def hold_still(self, branch: Branch) -> bool:
        """Called by a training branch before each step: whether anyone wants the step. The
        riders that do not get a copy first, so what they show holds still."""
        with self._lock:
            wanting = branch.wanting()
            idle = [r for r in branch.riders if r not in wanting] if wanting else []
            gone = [r for r in idle if r.stopped or not r.alive()]  # nobody looks: no copy
            for rider in gone:
                branch.riders.discard(rider)
            watching = [r for r in idle if r not in gone]
            if watching:
                still = branch.copy()  # one copy for all of them: they share its history
                for rider in watching:
                    self.ride(rider, still)
            return bool(wanting)

    def _evict(self) -> None:
        idle = [k for k, b in self._branches.items() if not len(b.riders)]
        for identity in idle[: max(0, len(idle) - self.max_idle)]:  # oldest first
            del self._branches[identity]

    def census(self) -> dict[str, int]:
        """Known branches, those with a rider, those training (a rider wants it), riders,
        and riders that want training."""
        with self._lock:
            branches = list(self._branches.values())
        wanting = [sum(r.wants_training for r in b.riders) for b in branches]
        return {
            "known": len(branches),
            "ridden": sum(bool(len(b.riders)) for b in branches),
            "training": sum(bool(n) for n in wanting),
            "riders": sum(len(b.riders) for b in branches),
            "playing": sum(wanting),
        }


# -- following another session's run ---------------------------------------------------------

FOLLOW_HOURS = 4.0  # a share link lasts this long: a lecture, with room to spare
CODE_BYTES = 12  # 96 random bits: a code cannot be guessed
REMEMBERED_CODES = 1024  # expired codes remembered, so that their links say why they fail


class FollowError(LookupError):
    """A follow code that leads nowhere; the message says why, in words for the page."""


@dataclass
class Lead:
    """A session that shares its live run: what its followers read, refreshed by its page."""

    code: str
    expires: float  # time.time()
    alive: Callable[[], bool] = lambda: True  # whether the lecturer's tab is still open
    session: Any = None  # the lecturer's current Session (a new one after Reset)
    scenario: str = ""  # the lecturer's scenario and hidden controls (a copy takes them)
    hidden: list = field(default_factory=list)
    ended: bool = False  # the lecturer stopped sharing
    followers: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires

    @property
    def live(self) -> bool:
        return not self.ended and not self.expired and self.alive()

    @property
    def audience(self) -> int:
        """Followers whose tab is open (a closed tab stays in `followers` until Streamlit lets
        its session go, minutes later)."""
        return sum(bool(f.connected()) for f in list(self.followers))


class Leads:
    """The share codes of a server: code -> Lead, and why a code no longer works."""

    def __init__(self, hours: float = FOLLOW_HOURS) -> None:
        self.hours = hours
        self._lock = threading.Lock()
        self._leads: dict[str, Lead] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()  # code -> why it no longer works

    def share(self, alive: Callable[[], bool] = lambda: True) -> Lead:
        """A new share code for a session (its page keeps the Lead up to date)."""
        lead = Lead(secrets.token_urlsafe(CODE_BYTES), time.time() + self.hours * 3600, alive)
        with self._lock:
            self._sweep()
            self._leads[lead.code] = lead
        return lead

    def stop(self, lead: Lead) -> None:
        with self._lock:
            lead.ended = True
            self._sweep()

    def find(self, code: str) -> Lead:
        """The live Lead of a code, or FollowError saying why there is none."""
        with self._lock:
            self._sweep()
            lead = self._leads.get(code)
            if lead is not None:
                return lead
            why = self._gone.get(code)
        if why is not None:
            raise FollowError(why)
        raise FollowError(
            "No shared run has this code. Check the link, or ask for a new one: a code works "
            "only on the server that made it."
        )

    def _sweep(self) -> None:
        for code, lead in list(self._leads.items()):
            if not lead.live:
                del self._leads[code]
                self._gone[code] = (
                    f"This link expired: a shared run can be followed for {self.hours:g} hours."
                    if lead.expired
                    else "The session that shared this run has ended. Ask for a new link."
                )
        while len(self._gone) > REMEMBERED_CODES:
            self._gone.popitem(last=False)


# One of each per server, shared by every session (see bnviz/ui/page.py).
tree = RunTree()
leads = Leads()
