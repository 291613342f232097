import threading
import time

import torch
from conftest import SMALL

from bnviz import Run, TrainConfig
from bnviz.config import MAX_STEPS
from bnviz.ui.session import CONTINUE_STEPS, NO_TWIN, STALE_SECONDS, Session, structural_key


def config(**kw):
    return TrainConfig(**{**SMALL, **kw})


def test_twin_differs_in_normalization_and_its_conv_biases_and_steps_in_lockstep():
    session = Session.start(config(), "none")
    assert session.twin.config == config(norm="none")
    # what the captions say: the same initial conv weights; biases only where no norm follows
    main, twin = (t.model for t in session.lock.trainers)
    for a, b in zip(main.blocks, twin.blocks):
        assert torch.equal(a.conv.weight, b.conv.weight)
        assert a.conv.bias is None and b.conv.bias is not None
    assert torch.equal(main.head.weight, twin.head.weight)
    session.advance(steps=5)
    assert session.run.num_steps == session.twin.num_steps == 5
    assert Session.start(config(), NO_TWIN).twin is None


def test_states_and_finishing():
    session = Session.start(config(steps=6), NO_TWIN)
    assert session.state == "paused"
    session.playing = True
    assert session.state == "playing"
    assert session.advance(steps=100) == 6
    assert session.state == "finished" and not session.playing
    assert session.advance(steps=1) == 0
    assert session.steps_per_second > 0
    diverged = Session.start(config(norm="none", lr=1e4), NO_TWIN)
    diverged.advance(steps=40)
    assert diverged.state == "diverged"


def test_live_changes_apply_to_both_networks_and_structural_ones_change_the_key():
    session = Session.start(config(), "none")
    session.advance(steps=2)
    assert session.apply_live_changes(config(batch_size=8, lr=0.01)) == ["batch_size", "lr"]
    assert session.apply_live_changes(config(batch_size=8, lr=0.01)) == []  # idempotent
    for trainer in session.lock.trainers:
        assert trainer.run.setting_at("batch_size") == 8 and trainer.run.setting_at("lr") == 0.01
    assert session.run.changes[0]["step"] == 3
    base = structural_key(config(), "none")
    assert structural_key(config(batch_size=8, eps=1e-3, momentum=None, lr=1.0), "none") == base
    assert structural_key(config(norm="group"), "none") != base
    assert structural_key(config(), "batch") != base


def test_eps_change_on_a_network_without_eps_is_recorded_once():
    session = Session.start(config(norm="none"), NO_TWIN)
    session.advance(steps=1)
    assert session.apply_live_changes(config(norm="none", eps=1e-3)) == ["eps"]
    assert session.apply_live_changes(config(norm="none", eps=1e-3)) == []


def test_concurrent_sessions_do_not_share_runs():
    results = {}

    def work(name, batch_size):
        session = Session.start(config(batch_size=batch_size), NO_TWIN)
        session.advance(steps=4)
        results[name] = session

    threads = [threading.Thread(target=work, args=(n, b)) for n, b in (("a", 8), ("b", 16))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = results["a"], results["b"]
    assert a.run is not b.run and a.trainer.model is not b.trainer.model
    assert (a.run.config.batch_size, b.run.config.batch_size) == (8, 16)
    alone = Session.start(config(batch_size=8), NO_TWIN)
    alone.advance(steps=4)
    assert alone.run.to_dict() == a.run.to_dict()


def test_training_on_a_thread_stops_within_a_step_of_pause():
    session = Session.start(config(steps=10_000), NO_TWIN)
    session.playing = True
    worker = threading.Thread(target=session.train)
    worker.start()
    deadline = time.monotonic() + 60
    while session.run.num_steps < 3:  # no event for a step: poll the record, with a deadline
        assert time.monotonic() < deadline, "no steps"
        time.sleep(0.01)
    session.playing = False
    at_pause = session.run.num_steps
    worker.join(60)  # train() returns: nothing trains this session any more
    assert not worker.is_alive() and session.run.num_steps <= at_pause + 1  # the step under way
    assert session.state == "paused" and session.steps_per_second > 0


def test_steps_left_are_trained_and_a_finished_run_stops_playing():
    session = Session.start(config(steps=12), NO_TWIN)
    session.steps_left = 5
    assert session.train() == 5 and session.steps_left == 0 and not session.wants_training
    session.playing = True
    assert session.train() == 7 and session.state == "finished" and not session.playing


def test_training_stops_when_the_tab_goes_quiet(monkeypatch):
    session = Session.start(config(steps=10_000), NO_TWIN)
    session.playing = True
    session.seen -= STALE_SECONDS + 1  # no redraw for longer than STALE_SECONDS
    assert session.train() == 0 and not session.playing


def test_a_long_stint_yields_its_thread_only_when_others_wait(monkeypatch):
    monkeypatch.setattr("bnviz.runtree.QUANTUM_SECONDS", 0.0)
    session = Session.start(config(steps=10_000), NO_TWIN)
    session.playing = True
    assert session.train(others_waiting=lambda: True) == 1  # its turn is over: yield
    assert session.playing  # still wants to train; the page queues it again
    session.steps_left, session.playing = 3, False
    assert session.train(others_waiting=lambda: False) == 3


def test_a_frame_is_a_still_picture_of_the_session():
    session = Session.start(config(steps=100), "none")
    session.advance(steps=2)
    frame = session.frame()
    session.advance(steps=3)
    assert (frame.run.num_steps, frame.twin.num_steps) == (2, 2)
    assert frame.state == "paused" and frame.trainer is session.trainer
    assert session.run.num_steps == 5


def test_starting_from_an_opening_clones_it():
    opening = Session.lockstep(config(), "none")
    opening.step(3)
    before = opening.runs[0].to_json()
    a = Session.start(config(), "none", opening)
    b = Session.start(config(), "none", opening)
    a.advance(steps=2)
    assert opening.runs[0].to_json() == before and b.run.num_steps == 3
    b.advance(steps=2)
    assert a.run.to_json() == b.run.to_json()


def test_a_diverged_run_goes_on_as_a_branch_and_its_record_stays_valid():
    session = Session.start(config(norm="none", lr=1e4), NO_TWIN)
    session.advance(steps=40)
    diverged_at = session.run.diverged_step
    assert session.state == "diverged" and session.can_go_on and session.more_steps == 0
    session.go_on({"lr": 0.01}, play=False)
    run = session.run
    assert session.state == "paused" and run.diverged_step is None and run.message == ""
    assert run.parent.status == "diverged" and run.parent.diverged_step == diverged_at
    assert run.changes == [{"step": diverged_at, "field": "lr", "old": 1e4, "new": 0.01}]
    assert Run.from_json(run.to_json()).to_json() == run.to_json()
    # lr 1e4 grew the weights before the loss showed it: the same step diverges again, as the
    # page warns, and says so in the record
    session.advance(steps=1)
    assert run.status == "diverged" and run.diverged_step == diverged_at
    assert Run.from_json(run.to_json()).to_json() == run.to_json()


def test_continue_adds_steps_only_within_the_caps():
    assert Session.start(config(steps=40), NO_TWIN).more_steps == 0  # steps left: none added
    full = Session.start(config(steps=6), NO_TWIN)
    full.advance(steps=6)
    assert full.more_steps == CONTINUE_STEPS
    capped = Session.start(config(steps=MAX_STEPS - 10), NO_TWIN)
    capped.lock.trainers[0].run.table.rows = MAX_STEPS - 10  # as if every step were taken
    assert capped.more_steps == 10
    at_cap = Session.start(config(steps=MAX_STEPS), NO_TWIN)
    at_cap.lock.trainers[0].run.table.rows = MAX_STEPS
    at_cap.lock.trainers[0].run.status = "completed"
    assert at_cap.more_steps == 0 and not at_cap.can_go_on
