"""Scenario picker and shareable links, driven through AppTest."""

import pytest
from conftest import open_app
from streamlit.testing.v1 import AppTest

from bnviz.cache import SharedCache, worker
from bnviz.scenarios import FREE_PLAY, SCENARIOS
from bnviz.ui import controls


@pytest.fixture(autouse=True)
def no_background_jobs(monkeypatch):
    """Scenario experiments are tested on their own; here they are only queued (the page's
    own first steps still train)."""
    submitted, submit = [], worker.submit

    class Pending:
        def done(self):
            return False

    def queue(key, fn, cache=None):
        if key[0] == "opening":
            return submit(key, fn, cache)
        submitted.append(key)
        return Pending()

    monkeypatch.setattr(worker, "submit", queue)
    # results that an earlier test's experiments left in the shared cache would not be queued
    monkeypatch.setattr(worker, "cache", SharedCache())
    return submitted


@pytest.fixture(autouse=True)
def no_precomputed_results(monkeypatch):
    """As on a host without the shipped results (tests/test_precompute.py covers those), so
    every scenario with jobs queues one."""
    monkeypatch.setattr("bnviz.precompute.load", lambda *args, **kwargs: {})


def text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return " ".join(parts + [e.value for e in at.error] + [c.value for c in at.code])


@pytest.mark.parametrize("scenario_id", list(SCENARIOS))
def test_every_scenario_opens_from_its_link(scenario_id, no_background_jobs):
    scenario = SCENARIOS[scenario_id]
    at = open_app(scenario=scenario_id)
    assert at.session_state["scenario"] == scenario_id
    assert at.session_state["view"] == scenario.view
    assert scenario.title in text(at)
    for key, value in scenario.preset.items():
        assert at.session_state[key] == value, key
    assert at.session_state["session"].run.num_steps > 0
    assert len(at.get("plotly_chart")) >= 1
    assert len(no_background_jobs) == (1 if scenario.jobs() else 0)


def test_link_presets_override_the_scenario_and_show_in_the_copy_link():
    at = open_app(scenario="bn-basics", batch_size="8", lr="0.3")
    config = at.session_state["session"].run.config
    assert (config.batch_size, config.lr) == (8, 0.3)
    link = " ".join(c.value for c in at.code)
    assert "scenario=bn-basics" in link and "batch_size=8" in link and "lr=0.3" in link


def test_hidden_controls_are_not_drawn_but_keep_their_values():
    at = open_app(hide="eps,momentum", eps="0.001")
    keys = {w.key for w in at.get("select_slider")} | {w.key for w in at.get("slider")}
    assert "eps" not in keys and "momentum" not in keys and "batch_size" in keys
    assert at.session_state["session"].run.config.eps == 0.001
    at.select_slider(key="batch_size").set_value(16).run()
    assert at.session_state["session"].trainer.run.setting_at("eps") == 0.001
    assert "hide=eps,momentum" in " ".join(c.value for c in at.code)


def test_bad_links_are_ignored_with_a_visible_note():
    at = open_app(scenario="nope", batch_size="7", eps="nan", bogus="<b>x</b>", hide="wings")
    notes = " ".join(e.value for e in at.error)
    assert "unknown scenario 'nope'" in notes
    assert "batch_size must be 1, 2, 4" in notes and "eps must be" in notes
    assert "unknown setting 'bogus'" in notes and "wings" in notes
    assert "<b>" not in notes
    config = at.session_state["session"].run.config
    assert (config.batch_size, config.eps) == (64, 1e-5)  # defaults kept


def test_picker_applies_a_scenario_and_back_to_free_play():
    at = open_app()
    assert at.session_state["scenario"] == FREE_PLAY
    at.selectbox(key="scenario").set_value("bn-basics").run()
    assert at.session_state["view"] == SCENARIOS["bn-basics"].view
    assert SCENARIOS["bn-basics"].title in text(at)
    at.selectbox(key="scenario").set_value(FREE_PLAY).run()
    assert SCENARIOS["bn-basics"].title not in text(at)


def test_link_query_round_trips_through_parse():
    values = {**controls.DEFAULTS, "batch_size": 8, "eps": 0.001, "momentum_none": True}
    query = controls.link_query(values, "bn-basics", ["eps"], "Gradients")
    assert (
        query
        == "scenario=bn-basics&batch_size=8&eps=0.001&momentum_none=true&hide=eps&view=Gradients"
    )
    for part in query.split("&"):
        key, value = part.split("=")
        if key in controls.CONTROLS:
            assert controls.parse(key, value) == values[key]


def test_a_links_hide_lock_survives_picking_another_scenario():
    at = open_app(hide="eps")
    at.selectbox(key="scenario").set_value("momentum-lag").run()
    assert "eps" in at.session_state["hidden"]
    assert "eps" not in {w.key for w in at.get("select_slider")}


def test_presenter_mode_from_a_link_and_the_toggle_composes_and_stays_in_the_link():
    at = open_app(scenario="high-lr", present="1", view="Gradients", hide="eps")
    assert at.session_state["present"] is True
    assert at.session_state["view"] == "Gradients"
    assert "eps" in at.session_state["hidden"]
    copied = " ".join(c.value for c in at.code)
    for part in ("present=1", "scenario=high-lr", "view=Gradients", "hide=eps"):
        assert part in copied
    assert at.query_params["present"] in ("1", ["1"])
    # presenter mode: no page title; the scenario's explanation folds under its takeaway
    assert not [t for t in at.title if "BatchNorm, live" in t.value]
    assert [e for e in at.expander if e.label == "The full explanation"]
    at.toggle(key="present").set_value(False).run()
    assert "present" not in at.query_params
    assert [t for t in at.title if "BatchNorm, live" in t.value]
    assert [e for e in at.expander if e.label == "Explanation"]


def test_a_bad_present_value_is_ignored_with_a_note():
    at = open_app(present="yes")
    assert at.session_state["present"] is False
    assert "present must be 1 or 0" in text(at)
