"""A run record on disk: the bnviz-run format (docs/run-format.md), saving, loading, and the
checks that make loading a hostile upload safe. Only JSON is ever parsed; anything malformed
raises ValueError with a message that quotes the file only as config.quote() leaves it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import uuid
from pathlib import Path

import numpy as np

from .config import FIELDS, LIVE_FIELDS, MAX_BATCH_SIZE, MAX_DEPTH, TrainConfig, is_int, quote
from .record import (
    HIST_KINDS,
    MAX_MESSAGE,
    STATUSES,
    STEP_STATS,
    LayerInfo,
    LayerSnapshots,
    Run,
    layer_infos,
)

FORMAT = "bnviz-run"
# 2 added hist_images and each layer's side, 3 config.arch; version 1 and 2 files still load
VERSION = 3
V1_HIST_IMAGES = 8  # what every version 1 file's trainer used
MAX_PARAMS = 64  # parameter tensors of the largest model (6 blocks) are far fewer
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# Limits of a file to load. The app's uploads are capped at MAX_FILE_MB (as Streamlit's
# server.maxUploadSize): parsing JSON takes several times its size in memory, on a server that
# every viewer shares. The default run (300 steps) is about 3 MB and 1,000 steps of it about
# 9.1 MB; larger runs (up to about 106 MB at the engine's steps x channels cap, mostly per-step
# statistics at about 70 bytes per step and channel: python -m bench.bench_caps) load in Python,
# with Run.load, which has no size cap.
MAX_FILE_MB = 10  # MiB
MAX_INT_DIGITS = 15  # the format's integers (steps, counts, seeds) are far shorter
MAX_COUNT = 2**31 - 1  # histogram counts are int32 when recorded
MAX_CHANGES = 10_000
MAX_SIDE = 32  # pixels: the largest images (cifar10) are 32 x 32
V1_KEYS = (
    *"format version config status message diverged_step steps metrics eval".split(),
    *"layers params changes".split(),
)
KEYS = (*V1_KEYS, "hist_images")
INFO_KEYS = tuple(field.name for field in dataclasses.fields(LayerInfo))
LAYER_KEYS = (*INFO_KEYS, *STEP_STATS, *"input_grad_norm param_grad_norm snapshots".split())
V1_LAYER_KEYS = tuple(k for k in LAYER_KEYS if k != "side")
SNAPSHOT_KEYS = tuple(
    "steps edges hist channel_hist unit_percentiles layer_percentiles saturated_fraction".split()
)
CHANGE_KEYS = ("step", "field", "old", "new")
# what the model names its parameter tensors (blocks.<i>.conv.weight, head.bias, ...)
PARAM_NAME = re.compile(r"(?:blocks\.(\d)\.(?:conv|norm)|head)\.(?:weight|bias)")


def to_dict(run: Run, twin: Run | None = None) -> dict:
    """Strict-JSON dict (non-finite floats become the strings NaN, Infinity, -Infinity),
    with `twin` (by default run.twin), the network trained in lockstep, under "twin"."""
    twin = twin if twin is not None else run.twin
    layers = []
    for i, (info, snaps) in enumerate(zip(run.layers, run.snapshots)):
        layer = dataclasses.asdict(info) | {"unit": list(info.unit)}
        for stat in (*STEP_STATS, "input_grad_norm", "param_grad_norm"):
            values = run.layer_stat(i, stat)
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
        "config": run.config.to_dict(),
        "status": run.status,
        "message": run.message,
        "diverged_step": run.diverged_step,
        "hist_images": run.hist_images,
        "steps": run.steps.tolist(),
        "metrics": {k: _encode(run.metric(k)) for k in ("train_loss", "train_acc")},
        "eval": {
            "steps": list(run.eval_steps),
            "acc_running_stats": _encode(np.asarray(run.acc_running_stats, np.float32)),
            "acc_batch_stats": _encode(np.asarray(run.acc_batch_stats, np.float32)),
        },
        "layers": layers,
        "params": {
            name: {s: _encode(run.param_stat(name, s)) for s in ("grad_norm", "update_ratio")}
            for name in run.params
        },
        "changes": [dict(c) for c in run.changes],
        # the twin's own twin is never saved: one level only
        "twin": None if twin is None else {**to_dict(twin), "twin": None},
    }


def from_dict(d: dict) -> Run:
    """Inverse of to_dict, checked against docs/run-format.md: anything malformed raises
    ValueError, whose message quotes values from `d` only as _quote() leaves them."""
    try:
        return _from_dict(d)
    except ValueError:
        raise
    except (
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
    ) as e:
        raise _invalid(type(e).__name__) from None


def to_json(run: Run, twin: Run | None = None) -> str:
    """The record (and its twin's, see to_dict) as compact strict JSON."""
    return json.dumps(to_dict(run, twin), allow_nan=False, separators=(",", ":"))


def save(run: Run, path: str | Path) -> Path:
    """Write JSON atomically: a temporary file in the same folder, flushed to disk, then
    renamed over `path`, so a crash at any point leaves an earlier file intact."""
    path = Path(path)
    data = to_json(run).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # mode 0o666 less the umask, as open() gives (mkstemp would make it 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> Run:
    """Read a run saved with save(), of any size; only JSON is ever parsed."""
    return from_json(Path(path).read_bytes(), max_mb=math.inf)


def from_json(data: bytes | str, max_mb: float | None = None) -> Run:
    """Parse a saved run: UTF-8 strict JSON of at most `max_mb` MiB (by default
    MAX_FILE_MB, the upload cap). Anything else (a pickle, an archive, NaN literals,
    numbers out of range, nesting deeper than the format's) raises ValueError; nothing in
    the data is ever executed or decompressed."""
    cap = MAX_FILE_MB if max_mb is None else max_mb
    if len(data) > cap * 2**20:
        size = len(data) / 2**20
        raise _invalid(f"{size:.1f} MB is over the {cap:g} MB limit of a saved run")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _invalid(f"not JSON: byte {e.start} is not UTF-8 text") from None
    if data.startswith("\ufeff"):
        raise _invalid("not JSON: the file starts with a byte-order mark (save it as UTF-8)")
    if not data.strip():
        raise _invalid("the file is empty")
    try:
        d = json.loads(data, parse_constant=_reject, parse_float=_float, parse_int=_integer)
    except json.JSONDecodeError as e:
        raise _invalid(f"not JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise _invalid("not JSON of the run format: arrays or objects nested too deeply") from None
    return from_dict(d)


def _invalid(what: str) -> ValueError:
    return ValueError(f"not a valid bnviz run: {what}")


def _reject(name):
    raise _invalid(f"bare {name} is not strict JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _invalid(f"the number {_quote(text)} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _invalid(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _quote(value) -> str:
    """A value from a file made safe to quote in a message (see config.quote); containers
    and other types by what they are."""
    if isinstance(value, list | dict):
        return f"{'a list' if isinstance(value, list) else 'an object'} of {len(value)}"
    if not (value is None or isinstance(value, str | int | float)):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and abs(value) >= 10**MAX_INT_DIGITS:
        return f"an integer of over {MAX_INT_DIGITS} digits"
    if not isinstance(value, str):
        return json.dumps(value)  # null, true, a number: nothing but digits and letters
    return quote(value)


def _is_number(value) -> bool:
    """An int or float (not a bool); ints as long as a JSON file may hold them."""
    if isinstance(value, float):
        return True
    return is_int(value) and abs(value) < 10**MAX_INT_DIGITS


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


def _decode(values, shape: tuple[int | None, ...], what: str, kind: str = "measured"):
    """Nested lists -> array of the expected shape (None: any length). kind "measured": float32,
    non-finite values allowed (as the strings NaN, Infinity, -Infinity); "finite": float32,
    finite numbers only; "count": int64, integers from 0 to MAX_COUNT. Recursion goes no
    deeper than the shape, so no nesting can exhaust the stack."""
    plain = int if kind == "count" else float

    def check(v, depth):
        if depth < len(shape):
            if not isinstance(v, list):
                raise _invalid(f"{what} must be lists nested {len(shape)} deep; found {_quote(v)}")
            if depth == len(shape) - 1 and all(type(x) is plain for x in v):
                return v  # the common case: checked in bulk below
            return [check(x, depth + 1) for x in v]
        if kind == "measured" and isinstance(v, str) and v in _NONFINITE:
            return _NONFINITE[v]
        if is_int(v) if kind == "count" else _is_number(v):
            return v
        expected = {"measured": "numbers", "finite": "finite numbers", "count": "counts"}[kind]
        raise _invalid(f"{what} must hold {expected}; found {_quote(v)}")

    nested = check(values, 0)
    try:
        array = np.array(nested, dtype=np.int64 if kind == "count" else np.float64)
    except OverflowError:  # a count beyond int64 (the bulk path above skips the range check)
        raise _invalid(f"{what} must hold counts from 0 to {MAX_COUNT}") from None
    except ValueError:
        raise _invalid(f"{what} is ragged") from None
    expected = [0 if s is None else s for s in shape]
    if array.size == 0 and math.prod(expected) == 0:  # [] for a shape (0, 3), say
        array = array.reshape(expected)
    if array.ndim != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, array.shape)
    ):
        raise _invalid(f"{what} has shape {array.shape}, expected {shape}")
    if kind == "count":
        if array.size and not (0 <= array.min() and array.max() <= MAX_COUNT):
            raise _invalid(f"{what} must hold counts from 0 to {MAX_COUNT}")
        return array
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    if kind == "finite" and not np.isfinite(array).all():
        raise _invalid(f"{what} must hold finite numbers (of float32 range)")
    return array


def _fields(d, keys: tuple[str, ...], what: str) -> dict:
    """d, checked to be an object with exactly these keys."""
    if not isinstance(d, dict):
        raise _invalid(f"{what} must be an object; found {_quote(d)}")
    unknown = [k for k in d if k not in keys]
    if unknown:
        names = ", ".join(_quote(k) for k in unknown[:5])
        raise _invalid(f"unknown keys in {what}: {names}; allowed: {', '.join(keys)}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise _invalid(f"{what} lacks {', '.join(missing)}")
    return d


def _steps(values, what: str, low: int, high: int) -> list[int]:
    """A strictly increasing list of integer steps from low to high."""
    ok = isinstance(values, list) and len(values) <= max(0, high - low + 1)
    ok = ok and all(is_int(v) and low <= v <= high for v in values)
    if not ok or any(b <= a for a, b in zip(values, values[1:])):
        raise _invalid(f"{what} must be increasing integers from {low} to {high}")
    return list(values)


def _from_dict(d) -> Run:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise _invalid("missing format 'bnviz-run'")
    version = d.get("version")
    if not is_int(version) or not 1 <= version <= VERSION:
        raise _invalid(f"version {_quote(version)} is not supported; expected 1 to {VERSION}")
    twin = d.get("twin")  # optional: files saved before twins were saved lack it
    keys = KEYS if version > 1 else V1_KEYS
    _fields({k: v for k, v in d.items() if k != "twin"}, keys, "the run")
    config = _config(d["config"], version)
    hist_images = d["hist_images"] if version > 1 else V1_HIST_IMAGES
    if not is_int(hist_images) or not 1 <= hist_images <= MAX_BATCH_SIZE:
        raise _invalid(f"hist_images must be an integer from 1 to {MAX_BATCH_SIZE}")
    status, message = d["status"], d["message"]
    if not isinstance(status, str) or status not in STATUSES:
        raise _invalid(f"status must be one of {', '.join(STATUSES)}; found {_quote(status)}")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise _invalid(f"message must be text of at most {MAX_MESSAGE} characters")
    # Everything that sizes an allocation is checked against the config first, so a hostile
    # file cannot ask for gigabytes (channel counts, layer counts, parameter names, steps).
    steps = d["steps"]
    if not isinstance(steps, list) or len(steps) > config.steps:
        raise _invalid(f"steps must be a list of at most config.steps ({config.steps})")
    n = len(steps)
    if steps != list(range(1, n + 1)) or not all(is_int(s) for s in steps):
        raise _invalid("steps must be 1, 2, ..., n: one per optimizer step")
    if not isinstance(d["layers"], list) or len(d["layers"]) != len(config.widths):
        raise _invalid("one layer entry per block of config.widths")
    keys = LAYER_KEYS if version > 1 else V1_LAYER_KEYS
    layers = [_fields(layer, keys, f"layers[{i}]") for i, layer in enumerate(d["layers"])]
    # version 1 files predate "side": their images were 28 px square, CIFAR-10's 32
    side = layers[0]["side"] if version > 1 else 32 if config.dataset == "cifar10" else 28
    if not is_int(side) or not 1 <= side <= MAX_SIDE:
        raise _invalid(f"block1 side must be an integer from 1 to {MAX_SIDE}")
    infos = [_layer_info(layer, info) for layer, info in zip(layers, layer_infos(config, side))]
    diverged = d["diverged_step"]
    if status == "diverged" and not (is_int(diverged) and diverged == n + 1):
        raise _invalid(f"diverged_step must be {n + 1}, the step after the last one recorded")
    if status != "diverged" and diverged is not None:
        raise _invalid("diverged_step must be null unless the run diverged")
    run = Run(config, infos, _param_names(d["params"], config), hist_images)
    run.status, run.message, run.diverged_step = status, message, diverged
    metrics = _fields(d["metrics"], ("train_loss", "train_acc"), "metrics")
    columns = {"step": np.arange(1, n + 1, dtype=np.float32)}
    for name in ("train_loss", "train_acc"):
        columns[name] = _decode(metrics[name], (n,), name)
    for i, (info, layer) in enumerate(zip(infos, d["layers"])):
        for stat in (*STEP_STATS, "input_grad_norm", "param_grad_norm"):
            key, what = f"{i}.{stat}", f"{info.name}.{stat}"
            if key not in run.table.columns:
                if layer[stat] is not None:
                    raise _invalid(f"{what} must be null: {info.norm} norm has no {stat}")
                continue
            shape = (n, info.channels) if stat in STEP_STATS else (n,)
            columns[key] = _decode(layer[stat], shape, what)
        _load_snapshots(run.snapshots[i], layer["snapshots"], info, n)
    for name in run.params:
        stats = _fields(d["params"][name], ("grad_norm", "update_ratio"), f"params {name}")
        for stat in ("grad_norm", "update_ratio"):
            columns[f"{name}:{stat}"] = _decode(stats[stat], (n,), f"{name}.{stat}")
    rows = np.zeros((n, sum(s.stop - s.start for s in run.table.columns.values())), np.float32)
    for key, cols in run.table.columns.items():
        rows[:, cols] = columns[key].reshape(n, cols.stop - cols.start)
    for row in rows:
        run.table.append(row)
    ev = _fields(d["eval"], ("steps", "acc_running_stats", "acc_batch_stats"), "eval")
    run.eval_steps = _steps(ev["steps"], "eval steps", 0, n)
    m = len(run.eval_steps)
    for name in ("acc_running_stats", "acc_batch_stats"):
        if isinstance(ev[name], list) and len(ev[name]) != m:
            raise _invalid(f"eval {name} must hold one per eval step ({m}); found {len(ev[name])}")
        setattr(run, name, _decode(ev[name], (m,), name).tolist())
    _changes(run, d["changes"], n)
    if twin is not None:
        run.twin = _twin(twin, config)
    return run


def _twin(d, config: TrainConfig) -> Run:
    """The twin's record: a run of its own, of the same config but for the norm, with no twin."""
    if not isinstance(d, dict) or d.get("twin") is not None:
        raise _invalid("twin must be a run record without a twin of its own")
    twin = _from_dict(d)
    if twin.config.replace(norm=config.norm) != config:
        raise _invalid("twin must have the run's config but for its norm")
    return twin


def _plain_value(value) -> bool:
    """A JSON scalar whose repr is safe to quote: None, a bool, a number, or short plain text."""
    if isinstance(value, str):
        return quote(value) == repr(value)  # nothing shortened or replaced
    return value is None or isinstance(value, bool) or _is_number(value)


def _config(d, version: int = VERSION) -> TrainConfig:
    """TrainConfig.from_dict, after checking that every value is plain, so that its messages
    (which quote the value) hold nothing an upload could use as markup. Files before version 3
    predate `arch`: their networks were conv nets."""
    if version < 3 and isinstance(d, dict) and "arch" not in d:
        d = {**d, "arch": "conv"}
    _fields(d, FIELDS, "config")  # a saved config has every field
    for key, value in d.items():
        listed = key == "widths" and isinstance(value, list) and len(value) <= MAX_DEPTH
        if not all(_plain_value(v) for v in (value if listed else [value])):
            raise _invalid(f"config {key} cannot be {_quote(value)}")
    try:
        return TrainConfig.from_dict(d)
    except ValueError as e:
        raise _invalid(f"config: {e}") from None


def _layer_info(layer: dict, expected: LayerInfo) -> LayerInfo:
    """One block's description, which must be what the config's model has (layer_infos)."""
    for key in INFO_KEYS:
        if key not in layer:  # side, in a version 1 file
            continue
        value, found = getattr(expected, key), layer[key]
        value = list(value) if isinstance(value, tuple) else value
        plain = type(found) is type(value) and (
            not isinstance(value, list) or all(is_int(v) for v in found)
        )
        if not plain or found != value:
            what = f"{expected.name} {key}"
            raise _invalid(f"{what} must be {json.dumps(value)}; found {_quote(found)}")
    return expected


def _param_names(params, config: TrainConfig) -> list[str]:
    """The parameter tensors' names, each one the model could have."""
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise _invalid(f"params must be an object of <= {MAX_PARAMS} parameter tensors")
    for name in params:
        match = PARAM_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None or (match[1] is not None and int(match[1]) >= len(config.widths)):
            raise _invalid(f"params holds {_quote(name)}, not a parameter of the model")
    return list(params)


def _load_snapshots(snaps: LayerSnapshots, d, info: LayerInfo, n: int) -> None:
    d = _fields(d, SNAPSHOT_KEYS, f"{info.name} snapshots")
    snaps.steps = _steps(d["steps"], f"{info.name} snapshot steps", 1, n)
    s = len(snaps.steps)
    kinds = set(HIST_KINDS) if s else set()  # edges are chosen at the first snapshot
    for key in ("edges", "hist", "channel_hist"):
        if not isinstance(d[key], dict) or set(d[key]) != kinds:
            names = ", ".join(HIST_KINDS) if s else "none before the first snapshot"
            raise _invalid(f"{info.name} {key} must have the kinds {names}")
    for kind in d["edges"]:
        edges = _decode(d["edges"][kind], (None,), f"{info.name} {kind} edges", "finite")
        if len(edges) < 2 or not (np.diff(edges) > 0).all():
            raise _invalid(f"{info.name} {kind} edges must be 2 or more increasing numbers")
        snaps.edges[kind] = edges
        bins = len(edges) - 1
        counts = _decode(d["hist"][kind], (s, bins), f"{info.name} {kind} hist", "count")
        snaps.hist[kind] = list(counts)
        shape = (s, info.tracked_channels, bins)
        what = f"{info.name} {kind} channel hist"
        snaps.channel_hist[kind] = list(_decode(d["channel_hist"][kind], shape, what, "count"))
    for name in ("unit_percentiles", "layer_percentiles"):
        setattr(snaps, name, list(_decode(d[name], (s, 3), f"{info.name} {name}")))
    what = f"{info.name} saturated_fraction"
    snaps.saturated_fraction = _decode(d["saturated_fraction"], (s,), what).tolist()


def _changes(run: Run, changes, n: int) -> None:
    """Mid-run changes, each checked as Trainer.set checks it: a live field and a valid value,
    in order of step (1 to n + 1: a change applies from the next step), and the value it
    replaced is the one in force (tracked here as the file is read: run.setting_at would
    read all the changes so far at each one, quadratic in a hostile file's 10,000)."""
    if not isinstance(changes, list) or len(changes) > MAX_CHANGES:
        raise _invalid(f"changes must be a list of at most {MAX_CHANGES}")
    config, first = run.config, 1
    in_force = {name: getattr(config, name) for name in LIVE_FIELDS}
    for i, change in enumerate(changes):
        what = f"changes[{i}]"
        step, name, old, new = (_fields(change, CHANGE_KEYS, what)[k] for k in CHANGE_KEYS)
        if not is_int(step) or not first <= step <= n + 1:
            raise _invalid(f"{what} step must be an integer from {first} to {n + 1}")
        if not isinstance(name, str) or name not in LIVE_FIELDS:
            allowed = ", ".join(LIVE_FIELDS)
            raise _invalid(f"{what} field must be one of {allowed}; found {_quote(name)}")
        for value in (old, new):
            try:
                if not _plain_value(value):
                    raise ValueError
                config.replace(**{name: value})
            except ValueError:
                raise _invalid(f"{what}: {name} cannot be {_quote(value)}") from None
        if old != in_force[name]:
            raise _invalid(f"{what} old must be {in_force[name]!r}, the {name} in force")
        run.changes.append({"step": step, "field": name, "old": old, "new": new})
        in_force[name], first = new, step
