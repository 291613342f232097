"""Follow the lecturer: a shared live run watched read-only through ?follow=CODE, a copy taken to
go on alone, and clear words for a code that leads nowhere. Lecturer and students are AppTests
of one process, as the sessions of one server are."""

import time

import pytest
from conftest import open_app

from bnviz import runtree
from bnviz.ui import page
from bnviz.ui.session import Session

FIRST = page.FIRST_STEPS


def session(at) -> Session:
    return at.session_state["session"]


def text(at) -> str:
    return " ".join(
        e.value for kind in ("markdown", "info", "warning", "error") for e in at.get(kind)
    )


def in_order(node, kinds: tuple) -> list:
    """The elements of these kinds under `node`, top to bottom, as (kind, label)."""
    found = [(node.type, getattr(node, "label", None))] if node.type in kinds else []
    for child in getattr(node, "children", {}).values():
        found += in_order(child, kinds)
    return found


def share(lecturer) -> str:
    # a lecturer finds it at the top of the sidebar, under Presenter mode, not past the settings
    sidebar = in_order(lecturer.sidebar, ("toggle", "expander", "selectbox"))
    assert sidebar[:3] == [
        ("selectbox", "Scenario"),
        ("toggle", "Presenter mode"),
        ("expander", "Share my live run"),
    ], sidebar[:4]
    lecturer.button(key="share").click().run()
    assert not lecturer.exception, lecturer.exception
    lead = lecturer.session_state["sharing"]
    link = next(c.value for c in lecturer.sidebar.code if "follow=" in c.value)
    assert link.endswith(f"?follow={lead.code}") and len(lead.code) >= 16
    return lead.code


@pytest.fixture
def lecturer():
    at = open_app(scenario="batch-coupling")
    yield at
    session(at).stop()


def test_a_follower_watches_the_lecturers_run_live_and_read_only(lecturer, stepped):
    def wait_until(condition):  # training goes on between script runs, on the worker's threads
        with stepped:
            assert stepped.wait_for(condition, timeout=60), "training stopped"

    code = share(lecturer)
    student = open_app(follow=code)
    follower = session(student)
    assert follower.lead is not None and follower.branch is session(lecturer).branch
    assert student.session_state["scenario"] == "batch-coupling"  # the lecturer's scenario
    assert f"watching a shared run, read-only: it is paused at step {FIRST}" in text(student)
    assert student.get("plotly_chart")  # the views, drawn from the lecturer's run
    # read-only: no control of the run is on the page, and the follower rides nothing
    keys = {
        w.key
        for kind in ("button", "select_slider", "slider", "selectbox")
        for w in student.get(kind)
    }
    assert {"step", "reset", "batch_size", "lr", "scenario", "fork"}.isdisjoint(keys)
    assert follower not in session(lecturer).branch.riders
    lecturer.run()
    assert "1 following" in text(lecturer)

    lecturer.button(key="play").click().run()
    wait_until(lambda: session(lecturer).run.num_steps >= FIRST + 5)
    student.run()
    assert "playing" in text(student) and session(student).run.num_steps >= FIRST + 5
    assert "watching a shared run live, read-only" in text(student)
    # a student's own Pause holds their picture; the lecturer's run goes on
    student.button(key="pause").click().run()
    held = session(student).run.num_steps
    assert "paused at step" in text(student)
    wait_until(lambda: session(lecturer).run.num_steps >= held + 5)
    student.run()
    assert session(student).run.num_steps == held and session(lecturer).playing
    student.button(key="play").click().run()  # Follow live: it catches up
    assert session(student).run.num_steps >= held + 5
    lecturer.button(key="pause").click().run()


def test_a_follower_takes_a_copy_and_goes_on_alone(lecturer):
    lecturer.select_slider(key="batch_size").set_value(8).run()
    lecturer.button(key="step").click().run()
    code = share(lecturer)
    student = open_app(follow=code)
    student.button(key="take_copy").click().run()
    assert not student.exception, student.exception
    mine, theirs = session(student), session(lecturer)
    assert mine.lead is None and mine.branch is not theirs.branch
    assert mine.run.to_json() == theirs.run.to_json()  # the run so far, as it was
    assert student.session_state["batch_size"] == 8  # the settings in force, in its sidebar
    assert student.session_state["scenario"] == "batch-coupling"
    student.button(key="step").click().run()  # its own training
    assert mine.run.num_steps == theirs.run.num_steps + page.STEP_CHUNK
    student.select_slider(key="lr").set_value(0.3).run()  # its own changes
    assert theirs.run.changes[-1]["field"] == "batch_size" and session(student) is mine
    assert mine.run.changes[-1]["field"] == "lr"


def test_when_the_lecturer_leaves_followers_keep_the_run_so_far(lecturer):
    code = share(lecturer)
    lecturer.button(key="step").click().run()
    student = open_app(follow=code)
    steps = session(student).run.num_steps
    lecturer.button(key="unshare").click().run()  # or the lecturer's tab closes
    student.run()
    assert "has ended or stopped sharing" in text(student)
    assert session(student).run.num_steps == steps and session(student).orphaned
    lecturer.button(key="step").click().run()
    student.run()
    assert session(student).run.num_steps == steps  # no longer moves with the lecturer
    with pytest.raises(runtree.FollowError, match="has ended"):
        runtree.leads.find(code)


@pytest.mark.parametrize(
    "code, why",
    [("not-a-real-code", "No shared run has this code"), ("expired", "This link expired")],
)
def test_a_wrong_or_expired_code_says_why_and_opens_the_app(lecturer, monkeypatch, code, why):
    if code == "expired":
        code = share(lecturer)
        later = time.time() + runtree.leads.hours * 3600 + 1
        monkeypatch.setattr(time, "time", lambda: later)
    student = open_app(follow=code)
    assert not student.exception
    errors = " ".join(e.value for e in student.error)
    assert "This follow link does not work" in errors and why in errors
    assert session(student).lead is None and student.get("plotly_chart")  # the app, on its own


def test_a_follower_who_leaves_gets_the_app_on_its_own(lecturer):
    student = open_app(follow=share(lecturer))
    student.sidebar.button(key="unfollow").click().run()
    assert not student.exception, student.exception
    assert session(student).lead is None and session(student).branch is not None
    assert student.select_slider(key="batch_size")  # its own controls again
    assert not lecturer.session_state["sharing"].followers  # no longer counted


def test_a_follower_whose_tab_closed_is_no_longer_counted(lecturer):
    student = open_app(follow=share(lecturer))
    lecturer.run()
    assert "1 following" in text(lecturer)
    session(student).connected = lambda: False  # the tab closed; Streamlit keeps its session
    lecturer.run()
    assert "following" not in text(lecturer)
    assert "0 following" in " ".join(c.value for c in lecturer.sidebar.caption)
