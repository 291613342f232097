"""Train vs eval: the accuracy gap between batch and running statistics, and how noisy a
channel's batch statistics are at the current batch size."""

from __future__ import annotations

import streamlit as st

from ... import figures
from ...measure import batch_noise
from ..session import Frame
from .common import chart, drawn, pick_channel, pick_layer


def render(frame: Frame) -> None:
    run = frame.run
    chart(drawn(frame, figures.eval_gap_figure, run, frame.twin), "eval_gap")
    st.caption(
        "Above zero: the network does better on test data when BatchNorm uses the statistics of "
        "each test batch than its running averages, as when the averages lag behind the "
        "weights. Below zero: it does worse, as with small batches, whose statistics are noisy."
    )
    st.subheader("Batch noise at this batch size")
    trainer = frame.trainer
    if trainer is None:
        st.info("Batch noise is measured on a live model; a replayed run has none.")
        return
    cols = st.columns([1, 1, 3])
    layer = pick_layer(run, "noise_layer", cols[0])
    channel = pick_channel(run, layer, "noise_channel", cols[1])
    key = (frame.serial, layer, channel, trainer.batch_size)
    cached = st.session_state.get("batch_noise")  # (key, step, measurement)
    # while playing, an older step's measurement is kept: refreshes stay fast
    if cached and cached[0] == key and (cached[1] == run.num_steps or frame.playing):
        noise = cached[2]
    else:
        with frame.guard:
            noise = batch_noise(trainer, layer, channel)
        st.session_state["batch_noise"] = (key, run.num_steps, noise)
    chart(figures.batch_noise_figure(noise), "batch_noise")
    st.caption(
        f"64 batches of {noise.batch_size} held-out images through the current model (eval "
        "mode). The lines are the same statistics over all 500 held-out images."
    )
