import threading

from conftest import SMALL

from bnviz import TrainConfig
from bnviz.ui.session import NO_TWIN, Session, structural_key


def config(**kw):
    return TrainConfig(**{**SMALL, **kw})


def test_twin_differs_only_in_normalization_and_steps_in_lockstep():
    session = Session.start(config(), "none")
    assert session.twin.config == config(norm="none")
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


def test_advance_by_time_budget_takes_at_least_one_step():
    session = Session.start(config(), NO_TWIN)
    assert session.advance(seconds=0.0) == 1


def test_live_changes_apply_to_both_networks_and_structural_ones_change_the_key():
    session = Session.start(config(), "none")
    session.advance(steps=2)
    assert session.apply_live_changes(config(batch_size=8, lr=0.01)) == ["batch_size", "lr"]
    assert session.apply_live_changes(config(batch_size=8, lr=0.01)) == []  # idempotent
    for trainer in session.lock.trainers:
        assert trainer.settings["batch_size"] == 8 and trainer.settings["lr"] == 0.01
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
