"""The sidebar: every control, grouped, with the widget keys that tests and links use. Values
live in st.session_state (initialised from controls.DEFAULTS), so presets and links can set
them, and a hidden control keeps its value."""

from __future__ import annotations

import streamlit as st

from ..batchnorm import keras_momentum
from ..config import (
    DEFAULT_LR,
    MAX_BATCH_X_WIDTH,
    MAX_STEPS_X_CHANNELS,
    NORM_NAMES,
    TrainConfig,
)
from .controls import CONTROLS, DEFAULTS, LOCKED_VALUES, locked
from .session import NO_TWIN

NORM_LABELS = {**NORM_NAMES, NO_TWIN: "no twin"}
DATASET_LABELS = {
    "shapes": "shapes (built-in)",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}
LABELS = {
    "arch": {"conv": "conv net", "mlp": "fully connected (MLP)"},
    "activation": {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"},
    "bn_impl": {"torch": "torch.nn", "scratch": "from scratch (bnviz)"},
    "placement": {"before": "before activation", "after": "after activation"},
    "optimizer": {"sgd": "SGD (momentum 0.9)", "adam": "Adam"},
}


def widths_from(depth: int, width: int, arch: str = "conv") -> tuple[int, ...]:
    """Channels per block: `width` in the first block, doubling per block, at most 128; in an
    MLP, `width` units in every hidden layer (as in Ioffe & Szegedy's Fig. 1 network)."""
    if arch == "mlp":
        return (width,) * depth
    return tuple(min(width * 2**i, 128) for i in range(depth))


CAPPED = ("batch_size", "width", "depth", "steps")  # the controls the server's caps bound
# put back, with the capped ones, when a combination is refused (arch 'mlp' with InstanceNorm)
RESTORED = (*CAPPED, "arch", "norm")


def over_caps(v: dict) -> str | None:
    """Why these control values exceed the server's caps (bnviz/config.py), in the sidebar's
    terms; None if they do not."""
    widths = widths_from(v["depth"], v["width"], v["arch"])
    reasons = []
    images = v["batch_size"] * v["width"]
    if images > MAX_BATCH_X_WIDTH:
        reasons.append(
            f"batch size {v['batch_size']} x width of the first block {v['width']} = {images:,} "
            f"is over this server's limit of {MAX_BATCH_X_WIDTH:,}: choose a smaller batch size "
            "or width"
        )
    channels = v["steps"] * sum(widths)
    if channels > MAX_STEPS_X_CHANNELS:
        reasons.append(
            f"{v['steps']:,} steps x {sum(widths)} channels (depth {v['depth']}, first width "
            f"{v['width']}: {' + '.join(map(str, widths))}) = {channels:,} is over this "
            f"server's limit of {MAX_STEPS_X_CHANNELS:,} (every channel's statistics are kept "
            "at every step): choose fewer steps, a smaller depth or width"
        )
    return "; ".join(reasons) or None


def init_state() -> None:
    """Give every control a value before any widget is drawn."""
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, default)


def values() -> dict:
    """The current value of every control."""
    return {key: st.session_state.get(key, default) for key, default in DEFAULTS.items()}


def _on_optimizer_change():
    if "lr" not in locked(st.session_state.get("hidden", [])):  # a hidden lr stays as it is
        st.session_state["lr"] = DEFAULT_LR[st.session_state["optimizer"]]


def _number(value: float) -> str:
    return f"{value:g}"


class _Drawer:
    """Draws a control unless it is hidden. A hidden control keeps the value it had when it was
    hidden, whatever else writes its state (a link or a scenario sets it anew)."""

    def __init__(self, hidden: set[str]):
        self.hidden = locked(hidden)

    def __call__(self, widget, key: str, label: str, **kwargs):
        if key in self.hidden:
            locks = st.session_state.setdefault(LOCKED_VALUES, {})
            value = locks.setdefault(key, st.session_state.get(key, DEFAULTS[key]))
            st.session_state[key] = value
            return value
        if key in LABELS:
            kwargs.setdefault("format_func", LABELS[key].get)
        if widget.__name__ in ("selectbox", "radio", "select_slider"):
            kwargs["options"] = CONTROLS[key][1]
        return widget(label, key=key, **kwargs)


def controls(hidden: set[str] = frozenset()) -> tuple[TrainConfig, str]:
    """Draw the controls; return the configuration they describe and the twin's norm."""
    side = st.sidebar
    draw = _Drawer(set(hidden))
    side.header("Data & model")
    draw(
        side.selectbox,
        "dataset",
        "Data set",
        format_func=DATASET_LABELS.get,
        help="'shapes' is generated on the spot. The others download once (needs internet).",
    )
    draw(
        side.radio,
        "arch",
        "Network",
        horizontal=True,
        help="A conv net (3x3 conv blocks) or a fully connected network on the flattened image "
        "(Ioffe & Szegedy's Fig. 1 network: each hidden layer is linear -> norm -> activation).",
    )
    draw(side.select_slider, "depth", "Depth (blocks or hidden layers)")
    draw(
        side.select_slider,
        "width",
        "Width of the first block",
        help="Conv net: channels double in each further block (at most 128). MLP: every hidden "
        "layer has this many units.",
    )
    draw(side.selectbox, "activation", "Activation")

    side.header("Normalization")
    draw(side.selectbox, "norm", "Normalization", format_func=NORM_LABELS.get)
    draw(side.radio, "bn_impl", "BatchNorm implementation", horizontal=True)
    draw(
        side.radio,
        "placement",
        "Placement",
        horizontal=True,
        help="Ioffe & Szegedy (2015) put BN before the nonlinearity; after is an empirical "
        "alternative.",
    )
    draw(side.select_slider, "batch_size", "Batch size")
    draw(
        side.select_slider,
        "eps",
        "Epsilon (eps)",
        format_func=_number,
        help="Added to the variance before the square root: y = (x - mean) / sqrt(var + eps).",
    )
    cumulative = draw(
        side.checkbox,
        "momentum_none",
        "Cumulative average (momentum=None)",
        help="Every batch so far weighs the same: factor 1/k at step k.",
    )
    momentum_value = draw(
        side.slider,
        "momentum",
        "Momentum (PyTorch)",
        min_value=0.0,
        max_value=1.0,
        step=0.01,
        disabled=cumulative,
        help="running = (1 - momentum) * running + momentum * batch",
    )
    momentum = None if cumulative else momentum_value
    if "momentum" not in draw.hidden:
        if momentum is None:
            side.caption("Keras/TensorFlow have no equivalent: their average is always an EMA.")
        else:
            side.caption(
                f"Keras/TensorFlow equivalent: momentum = 1 - {momentum:g} = "
                f"**{keras_momentum(momentum):.2g}** (the weight of the old value)."
            )

    side.header("Optimizer")
    draw(side.radio, "optimizer", "Optimizer", horizontal=True, on_change=_on_optimizer_change)
    draw(side.select_slider, "lr", "Learning rate", format_func=_number)

    side.header("Run")
    draw(side.select_slider, "steps", "Steps")
    draw(side.number_input, "seed", "Seed", min_value=0, max_value=2**31 - 1, step=1)
    draw(
        side.selectbox,
        "twin",
        "Twin network",
        format_func=NORM_LABELS.get,
        help="A second network trained in lockstep (same batches, same initial weights) with "
        "another normalization, or none. A conv that feeds a norm has no bias, so a twin "
        "without a norm (or a main network without one) also differs in its conv biases. "
        "Shown dashed.",
    )
    side.caption(
        "Batch size, eps, momentum and learning rate apply **from the next step** and are marked "
        "on the charts. Any other change restarts the run."
    )
    v = values()
    refused = over_caps(v)
    if refused:
        raise ValueError(refused[0].upper() + refused[1:])
    config = TrainConfig(
        dataset=v["dataset"],
        arch=v["arch"],
        norm=v["norm"],
        bn_impl=v["bn_impl"],
        placement=v["placement"],
        activation=v["activation"],
        widths=widths_from(v["depth"], v["width"], v["arch"]),
        batch_size=v["batch_size"],
        eps=v["eps"],
        momentum=momentum,
        optimizer=v["optimizer"],
        lr=v["lr"],
        steps=v["steps"],
        seed=int(v["seed"]),
    )
    return config, v["twin"]
