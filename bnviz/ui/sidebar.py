"""The sidebar: every control, grouped, with the widget keys that tests and links use."""

from __future__ import annotations

import streamlit as st

from ..config import (
    ACTIVATIONS,
    BN_IMPLS,
    DATASETS,
    DEFAULT_LR,
    NORMS,
    OPTIMIZERS,
    PLACEMENTS,
    TrainConfig,
)
from .session import NO_TWIN

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
EPSILONS = tuple(10.0**k for k in range(-8, 1))
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0)
STEP_CHOICES = (100, 200, 300, 500, 1000, 2000, 5000)
WIDTHS = (4, 8, 16, 32, 64)
NORM_LABELS = {
    "batch": "BatchNorm",
    "group": "GroupNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "none": "none",
    NO_TWIN: "no twin",
}
DATASET_LABELS = {
    "shapes": "shapes (built-in)",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}


def widths_from(depth: int, width: int) -> tuple[int, ...]:
    """Channels per block: `width` in the first block, doubling per block, at most 128."""
    return tuple(min(width * 2**i, 128) for i in range(depth))


def _on_optimizer_change():
    st.session_state["lr"] = DEFAULT_LR[st.session_state["optimizer"]]


def _format_number(value: float) -> str:
    return f"{value:g}"


def controls() -> tuple[TrainConfig, str]:
    """Draw the controls; return the configuration they describe and the twin's norm."""
    side = st.sidebar
    side.header("Data & model")
    dataset = side.selectbox(
        "Data set",
        DATASETS,
        key="dataset",
        format_func=DATASET_LABELS.get,
        help="'shapes' is generated on the spot. The others download once (needs internet).",
    )
    depth = side.slider("Depth (conv blocks)", 1, 6, 3, key="depth")
    width = side.select_slider(
        "Width of the first block",
        WIDTHS,
        value=16,
        key="width",
        help="Channels double in each further block (at most 128).",
    )
    activation = side.selectbox("Activation", ACTIVATIONS, key="activation")

    side.header("Normalization")
    norm = side.selectbox("Normalization", NORMS, key="norm", format_func=NORM_LABELS.get)
    bn_impl = side.radio(
        "BatchNorm implementation",
        BN_IMPLS,
        key="bn_impl",
        horizontal=True,
        format_func={"torch": "torch.nn", "scratch": "from scratch (bnviz)"}.get,
    )
    placement = side.radio(
        "Placement",
        PLACEMENTS,
        key="placement",
        horizontal=True,
        format_func={"before": "before activation", "after": "after activation"}.get,
        help="Ioffe & Szegedy (2015) put BN before the nonlinearity; after is an empirical "
        "alternative.",
    )
    batch_size = side.select_slider("Batch size", BATCH_SIZES, value=64, key="batch_size")
    eps = side.select_slider(
        "Epsilon (eps)",
        EPSILONS,
        value=1e-5,
        key="eps",
        format_func=_format_number,
        help="Added to the variance before the square root: y = (x - mean) / sqrt(var + eps).",
    )
    cumulative = side.checkbox(
        "Cumulative average (momentum=None)",
        key="momentum_none",
        help="Every batch so far weighs the same: factor 1/k at step k.",
    )
    momentum_value = side.slider(
        "Momentum (PyTorch)",
        0.0,
        1.0,
        0.1,
        0.01,
        key="momentum",
        disabled=cumulative,
        help="running = (1 - momentum) * running + momentum * batch",
    )
    momentum = None if cumulative else momentum_value
    if momentum is None:
        side.caption("Keras/TensorFlow have no equivalent setting: their average is always an EMA.")
    else:
        side.caption(
            f"Keras/TensorFlow equivalent: momentum = 1 - {momentum:g} = **{1 - momentum:.2g}** "
            "(the weight of the old value)."
        )

    side.header("Optimizer")
    optimizer = side.radio(
        "Optimizer",
        OPTIMIZERS,
        key="optimizer",
        horizontal=True,
        on_change=_on_optimizer_change,
        format_func={"sgd": "SGD (momentum 0.9)", "adam": "Adam"}.get,
    )
    lr = side.select_slider(
        "Learning rate",
        LEARNING_RATES,
        value=DEFAULT_LR["sgd"],
        key="lr",
        format_func=_format_number,
    )

    side.header("Run")
    steps = side.select_slider("Steps", STEP_CHOICES, value=300, key="steps")
    seed = side.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    twin = side.selectbox(
        "Twin network",
        ("none", "batch", "group", "layer", "instance", NO_TWIN),
        key="twin",
        format_func=NORM_LABELS.get,
        help="A second network trained in lockstep (same batches, same initial weights) that "
        "differs only in normalization. Shown dashed.",
    )
    side.caption(
        "Batch size, eps, momentum and learning rate apply **from the next step** and are marked "
        "on the charts. Any other change restarts the run."
    )
    config = TrainConfig(
        dataset=dataset,
        norm=norm,
        bn_impl=bn_impl,
        placement=placement,
        activation=activation,
        widths=widths_from(depth, width),
        batch_size=batch_size,
        eps=eps,
        momentum=momentum,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        seed=int(seed),
    )
    return config, twin
