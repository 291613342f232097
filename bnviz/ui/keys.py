"""Keyboard shortcuts, in every mode: Space plays or pauses, → steps, R resets, 1-7 open the
views. A small script in the page clicks the same buttons a mouse would, so a shortcut does
exactly what its button does; it stays out of the way while focus is in a text field, a
slider, a select box or on another button or tab (where Space and the arrows keep their
usual meaning). After Play or Pause, focus moves to the other one, so the next Space (or
Enter) undoes it."""

from __future__ import annotations

import streamlit as st

from .links import VIEWS

HELP = "\n".join(
    [
        "| key | does |",
        "|---|---|",
        "| Space | Play / Pause |",
        "| → | Step 10 |",
        "| R | Reset |",
        *(f"| {i} | {view} |" for i, view in enumerate(VIEWS, 1)),
        "",
        "Not while typing in a field or moving a slider.",
    ]
)

SCRIPT = """
<script>
(() => {
  if (window.bnvizKeys) return;
  window.bnvizKeys = true;
  const button = (key) => document.querySelector(`.st-key-${key} button`);
  const press = (key) => {
    const b = button(key);
    if (!b || b.disabled) return false;
    b.click();
    return true;
  };
  const busy = (el) => el && el.closest && el.closest(
    "input, textarea, select, [contenteditable='true'], [role='slider'], [role='combobox'], " +
    "[role='listbox'], [role='option'], [role='dialog']");
  const onControl = (el) => el && el.closest && el.closest("button, a, [role='tab']");
  const onPlayPause = (el) => el && el.closest && el.closest(".st-key-play, .st-key-pause");
  let focusNext = null;
  window.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (busy(t)) return;
    let done = false;
    if (e.key === " ") {
      if (onControl(t)) return;  // a focused button or tab: Space presses it, as usual
      if (press("play")) { focusNext = "pause"; done = true; }
      else if (press("pause")) { focusNext = "play"; done = true; }
    } else if (e.key === "ArrowRight") {
      if (t && t.closest && t.closest("[role='tab']")) return;  // moves between tabs
      done = press("step");
    } else if (e.key === "r" || e.key === "R") {
      done = press("reset");  // before Streamlit's own R (rerun), which it replaces here
    } else if (/^[1-9]$/.test(e.key)) {
      const tabs = document.querySelectorAll(".st-key-view [role='tab']");
      const tab = tabs[Number(e.key) - 1];
      if (tab) { tab.click(); done = true; }
    }
    if (done) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);
  window.addEventListener("click", (e) => {
    if (!e.isTrusted) return;
    if (onPlayPause(e.target)) {
      focusNext = e.target.closest(".st-key-play") ? "pause" : "play";
    }
  }, true);
  new MutationObserver(() => {
    if (!focusNext) return;
    const b = button(focusNext);
    if (b && !b.disabled) { b.focus({preventScroll: true}); focusNext = null; }
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             attributeFilter: ["disabled"]});
})();
</script>
"""


def inject() -> None:
    """Add the shortcuts to the page (the script installs itself once per browser tab)."""
    st.html(SCRIPT, unsafe_allow_javascript=True)
