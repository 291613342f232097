"""Every sidebar control's key, default and allowed values, in one table. Widgets, scenario
presets and shareable links all go through it, so a link is validated like widget input.
Plain Python (no streamlit)."""

from __future__ import annotations

import math
import re
from urllib.parse import urlencode

from ..config import (
    ACTIVATIONS,
    ARCHS,
    BN_IMPLS,
    DATASETS,
    NORMS,
    OPTIMIZERS,
    PLACEMENTS,
    TrainConfig,
    quote,
)
from .session import NO_TWIN

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
EPSILONS = (0.0, *(10.0**k for k in range(-8, 1)))  # 0: see what eps is for
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0)
STEP_CHOICES = (100, 200, 300, 500, 1000, 2000, 5000)
WIDTHS = (4, 8, 16, 32, 64, 100)  # 100: the hidden layers of Ioffe & Szegedy's Fig. 1 MLP
DEPTHS = (1, 2, 3, 4, 5, 6)
TWINS = ("none", "batch", "group", "layer", "instance", NO_TWIN)
MAX_SEED = 2**31 - 1

_RUN = TrainConfig()  # the defaults are TrainConfig's (width: the first block's, doubling)
# key -> (default, allowed values, or None for a number checked in parse())
CONTROLS: dict[str, tuple[object, tuple | None]] = {
    "dataset": (_RUN.dataset, DATASETS),
    "arch": (_RUN.arch, ARCHS),
    "depth": (len(_RUN.widths), DEPTHS),
    "width": (_RUN.widths[0], WIDTHS),
    "activation": (_RUN.activation, ACTIVATIONS),
    "norm": (_RUN.norm, NORMS),
    "bn_impl": (_RUN.bn_impl, BN_IMPLS),
    "placement": (_RUN.placement, PLACEMENTS),
    "batch_size": (_RUN.batch_size, BATCH_SIZES),
    "eps": (_RUN.eps, EPSILONS),
    "momentum_none": (_RUN.momentum is None, (False, True)),
    "momentum": (_RUN.momentum, None),
    "optimizer": (_RUN.optimizer, OPTIMIZERS),
    "lr": (_RUN.lr, LEARNING_RATES),
    "steps": (_RUN.steps, STEP_CHOICES),
    "seed": (_RUN.seed, None),
    "twin": ("none", TWINS),
}
DEFAULTS = {key: default for key, (default, _) in CONTROLS.items()}
LOCKED_VALUES = "locked_values"  # session state: the values hidden controls keep, by key
# Controls that set the same field of the run: hiding one of them locks them all.
SAME_FIELD = (frozenset({"momentum", "momentum_none"}),)


def locked(hidden) -> set[str]:
    """The controls a list of hidden ones locks: each, with every control that sets its field."""
    keys = set(hidden)
    for group in SAME_FIELD:
        if keys & group:
            keys |= group
    return keys


def plain(text: str) -> str:
    """Text shown as itself in markdown (a run's message may come from an uploaded file):
    every markdown character is escaped, so it cannot become a link, an image or markup."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])", r"\\\1", str(text))


def allowed(key: str) -> str:
    """The allowed values of a control, for messages."""
    if key == "momentum":
        return "a number from 0 to 1"
    if key == "seed":
        return f"an integer from 0 to {MAX_SEED}"
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v).lower() for v in CONTROLS[key][1])


def parse(key: str, text: str):
    """A control's value from text (a query parameter), or ValueError naming the allowed
    values. Accepts exactly what the widget could produce."""
    if key not in CONTROLS:
        raise ValueError(f"unknown setting {quote(key)}")
    text = text.strip()
    choices = CONTROLS[key][1]
    try:
        if key == "momentum":
            value = float(text)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ValueError
            return round(value, 2)
        if key == "seed":
            value = int(text)
            if not 0 <= value <= MAX_SEED:
                raise ValueError
            return value
        if key == "momentum_none":
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        sample = choices[0]
        if isinstance(sample, str):
            if text in choices:
                return text
            raise ValueError
        number = float(text)
        for choice in choices:
            if math.isclose(number, choice, rel_tol=1e-9):
                return choice
        raise ValueError
    except (ValueError, KeyError, OverflowError):
        raise ValueError(f"{key} must be {allowed(key)}; got {quote(text)}") from None


def to_text(value) -> str:
    """A control value as it appears in a link (parse() reads it back)."""
    return f"{value:g}" if isinstance(value, float) else str(value).lower()


def link_query(
    values: dict, scenario: str | None, hidden: list[str], view: str | None, present: bool = False
) -> str:
    """The query string that reproduces these settings (only what differs from defaults), and
    presenter mode."""
    params = {}
    if scenario:
        params["scenario"] = scenario
    for key, value in values.items():
        if key in CONTROLS and value != DEFAULTS[key]:
            params[key] = to_text(value)
    if hidden:
        params["hide"] = ",".join(hidden)
    if view:
        params["view"] = view
    if present:
        params["present"] = "1"
    return urlencode(params, safe=",")


def values_of(config: TrainConfig, twin: str) -> dict:
    """The controls' values that describe config and its twin: what sidebar.controls reads
    back as them (a run's steps after Continue are the budget it started with)."""
    momentum = config.momentum
    return {
        "dataset": config.dataset,
        "arch": config.arch,
        "depth": len(config.widths),
        "width": config.widths[0],
        "activation": config.activation,
        "norm": config.norm,
        "bn_impl": config.bn_impl,
        "placement": config.placement,
        "batch_size": config.batch_size,
        "eps": config.eps,
        "momentum_none": momentum is None,
        "momentum": DEFAULTS["momentum"] if momentum is None else momentum,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "steps": config.steps,
        "seed": config.seed,
        "twin": twin,
    }
