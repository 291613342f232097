"""The page's own CSS: a phone layout (always present, for narrow screens) and presenter mode
(for a projector). Injected once per page run with st.html."""

from __future__ import annotations

import streamlit as st

# Chart text at WCAG AA (4.5:1) in both themes: Streamlit's chart theme writes ticks, axis
# titles and subtitles in #808495, 3.7:1 on white. They take the page's text colour instead,
# softened to keep them second to the title and the data: 78% of it over the background is
# about 6:1 on white and 10:1 on the dark theme.
CHART_TEXT_CSS = """
.js-plotly-plot :is(.xaxislayer-above, .yaxislayer-above) text,
.js-plotly-plot .infolayer :is([class^="g-x"], [class^="g-y"]) text,
.js-plotly-plot .gtitle-subtitle {
  fill: color-mix(in srgb, currentColor 78%, transparent) !important;
}
"""

# Narrow screens (a phone, 390 px wide): nothing wider than the screen.
# - Formulas (st.latex, KaTeX): a display too wide for the screen scrolls sideways in its own
#   box, with room under it for the scroll bar, instead of being cut at the edge.
# - Charts: plotly's toolbar (modebar) is hidden: on a phone it lies over the chart's title,
#   and its zoom and pan are done with the fingers there. The subtitle, wrapped for a
#   half-width column of a wide screen (bnviz/plot.py, SUBTITLE_CHARS), is longer than a
#   phone's chart is wide and SVG text cannot wrap: it is scaled down towards the chart's left
#   edge (transform-box: view-box, origin x = 0) about its own top line, so that every line
#   ends inside the chart; the title a little less (a scenario's long titles in a narrower
#   column were cut too). Wide screens keep the figure as is.
# - The buttons: smaller padding, type and gaps, so that the six (icons kept) take two short
#   rows under a smaller page title, less space above it, and the tabs are on the first screen.
# - The scenario panel: less padding in its box and its explanation, and its charts' subtitles
#   scaled a little more (those charts sit in that box, narrower than a view's).
PHONE_CSS = """
@media (max-width: 640px) {
  .katex-display {
    overflow-x: auto;
    overflow-y: hidden;
    max-width: 100%;
    padding-bottom: 0.4rem;
  }
  .js-plotly-plot .modebar-container {
    display: none !important;
  }
  .js-plotly-plot .g-gtitle .gtitle {
    transform-box: view-box;
    transform-origin: 0 0;
    transform: scale(0.85);
  }
  .js-plotly-plot .g-gtitle .gtitle-subtitle {
    transform-box: view-box;
    transform-origin: 0 30px;
    transform: scale(0.68);
  }
  [data-testid='stMainBlockContainer'] {
    padding-top: 4rem !important;
  }
  h1 {
    font-size: 1.75rem !important;
    padding: 0.25rem 0 0.5rem 0 !important;
  }
  .st-key-controls {
    gap: 0.375rem !important;
  }
  .st-key-controls button {
    min-height: 2.25rem !important;
    padding: 0.25rem 0.5rem !important;
    font-size: 0.875rem !important;
    gap: 0.25rem !important;
  }
  .st-key-controls button p {
    font-size: 0.875rem !important;
  }
  .st-key-scenario_panel {
    padding: 0.6rem !important;
  }
  .st-key-scenario_panel [data-testid='stExpanderDetails'] {
    padding-left: 0.4rem !important;
    padding-right: 0.4rem !important;
  }
  .st-key-scenario_panel .js-plotly-plot .g-gtitle .gtitle-subtitle {
    transform: scale(0.6);
  }
}
@media (max-width: 380px) {
  .js-plotly-plot .g-gtitle .gtitle-subtitle {
    transform: scale(0.6);
  }
}
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
    """The page's CSS: chart text and the phone layout always, presenter mode's when `present`."""
    st.html(f"<style>{CHART_TEXT_CSS}{PHONE_CSS}{PRESENTER_CSS if present else ''}</style>")
