"""Uploads of saved runs: hostile files are refused with a message, never executed, never
rendered as markup; every run the app makes reloads, diverged ones included."""

import codecs
import copy
import gzip
import io
import json
import pickle
import re
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TALLY

from bnviz import Lockstep, Run, TrainConfig, Trainer, runfile
from bnviz.ui.controls import CONTROLS
from bnviz.ui.views import export

ROOT = Path(__file__).resolve().parent.parent
MARKUP = ("<img src=x onerror=alert(1)>", "[x](javascript:alert(1))")
MARKER = "bnviz-pickle-ran"  # the file an executed pickle would create (in the test's folder)


class Evil:
    def __reduce__(self):
        return (open, (MARKER, "w"))


def _json(d) -> bytes:
    return json.dumps(d).encode()


def _set(d: dict, path: str, value) -> dict:
    """A copy of a run's dict with one item set, e.g. path "layers.0.snapshots.steps.0"."""
    d = copy.deepcopy(d)
    *keys, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = d
    for key in keys:
        target = target[key]
    target[last] = value
    return d


def _edit(path: str, value):
    return lambda d: _json(_set(d, path, value))


def _change(step, field, old, new):
    return _edit("changes", [{"step": step, "field": field, "old": old, "new": new}])


def _literal(path: str, text: str):
    """A case whose item at `path` is raw JSON text (literals json.dumps would not write)."""
    return lambda d: _edit(path, "@@")(d).replace(b'"@@"', text.encode())


def _short_eval(d) -> bytes:
    """Test accuracies one fewer than the eval steps, in both modes."""
    d = copy.deepcopy(d)
    for key in ("acc_running_stats", "acc_batch_stats"):
        d["eval"][key] = d["eval"][key][:-1]
    return _json(d)


def _nested(depth: int, opening: str = "[", closing: str = "]", inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


def _zip_bomb(d) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("run.json", b"0" * 10_000_000)  # a few kB that inflate to 10 MB
    return archive.getvalue()


def _checkpoint(d) -> bytes:
    out = io.BytesIO()
    torch.save({"weights": torch.zeros(3), "evil": Evil()}, out)
    return out.getvalue()


# (name, file from a valid run's dict, words the message must hold)
CASES = [
    ("pickle", lambda d: pickle.dumps(Evil()), "not JSON"),
    ("torch checkpoint", _checkpoint, "not JSON"),
    ("zip bomb", _zip_bomb, "not JSON"),
    ("gzip bomb", lambda d: gzip.compress(b"[" + b"0," * 5_000_000 + b"0]"), "not JSON"),
    ("list 1e5 deep", lambda d: _nested(100_000).encode(), "nested too deeply"),
    ("object 1e5 deep", lambda d: _nested(100_000, '{"a":', "}").encode(), "nested too deeply"),
    ("list 800 deep in a metric", _literal("metrics.train_loss.0", _nested(800)), "train_loss"),
    (
        "object 800 deep in counts",
        _literal("layers.0.snapshots.hist.pre_norm.0.0", _nested(800, '{"a":', "}")),
        "pre_norm hist",
    ),
    ("list 800 deep in config", _literal("config.widths.0", _nested(800)), "config widths"),
    ("declared channels", _edit("layers.0.channels", 10**9), "channels"),
    ("declared tracked channels", _edit("layers.0.tracked_channels", 10**9), "tracked"),
    ("more steps than config", lambda d: _json({**d, "steps": list(range(1, 10**6))}), "steps"),
    ("longer series than steps", _edit("metrics.train_acc", [0.5] * 100_000), "train_acc"),
    (
        "a parameter per name",
        lambda d: _json({**d, "params": {f"p{i}": {} for i in range(10**5)}}),
        "params",
    ),
    ("extra layers", lambda d: _json({**d, "layers": d["layers"] * 10}), "one layer entry"),
    ("NaN literal", _literal("metrics.train_loss.0", "NaN"), "strict JSON"),
    ("Infinity literal", _literal("layers.0.gamma.0.0", "-Infinity"), "strict JSON"),
    ("1e400", _literal("metrics.train_loss.0", "1e400"), "out of range"),
    ("1e400 in config", _literal("config.lr", "1e400"), "out of range"),
    ("400-digit integer", _literal("metrics.train_loss.0", "9" * 400), "digits"),
    ("400-digit seed", _literal("config.seed", "1" + "0" * 399), "digits"),
    ("'NaN' in steps", _edit("steps.0", "NaN"), "steps"),
    ("'NaN' in counts", _edit("layers.0.snapshots.hist.pre_norm.0.0", "NaN"), "counts"),
    ("'Infinity' in edges", _edit("layers.1.snapshots.edges.post_act.3", "Infinity"), "edges"),
    ("'NaN' in config", _edit("config.lr", "NaN"), "config"),
    ("'NaN' in a change", _change(3, "lr", 0.05, "NaN"), "changes"),
    (
        "-Infinity as the first edge",
        _edit("layers.0.snapshots.edges.pre_norm.0", "-Infinity"),
        "edges",
    ),
    (
        "Infinity as the last edge",
        _edit("layers.1.snapshots.edges.post_act.40", "Infinity"),
        "edges",
    ),
    ("eval accuracies one short", _short_eval, "one per eval step"),
    ("negative count", _edit("layers.1.snapshots.channel_hist.post_norm.0.0.0", -5), "counts"),
    ("fractional count", _edit("layers.1.snapshots.hist.post_norm.0.0", 2.5), "counts"),
    ("edges decreasing", _edit("layers.0.snapshots.edges.pre_norm.0", 1e9), "increasing"),
    ("status of wrong type", _edit("status", 5), "status"),
    ("version as text", _edit("version", "1"), "version"),
    ("metrics as a list", _edit("metrics", [1, 2]), "metrics must be an object"),
    ("a stat as text", _edit("layers.0.batch_var", "lots"), "batch_var"),
    ("a flag as text", _edit("layers.0.has_affine", "yes"), "has_affine"),
    ("channels as float", _edit("layers.0.channels", 8.0), "channels"),
    ("a stat the norm lacks", _edit("layers.0.running_mean", None), "running_mean"),
    ("unit outside the block", _edit("layers.0.unit", [0, 99, 0]), "unit"),
    ("message of wrong type", _edit("message", ["a"]), "message"),
    *[(f"layer name {m}", _edit("layers.0.name", m), "name") for m in MARKUP],
    *[(f"parameter {m}", lambda d, m=m: _json({**d, "params": {m: {}}}), "params") for m in MARKUP],
    *[(f"config value {m}", _edit("config.dataset", m), "config dataset") for m in MARKUP],
    *[(f"key {m}", _edit(m, 1), "unknown keys in the run") for m in MARKUP],
    ("unknown layer key", _edit("layers.1.extra", 1), "unknown keys in layers"),
    ("unknown snapshot key", _edit("layers.0.snapshots.more", []), "unknown keys in block1"),
    ("unknown config key", _edit("config.evil", 1), "unknown keys in config"),
    ("unknown histogram kind", _edit("layers.0.snapshots.edges.other", [0.0, 1.0]), "kinds"),
    ("empty change", _edit("changes", [{}]), "changes"),
    ("change of a fixed field", _change(2, "widths", [8, 16], [8]), "field"),
    ("change before step 1", _change(0, "lr", 0.05, 0.1), "step"),
    ("change past the run", _change(10**6, "lr", 0.05, 0.1), "step"),
    ("change to a bad value", _change(2, "batch_size", 32, -1), "batch_size"),
    ("change from a wrong value", _change(2, "eps", 0.5, 0.1), "old"),
    (
        "steps from 1000",
        lambda d: _json({**d, "steps": list(range(1000, 1000 + len(d["steps"])))}),
        "steps",
    ),
    ("steps out of order", _edit("steps.1", 1), "steps"),
    ("snapshot step past the run", _edit("layers.0.snapshots.steps.0", 10**4), "snapshot steps"),
    ("eval steps decreasing", _edit("eval.steps", [10, 0, 20, 30, 40]), "eval steps"),
    ("diverged_step of a completed run", _edit("diverged_step", 3), "diverged_step"),
    ("empty file", lambda d: b"", "empty"),
    ("blank file", lambda d: b" \n\t", "empty"),
    ("not UTF-8", lambda d: json.dumps(d).encode("utf-16"), "not UTF-8"),
    (
        "Latin-1 text",
        lambda d: '{"format": "bnviz-run", "message": "caf\xe9"}'.encode("latin-1"),
        "not UTF-8",
    ),
    ("byte-order mark", lambda d: codecs.BOM_UTF8 + _json(d), "byte-order mark"),
    ("JSON but not a run", lambda d: b'{"hello": "world"}', "format"),
    ("a bare number", lambda d: b"3", "format"),
]


class Upload:
    """What st.file_uploader hands the page."""

    def __init__(self, data: bytes, size: int | None = None):
        self.data, self.size, self.file_id = data, len(data) if size is None else size, "upload"

    def getvalue(self) -> bytes:
        return self.data


@pytest.fixture
def page(monkeypatch):
    """export's streamlit, replaced by a recorder of its messages."""
    fake = SimpleNamespace(errors=[], session_state={})
    fake.error = fake.errors.append
    fake.rerun = lambda: pytest.fail("a hostile file was loaded")
    monkeypatch.setattr(export, "st", fake)
    return fake


def _shown_as_markup(message: str) -> bool:
    """Whether a message, rendered as markdown, could hold a link, image or HTML tag."""
    return re.search(r"(?<!\\)[<>\[\]]", message) is not None  # unescaped: plain() escapes them


@pytest.mark.parametrize("name, make, words", CASES, ids=[c[0] for c in CASES])
def test_hostile_files_are_refused_with_a_message(
    small_trainer, page, tmp_path, monkeypatch, name, make, words
):
    TALLY["hostile files"] += 1
    monkeypatch.chdir(tmp_path)  # where an executed pickle would leave its marker
    data = make(small_trainer.run.to_dict())
    with pytest.raises(ValueError, match=words) as error:
        Run.from_json(data)
    message = str(error.value)
    assert message.startswith("not a valid bnviz run") and len(message) < 400, message
    for m in MARKUP:
        assert m not in message and "<img" not in message and "](" not in message
    export._load_upload(Upload(data))  # the page: a message, no exception, nothing loaded
    assert len(page.errors) == 1 and "nothing was loaded" in page.errors[0]
    assert not _shown_as_markup(page.errors[0]), page.errors[0]
    assert page.session_state == {}
    assert not (tmp_path / MARKER).exists()


def test_hostile_objects_are_refused_by_from_dict(small_trainer):
    """from_dict on its own (no JSON parser in front) bounds recursion and big numbers too."""
    deep = [1.0]
    for _ in range(100_000):
        deep = [deep]
    d = small_trainer.run.to_dict()
    for path, value, words in (
        ("metrics.train_loss.0", deep, "train_loss"),
        ("config.widths", deep, "config widths"),
        ("message", deep, "message"),
        ("metrics.train_loss.0", 10**400, "train_loss"),
        ("config.seed", 10**400, "config seed"),
        ("layers.0.snapshots.steps", [10**400], "snapshot steps"),
        ("changes", [{"step": 2, "field": "lr", "old": 0.05, "new": deep}], "changes"),
    ):
        TALLY["hostile files"] += 1
        with pytest.raises(ValueError, match=words):
            Run.from_dict(_set(d, path, value))


def test_the_size_cap_is_one_number_checked_before_parsing(page, monkeypatch):
    TALLY["hostile files"] += 1
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] == runfile.MAX_FILE_MB
    big = Upload(b"", size=(runfile.MAX_FILE_MB + 1) * 2**20)
    big.getvalue = lambda: pytest.fail("an oversized upload was read")
    export._load_upload(big)
    cap = runfile.MAX_FILE_MB
    assert page.errors == [
        f"That file is {cap + 1:.1f} MB; saved runs are at most {cap} MB, so nothing was loaded."
    ]
    monkeypatch.setattr(runfile, "MAX_FILE_MB", 1)  # Run.from_json checks the same cap
    with pytest.raises(ValueError, match="2.0 MB is over the 1 MB limit"):
        Run.from_json(b" " * 2 * 2**20)


def test_a_run_with_every_kind_of_change_reloads_identically():
    trainer = Trainer(TrainConfig(widths=(4, 8), batch_size=16, steps=12, snapshot_every=2))
    trainer.step(3)
    trainer.set(lr=0.01, batch_size=8)
    trainer.step(3)
    trainer.set(momentum=None, eps=1e-3)
    trainer.set(lr=0.02)  # two changes at one step
    trainer.step(6)
    run = trainer.run
    assert len(run.changes) == 5 and run.status == "completed"
    loaded = Run.from_json(run.to_json())
    assert loaded.to_json() == run.to_json()
    assert loaded.config_at() == run.config_at()


def test_the_pickle_marker_would_show_execution(tmp_path, monkeypatch):
    """The check the pickle cases rely on: unpickling Evil does leave the marker."""
    monkeypatch.chdir(tmp_path)
    pickle.loads(pickle.dumps(Evil())).close()
    assert (tmp_path / MARKER).exists()


def test_the_download_of_a_diverged_run_reloads_to_the_same_record(monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import AppTest

    generators = {}  # the download button's data is made on click: keep its generator
    add_deferred = MediaFileManager.add_deferred

    def remember(self, data_callable, *args, **kwargs):
        file_id = add_deferred(self, data_callable, *args, **kwargs)
        generators[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", remember)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["lr"] = "1000"  # the sidebar's largest
    at.query_params["norm"] = "none"
    at.run()
    at.session_state["view"] = "Save & replay"
    at.run()
    assert not at.exception, at.exception
    run = at.session_state["session"].run
    assert run.status == "diverged" and run.diverged_step == run.num_steps + 1
    (button,) = [b for b in at.get("download_button") if b.key == "download_run"]
    saved = generators[button.proto.deferred_file_id]()
    loaded = Run.from_json(saved)
    assert loaded.status == "diverged" and loaded.message == run.message
    twin = at.session_state["session"].twin
    assert loaded.twin is not None and loaded.twin.status == twin.status  # saved with its twin
    assert loaded.to_json() == saved == run.to_json(twin)


def test_the_default_run_fits_the_upload_cap_and_larger_runs_load_in_python(tmp_path, monkeypatch):
    """The cap admits the default run (300 steps), saved with its default twin, with room to
    spare; a run over the cap is refused by the upload but loads from a file, identical, with
    Run.load."""
    lock = Lockstep([TrainConfig(), TrainConfig(norm=CONTROLS["twin"][0])])
    lock.step(20)
    trainer = lock.trainers[0]
    d = trainer.run.to_dict(lock.runs[1])
    snapshots = [layer.pop("snapshots") for layer in d["layers"] + d["twin"]["layers"]]
    per_step = len(json.dumps(d, separators=(",", ":"))) / 20
    per_snapshot = len(json.dumps(snapshots, separators=(",", ":"))) / len(snapshots[0]["steps"])
    default = per_step * 300 + per_snapshot * 300 / trainer.snapshot_every
    assert default < runfile.MAX_FILE_MB * 2**20 / 2, default / 2**20
    TALLY["hostile files"] += 1
    path = trainer.run.save(tmp_path / "run.json")
    monkeypatch.setattr(runfile, "MAX_FILE_MB", path.stat().st_size / 2**20 / 2)
    with pytest.raises(ValueError, match="limit of a saved run"):
        Run.from_json(path.read_bytes())
    assert Run.load(path).to_json() == trainer.run.to_json()
