import copy
import json
import math
import os
import re

import numpy as np
import pytest
from conftest import SMALL, TALLY

from bnviz import Lockstep, Run, TrainConfig, Trainer, train


def test_to_dict_is_strict_json_with_the_documented_keys(small_trainer):
    d = small_trainer.run.to_dict()
    json.dumps(d, allow_nan=False)
    assert {"config", "status", "steps", "metrics", "eval", "layers", "params"} <= set(d)
    assert d["status"] == "completed"
    assert len(d["metrics"]["train_loss"]) == len(d["metrics"]["train_acc"]) == len(d["steps"])
    assert {"steps", "acc_running_stats", "acc_batch_stats"} <= set(d["eval"])
    layer = d["layers"][0]
    assert layer["name"] == "block1"
    for stat in ("batch_mean", "batch_var", "running_mean", "running_var", "gamma", "beta"):
        assert np.shape(layer[stat]) == (SMALL["steps"], SMALL["widths"][0])
    assert {"steps", "edges", "hist", "channel_hist"} <= set(layer["snapshots"])


def test_save_and_load_round_trip_exactly(small_trainer, tmp_path):
    run = small_trainer.run
    path = run.save(tmp_path / "run.json")
    loaded = Run.load(path)
    assert loaded.to_dict() == run.to_dict()
    np.testing.assert_array_equal(
        loaded.layer_stat(1, "running_var"), run.layer_stat(1, "running_var")
    )
    assert loaded.config == run.config
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_non_finite_values_are_encoded_explicitly_and_survive(tmp_path):
    run = train(TrainConfig(**{**SMALL, "steps": 3}))
    run.table._data[1, 1] = math.inf  # train_loss of step 2
    run.acc_batch_stats[0] = math.nan
    d = run.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert '"Infinity"' in text and '"NaN"' in text
    loaded = Run.load(run.save(tmp_path / "r.json"))
    assert loaded.metric("train_loss")[1] == math.inf and math.isnan(loaded.acc_batch_stats[0])
    assert loaded.to_dict() == d


def test_diverged_run_round_trips(tmp_path):
    run = train(TrainConfig(**{**SMALL, "norm": "none", "lr": 1e4}))
    loaded = Run.load(run.save(tmp_path / "d.json"))
    assert (loaded.status, loaded.diverged_step) == ("diverged", run.diverged_step)
    assert loaded.to_dict() == run.to_dict()


@pytest.mark.parametrize("crash_in", ["write", "fsync", "replace"])
def test_save_is_atomic(small_trainer, tmp_path, monkeypatch, crash_in):
    path = tmp_path / "run.json"
    path.write_text("earlier run")

    def crash(*a, **k):
        raise OSError("disk full")

    fdopen = os.fdopen

    class HalfWritten:  # the disk fills up halfway through the file
        def __init__(self, fd, mode):
            self.f = fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("disk full")

    if crash_in == "write":
        monkeypatch.setattr("bnviz.runfile.os.fdopen", HalfWritten)
    else:
        target = {"fsync": "bnviz.runfile.os.fsync", "replace": "bnviz.runfile.os.replace"}
        monkeypatch.setattr(target[crash_in], crash)
    with pytest.raises(OSError):
        small_trainer.run.save(path)
    assert path.read_text() == "earlier run"
    assert list(tmp_path.iterdir()) == [path]


def test_save_flushes_to_disk_and_respects_the_umask(small_trainer, tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync
    monkeypatch.setattr("bnviz.runfile.os.fsync", lambda fd: synced.append(fd) or fsync(fd))
    umask = os.umask(0o027)
    try:
        path = small_trainer.run.save(tmp_path / "run.json")
    finally:
        os.umask(umask)
    assert synced and path.stat().st_mode & 0o777 == 0o640  # as open() would make it
    assert Run.load(path).to_json() == small_trainer.run.to_json()


def _bad(d, mutate):
    d = copy.deepcopy(d)
    mutate(d)
    return d


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.pop("format"), "format"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["config"].update(batch_size=-1), "batch_size"),
        (lambda d: d["config"].update(evil=1), "unknown keys in config"),
        (lambda d: d.update(status="exploded"), "status"),
        (lambda d: d["metrics"]["train_loss"].pop(), "train_loss"),
        (lambda d: d["metrics"]["train_loss"].__setitem__(0, "1.5"), "train_loss"),
        (lambda d: d["metrics"]["train_loss"].__setitem__(0, None), "train_loss"),
        (lambda d: d["layers"][0]["batch_mean"][0].pop(), "ragged"),
        (lambda d: d["layers"][0]["snapshots"]["hist"]["pre_norm"].pop(), "pre_norm hist"),
        (lambda d: d["layers"][0].pop("gamma"), "gamma"),
        (lambda d: d["eval"].update(steps=["0"]), "eval step"),
        (lambda d: d.update(layers="x"), "valid bnviz run"),
    ],
)
def test_malformed_records_are_rejected_with_a_message(small_trainer, mutate, words):
    TALLY["hostile files"] += 1
    d = _bad(small_trainer.run.to_dict(), mutate)
    with pytest.raises(ValueError, match=words):
        Run.from_dict(d)


def test_a_run_without_steps_round_trips():
    """A run that failed at its first step (one value per channel) has no rows."""
    run = train(TrainConfig(widths=(4, 4, 4, 4, 4, 4), batch_size=1, steps=3))
    assert run.num_steps == 0 and run.status == "failed"
    loaded = Run.from_json(run.to_json())
    assert loaded.to_dict() == run.to_dict() and loaded.message == run.message


def test_a_frozen_record_does_not_change_as_training_goes_on(monkeypatch):
    from bnviz import Trainer, record

    monkeypatch.setattr(record, "MAX_SNAPSHOTS", 4)  # thinning, which rewrites the lists
    monkeypatch.setattr("bnviz.trainer.MAX_SNAPSHOTS", 4)
    trainer = Trainer(TrainConfig(**{**SMALL, "steps": 100, "snapshot_every": 1}))
    trainer.step(3)
    frozen = trainer.run.frozen()
    before = frozen.to_json()
    trainer.step(70)  # the table outgrows its first allocation (64 rows) and snapshots thin
    trainer.set(lr=0.01)
    assert frozen.to_json() == before
    assert frozen.num_steps == 3 and trainer.run.num_steps == 73


def test_a_network_with_a_one_channel_block_reloads_identically():
    trainer = Trainer(TrainConfig(widths=(1, 2), batch_size=8, steps=6, snapshot_every=2))
    trainer.step(6)
    assert trainer.run.layer_stat(0, "batch_mean").shape == (6, 1)
    assert Run.from_json(trainer.run.to_json()).to_json() == trainer.run.to_json()


def test_a_twin_is_saved_with_the_run_and_checked_on_load():
    config = TrainConfig(widths=(4, 8), batch_size=16, steps=6, eval_every=3)
    lock = Lockstep([config, config.replace(norm="group")])
    lock.step(6)
    run, twin = lock.runs
    loaded = Run.from_json(run.to_json(twin))
    assert loaded.twin.to_json() == twin.to_json()
    assert Run.from_json(loaded.to_json()).to_json() == loaded.to_json()  # kept on re-save
    assert Run.from_json(run.to_json()).twin is None
    older = run.to_dict()
    del older["twin"]  # saved before twins were
    assert Run.from_dict(older).twin is None
    other = run.to_dict(twin)
    other["twin"]["config"]["seed"] = 1
    with pytest.raises(ValueError, match="twin must have the run's config"):
        Run.from_dict(other)
    nested = run.to_dict(twin)
    nested["twin"]["twin"] = run.to_dict()
    with pytest.raises(ValueError, match="without a twin of its own"):
        Run.from_dict(nested)


def test_the_record_carries_what_figures_need_and_a_version_1_file_still_loads(small_trainer):
    """Version 2 saves the histogram image count and each block's feature-map side; a file of
    version 1 (without them, and without config.arch) loads with the values its trainer used:
    8 images, the sides of 28 px images halving at each block, a conv net."""
    from bnviz.trainer import HIST_IMAGES

    run = small_trainer.run
    assert run.hist_images == HIST_IMAGES
    assert [info.side for info in run.layers] == [28, 14]
    assert [info.values_per_channel for info in run.layers] == [784, 196]
    d = run.to_dict()
    assert d["version"] == 3 and d["hist_images"] == HIST_IMAGES
    assert [layer["side"] for layer in d["layers"]] == [28, 14]
    old = copy.deepcopy(d)
    old["version"] = 1
    del old["hist_images"], old["config"]["arch"]
    for layer in old["layers"]:
        del layer["side"]
    loaded = Run.from_dict(old)
    assert loaded.to_dict() == d


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d["layers"][1].update(side=13), "block2 side must be 14"),
        (lambda d: d["layers"][0].update(side=40), "side must be an integer from 1 to 32"),
        (lambda d: d.update(hist_images=0), "hist_images must be an integer"),
        (lambda d: d["layers"][0].update(unit=[0, 3, 3]), "block1 unit must be [0, 14, 14]"),
        (lambda d: d.update(version=4), "expected 1 to 3"),
        (lambda d: d.pop("hist_images"), "lacks hist_images"),
    ],
)
def test_what_figures_need_is_checked_against_the_model_on_load(small_trainer, mutate, words):
    d = copy.deepcopy(small_trainer.run.to_dict())
    mutate(d)
    with pytest.raises(ValueError, match=re.escape(words)):
        Run.from_dict(d)


def test_setting_at_a_step_follows_the_recorded_changes():
    trainer = Trainer(TrainConfig(**{**SMALL, "steps": 6}))
    trainer.step(2)
    trainer.set(lr=0.01)  # from step 3
    trainer.step(2)
    trainer.set(lr=0.2, batch_size=16)  # from step 5
    run = trainer.run
    assert [run.setting_at("lr", s) for s in (1, 2, 3, 4, 5)] == [0.05, 0.05, 0.01, 0.01, 0.2]
    assert run.setting_at("batch_size", 4) == 32 and run.setting_at("batch_size") == 16
    assert run.config_at(3) == run.config.replace(lr=0.01)
    assert run.config_at() == run.config.replace(lr=0.2, batch_size=16)
    assert trainer.batch_size == 16


def test_a_version_2_file_without_arch_loads_as_a_conv_net_and_a_version_3_one_needs_it(
    small_trainer,
):
    d = small_trainer.run.to_dict()
    old = copy.deepcopy(d)
    old["version"] = 2
    del old["config"]["arch"]
    assert Run.from_dict(old).to_dict() == d
    del d["config"]["arch"]
    with pytest.raises(ValueError, match="config lacks arch"):
        Run.from_dict(d)


def test_an_mlp_run_round_trips_and_its_layers_are_checked(tmp_path):
    """An MLP's record (1x1 'feature maps': side 1 in every layer) saves and loads exactly,
    with its twin; a file whose layers claim the conv net's sides is refused."""
    config = TrainConfig(arch="mlp", activation="sigmoid", widths=(10, 10), batch_size=16,
                         steps=5, snapshot_every=2, eval_every=5)  # fmt: skip
    lock = Lockstep([config, config.replace(norm="none")])
    lock.step(5)
    run, twin = lock.runs
    assert [info.side for info in run.layers] == [1, 1]
    path = run.save(tmp_path / "mlp.json")  # with no twin
    assert Run.load(path).to_dict() == run.to_dict()
    d = run.to_dict(twin)
    loaded = Run.from_json(json.dumps(d))
    assert loaded.to_dict() == d and loaded.config.arch == loaded.twin.config.arch == "mlp"
    wrong = copy.deepcopy(d)
    for layer, side in zip(wrong["layers"], (28, 14)):
        layer["side"] = side
    with pytest.raises(ValueError, match="block1 side must be 1"):
        Run.from_dict(wrong)
    wrong = copy.deepcopy(d)
    wrong["config"]["norm"] = "instance"
    with pytest.raises(ValueError, match="arch 'mlp'"):
        Run.from_dict(wrong)
