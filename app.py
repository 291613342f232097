"""bnviz app (minimal until the full app lands): train a short run and plot it."""

import plotly.graph_objects as go
import streamlit as st

from bnviz import TrainConfig, train

st.set_page_config(page_title="bnviz", layout="wide")
st.title("bnviz: BatchNorm, live")


@st.cache_resource(show_spinner="Training a short run...")
def short_run(steps: int):
    return train(TrainConfig(steps=steps))


run = short_run(60)
figure = go.Figure()
for i, layer in enumerate(run.layers):
    figure.add_scatter(x=run.steps, y=run.layer_stat(i, "batch_mean")[:, 0], name=layer.name)
figure.update_layout(xaxis_title="step", yaxis_title="batch mean of channel 0 (pre-norm)")
st.plotly_chart(figure, width="stretch")
