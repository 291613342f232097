"""Theory: the equations, the from-scratch BatchNorm2d source, and a live check against torch."""

from __future__ import annotations

import inspect

import streamlit as st

from ... import batchnorm
from ...measure import check_scratch_against_torch
from ..session import Frame

EQUATIONS = [
    ("Batch mean over the m = N·H·W values of a channel", r"\mu_B = \frac{1}{m}\sum_{i=1}^{m} x_i"),
    (
        "Biased batch variance, used to normalize in training",
        r"\sigma_B^2 = \frac{1}{m}\sum_{i=1}^{m} (x_i - \mu_B)^2",
    ),
    (
        "Normalize, then scale and shift",
        r"y_i = \gamma\,\frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta",
    ),
    (
        "Running mean (PyTorch: momentum 0.1)",
        r"\hat\mu \leftarrow (1 - \text{momentum})\,\hat\mu + \text{momentum}\cdot\mu_B",
    ),
    (
        "Running variance stores the unbiased estimate (divide by m - 1)",
        r"\hat\sigma^2 \leftarrow (1 - \text{momentum})\,\hat\sigma^2 + \text{momentum}\cdot"
        r"\frac{m}{m-1}\,\sigma_B^2",
    ),
    (
        "Evaluation mode normalizes with the running estimates",
        r"y = \gamma\,\frac{x - \hat\mu}{\sqrt{\hat\sigma^2 + \epsilon}} + \beta",
    ),
    (
        "Keras/TensorFlow write the same average with the opposite convention (default 0.99, "
        "epsilon 1e-3), and keep the biased variance",
        r"\hat\mu \leftarrow \text{momentum}_{\text{Keras}}\,\hat\mu + "
        r"(1 - \text{momentum}_{\text{Keras}})\,\mu_B,\qquad "
        r"\text{momentum}_{\text{Keras}} = 1 - \text{momentum}_{\text{PyTorch}}",
    ),
    (
        "momentum=None in PyTorch: a cumulative average, batch k weighs 1/k",
        r"\hat\mu_k = \hat\mu_{k-1} + \tfrac{1}{k}\,(\mu_{B,k} - \hat\mu_{k-1})",
    ),
]


def render(frame: Frame) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("The equations")
        for text, latex in EQUATIONS:
            st.markdown(text)
            st.latex(latex)
        st.markdown(
            "Ioffe & Szegedy (2015) place BatchNorm **before** the nonlinearity, normalizing "
            "Wx with the bias dropped; placing it after is an empirical alternative."
        )
    with right:
        st.subheader("Checked live against torch.nn.BatchNorm2d")
        if frame.trainer is None:
            st.info("The live check needs a live model; a replayed run has none.")
        else:
            with frame.guard:
                check = check_scratch_against_torch(frame.trainer)
            st.markdown(
                f"The current training batch's input to block1's norm, shape "
                f"`{tuple(check.shape)}`, through both implementations in training mode:"
            )
            cols = st.columns(3)
            cols[0].metric("max |Δ output|", f"{check.max_abs_diff_output:.1e}")
            cols[1].metric("max |Δ running mean|", f"{check.max_abs_diff_running_mean:.1e}")
            cols[2].metric("max |Δ running var|", f"{check.max_abs_diff_running_var:.1e}")
            st.caption("Differences of about 1e-6 are float32 rounding, not disagreement.")
        st.subheader("bnviz's BatchNorm2d, from scratch")
        st.code(inspect.getsource(batchnorm), language="python")
