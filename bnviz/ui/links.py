"""Scenario picking and shareable links: ?scenario=ID, any control by its widget key,
?hide=eps,momentum, ?view=Gradients and ?present=1 (presenter mode). Links are validated like
widget input; what cannot be used is ignored with a visible note."""

from __future__ import annotations

from urllib.parse import parse_qsl

import streamlit as st

from ..config import quote
from ..scenarios import FREE_PLAY, SCENARIOS
from . import controls
from .controls import CONTROLS, DEFAULTS

VIEWS = (
    "Training",
    "Activations",
    "Running statistics",
    "Gradients",
    "Train vs eval",
    "Theory",
    "Save & replay",
)
MAX_PARAM = 200  # characters; longer query values are not even parsed
MAX_NOTES = 8  # notes on ignored link settings shown at most; the rest are counted


def scenario_title(scenario_id: str) -> str:
    return "Free play" if scenario_id == FREE_PLAY else SCENARIOS[scenario_id].title


def apply_scenario(scenario_id: str) -> None:
    """Set every control to the scenario's preset (defaults elsewhere) and open its view."""
    preset = {} if scenario_id == FREE_PLAY else SCENARIOS[scenario_id].preset
    for key, default in DEFAULTS.items():
        st.session_state[key] = preset.get(key, default)
    st.session_state.pop(controls.LOCKED_VALUES, None)  # hidden controls lock these values anew
    own = [] if scenario_id == FREE_PLAY else list(SCENARIOS[scenario_id].hidden)
    # a link's ?hide= stays in force whatever scenario is picked: the teacher's lock holds
    st.session_state["hidden"] = sorted(set(own) | set(st.session_state.get("link_hidden", [])))
    if scenario_id != FREE_PLAY:
        st.session_state["view"] = SCENARIOS[scenario_id].view


def _on_scenario_change():
    apply_scenario(st.session_state["scenario"])


def apply_link(params: dict[str, str]) -> list[str]:
    """Apply query parameters once per session; returns notes on what was ignored."""
    notes = []
    params = dict(params)
    scenario = params.pop("scenario", FREE_PLAY)
    if scenario not in SCENARIOS and scenario != FREE_PLAY:
        notes.append(f"unknown scenario {quote(scenario)}; choose one of {', '.join(SCENARIOS)}")
        scenario = FREE_PLAY
    st.session_state["scenario"] = scenario
    apply_scenario(scenario)
    hide = params.pop("hide", "")[:MAX_PARAM]
    hidden = [k for k in hide.split(",") if k.strip()]
    for key in hidden:
        if key not in CONTROLS:
            notes.append(f"hide: unknown control {quote(key)}")
    st.session_state["link_hidden"] = [k for k in hidden if k in CONTROLS]
    st.session_state["hidden"] = sorted(
        set(st.session_state["hidden"]) | set(st.session_state["link_hidden"])
    )
    present = params.pop("present", None)
    if present is not None:
        if present in ("1", "0"):
            st.session_state["present"] = present == "1"
        else:
            notes.append(f"present must be 1 or 0; got {quote(present)}")
    view = params.pop("view", None)
    if view is not None:
        if view in VIEWS:
            st.session_state["view"] = view
        else:
            notes.append(f"view must be one of {', '.join(VIEWS)}; got {quote(view)}")
    for key, text in params.items():
        if key not in CONTROLS:
            notes.append(f"unknown setting {quote(key)}")
            continue
        try:
            st.session_state[key] = controls.parse(key, text[:MAX_PARAM])
        except ValueError as e:
            notes.append(str(e))
    if len(notes) > MAX_NOTES:
        notes[MAX_NOTES:] = [f"and {len(notes) - MAX_NOTES} more"]
    return notes


def scenario_picker() -> str:
    """The picker at the top of the sidebar; returns the chosen scenario id."""
    options = [FREE_PLAY, *SCENARIOS]
    st.session_state.setdefault("scenario", FREE_PLAY)
    return st.sidebar.selectbox(
        "Scenario",
        options,
        key="scenario",
        format_func=scenario_title,
        on_change=_on_scenario_change,
        help="One click to one idea: sets the controls, opens the view that matters, and "
        "explains what this run measured.",
    )


def share_link(values: dict, scenario: str) -> None:
    """A copyable link to the current setup, which the address bar shows too: a copied URL
    keeps the scenario, the view and the settings."""
    hidden = st.session_state.get("hidden", [])
    query = controls.link_query(
        values,
        None if scenario == FREE_PLAY else scenario,
        hidden,
        st.session_state.get("view"),
        st.session_state.get("present", False),
    )
    wanted = dict(parse_qsl(query))
    if st.query_params.to_dict() != wanted:  # only a change reaches the browser
        st.query_params.from_dict(wanted)
    base = st.context.url or ""
    base = base.split("?")[0]
    with st.sidebar.expander("Copy a link to this setup"):
        st.code(f"{base}?{query}" if query else base, language=None, wrap_lines=True)
        st.caption(
            "Add hide=eps,momentum (any control keys) to lock controls for a demo. "
            "Settings in the link are checked like the controls themselves."
        )
