"""Follow the lecturer: a session shares its live run under a code that cannot be guessed
(?follow=CODE); students who open that link watch it live, read-only, and may take a copy to go
on with on their own. The codes and what they lead to live in bnviz/runtree.py (Leads)."""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from .. import runtree
from ..config import LIVE_FIELDS
from ..runtree import FollowError
from . import session as sessions
from .controls import LOCKED_VALUES, values_of
from .session import Session

MAX_CODE = 64  # characters of a ?follow= value that are looked up at all
FOLLOWERS_POLL_SECONDS = 2.0  # the share panel counts its followers this often


def start(code: str, connected: Callable[[], bool]) -> None:
    """A link's ?follow=CODE, on the session's first run: follow that run, or keep the reason
    it cannot be followed for the page to show. `connected`: whether this tab is still open."""
    try:
        lead = runtree.leads.find(code.strip()[:MAX_CODE])
    except FollowError as e:
        st.session_state["follow_error"] = str(e)
        return
    follower = Session.following(lead)
    follower.connected = connected
    sessions.replace(st.session_state, follower)


# -- the lecturer ------------------------------------------------------------------------------


def _share(session: Session, alive: Callable[[], bool]) -> None:
    lead = runtree.leads.share(alive)
    lead.session = session
    st.session_state["sharing"] = lead


def _unshare() -> None:
    lead = st.session_state.pop("sharing", None)
    if lead is not None:
        runtree.leads.stop(lead)


def share_panel(
    where, session: Session, scenario: str, hidden: list, alive: Callable[[], bool]
) -> None:
    """The sidebar's "Share my live run" (drawn in the container `where`), and the lecturer's
    side of a shared run: what the followers read is refreshed on every run of the lecturer's
    page."""
    lead = st.session_state.get("sharing")
    if lead is not None and not lead.live:  # expired
        st.session_state.pop("sharing")
        lead = None
    if lead is not None:
        lead.session, lead.scenario, lead.hidden = session, scenario, hidden
    with where.expander("Share my live run", expanded=lead is not None):
        if lead is None:
            st.caption(
                "A link for the class: whoever opens it watches this run live, read-only (your "
                "settings, changes and scenario), and can take a copy to go on with on their own."
            )
            st.button("Share my live run", key="share", on_click=_share, args=(session, alive))
            return
        base = (st.context.url or "").split("?")[0]
        st.code(f"{base}?follow={lead.code}", language=None, wrap_lines=True)
        st.fragment(_followers, run_every=FOLLOWERS_POLL_SECONDS)(lead)
        st.button("Stop sharing", key="unshare", on_click=_unshare)


def _followers(lead: runtree.Lead) -> None:
    """The share panel's count, redrawn on its own: students who open the link are counted
    without a click, whether the run plays or not."""
    if not lead.live:
        st.rerun()  # the whole page: the panel offers a new link
    until = time.strftime("%H:%M", time.localtime(lead.expires))
    st.caption(
        f"{lead.audience} following. The link works until you close this tab or stop "
        f"sharing, and {runtree.leads.hours:g} hours at most (until {until}, server time)."
    )


# -- the follower ------------------------------------------------------------------------------


def _hold(held: bool) -> None:
    st.session_state["session"].hold(held)


def _take_copy() -> None:
    """Go on with the run this follower shows, on a branch of its own: the sidebar takes its
    settings in force and the lecturer's scenario."""
    follower = st.session_state["session"]
    mine = follower.copy()
    config = follower.config
    if mine.replay is None:
        config = config.replace(**{k: mine.run.setting_at(k) for k in LIVE_FIELDS})
    st.session_state.update(values_of(config, follower.twin_norm))
    st.session_state["scenario"] = follower.lead.scenario
    st.session_state["hidden"] = list(follower.lead.hidden)
    st.session_state.pop(LOCKED_VALUES, None)
    follower.lead.followers.discard(follower)
    sessions.replace(st.session_state, mine)


def _leave() -> None:
    follower = st.session_state["session"]
    follower.lead.followers.discard(follower)
    sessions.replace(st.session_state, None)


def buttons(session: Session) -> None:
    """A follower's button bar: its own display's Pause and Follow live, and Take a copy."""
    row = st.container(key="controls", horizontal=True, gap="small")
    watching = not session.orphaned
    row.button(
        "Follow live",
        key="play",
        on_click=_hold,
        args=(False,),
        icon=":material/play_arrow:",
        type="primary",
        disabled=not (watching and session.held),
        width="content",
        help="Show the shared run as it is now, and follow it again.",
    )
    row.button(
        "Pause",
        key="pause",
        on_click=_hold,
        args=(True,),
        icon=":material/pause:",
        disabled=not watching or session.held,
        width="content",
        help="Hold what you see; the shared run goes on without you.",
    )
    row.button(
        "Take a copy",
        key="take_copy",
        on_click=_take_copy,
        icon=":material/content_copy:",
        width="content",
        help="Go on with the run you see on your own: your own Play, Step, settings and forks. "
        "The shared run is not changed.",
    )


def sidebar() -> None:
    """A follower's sidebar: whose settings these are, and Leave."""
    side = st.sidebar
    side.header("Following a shared run")
    side.caption(
        "The settings, changes and scenario are those of the session that shared the link: "
        "nothing here can change its run. Views, scrubbers and Pause are yours."
    )
    side.button("Leave", key="unfollow", on_click=_leave, help="Back to the app on your own.")


def banner(session: Session) -> None:
    """Where this follower stands, in one line above the buttons."""
    run = session.run
    if session.orphaned:
        why = (
            "The shared link has expired"
            if session.lead.expired
            else "The session that shared this run has ended or stopped sharing"
        )
        st.warning(
            f"{why}. You keep the run so far ({run.num_steps} steps): **Take a copy** to train "
            "it on.",
            icon=":material/link_off:",
        )
    elif session.held:
        st.info(
            f"Your picture is paused at step {run.num_steps}; the shared run goes on. "
            "**Follow live** catches up with it.",
            icon=":material/pause:",
        )
    elif session.leader.wants_training:
        st.info(
            "You are watching a shared run live, read-only. **Pause** holds your picture; "
            "**Take a copy** goes on with it on your own.",
            icon=":material/visibility:",
        )
    else:
        st.info(
            f"You are watching a shared run, read-only: it is {session.leader.state} at step "
            f"{run.num_steps}, and moves when the session that shared it plays it. "
            "**Take a copy** goes on with it on your own.",
            icon=":material/visibility:",
        )
