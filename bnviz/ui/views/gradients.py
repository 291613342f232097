"""Gradients: per-layer gradient norms and the update:data ratio, main against twin."""

from __future__ import annotations

import streamlit as st

from ... import figures
from ..session import Frame
from .common import chart, secondary_chart


def render(session: Frame) -> None:
    left, right = st.columns(2)
    with left:
        chart(figures.grad_norm_figure(session.run, session.twin), "grad_norm")
    with right:
        build = lambda: figures.update_ratio_figure(session.run, session.twin)  # noqa: E731
        secondary_chart(session, "update_ratio", build)
    st.caption(
        "Left: the norm of the loss gradient reaching each normalization layer's input. Right: "
        "how far each step moves the weights, relative to their size; around 1e-3 is a common "
        "rule of thumb (Karpathy), far above it the updates are too large."
    )
