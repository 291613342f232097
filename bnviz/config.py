"""TrainConfig: every knob of one training run, validated at construction."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

DATASETS = ("shapes", "mnist", "fashion_mnist", "cifar10")
# conv: blocks of 3x3 convolutions; mlp: fully connected hidden layers (Ioffe & Szegedy's Fig. 1
# network), built as 1x1 convolutions on the flattened image, so every block is a 1x1 "image"
ARCHS = ("conv", "mlp")
NORMS = ("batch", "group", "layer", "instance", "none")
NORM_NAMES = {  # how figures, texts and the sidebar name each
    "batch": "BatchNorm",
    "group": "GroupNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "none": "no norm",
}
BN_IMPLS = ("torch", "scratch")
PLACEMENTS = ("before", "after")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
LIVE_FIELDS = ("batch_size", "eps", "momentum", "lr")  # may change mid-run, see Trainer.set

# Resource caps: one session must not be able to exhaust a shared host.
MAX_STEPS = 20_000
MAX_BATCH_SIZE = 1024
MAX_WIDTH = 256
MAX_DEPTH = 6  # 28 or 32 pixels halve to 1x1 in six blocks
# Images x channels of the first block, whose full-resolution activations dominate a step's
# memory and time: at this cap one step of a network and its twin peaks near 310-340 MB above
# the server's base and takes under a second here; the default (64 x 16) is 1,024 and peaks near
# 60 MB (python -m bench.bench_caps).
MAX_BATCH_X_WIDTH = 8192
# Steps x channels of all blocks: the run record keeps six statistics of every channel at every
# step (float32), so this bounds a record at about 38 MB per network (bench/bench_caps.py). The
# default (300 steps, 112 channels) is 33,600; 5,000 steps of the default network are 560,000.
MAX_STEPS_X_CHANNELS = 1_500_000


def quote(text) -> str:
    """Text from a user or a file made safe to quote in a message: short, and nothing that
    markdown or HTML could use."""
    return repr(re.sub(r"[^\w.,+\- ]", "?", str(text)[:40]))


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """One run. Momentum and eps follow PyTorch: running = (1 - momentum) * running
    + momentum * batch; momentum=None is a cumulative average. Keras' momentum is 1 - this."""

    dataset: str = "shapes"
    arch: str = "conv"
    norm: str = "batch"
    bn_impl: str = "torch"
    placement: str = "before"
    activation: str = "relu"
    widths: tuple[int, ...] = (16, 32, 64)
    batch_size: int = 64
    eps: float = 1e-5
    momentum: float | None = 0.1
    optimizer: str = "sgd"
    lr: float | None = None  # None: DEFAULT_LR for the optimizer
    steps: int = 300
    seed: int = 0
    snapshot_every: int | None = None  # None: automatic, see Trainer
    eval_every: int | None = None  # None: automatic and dense early (trainer.eval_due); k: every k

    def __post_init__(self):
        set_ = object.__setattr__
        for name, choices in (
            ("dataset", DATASETS),
            ("arch", ARCHS),
            ("norm", NORMS),
            ("bn_impl", BN_IMPLS),
            ("placement", PLACEMENTS),
            ("activation", ACTIVATIONS),
            ("optimizer", OPTIMIZERS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        widths = self.widths
        if isinstance(widths, list):
            widths = tuple(widths)
            set_(self, "widths", widths)
        if (
            not isinstance(widths, tuple)
            or not 1 <= len(widths) <= MAX_DEPTH
            or not all(is_int(w) and 1 <= w <= MAX_WIDTH for w in widths)
        ):
            raise ValueError(
                f"widths must be 1 to {MAX_DEPTH} integers, each from 1 to {MAX_WIDTH}; "
                f"got {widths!r}"
            )
        if self.arch == "mlp" and self.norm == "instance":
            raise ValueError(
                "norm 'instance' does not work with arch 'mlp': InstanceNorm normalizes each "
                "channel of each image over its own pixels, and a fully connected layer has one "
                "value per unit and image, which it would always set to 0. Choose batch, group, "
                "layer or no norm"
            )
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if self.batch_size * widths[0] > MAX_BATCH_X_WIDTH:
            raise ValueError(
                f"batch_size x widths[0] (batch size x width of the first block) must be at "
                f"most {MAX_BATCH_X_WIDTH:,} on a shared server; got {self.batch_size} x "
                f"{widths[0]} = {self.batch_size * widths[0]:,}. Choose a smaller batch size "
                "or width"
            )
        _check_int("steps", self.steps, 1, MAX_STEPS)
        if self.steps * sum(widths) > MAX_STEPS_X_CHANNELS:
            raise ValueError(
                f"steps x sum(widths) (steps x channels of all blocks, which the record keeps "
                f"at every step) must be at most {MAX_STEPS_X_CHANNELS:,}; got {self.steps:,} x "
                f"{sum(widths)} = {self.steps * sum(widths):,}. Choose fewer steps, or fewer or "
                "narrower blocks"
            )
        _check_int("seed", self.seed, 0, 2**31 - 1)
        for name in ("snapshot_every", "eval_every"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, MAX_STEPS)
        _check_float("eps", self.eps, 0.0, 1.0, low_open=False)
        if self.momentum is not None:
            _check_float("momentum", self.momentum, 0.0, 1.0, low_open=False)
            set_(self, "momentum", float(self.momentum))
        set_(self, "eps", float(self.eps))
        if self.lr is None:
            set_(self, "lr", DEFAULT_LR[self.optimizer])
        _check_float("lr", self.lr, 0.0, 1e6, low_open=True)
        set_(self, "lr", float(self.lr))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of to_dict; unknown keys raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a dict; got {type(d).__name__}")
        unknown = set(d) - set(FIELDS)
        if unknown:
            raise ValueError(
                f"unknown config keys: {', '.join(sorted(map(str, unknown)))}; "
                f"allowed: {', '.join(FIELDS)}"
            )
        d = dict(d)
        if isinstance(d.get("widths"), list):
            d["widths"] = tuple(d["widths"])
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _check_int(name, value, low, high):
    if not is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}; got {value!r}")


def _check_float(name, value, low, high, low_open):
    ok = _is_number(value) and math.isfinite(value) and value <= high
    ok = ok and (value > low if low_open else value >= low)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low:g}, {high:g}]; got {value!r}")
