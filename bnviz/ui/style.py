"""The page's own CSS: a phone layout (always present, for narrow screens) and presenter mode
(for a projector). Injected once per page run with st.html."""

from __future__ import annotations

import streamlit as st

# Narrow screens (a phone, 390 px wide): nothing wider than the screen.
PHONE_CSS = """
"""

# Presenter mode (?present=1): large type, little chrome, the open view's chart on the first
# screen of a projector (1280 x 720 at 150% zoom: 853 x 480 CSS px).
PRESENTER_CSS = """
"""


def inject(present: bool) -> None:
    """The page's CSS: the phone layout always, presenter mode's when `present`."""
    css = PHONE_CSS + (PRESENTER_CSS if present else "")
    st.html(f"<style>{css}</style>")
