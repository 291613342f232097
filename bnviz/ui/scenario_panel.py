"""The scenario panel above the views: the question, live explanation with measured numbers,
the scenario's own experiments (run in the background, shared, cancellable) and actions."""

from __future__ import annotations

import streamlit as st

from .. import precompute
from ..cache import SharedCache, worker
from ..scenarios import Results, Scenario
from .controls import plain
from .session import Frame, queue_text
from .views.common import Prepared, chart, presenting

# Every session with a scenario's results draws the same figures: built once. Bounded: a few
# scenarios' worth.
_drawn = SharedCache(max_items=16, logged=False)


def _cancelled() -> set:
    return st.session_state.setdefault("cancelled_scenarios", set())


def results(scenario: Scenario) -> tuple[Results, list, dict]:
    """Finished results, the jobs still missing, and errors, by job label. A result missing
    from the shared cache is taken from the shipped precomputed file if it has one for this
    engine (bnviz/precompute.py), and put into the cache for everyone."""
    done, missing, errors = {}, [], {}
    shipped = None  # read only when something is missing
    for job in scenario.jobs():
        value = worker.cache.get(job.key)
        if value is None:
            shipped = precompute.load(scenario.id) if shipped is None else shipped
            if job.key in shipped:
                value = worker.cache.get_or_compute(job.key, lambda v=shipped[job.key]: v)
        if value is None:
            missing.append(job)
        elif isinstance(value, dict) and "__error__" in value:
            errors[job.label] = value["__error__"]
        else:
            done[job.label] = value
    return done, missing, errors


def pending(scenario: Scenario | None) -> bool:
    """Whether the scenario still has experiments to run in this session."""
    if scenario is None or scenario.id in _cancelled():
        return False
    return bool(results(scenario)[1])


def _guarded(job):
    """Run a job; a failure becomes a result that says so (and is not retried forever)."""

    def run():
        try:
            return job()
        except Exception as e:  # noqa: BLE001 - shown to the user as a message
            return {"__error__": f"{type(e).__name__}: {e}"}

    return run


def _progress(scenario: Scenario, done: Results, missing: list) -> None:
    total = len(done) + len(missing)
    if not missing:
        if st.session_state.pop("jobs_running", None) == scenario.id:
            st.rerun()  # the last result is in: stop the timed refresh
        return
    st.session_state["jobs_running"] = scenario.id
    if scenario.id in _cancelled():
        st.info(f"Experiments paused after {len(done)} of {total}.")
        if st.button("Resume the experiments", key="resume_jobs"):
            _cancelled().discard(scenario.id)
            st.rerun()
        return
    job = missing[0]
    worker.submit(job.key, _guarded(job))
    position = worker.position(job.key)
    where = "running" if position in (0, None) else queue_text(position, worker.threads)
    cols = st.columns([4, 1])
    cols[0].progress(len(done) / total, text=f"Measuring {len(done) + 1} of {total}: "
                     f"{job.label} ({where})")  # fmt: skip
    if cols[1].button("Cancel", key="cancel_jobs"):
        _cancelled().add(scenario.id)
        st.rerun()


def _actions(scenario: Scenario, session: Frame) -> None:
    store = st.session_state.setdefault("action_results", {})
    for i, action in enumerate(scenario.actions):
        key = (session.serial, scenario.id, action.label)  # results belong to this run
        disabled = session.trainer is None
        if st.button(action.label, key=f"action_{i}", help=action.help, disabled=disabled):
            try:
                with session.guard:
                    store[key] = action.fn(session.trainer)
            except Exception as e:  # noqa: BLE001 - shown to the user as a message
                st.error(f"{action.label} failed: {plain(f'{type(e).__name__}: {e}')}")
        if key in store:
            st.markdown(action.render(store[key]))


def render(scenario: Scenario, frame: Frame) -> None:
    """The scenario's question, explanation, experiments and actions. The explanation folds
    away (a phone); in presenter mode it starts folded, under a two-line takeaway in large
    type that quotes the key measured number."""
    done, missing, errors = results(scenario)
    present = presenting()
    with st.container(border=True, key="scenario_panel"):
        st.markdown(f"#### {scenario.title}")
        takeaway = scenario.takeaway(done, frame.run, frame.twin) if present else ""
        if takeaway:
            with st.container(key="takeaway"):
                st.markdown(takeaway)
        else:
            st.caption(scenario.summary)
        with st.expander(
            "The full explanation" if present else "Explanation", expanded=not present
        ):
            if takeaway:  # the question, which the takeaway stood in for
                st.caption(scenario.summary)
            st.markdown(scenario.explain(done, frame.run, frame.twin))
            for label, message in errors.items():
                st.error(f"{label}: this experiment failed ({plain(message)}).")
            _progress(scenario, done, missing)
            figures = _drawn.get_or_compute(  # the same for every session with these results
                (scenario.id, tuple(sorted(done)), tuple(sorted(errors))),
                lambda: [Prepared(figure) for figure in scenario.draw(done)],
            )
            per_row = 1 if present else 2  # on a projector each chart takes the whole width
            for row in range(0, len(figures), per_row):
                cols = st.columns(per_row)
                chunk = figures[row : row + per_row]
                for col, (i, figure) in zip(cols, enumerate(chunk, start=row)):
                    with col:
                        chart(figure, f"scenario_{i}")
            _actions(scenario, frame)
