"""The shared run tree: sessions with the same history share one trainer, see exactly the records
they would have computed alone, and branch off when they change something."""

import threading
import time

import pytest
from conftest import SMALL

from bnviz import TrainConfig
from bnviz.runtree import FollowError, Leads, RunTree
from bnviz.ui.session import NO_TWIN, Session


def config(**kw):
    return TrainConfig(**{**SMALL, **kw})


def opened(tree, n, **kw):
    """n sessions opening the same link: clones of one opening, as the page makes them."""
    opening = Session.lockstep(config(**kw), "none")
    opening.step(3)
    return [Session.start(config(**kw), "none", opening, tree=tree) for _ in range(n)]


def records(session):
    return session.run.to_json(), session.twin.to_json()


def solo(upto, changes=(), **kw):
    """The same history computed by one session alone, to step `upto`: changes are
    (step, {field: value})."""
    alone = opened(RunTree(), 1, **kw)[0]
    for at, change in changes:
        alone.advance(at - alone.run.num_steps)
        alone.apply_live_changes(alone.run.config.replace(**change))
    alone.advance(upto - alone.run.num_steps)
    return alone


def train(session):
    """What the page's worker does for a session that wants training."""
    return session.board().train(session.tree)


class Playing:
    """A branch trained on a thread of its own, as the page's worker does; `stepped` (the
    conftest fixture) is notified after each step and when the thread ends."""

    def __init__(self, session, stepped):
        self.session, self.stepped = session, stepped
        self.thread = threading.Thread(target=self._train)
        self.thread.start()

    def _train(self):
        try:
            train(self.session)
        finally:
            with self.stepped:
                self.stepped.notify_all()

    def until(self, step):
        with self.stepped:
            self.stepped.wait_for(
                lambda: self.session.run.num_steps >= step or not self.thread.is_alive(), 60
            )
        assert self.session.run.num_steps >= step, "it stopped"

    def join(self):
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_sessions_with_one_history_share_one_trainer_and_see_its_records():
    tree = RunTree()
    a, b, c = opened(tree, 3, steps=30)
    for s in (a, b, c):
        s.playing = True
        s.board()
    assert a.branch is b.branch is c.branch and a.riders == 3
    assert tree.census() == {"known": 1, "ridden": 1, "training": 1, "riders": 3, "playing": 3}
    assert train(a) == 27  # one trainer takes every step, for all three
    assert records(a) == records(b) == records(c) == records(solo(30, steps=30))
    assert a.state == b.state == c.state == "finished" and not b.playing


def test_a_session_that_joins_later_sees_the_records_it_would_have_computed_alone(stepped):
    tree = RunTree()
    early, late = opened(tree, 2, steps=10_000)
    early.playing = True
    playing = Playing(early, stepped)
    playing.until(20)
    late.playing = True
    assert late.board() is early.branch  # it joins at the branch's step, ahead of its own
    playing.until(35)
    early.playing = late.playing = False
    playing.join()
    steps = late.run.num_steps
    assert records(late) == records(solo(steps, steps=10_000))


def test_a_change_branches_off_from_a_copy_and_the_others_go_on_unchanged():
    tree = RunTree()
    a, b, c = opened(tree, 3, steps=40)
    for s in (a, b, c):
        s.playing = True
        s.board()
    a.steps_left, a.playing, b.playing, c.playing = 7, False, False, False
    train(a)  # ten steps for all three: b and c hold still on copies of their own
    assert a.run.num_steps == 10 and b.run.num_steps == c.run.num_steps == 3
    assert b.branch is c.branch is not a.branch  # one copy, at the step they stopped at
    a.playing = b.playing = c.playing = True
    b.board(), c.board()
    assert b.branch is c.branch is a.branch and a.run.num_steps == 10  # b and c jump to it
    shared = b.branch
    b.apply_live_changes(b.run.config.replace(lr=0.3))  # b branches off at step 10
    assert b.branch is not shared and c.branch is shared and a.branch is shared
    c.apply_live_changes(c.run.config.replace(lr=0.3))  # the same change at the same step
    b.board(), c.board()
    assert b.branch is c.branch  # their histories agree again: one trainer
    a.playing = False
    train(b)
    a.playing = True
    train(a)
    assert records(b) == records(c) == records(solo(40, [(10, {"lr": 0.3})], steps=40))
    assert records(a) == records(solo(40, steps=40))
    assert b.run.changes == [{"step": 11, "field": "lr", "old": 0.05, "new": 0.3}]


def test_pausing_while_others_play_holds_the_picture_and_not_the_trainer(stepped):
    tree = RunTree()
    watcher, player = opened(tree, 2, steps=10_000)
    watcher.playing = player.playing = True
    watcher.board(), player.board()
    playing = Playing(player, stepped)
    playing.until(15)
    watcher.playing = False  # Pause: it gets a copy before the next step
    playing.until(30)
    held = watcher.run.num_steps
    assert held < 30 and watcher.branch is not player.branch
    assert watcher.trainer.steps_done == held  # its model is at its own step
    playing.until(held + 5)
    assert watcher.run.num_steps == held
    player.playing = False
    playing.join()
    assert records(watcher) == records(solo(held, steps=10_000))


def test_step_ten_never_jumps_ahead_to_a_known_branch():
    tree = RunTree()
    ahead, behind = opened(tree, 2, steps=40)
    ahead.steps_left = 20
    train(ahead)  # known, at step 23
    ahead.playing = True  # and playing
    behind.steps_left = 10
    assert behind.board() is not ahead.branch
    train(behind)
    assert behind.run.num_steps == 13 and not behind.wants_training


def test_a_session_further_on_takes_the_others_along():
    tree = RunTree()
    first, second = opened(tree, 2, steps=10_000)
    first.steps_left = 20
    train(first)  # its own steps: at 23, known
    second.playing = True
    assert second.board() is not first.branch  # nobody plays it: second trains its own
    first.playing = True
    first.board()
    assert second.board() is first.branch  # it plays now: second joins it, ahead
    third = opened(tree, 1, steps=10_000)[0]
    third.steps_left = 30
    train(third)  # privately: 33, further on than the known one
    third.playing = True
    assert third.board() is third.branch and second.branch is third.branch  # second jumps


def test_a_failed_branch_is_never_joined():
    tree = RunTree()
    a, b = opened(tree, 2, steps=40)
    a.playing = True
    a.board()
    a.branch.lock.runs[0].status = "failed"  # as an out-of-memory step leaves it
    b.playing = True
    assert b.board() is not a.branch


def test_idle_branches_are_kept_by_recency_and_ridden_ones_always():
    tree = RunTree(max_idle=2)
    ridden = opened(tree, 1, seed=99)[0]
    ridden.playing = True
    ridden.board()
    idle = []
    for seed in range(4):
        s = opened(tree, 1, seed=seed)[0]
        s.playing = True
        s.board()
        s.stop()  # the tab closed: nobody rides it
        idle.append(s.branch.identity)
    census = tree.census()
    assert census["known"] == 3 and census["ridden"] == 1  # the newest two idle ones, and it
    assert tree._branches.get(idle[-1]) is not None and idle[0] not in tree._branches


def test_a_lone_session_without_a_twin_still_trains():
    tree = RunTree()
    s = Session.start(config(steps=8), NO_TWIN, tree=tree)
    s.playing = True
    assert train(s) == 8 and s.state == "finished"


# -- share codes -----------------------------------------------------------------------------


def test_share_codes_cannot_be_guessed_and_say_why_they_fail(monkeypatch):
    leads = Leads(hours=1)
    alive = {"yes": True}
    a, b = leads.share(lambda: alive["yes"]), leads.share()
    assert a.code != b.code and len(a.code) >= 16 and leads.find(a.code) is a
    with pytest.raises(FollowError, match="No shared run has this code"):
        leads.find("not-a-code")
    alive["yes"] = False  # the lecturer's tab closed
    with pytest.raises(FollowError, match="has ended"):
        leads.find(a.code)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    with pytest.raises(FollowError, match="expired"):
        leads.find(b.code)
    with pytest.raises(FollowError, match="has ended"):  # still says why, later on
        leads.find(a.code)


# -- drawing a shared run --------------------------------------------------------------------


def test_figures_are_built_once_for_every_session_with_the_same_records():
    from bnviz import figures
    from bnviz.ui.views import common

    tree = RunTree()
    a, b = opened(tree, 2, steps=40)  # clones of one opening: the same records
    built = []

    def loss(run, twin):
        built.append(run.num_steps)
        return figures.loss_figure(run, twin)

    fa, fb = a.frame(), b.frame()
    first = common.drawn(fa, loss, fa.run, fa.twin)
    assert common.drawn(fb, loss, fb.run, fb.twin) is first and built == [3]
    assert common.drawn(fb, loss, fb.twin, fb.run) is not first  # other arguments, other key
    b.advance(1)  # other records: drawn anew
    fb = b.frame()
    assert common.drawn(fb, loss, fb.run, fb.twin) is not first and built[-1] == 4
    # what Streamlit sends for a prepared figure is what it sends for the figure itself
    import json

    import plotly.io as pio
    import plotly.tools

    plain = figures.loss_figure(fa.run, fa.twin)
    sent = plotly.tools.return_figure_from_figure_or_data(first, validate_figure=True)
    assert json.loads(pio.to_json(sent)) == json.loads(pio.to_json(plain))
    assert first.alt == common.describe(plain)


def test_a_broken_branch_draws_its_own_figures():
    tree = RunTree()
    a, b = opened(tree, 2, steps=40)
    a.branch.lock.runs[0].status = "failed"
    assert a.frame().content is None and b.frame().content is not None


def test_live_charts_of_one_branch_draw_the_same_settled_records(monkeypatch):
    from bnviz import runtree

    tree = RunTree()
    a, b = opened(tree, 2, steps=40)
    a.playing = b.playing = True
    a.board(), b.board()
    settled = a.frame(settled=True).content
    a.steps_left, a.playing, b.playing = 5, False, True
    train(a)  # b plays on alone after a's 5 steps: stop it there
    assert b.frame(settled=True).content == settled  # within a second: the same picture
    assert b.frame().content != settled  # the status line reads the newest
    monkeypatch.setattr(runtree, "SETTLE_SECONDS", 0.0)
    assert b.frame(settled=True).content == b.frame().content


def test_a_closed_tab_wants_no_training():
    tree = RunTree()
    (s,) = opened(tree, 1, steps=40)
    s.playing = True
    assert s.wants_training
    s.connected = lambda: False
    assert not s.wants_training


def test_open_pages_are_the_sessions_drawn_lately():
    from bnviz.runtree import PAGE_SECONDS

    tree = RunTree()
    a, b, c = opened(tree, 3)
    assert tree.pages() == 3
    b.seen -= PAGE_SECONDS + 1  # not drawn for a while: its tab is closed or asleep
    c.stop()  # replaced by a new run of its page
    assert tree.pages() == 1
