"""The sigmoid-drift scenario: Ioffe & Szegedy's Fig. 1 network (an MLP of sigmoids) with and
without BN; what a run measures is what the trainer records, and the verdicts follow the
per-seed numbers (checked on synthetic results whose answer is known)."""

import json

import numpy as np
import pytest
from conftest import check_explain_without_runs, check_explanation, check_layout, check_preset

from bnviz import Lockstep, TrainConfig, Trainer
from bnviz.experiments import sigmoid_drift as x
from bnviz.scenarios import sigmoid_drift as sd
from bnviz.scenarios.evidence import SEEDS, seeded
from bnviz.scenarios.sigmoid_drift import SCENARIO

TINY = dict(steps=12, widths=(8, 8), batch_size=16)


@pytest.fixture(scope="module")
def tiny_run():
    return x.drift_run("batch", seed=0, **TINY)


def test_id_view_preset_and_jobs():
    from bnviz.ui.sidebar import widths_from

    assert SCENARIO.id == "sigmoid-drift" and SCENARIO.view == "Activations"
    check_preset(SCENARIO)
    p = SCENARIO.preset
    assert (p["arch"], p["activation"], p["norm"], p["placement"]) == (
        "mlp", "sigmoid", "batch", "before",
    )  # fmt: skip
    assert widths_from(p["depth"], p["width"], p["arch"]) == (100, 100, 100)  # the paper's
    jobs = SCENARIO.jobs()
    assert [j.label for j in jobs] == [seeded(sd._variant(n), s) for n in sd.NORMS for s in SEEDS]
    assert all(j.fn is x.drift_run for j in jobs)
    assert x.WIDTHS == (100, 100, 100) and x.BATCH_SIZE == 60


def test_a_run_tracks_what_the_trainer_records_for_its_unit(tiny_run):
    """The drawn unit's percentiles are those the trainer records for the tracked unit of the
    last block (a plain step and a recorded one train alike), and accuracy is eval mode's."""
    r = tiny_run
    config = TrainConfig(arch="mlp", activation="sigmoid", lr=x.LR, seed=0,
                         snapshot_every=x.SNAPSHOT_EVERY, eval_every=6, **TINY)  # fmt: skip
    trainer = Trainer(config)
    trainer.step(TINY["steps"])
    snaps = trainer.run.snapshots[-1]
    assert trainer.run.layers[-1].unit == (x.UNIT, 0, 0)
    assert r["snapshot_steps"] == snaps.steps == [1, 11]
    recorded = np.asarray(snaps.unit_percentiles, dtype=np.float64)
    np.testing.assert_allclose(np.column_stack([r["p15"], r["p50"], r["p85"]]), recorded,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert r["acc"][-1] == pytest.approx(trainer.run.acc_running_stats[-1])
    assert r["inputs"] == 784 and r["layer"] == 2 and r["status"] == "completed"
    assert len(r["eval_steps"]) == len(r["acc"]) and r["eval_steps"][-1] == TINY["steps"]
    json.dumps(r)


def test_percentiles_per_unit_match_the_trainers_for_each_unit():
    from bnviz.trainer import percentiles

    values = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    per_unit = x.percentiles_per_unit(values)
    for u in range(5):
        np.testing.assert_array_equal(per_unit[:, u], percentiles(values[:, u]))


def test_layer_drift_averages_the_first_and_last_windows():
    """20 snapshots, windows of 1 (5%): unit 0's median goes 0 -> 19, unit 1's stays; unit 0's
    width doubles, unit 1's halves: both changed by a factor of 2."""
    t = np.arange(20.0)
    median = np.stack([t, np.zeros(20)], axis=1)  # snapshots x units
    width = np.stack([1 + t / 19, 1 - t / 38], axis=1)
    per_unit = np.stack([median - width / 2, median, median + width / 2], axis=1)
    d = x.layer_drift(per_unit)
    assert d["snapshots_each"] == 1
    assert d["median_shift"] == pytest.approx(19 / 2) and d["unit_median_shift"] == 19
    assert (d["early_median"], d["late_median"]) == (0, 19)
    assert (d["early_width"], d["late_width"]) == pytest.approx((1, 2))
    assert d["width_factor"] == pytest.approx(2)


# ---------------------------------------------------------------- synthetic results


def _fake(norm: str, seed: int, acc: float, shift: float, factor: float) -> dict:
    steps = [1, 11, 21, 31]
    wobble = 0.1 * seed
    return {
        "norm": norm, "seed": seed, "lr": 0.1, "steps": 40, "batch_size": 60,
        "widths": [100, 100, 100], "inputs": 784, "status": "completed", "diverged_step": None,
        "eval_steps": [0, 10, 20, 40], "acc": [0.1, acc, acc, acc], "unit": 0, "layer": 3,
        "snapshot_steps": steps, "p15": [-1.0 - wobble] * 4, "p50": [0.0, 0.1, 0.2, shift],
        "p85": [1.0 + wobble] * 4, "median_shift": shift, "unit_median_shift": shift,
        "early_median": 0.0, "late_median": shift, "early_width": 2.0, "late_width": 2.0,
        "width_factor": factor, "snapshots_each": 1,
    }  # fmt: skip


def _results(bn, none) -> dict:
    """bn, none: per seed (acc, median shift, width factor)."""
    out = {}
    for norm, rows in (("batch", bn), ("none", none)):
        for seed, row in zip(SEEDS, rows):
            out[seeded(sd._variant(norm), seed)] = _fake(norm, seed, *row)
    return out


REPRODUCES = _results(
    bn=[(0.72, 0.5, 1.4), (0.70, 0.6, 1.4), (0.73, 0.5, 1.5), (0.74, 0.6, 1.4), (0.71, 0.6, 1.5)],
    none=[(0.56, 1.6, 90), (0.61, 1.5, 95), (0.63, 1.7, 99), (0.64, 1.8, 88), (0.50, 1.3, 110)],
)
MIXED = _results(
    bn=[(0.72, 1.5, 1.4), (0.70, 0.6, 1.4), (0.73, 1.5, 1.5), (0.74, 0.6, 1.4), (0.71, 1.2, 1.5)],
    none=[(0.56, 1.0, 90), (0.61, 1.5, 95), (0.63, 1.0, 99), (0.64, 1.8, 88), (0.50, 1.3, 110)],
)
DEAD = _results(
    bn=[(0.72, 0.5, 1.4), (0.70, 0.6, 1.4), (0.73, 0.5, 1.5), (0.74, 0.6, 1.4), (0.71, 0.6, 1.5)],
    none=[(0.10, 1.6, 90), (0.09, 1.5, 95), (0.11, 1.7, 99), (0.10, 1.8, 88), (0.08, 1.3, 110)],
)


def _holds(results) -> dict:
    return {v.key: v.holds for v in sd.verdicts(results)}


def test_verdicts_follow_the_seeds():
    assert _holds(REPRODUCES) == dict.fromkeys(
        ("none-learns", "bn-learns", "bn-higher", "median-drift", "width-drift"), True
    )
    mixed = _holds(MIXED)
    assert mixed["median-drift"] is None and mixed["width-drift"] is True
    dead = _holds(DEAD)
    assert dead["none-learns"] is None and dead["bn-learns"] is True  # 0.10 is not above 0.1
    reversed_ = _results(bn=[(0.7, 2.0, 1.4)] * 4 + [(0.7, 2.1, 1.4)],
                         none=[(0.6, 1.0, 90)] * 4 + [(0.6, 1.1, 90)])  # fmt: skip
    assert _holds(reversed_)["median-drift"] is False
    assert all(v.pending and v.holds is None for v in sd.verdicts({}))


def test_the_first_sentence_says_whether_figure_1_reproduces():
    def first(results):
        return SCENARIO.explain(results, None, None).split(": ")[0]

    assert (
        first(REPRODUCES)
        == "Ioffe & Szegedy's Figure 1 reproduces here, on the built-in shapes instead of MNIST"
    )  # noqa: E501
    assert "does not reproduce" in first(MIXED)
    assert "does not reproduce" in first(DEAD)
    assert "reproduce" not in SCENARIO.explain({}, None, None).split(".")[0]


@pytest.mark.parametrize("results", [REPRODUCES, MIXED, DEAD], ids=["holds", "mixed", "dead"])
def test_the_explanation_quotes_every_verdict_and_the_takeaway_is_short(results):
    text = SCENARIO.explain(results, None, None)
    check_explanation(text)
    for v in sd.verdicts(results):
        assert v.text in text, v.key
    assert "shapes" in text and "MNIST" in text
    takeaway = SCENARIO.takeaway(results, None, None)
    assert len(takeaway.replace("**", "")) <= 160 and takeaway.count(". ") <= 1, takeaway


def test_figures_without_and_with_results():
    empty = SCENARIO.draw({})
    assert len(empty) == 3 and all(not f.data for f in empty)
    for fig in empty + SCENARIO.draw(REPRODUCES):
        check_layout(fig)
    bands, acc, drift = SCENARIO.draw(REPRODUCES)
    means = [t for t in bands.data if t.showlegend is not False]
    assert len(means) == 6  # three percentiles, two networks
    assert {t.line.dash for t in means} == {"dot", "solid", "dash"}
    assert sum(t.fill == "tonexty" for t in bands.data) == 6  # a seed band each
    assert "5/5 seeds agree" in bands.layout.title.subtitle.text.replace("<br>", " ")
    assert [t.name for t in acc.data if t.showlegend is not False] == ["BatchNorm", "no norm"]
    shifts = [t for t in drift.data if t.mode == "markers" and len(t.y) == 5]
    assert list(shifts[1].y) == [1.6, 1.5, 1.7, 1.8, 1.3]  # no norm's seeds
    only_bn = {k: r for k, r in REPRODUCES.items() if k.startswith("BatchNorm")}
    assert SCENARIO.draw(only_bn)[0].data  # one panel while the other is measured


def test_explain_without_runs_and_with_a_live_mlp():
    check_explain_without_runs(SCENARIO)
    config = TrainConfig(arch="mlp", activation="sigmoid", widths=(8, 8), batch_size=16,
                         steps=40, snapshot_every=5)  # fmt: skip
    lock = Lockstep([config, config.replace(norm="none")])
    lock.step(30)
    text = SCENARIO.explain({}, *lock.runs)
    assert "**Live run** (one seed: fully connected, sigmoid, batches of 16, 30 steps" in text
    assert "BatchNorm: median" in text and "no norm: median" in text
