"""The norm-family scenario: five normalizations on the same batches and initial weights; the
table's measured numbers are the runs' own numbers."""

import pytest
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import Lockstep, TrainConfig
from bnviz.config import NORM_NAMES
from bnviz.experiments import common as xcommon
from bnviz.scenarios import common
from bnviz.scenarios import norm_family as nf
from bnviz.scenarios.norm_family import NORMS, SCENARIO

SMALL = dict(steps=30, widths=(8, 16))


@pytest.fixture(scope="module")
def results():
    return {f"{NORM_NAMES[n]}, seed 0": nf.train_norm(n, seed=0, **SMALL) for n in NORMS}


def test_id_preset_and_jobs():
    assert SCENARIO.id == "norm-family"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] in ("layer", "group") and SCENARIO.view == "Training"
    jobs = SCENARIO.jobs()
    assert len({j.label for j in jobs}) == len(jobs)
    assert {dict(j.kwargs)["norm"] for j in jobs} == set(NORMS)
    hash(tuple(j.key for j in jobs))


def test_a_job_equals_the_same_config_in_lockstep(results):
    configs = [
        TrainConfig(
            norm=n, batch_size=nf.BATCH_SIZE, eval_every=min(nf.EVAL_EVERY, 30),
            snapshot_every=30, **SMALL,
        )
        for n in ("batch", "group")
    ]  # fmt: skip
    lock = Lockstep(configs)
    lock.step(30)
    for config, run in zip(configs, lock.runs):
        job = results[f"{NORM_NAMES[config.norm]}, seed 0"]
        assert job["acc_running"] == pytest.approx(xcommon.float_list(run.acc_running_stats))
        assert job["loss"] == pytest.approx(xcommon.loss_curve(run)[1])


def test_table_numbers_are_the_runs_numbers(results):
    rows = nf.table_rows(results)
    assert [r["norm"] for r in rows] == [NORM_NAMES[n] for n in NORMS]
    by_norm = {r["norm"]: r for r in results.values()}
    for norm, row in zip(NORMS, rows):
        run = by_norm[norm]
        assert row["acc"] == common.pct(run["final_acc"])
        assert row["loss"] == f"{run['final_loss']:.3f}"
        if norm == "batch":
            assert row["gap"] == common.signed_points(run["final_acc_batch"] - run["final_acc"])
        else:
            assert run["final_acc_batch"] == run["final_acc"]  # no running statistics
    table = SCENARIO.figures(results)[2].data[0]
    assert table.type == "table"
    assert list(table.cells.values[2]) == [r["acc"] for r in rows]
    assert list(table.cells.values[3]) == [r["loss"] for r in rows]
    assert "N, H, W" in rows[0]["over"] and "C, H, W" in rows[NORMS.index("layer")]["over"]
    assert "per sample and channel" in rows[NORMS.index("instance")]["over"]
    assert "a group of channels (here 2, 2 channels" in rows[NORMS.index("group")]["over"]


def test_figures_on_empty_and_partial_results(results):
    first = dict(list(results.items())[:2])
    for subset in ({}, first, results):
        figs = SCENARIO.figures(subset)
        assert len(figs) == 3
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    empty = SCENARIO.figures({})
    assert common.MEASURING in str(empty[0].layout.annotations)
    assert common.MEASURING in list(empty[2].data[0].cells.values[2])
    partial_table = nf.table_rows(first)
    assert partial_table[-1]["acc"] == common.MEASURING


def test_explain_quotes_measured_numbers(results):
    assert "being measured" in SCENARIO.explain({}, None, None)
    text = SCENARIO.explain(results, None, None)
    for r in results.values():
        assert common.pct(r["final_acc"]) in text
    assert "Published, ResNet-50 on ImageNet" in text and "not ours" in text
    assert "run(s) still being measured" in text  # seed 1 missing here


def _fake(norm, seed, acc):
    return {"norm": norm, "seed": seed, "widths": [8, 16], "steps": 250, "final_acc": acc,
            "final_acc_batch": acc, "final_loss": 1.0}  # fmt: skip


def test_bn_vs_none_wording_follows_the_numbers():
    close = {f"{n}{s}": _fake(n, s, 0.6 + 0.05 * s) for n in NORMS for s in (0, 1)}
    assert "within that spread" in SCENARIO.explain(close, None, None)
    apart = dict(close, none0=_fake("none", 0, 0.3), none1=_fake("none", 1, 0.35))
    assert "BatchNorm did 30.0 pp better than no normalization" in SCENARIO.explain(
        apart, None, None
    )
    worse = dict(close, batch0=_fake("batch", 0, 0.3), batch1=_fake("batch", 1, 0.35))
    assert "BatchNorm did 30.0 pp worse than no normalization" in SCENARIO.explain(
        worse, None, None
    )


def test_live_text_with_twin():
    lock = Lockstep([TrainConfig(steps=5, widths=(4,), eval_every=5),
                     TrainConfig(steps=5, widths=(4,), eval_every=5, norm="group")])  # fmt: skip
    lock.step(5)
    run, twin = lock.runs
    text = SCENARIO.explain({}, run, twin)
    assert f"BatchNorm at {common.pct(run.acc_running_stats[-1])}" in text
    assert f"GroupNorm, at {common.pct(twin.acc_running_stats[-1])}" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
