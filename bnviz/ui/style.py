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
[data-testid="stMainBlockContainer"] { padding-top: 3.25rem; padding-bottom: 2rem; }
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] { gap: 0.6rem; }
[data-testid="stMainBlockContainer"] [data-testid="stMarkdownContainer"] p { font-size: 1.15rem; }
.st-key-takeaway [data-testid="stMarkdownContainer"] p {
  font-size: 1.5rem; line-height: 1.25; font-weight: 500; margin-bottom: 0.4rem;
}
.st-key-scenario_panel h4 { padding: 0; font-size: 1.3rem; }
.st-key-controls button { padding-left: 0.6rem; padding-right: 0.6rem; }

"""


def inject(present: bool) -> None:
    """The page's CSS: the phone layout always, presenter mode's when `present`."""
    css = PHONE_CSS + (PRESENTER_CSS if present else "")
    st.html(f"<style>{css}</style>")
