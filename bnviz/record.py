"""The run record: everything measured during training, as numpy arrays, and how to read it.
On disk it is strict JSON (bnviz/runfile.py, format in docs/run-format.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .batchnorm import average_factor, keras_momentum
from .config import NORM_NAMES, TrainConfig
from .model import feature_sides

STATUSES = ("running", "completed", "stopped", "diverged", "failed")
STEP_STATS = ("batch_mean", "batch_var", "running_mean", "running_var", "gamma", "beta")
HIST_KINDS = ("pre_norm", "post_norm", "post_act")
MAX_SNAPSHOTS = 300  # past this, every other snapshot is dropped and the cadence doubles
MAX_MESSAGE = 10_000  # characters of a run's message
TRACKED_CHANNELS = 8  # per-channel histograms for the first few channels of each block


class Table:
    """A growing float32 matrix, one row per optimizer step, with named column ranges."""

    def __init__(self, widths: dict[str, int]):
        self.columns, start = {}, 0
        for name, width in widths.items():
            self.columns[name] = slice(start, start + width)
            start += width
        self._data = np.zeros((64, start), dtype=np.float32)
        self.rows = 0

    def append(self, row: np.ndarray) -> None:
        if self.rows == len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        self._data[self.rows] = row
        self.rows += 1

    def get(self, name: str) -> np.ndarray:
        """Read-only view, rows x width (width 1 columns come back as a vector)."""
        cols = self.columns[name]
        view = self._data[: self.rows, cols]
        view = view[:, 0] if cols.stop - cols.start == 1 else view
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def frozen(self) -> Table:
        """The rows so far, shared rather than copied: appends write only past them."""
        copy = object.__new__(Table)
        copy.columns, copy._data, copy.rows = self.columns, self._data, self.rows
        return copy


@dataclass
class LayerSnapshots:
    """Coarse-cadence measurements of one block; lists hold one item per snapshot."""

    edges: dict[str, np.ndarray] = field(default_factory=dict)  # fixed bin edges per kind
    steps: list[int] = field(default_factory=list)
    hist: dict[str, list[np.ndarray]] = field(default_factory=dict)  # kind -> [bins]
    channel_hist: dict[str, list[np.ndarray]] = field(default_factory=dict)  # [tracked, bins]
    unit_percentiles: list[np.ndarray] = field(default_factory=list)  # 15/50/85th
    layer_percentiles: list[np.ndarray] = field(default_factory=list)
    saturated_fraction: list[float] = field(default_factory=list)

    def thin(self) -> None:
        """Keep every other snapshot (the first one included)."""
        self.steps = self.steps[::2]
        for series in (self.hist, self.channel_hist):
            for kind in series:
                series[kind] = series[kind][::2]
        self.unit_percentiles = self.unit_percentiles[::2]
        self.layer_percentiles = self.layer_percentiles[::2]
        self.saturated_fraction = self.saturated_fraction[::2]

    def frozen(self) -> LayerSnapshots:
        """A copy that later snapshots leave alone (the arrays are never changed in place)."""
        return LayerSnapshots(
            dict(self.edges),
            list(self.steps),
            {k: list(v) for k, v in self.hist.items()},
            {k: list(v) for k, v in self.channel_hist.items()},
            list(self.unit_percentiles),
            list(self.layer_percentiles),
            list(self.saturated_fraction),
        )


@dataclass
class LayerInfo:
    """What a block is: its name, channel count and what its norm layer has."""

    name: str
    channels: int
    norm: str  # batch / group / layer / instance / none
    has_running_stats: bool
    has_affine: bool
    saturation: str  # "dead" (relu: output is 0) or "saturated" (tanh/sigmoid near the bounds)
    side: int  # height = width of the block's feature maps (its norm's input), in pixels
    unit: tuple[int, int, int]  # (channel, y, x) of the unit whose percentiles are tracked
    tracked_channels: int  # per-channel histograms are kept for channels 0..tracked-1

    @property
    def values_per_channel(self) -> int:
        """Values one image gives each channel of the block: m = batch x this."""
        return self.side * self.side


def layer_infos(config: TrainConfig, image_side: int) -> list[LayerInfo]:
    """What each block of the model `config` builds is, for images `image_side` px square: the
    one place this is worked out, for the trainer's new record and the loader's checks."""
    sides = feature_sides(config, image_side)
    return [
        LayerInfo(
            name=f"block{i + 1}",
            channels=width,
            norm=config.norm,
            has_running_stats=config.norm == "batch",
            has_affine=config.norm != "none",
            saturation="dead" if config.activation == "relu" else "saturated",
            side=side,
            unit=(0, side // 2, side // 2),
            tracked_channels=min(width, TRACKED_CHANNELS),
        )
        for i, (width, side) in enumerate(zip(config.widths, sides))
    ]


class Run:
    """Everything recorded for one training run; see docs/run-format.md."""

    def __init__(
        self, config: TrainConfig, layers: list[LayerInfo], params: list[str], hist_images: int
    ):
        self.config = config
        self.layers = layers
        self.params = params
        self.hist_images = hist_images  # histograms use the first this many images of a batch
        self.status = "running"
        self.message = ""
        self.diverged_step: int | None = None
        widths = {"step": 1, "train_loss": 1, "train_acc": 1}
        for i, layer in enumerate(layers):
            for stat in STEP_STATS:
                if has_stat(layer, stat):
                    widths[f"{i}.{stat}"] = layer.channels
            widths[f"{i}.input_grad_norm"] = 1
            widths[f"{i}.param_grad_norm"] = 1
        for name in params:
            widths[f"{name}:grad_norm"] = 1
            widths[f"{name}:update_ratio"] = 1
        self.table = Table(widths)
        self.snapshots = [LayerSnapshots() for _ in layers]
        self.eval_steps: list[int] = []
        self.acc_running_stats: list[float] = []
        self.acc_batch_stats: list[float] = []
        self.changes: list[dict] = []  # mid-run changes: {"step", "field", "old", "new"}
        # The record as it stood where this run went on as a branch of it (Continue, Fork):
        # kept in memory to draw under the branch, not saved (the branch's own record holds
        # every step, and the change that started it).
        self.parent: Run | None = None
        # the twin's record, in a run saved or loaded with one (a live twin is its own Run)
        self.twin: Run | None = None

    def frozen(self) -> Run:
        """The record as it is now, unchanged by later steps: for drawing while training goes
        on in another thread. Cheap: arrays are shared, only the lists are copied."""
        copy = object.__new__(Run)
        copy.__dict__.update(self.__dict__)
        copy.table = self.table.frozen()
        copy.snapshots = [s.frozen() for s in self.snapshots]
        copy.eval_steps = list(self.eval_steps)
        copy.acc_running_stats = list(self.acc_running_stats)
        copy.acc_batch_stats = list(self.acc_batch_stats)
        copy.changes = [dict(c) for c in self.changes]
        return copy

    # ---- reading ----
    @property
    def steps(self) -> np.ndarray:
        return self.table.get("step").astype(np.int64)

    @property
    def num_steps(self) -> int:
        return self.table.rows

    def metric(self, name: str) -> np.ndarray:
        """train_loss or train_acc, one value per step."""
        return self.table.get(name)

    def layer_stat(self, layer: int, stat: str) -> np.ndarray | None:
        """A per-step stat of one block (steps x channels), or None if its norm lacks it."""
        key = f"{layer}.{stat}"
        if key not in self.table.columns:
            return None
        values = self.table.get(key)
        # a block of one channel is still steps x channels (the table squeezes width 1)
        if stat in STEP_STATS and values.ndim == 1:
            return values.reshape(len(values), 1)
        return values

    def param_stat(self, name: str, stat: str) -> np.ndarray:
        """grad_norm or update_ratio of one parameter tensor, one value per step."""
        return self.table.get(f"{name}:{stat}")

    def row(self, step_index: int) -> int:
        """A (possibly negative) row index into run.steps, checked: the row itself."""
        n = self.num_steps
        if n == 0:
            raise ValueError("no steps recorded yet")
        if not -n <= step_index < n:
            raise IndexError(f"step_index {step_index} out of range for {n} recorded steps")
        return step_index % n

    def setting_at(self, field: str, step: int | None = None):
        """The value of a config field in force at `step`: a change recorded at step s applies
        from step s on. With no step, the value in force now, after every change (what the
        next step uses). Changes are in order of step: the trainer appends them so, and the
        loader checks it."""
        value = getattr(self.config, field)
        for change in self.changes:
            if change["field"] == field and (step is None or change["step"] <= step):
                value = change["new"]
        return value

    def config_at(self, step: int | None = None) -> TrainConfig:
        """The config with the changes in force at `step` applied (see setting_at)."""
        fields = {c["field"] for c in self.changes}
        return self.config.replace(**{f: self.setting_at(f, step) for f in fields})

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the record."""
        total = self.table.nbytes
        for snaps in self.snapshots:
            for series in (snaps.hist, snaps.channel_hist):
                total += sum(a.nbytes for arrays in series.values() for a in arrays)
            total += 48 * len(snaps.steps)
        return total

    # ---- on disk (bnviz/runfile.py) ----
    def to_dict(self, twin: Run | None = None) -> dict:
        """Strict-JSON dict of the record, with `twin` (by default self.twin) under "twin"."""
        from . import runfile

        return runfile.to_dict(self, twin)

    def to_json(self, twin: Run | None = None) -> str:
        """The record (and its twin's, see to_dict) as compact strict JSON."""
        from . import runfile

        return runfile.to_json(self, twin)

    def save(self, path: str | Path) -> Path:
        """Write the record as JSON, atomically (runfile.save)."""
        from . import runfile

        return runfile.save(self, path)

    @classmethod
    def from_dict(cls, d: dict) -> Run:
        """Inverse of to_dict, every field checked (runfile.from_dict)."""
        from . import runfile

        return runfile.from_dict(d)

    @classmethod
    def from_json(cls, data: bytes | str, max_mb: float | None = None) -> Run:
        """Parse a saved run of at most `max_mb` MiB (default: the upload cap); see runfile."""
        from . import runfile

        return runfile.from_json(data, max_mb)

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Read a run saved with save(), of any size (runfile.load)."""
        from . import runfile

        return runfile.load(path)


def has_stat(layer: LayerInfo, stat: str) -> bool:
    """Whether a block of this kind records a per-step stat (running stats and gamma/beta
    only where its norm has them)."""
    if stat in ("running_mean", "running_var"):
        return layer.has_running_stats
    if stat in ("gamma", "beta"):
        return layer.has_affine
    return True


def momentum_numbers(run: Run, layer: int, channel: int, step_index: int = -1) -> dict:
    """The numbers of one channel's running-average update at a recorded step (the row
    `step_index`), as the Running statistics view writes the formula out: the factor in force
    then, the buffers before and after, the batch's statistics, and m, the values per channel
    (batch size in force x side x side). ValueError if the block keeps no running statistics."""
    info = run.layers[layer]
    if not info.has_running_stats:
        raise ValueError(f"{info.name} ({NORM_NAMES[info.norm]}) keeps no running statistics")
    if not 0 <= channel < info.channels:
        raise ValueError(f"channel must be from 0 to {info.channels - 1}; got {channel}")
    i = run.row(step_index)
    step = int(run.steps[i])
    momentum = run.setting_at("momentum", step)
    m = int(run.setting_at("batch_size", step)) * info.values_per_channel

    def at(stat: str, row: int, initial: float) -> float:
        return initial if row < 0 else float(run.layer_stat(layer, stat)[row, channel])

    biased = at("batch_var", i, 0.0)
    return {
        "step": step,
        "momentum": momentum,
        "factor": average_factor(momentum, step),
        "running_before": at("running_mean", i - 1, 0.0),
        "batch": at("batch_mean", i, 0.0),
        "running_after": at("running_mean", i, 0.0),
        "var_running_before": at("running_var", i - 1, 1.0),
        "var_batch_biased": biased,
        "var_batch_unbiased": biased * m / (m - 1) if m > 1 else math.nan,
        "var_running_after": at("running_var", i, 1.0),
        "m": m,
        "keras_momentum": keras_momentum(momentum),
    }
