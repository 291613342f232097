"""The run record: everything measured during training, as numpy arrays in memory and as
strict JSON on disk (format described in docs/run-format.md)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import MAX_STEPS, TrainConfig

FORMAT = "bnviz-run"
VERSION = 1
STATUSES = ("running", "completed", "stopped", "diverged", "failed")
STEP_STATS = ("batch_mean", "batch_var", "running_mean", "running_var", "gamma", "beta")
HIST_KINDS = ("pre_norm", "post_norm", "post_act")
MAX_SNAPSHOTS = 300  # past this, every other snapshot is dropped and the cadence doubles
MAX_PARAMS = 64  # parameter tensors of the largest model (6 blocks) are far fewer
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
    unit: tuple[int, int, int]  # (channel, y, x) of the unit whose percentiles are tracked
    tracked_channels: int  # per-channel histograms are kept for channels 0..tracked-1


class Run:
    """Everything recorded for one training run; see docs/run-format.md."""

    def __init__(self, config: TrainConfig, layers: list[LayerInfo], params: list[str]):
        self.config = config
        self.layers = layers
        self.params = params
        self.status = "running"
        self.message = ""
        self.diverged_step: int | None = None
        widths = {"step": 1, "train_loss": 1, "train_acc": 1}
        for i, layer in enumerate(layers):
            for stat in STEP_STATS:
                if _has_stat(layer, stat):
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
        return self.table.get(key) if key in self.table.columns else None

    def param_stat(self, name: str, stat: str) -> np.ndarray:
        """grad_norm or update_ratio of one parameter tensor, one value per step."""
        return self.table.get(f"{name}:{stat}")

    def config_in_force(self) -> TrainConfig:
        """The config with every mid-run change applied: the settings of the latest step."""
        return self.config.replace(**{c["field"]: c["new"] for c in self.changes})

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the record."""
        total = self.table.nbytes
        for snaps in self.snapshots:
            for series in (snaps.hist, snaps.channel_hist):
                total += sum(a.nbytes for arrays in series.values() for a in arrays)
            total += 48 * len(snaps.steps)
        return total

    # ---- serialization ----
    def to_dict(self) -> dict:
        """Strict-JSON dict (non-finite floats become the strings NaN, Infinity, -Infinity)."""
        layers = []
        for i, (info, snaps) in enumerate(zip(self.layers, self.snapshots)):
            layer = {
                "name": info.name,
                "channels": info.channels,
                "norm": info.norm,
                "has_running_stats": info.has_running_stats,
                "has_affine": info.has_affine,
                "saturation": info.saturation,
                "unit": list(info.unit),
                "tracked_channels": info.tracked_channels,
            }
            for stat in (*STEP_STATS, "input_grad_norm", "param_grad_norm"):
                values = self.layer_stat(i, stat)
                layer[stat] = None if values is None else _encode(values)
            layer["snapshots"] = {
                "steps": list(snaps.steps),
                "edges": {k: _encode(v) for k, v in snaps.edges.items()},
                "hist": {k: np.asarray(v, dtype=np.int64).tolist() for k, v in snaps.hist.items()},
                "channel_hist": {
                    k: np.asarray(v, dtype=np.int64).tolist() for k, v in snaps.channel_hist.items()
                },
                "unit_percentiles": _encode(np.asarray(snaps.unit_percentiles, np.float32)),
                "layer_percentiles": _encode(np.asarray(snaps.layer_percentiles, np.float32)),
                "saturated_fraction": _encode(np.asarray(snaps.saturated_fraction, np.float32)),
            }
            layers.append(layer)
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "status": self.status,
            "message": self.message,
            "diverged_step": self.diverged_step,
            "steps": self.steps.tolist(),
            "metrics": {k: _encode(self.metric(k)) for k in ("train_loss", "train_acc")},
            "eval": {
                "steps": list(self.eval_steps),
                "acc_running_stats": _encode(np.asarray(self.acc_running_stats, np.float32)),
                "acc_batch_stats": _encode(np.asarray(self.acc_batch_stats, np.float32)),
            },
            "layers": layers,
            "params": {
                name: {s: _encode(self.param_stat(name, s)) for s in ("grad_norm", "update_ratio")}
                for name in self.params
            },
            "changes": [dict(c) for c in self.changes],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Run:
        """Inverse of to_dict. Malformed input raises ValueError."""
        try:
            return _from_dict(d)
        except ValueError:
            raise
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise ValueError(f"not a valid bnviz run: {type(e).__name__}: {e}") from None

    def to_json(self) -> str:
        """The record as compact strict JSON."""
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically: a crash mid-write never damages an earlier file."""
        path = Path(path)
        text = self.to_json()
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Read a run saved with save(); only JSON is ever parsed."""
        return cls.from_json(Path(path).read_bytes())

    @classmethod
    def from_json(cls, data: bytes | str) -> Run:
        """Parse a saved run (UTF-8 JSON); anything else raises ValueError."""
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            d = json.loads(text, parse_constant=_reject)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"not a valid bnviz run (not JSON): {e}") from None
        return cls.from_dict(d)


def _has_stat(layer: LayerInfo, stat: str) -> bool:
    if stat in ("running_mean", "running_var"):
        return layer.has_running_stats
    if stat in ("gamma", "beta"):
        return layer.has_affine
    return True


def _reject(name):
    raise ValueError(f"not a valid bnviz run: bare {name} is not strict JSON")


def _encode(values: np.ndarray) -> list:
    """Array -> nested lists of floats, with non-finite values as strings. float32 values go
    through their shortest decimal form: exact on reload, and about 40% less JSON."""
    values = np.asarray(values)
    if values.dtype == np.float32:
        values = values.astype(str).astype(np.float64)
    if np.isfinite(values).all():
        return values.tolist()
    out = values.astype(object)
    out[np.isnan(values)] = "NaN"
    out[np.isposinf(values)] = "Infinity"
    out[np.isneginf(values)] = "-Infinity"
    return out.tolist()


def _decode(values, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """Nested lists -> float32 array of the expected shape (None: any length)."""

    def check(v):
        if isinstance(v, list):
            return [check(x) for x in v]
        if isinstance(v, str) and v in _NONFINITE:
            return _NONFINITE[v]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return v
        raise ValueError(f"not a valid bnviz run: {what} holds {type(v).__name__} {v!r:.40}")

    try:
        array = np.array(check(values), dtype=np.float64)
    except ValueError:
        raise ValueError(f"not a valid bnviz run: {what} is ragged") from None
    if array.size == 0:
        array = array.reshape([0 if s is None else s for s in shape])
    if array.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, array.shape)
    ):
        raise ValueError(f"not a valid bnviz run: {what} has shape {array.shape}, expected {shape}")
    return array.astype(np.float32)


def _from_dict(d: dict) -> Run:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError("not a valid bnviz run: missing format 'bnviz-run'")
    if d.get("version") != VERSION:
        raise ValueError(f"unsupported bnviz run version {d.get('version')!r}; expected {VERSION}")
    config = TrainConfig.from_dict(d["config"])
    if d["status"] not in STATUSES:
        raise ValueError(f"not a valid bnviz run: status must be one of {', '.join(STATUSES)}")
    # Everything that sizes an allocation is checked against the config first, so a hostile
    # file cannot ask for gigabytes (channel counts, layer counts, parameter names, steps).
    if not isinstance(d["layers"], list) or len(d["layers"]) != len(config.widths):
        raise ValueError("not a valid bnviz run: one layer entry per block of config.widths")
    if not isinstance(d["steps"], list) or len(d["steps"]) > MAX_STEPS:
        raise ValueError(f"not a valid bnviz run: steps must be a list of at most {MAX_STEPS}")
    infos = []
    for layer, width in zip(d["layers"], config.widths):
        if layer["channels"] != width or not 0 <= layer["tracked_channels"] <= width:
            raise ValueError("not a valid bnviz run: layer channels do not match config.widths")
        unit = tuple(int(u) for u in layer["unit"])
        if len(unit) != 3:
            raise ValueError("not a valid bnviz run: unit must be (channel, y, x)")
        infos.append(
            LayerInfo(
                name=str(layer["name"]),
                channels=_int(layer["channels"], "channels"),
                norm=str(layer["norm"]),
                has_running_stats=bool(layer["has_running_stats"]),
                has_affine=bool(layer["has_affine"]),
                saturation=str(layer["saturation"]),
                unit=unit,
                tracked_channels=_int(layer["tracked_channels"], "tracked_channels"),
            )
        )
    if not isinstance(d["params"], dict) or len(d["params"]) > MAX_PARAMS:
        raise ValueError(f"not a valid bnviz run: params must be an object of <= {MAX_PARAMS}")
    run = Run(config, infos, list(d["params"]))
    run.status, run.message = d["status"], str(d["message"])
    run.diverged_step = None if d["diverged_step"] is None else _int(d["diverged_step"], "step")
    n = len(d["steps"])
    columns = {"step": _decode(d["steps"], (n,), "steps")}
    for name in ("train_loss", "train_acc"):
        columns[name] = _decode(d["metrics"][name], (n,), name)
    for i, (info, layer) in enumerate(zip(infos, d["layers"])):
        for stat in STEP_STATS:
            key = f"{i}.{stat}"
            if key in run.table.columns:
                columns[key] = _decode(layer[stat], (n, info.channels), f"{info.name}.{stat}")
        for stat in ("input_grad_norm", "param_grad_norm"):
            columns[f"{i}.{stat}"] = _decode(layer[stat], (n,), f"{info.name}.{stat}")
        _load_snapshots(run.snapshots[i], layer["snapshots"], info)
    for name, stats in d["params"].items():
        for stat in ("grad_norm", "update_ratio"):
            columns[f"{name}:{stat}"] = _decode(stats[stat], (n,), f"{name}.{stat}")
    rows = np.zeros((n, sum(s.stop - s.start for s in run.table.columns.values())), np.float32)
    for key, cols in run.table.columns.items():
        rows[:, cols] = columns[key].reshape(n, cols.stop - cols.start)
    for row in rows:
        run.table.append(row)
    ev = d["eval"]
    m = len(ev["steps"])
    run.eval_steps = [_int(s, "eval step") for s in ev["steps"]]
    run.acc_running_stats = _decode(ev["acc_running_stats"], (m,), "acc_running_stats").tolist()
    run.acc_batch_stats = _decode(ev["acc_batch_stats"], (m,), "acc_batch_stats").tolist()
    run.changes = [dict(c) for c in d["changes"]]
    return run


def _load_snapshots(snaps: LayerSnapshots, d: dict, info: LayerInfo) -> None:
    s = len(d["steps"])
    snaps.steps = [_int(x, "snapshot step") for x in d["steps"]]
    snaps.edges = {k: _decode(v, (None,), f"{info.name} edges") for k, v in d["edges"].items()}
    for kind, edges in snaps.edges.items():
        if kind not in HIST_KINDS:
            raise ValueError(f"not a valid bnviz run: unknown histogram kind {kind!r}")
        bins = len(edges) - 1
        counts = _decode(d["hist"][kind], (s, bins), f"{info.name} {kind} hist")
        snaps.hist[kind] = list(counts.astype(np.int64))
        shape = (s, info.tracked_channels, bins)
        counts = _decode(d["channel_hist"][kind], shape, f"{info.name} {kind} channel hist")
        snaps.channel_hist[kind] = list(counts.astype(np.int64))
    for name in ("unit_percentiles", "layer_percentiles"):
        setattr(snaps, name, list(_decode(d[name], (s, 3), f"{info.name} {name}")))
    snaps.saturated_fraction = _decode(d["saturated_fraction"], (s,), "saturated").tolist()


def _int(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"not a valid bnviz run: {what} must be an integer; got {value!r:.40}")
    return value
