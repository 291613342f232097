"""The scenario results shipped in assets/precomputed/: they match the engine, cover every job,
are reproducible (up to the CPU's rounding), stay small, and fill the scenario panel without
running a job."""

import gzip
import json
import logging
import math
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from bnviz import precompute
from bnviz.cache import SharedCache, worker
from bnviz.scenarios import SCENARIOS, Scenario, job

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SHIPPED = precompute.DEFAULT_DIR
BUDGET = 512 * 1024  # bytes, all files together: tens of kB per scenario
STALE = f"stale precomputed results: run `{precompute.REGENERATE}` and commit assets/precomputed"
# cheap shipped jobs (well under 2 s each) that still train and measure floats
CHEAP = [
    ("tiny-batches", "GroupNorm, batch 32, seed 0"),
    ("high-lr", "BatchNorm: one-step loss ratio at init, seed 0"),
]
WITH_JOBS = [sid for sid, s in SCENARIOS.items() if s.jobs()]


@pytest.fixture(autouse=True)
def fresh_loader():
    precompute.clear()
    yield
    precompute.clear()


def manifest() -> dict:
    return json.loads((SHIPPED / precompute.MANIFEST).read_text())


def shipped_payload(scenario_id: str) -> dict:
    return precompute.read_gzip(precompute.scenario_file(SHIPPED, scenario_id))


def test_shipped_results_match_the_engine():
    entries = manifest()["scenarios"]
    stale = sorted(
        sid for sid, e in entries.items() if e["fingerprint"] != precompute.fingerprint(sid)
    )
    assert not stale, f"{STALE} (stale: {stale})"
    for scenario_id in WITH_JOBS:  # the manifest tells the truth about the files
        payload = shipped_payload(scenario_id)
        assert payload["fingerprint"] == precompute.fingerprint(scenario_id), STALE
        assert precompute.is_fresh(SHIPPED, scenario_id), STALE


def test_a_fingerprint_covers_the_engine_and_the_scenarios_own_experiments_only():
    engine = {f.name for f in precompute.engine_files()}
    assert {"trainer.py", "model.py", "record.py", "precompute.py"} <= engine
    assert not engine & set(precompute.NOT_RESULTS)
    for scenario_id in WITH_JOBS:
        files = [f.relative_to(precompute.PACKAGE).as_posix()
                 for f in precompute.experiment_files(scenario_id)]  # fmt: skip
        assert files and not any(f.startswith(("scenarios/", "ui/")) for f in files), files
    # one scenario's experiments are not another's
    assert precompute.experiment_files("high-lr") != precompute.experiment_files("momentum-lag")
    assert precompute.fingerprint("high-lr") != precompute.fingerprint("momentum-lag")


def test_every_job_of_every_scenario_is_shipped():
    assert sorted(manifest()["scenarios"]) == sorted(WITH_JOBS), STALE
    for scenario_id in WITH_JOBS:
        payload = shipped_payload(scenario_id)
        have = {(j["label"], j["key"]) for j in payload["jobs"]}
        want = {(j.label, precompute.key_digest(j.key)) for j in SCENARIOS[scenario_id].jobs()}
        assert want <= have, f"{STALE} ({scenario_id} lacks {sorted(want - have)})"
        assert len(precompute.load(scenario_id)) == len(want), STALE


# Another CPU family (or torch's choice of kernels on it) may round the last bits differently;
# the tolerance leaves room for that, not for a job that computes something else.
RTOL, ATOL = 1e-3, 1e-6


def assert_close(again, shipped, where: str = "result") -> None:
    """Same structure, key order, types and texts; numbers equal within RTOL/ATOL (NaN matches
    NaN, an infinity only itself)."""
    if isinstance(shipped, dict):
        assert isinstance(again, dict) and list(again) == list(shipped), where
        for key in shipped:
            assert_close(again[key], shipped[key], f"{where}[{key!r}]")
    elif isinstance(shipped, list):
        assert isinstance(again, list) and len(again) == len(shipped), where
        for i, (a, b) in enumerate(zip(again, shipped, strict=True)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(shipped, float) and not isinstance(shipped, bool):
        assert isinstance(again, int | float) and not isinstance(again, bool), where
        same = math.isnan(again) and math.isnan(shipped)
        assert same or math.isclose(again, shipped, rel_tol=RTOL, abs_tol=ATOL), (
            f"{where}: recomputed {again!r}, shipped {shipped!r}"
        )
    else:
        assert type(again) is type(shipped) and again == shipped, (where, again, shipped)


@pytest.mark.parametrize(("scenario_id", "label"), CHEAP)
def test_a_shipped_job_recomputes_within_rounding(scenario_id, label):
    """The same engine (fingerprint) computes the shipped numbers again, up to the last bits
    that depend on the CPU: a job is deterministic."""
    (job_,) = [j for j in SCENARIOS[scenario_id].jobs() if j.label == label]
    shipped = precompute.load(scenario_id)
    assert job_.key in shipped, STALE
    assert_close(json.loads(precompute.encode(job_())), shipped[job_.key])


def test_assert_close_tells_rounding_from_a_different_result():
    shipped = {"loss": [0.5, math.nan, math.inf], "n": 3, "name": "a"}
    assert_close({"loss": [0.5 * (1 + 1e-7), math.nan, math.inf], "n": 3, "name": "a"}, shipped)
    for other in (
        {"loss": [0.51, math.nan, math.inf], "n": 3, "name": "a"},
        {"loss": [0.5, 0.0, math.inf], "n": 3, "name": "a"},
        {"loss": [0.5, math.nan, -math.inf], "n": 3, "name": "a"},
        {"loss": [0.5, math.nan], "n": 3, "name": "a"},
        {"n": 3, "loss": [0.5, math.nan, math.inf], "name": "a"},
        {"loss": [0.5, math.nan, math.inf], "n": 4, "name": "a"},
    ):
        with pytest.raises(AssertionError):
            assert_close(other, shipped)


def test_shipped_files_are_canonical_and_small():
    total = 0
    for path in sorted(SHIPPED.iterdir()):
        data = path.read_bytes()
        total += len(data)
        if path.name == precompute.MANIFEST:
            continue
        assert data[4:8] == b"\0\0\0\0", f"{path.name}: gzip header has a timestamp"
        raw = gzip.decompress(data)
        assert raw == precompute.encode(json.loads(raw)), f"{path.name}: not the canonical JSON"
        assert len(data) < 64 * 1024, f"{path.name}: {len(data)} bytes"
    assert total < BUDGET, f"assets/precomputed holds {total} bytes; budget {BUDGET}"


def test_stale_fingerprint_means_no_results(monkeypatch, caplog):
    monkeypatch.setattr(precompute, "fingerprint", lambda scenario_id: "0" * 64)
    with caplog.at_level(logging.WARNING, logger="bnviz.precompute"):
        assert precompute.load("momentum-lag") == {}
        assert precompute.load("momentum-lag") == {}
    assert len(caplog.records) == 1 and "stale" in caplog.text  # one warning per process
    assert precompute.load("no-such-scenario") == {}


def test_callers_cannot_alter_what_others_load():
    first = precompute.load("momentum-lag")
    assert first, STALE
    key = next(iter(first))
    first[key].clear()
    assert precompute.load("momentum-lag")[key]


# --- the writer and the command line, on cheap stand-in jobs ---------------------------------


def half(x: float) -> dict:
    return {"x": x, "half": x / 2, "series": [x, math.nan, math.inf], "name": "γ"}


def toy_jobs(seeds=(0,)):
    return [job(f"x {x}, seed {s}", half, x=x + s) for x in (1.0, 0.1, 3e-300) for s in seeds]


TOY = Scenario(
    id="toy",
    title="Toy",
    summary="",
    view="Training",
    jobs=toy_jobs,
)


def test_the_command_writes_identical_bytes_twice_and_load_reads_them(tmp_path, monkeypatch):
    from bnviz.__main__ import main

    monkeypatch.setitem(SCENARIOS, "toy", TOY)
    files = {}
    for name in ("a", "b"):
        assert main(["precompute", "--out", str(tmp_path / name), "--scenario", "toy"]) == 0
        files[name] = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
    assert sorted(files["a"]) == ["manifest.json", "toy.json.gz"]
    assert files["a"] == files["b"]
    # two worker processes write the same bytes; a fresh file is not computed again
    assert main(["precompute", "--out", str(tmp_path / "c"), "--scenario", "toy",
                 "--jobs", "2"]) == 0  # fmt: skip
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == files["a"]
    calls = []
    monkeypatch.setattr(precompute, "run_jobs", lambda ids, *a, **k: calls.append(ids) or {})
    assert main(["precompute", "--out", str(tmp_path / "c"), "--scenario", "toy"]) == 0
    assert main(["precompute", "--out", str(tmp_path / "c"), "--scenario", "toy", "--all"]) == 0
    assert calls == [[], ["toy"]]
    loaded = precompute.load("toy", tmp_path / "a")
    assert [loaded[j.key]["x"] for j in TOY.jobs()] == [1.0, 0.1, 3e-300]
    assert math.isnan(loaded[TOY.jobs()[0].key]["series"][1])
    assert main(["precompute", "--out", str(tmp_path), "--scenario", "nope"]) == 2


def test_a_changed_argument_is_not_served_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS, "toy", TOY)
    precompute.precompute(tmp_path, ["toy"], progress=lambda line: None)
    changed = Scenario("toy", "", "", "Training", jobs=lambda: [job("x 1.0, seed 0", half, x=2.0)])
    monkeypatch.setitem(SCENARIOS, "toy", changed)
    assert precompute.load("toy", tmp_path) == {}


def test_a_full_run_drops_files_of_scenarios_that_are_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(precompute, "SCENARIOS", {"toy": TOY})
    precompute.write_gzip(tmp_path / "gone.json.gz", {"scenario": "gone"})
    manifest = precompute.precompute(tmp_path, progress=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "toy.json.gz"]
    assert list(manifest["scenarios"]) == ["toy"]
    assert manifest["scenarios"]["toy"]["fingerprint"] == precompute.fingerprint("toy")


@pytest.mark.parametrize(
    "bad", [{"t": (1, 2)}, {1: 2.0}, {"v": np.float32(1.5)}, {"v": [np.int64(3)]}]
)
def test_results_that_would_not_survive_json_are_refused(bad):
    with pytest.raises(ValueError):
        precompute.check_round_trip(bad)


# --- the app ---------------------------------------------------------------------------------


def test_a_cold_server_shows_a_scenario_without_running_its_jobs(monkeypatch):
    scenario = SCENARIOS["momentum-lag"]
    keys = {j.key for j in scenario.jobs()}
    monkeypatch.setattr(worker, "cache", SharedCache())  # a fresh server's cache
    submit, queued = worker.submit, []

    def no_scenario_jobs(key, fn, *args, **kwargs):
        if key in keys:  # noted, not run (an assert here would be swallowed by the app)
            queued.append(key)
            return Future()
        return submit(key, fn, *args, **kwargs)  # the page's own training still runs

    monkeypatch.setattr(worker, "submit", no_scenario_jobs)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["scenario"] = scenario.id
    at.run()
    assert not queued, f"shipped jobs were queued: {queued}"
    assert not at.exception, at.exception
    assert all(key in worker.cache for key in keys)
    assert not at.get("progress"), "the panel still measures"
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    expected = scenario.draw({j.label: worker.cache.get(j.key) for j in scenario.jobs()})
    for i, figure in enumerate(expected):
        spec = charts[f"scenario_{i}"]
        notes = [a.get("text", "") for a in spec["layout"].get("annotations", [])]
        assert not any("measuring" in n for n in notes), notes
        assert len(spec["data"]) == len(figure.data) > 0


# --- replication: the verdicts again with other seeds -----------------------------------------


def seeded_value(seed: int, flip_at: int) -> dict:
    return {"a": 1.0 + 0.01 * seed if seed < flip_at else -1.0, "b": 0.0}


def replicable(flip_at: int) -> Scenario:
    """A scenario whose one verdict ('a beat b') holds for seeds below flip_at."""
    from bnviz.scenarios.evidence import SEEDS, across, compare, sweep

    def jobs(seeds=SEEDS):
        return sweep("v", seeded_value, seeds, flip_at=flip_at)

    def verdicts(results):
        a, b = across(results, "v", "a"), across(results, "v", "b")
        return [compare("a>b", "a beat b", "b beat a", a, b)]

    return Scenario("toy", "Toy", "", "Training", jobs=jobs, verdicts=verdicts)


@pytest.mark.parametrize(("flip_at", "status", "word"), [(1000, 0, "same"), (50, 1, "DIFFERS")])
def test_replicate_compares_each_verdict_with_the_shipped_one(
    tmp_path, monkeypatch, capsys, flip_at, status, word
):
    from bnviz.__main__ import main

    monkeypatch.setitem(SCENARIOS, "toy", replicable(flip_at))
    monkeypatch.setattr(precompute, "DEFAULT_DIR", tmp_path)
    precompute.precompute(tmp_path, ["toy"], progress=lambda line: None)
    args = ["replicate", "--scenario", "toy", "--seeds", "100-102,110,111"]
    assert main(args) == status
    out = capsys.readouterr().out
    assert f"{word}: a>b: shipped holds (5/5 agree)" in out
    assert f"{status} verdicts differ, {status} of them findings the shipped results claim" in out
    assert "seeds 100, 101, 102, 110, 111" in out


@pytest.mark.parametrize("bad", ["x", "3-", "5,5", "-2"])
def test_replicate_refuses_bad_seeds(bad, capsys):
    from bnviz.__main__ import main

    assert main(["replicate", "--seeds", bad]) == 2
    assert "--seeds" in capsys.readouterr().err
