"""The placement scenario: BN before vs after the activation, same seed, data and initial conv
weights; a run measures what the trainer measures, and the verdicts follow the per-seed numbers
(checked on synthetic results whose answer is known)."""

import json

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_explanation, check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.experiments import placement as x
from bnviz.scenarios import placement
from bnviz.scenarios.evidence import SEEDS, seeded
from bnviz.scenarios.placement import SCENARIO

SMALL = dict(steps=30, widths=(8, 16))
BATCH = dict(batch_size=x.BATCH_SIZE)


def test_id_preset_and_jobs():
    assert SCENARIO.id == "placement"
    check_preset(SCENARIO)
    assert SCENARIO.preset["placement"] == "before" and SCENARIO.preset["twin"] == "off"
    assert SCENARIO.view == "Training"
    jobs = SCENARIO.jobs()
    assert len({j.label for j in jobs}) == len(jobs) == 4 * len(SEEDS)
    kinds = {(dict(j.kwargs)["activation"], dict(j.kwargs)["placement"]) for j in jobs}
    assert kinds == {(a, p) for a in ("relu", "sigmoid") for p in ("before", "after")}
    assert seeded(placement._variant("relu", "after"), 4) in {j.label for j in jobs}
    hash(tuple(j.key for j in jobs))


def test_placements_share_initial_conv_weights_and_batches():
    a, b = (Trainer(TrainConfig(placement=p, **BATCH, **SMALL)) for p in ("before", "after"))
    for block_a, block_b in zip(a.model.blocks, b.model.blocks):
        assert torch.equal(block_a.conv.weight, block_b.conv.weight)
        assert block_a.conv.bias is None and block_b.conv.bias is not None  # as the text says
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    assert np.array_equal(a.batches.next(32), b.batches.next(32))


def test_a_run_is_what_the_trainer_measures():
    r = x.train_placement("relu", "after", seed=0, **SMALL)
    again = Trainer(TrainConfig(placement="after", eval_every=25, snapshot_every=30, **BATCH,
                                **SMALL))  # fmt: skip
    again.step(30)
    assert r["eval_steps"] == again.run.eval_steps == [0, 25, 30]
    np.testing.assert_allclose(r["acc"], again.run.acc_running_stats, atol=1e-6)
    losses = np.asarray(again.run.metric("train_loss"), dtype=np.float64)
    assert r["loss_steps"][-1] == 30 and len(r["loss"]) == len(r["loss_steps"]) == 30
    np.testing.assert_allclose(r["loss"], losses, rtol=1e-5)
    assert r["status"] == "completed" and r["steps_done"] == 30
    json.dumps(r)


# ---------------------------------------------------------------- synthetic results


def _fake(a: str, p: str, seed: int, acc: float, midway: float) -> dict:
    return {
        "activation": a, "placement": p, "seed": seed, "lr": 0.05, "steps": 250,
        "batch_size": 32, "widths": [8, 16, 32], "status": "completed", "steps_done": 250,
        "eval_steps": [0, 50, 100, 125, 150, 200, 225, 250],
        "acc": [0.1, midway, midway, midway, acc, acc, acc, acc],
        "loss_steps": [125, 250], "loss": [2.0, 1.0 - acc],
    }  # fmt: skip


def _results(accs: dict) -> dict:
    """accs: (activation, placement) -> per seed (final, midway)."""
    return {
        seeded(placement._variant(a, p), s): _fake(a, p, s, *row)
        for (a, p), rows in accs.items()
        for s, row in zip(SEEDS, rows)
    }


AFTER_WINS_SIGMOID = _results({
    ("relu", "before"): [(0.80, 0.7), (0.82, 0.7), (0.78, 0.7), (0.85, 0.7), (0.80, 0.7)],
    ("relu", "after"): [(0.82, 0.7), (0.80, 0.7), (0.80, 0.7), (0.83, 0.7), (0.79, 0.7)],
    ("sigmoid", "before"): [(0.20, 0.15), (0.25, 0.14), (0.18, 0.12), (0.22, 0.16), (0.17, 0.1)],
    ("sigmoid", "after"): [(0.60, 0.5), (0.55, 0.5), (0.70, 0.6), (0.62, 0.5), (0.58, 0.5)],
})  # fmt: skip
BEFORE_WINS_RELU = _results({
    ("relu", "before"): [(0.90, 0.8)] * 5,
    ("relu", "after"): [(0.80, 0.8), (0.81, 0.8), (0.79, 0.8), (0.82, 0.8), (0.80, 0.8)],
    ("sigmoid", "before"): [(0.10, 0.12), (0.09, 0.12), (0.11, 0.12), (0.10, 0.1), (0.1, 0.12)],
    ("sigmoid", "after"): [(0.12, 0.1), (0.08, 0.1), (0.11, 0.1), (0.09, 0.1), (0.10, 0.1)],
})  # fmt: skip


def _holds(results) -> dict:
    return {v.key: v.holds for v in placement.verdicts(results)}


def test_verdicts_follow_the_seeds():
    assert _holds(AFTER_WINS_SIGMOID) == {
        "after-relu": None,
        "after-sigmoid": True,
        "sigmoid-before-learns": True,
        "before-improving-relu": True,
        "before-improving-sigmoid": True,
    }
    assert _holds(BEFORE_WINS_RELU) == {
        "after-relu": False,
        "after-sigmoid": None,
        "sigmoid-before-learns": None,
        "before-improving-relu": True,
        "before-improving-sigmoid": False,
    }
    assert all(v.pending and v.holds is None for v in placement.verdicts({}))


def test_halfway_is_the_mean_of_the_last_evaluations_up_to_half_the_steps():
    r = _fake("relu", "before", 0, 0.9, 0.6)
    r["acc"] = [0.1, 0.3, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9]
    assert placement._midway(r) == pytest.approx(0.5)  # steps 50, 100, 125
    assert placement._final_acc(r) == pytest.approx(0.9)


@pytest.mark.parametrize("results", [AFTER_WINS_SIGMOID, BEFORE_WINS_RELU])
def test_the_explanation_quotes_every_verdict_and_the_takeaway_is_short(results):
    text = SCENARIO.explain(results, None, None)
    check_explanation(text)
    for v in placement.verdicts(results):
        assert v.text in text, v.key
    assert "**Caveat.**" in text and "not where each would end" in text
    takeaway = SCENARIO.takeaway(results, None, None)
    assert len(takeaway.replace("**", "")) <= 160 and takeaway.count(". ") <= 1, takeaway


def test_the_takeaway_names_the_winner_and_the_caveat():
    text = SCENARIO.takeaway(AFTER_WINS_SIGMOID, None, None)
    assert text.startswith("With relu, not distinguishable; with sigmoid, BN after won by")
    assert "(5/5 seeds) at step 250. BN before was still learning." in text
    assert "still learning" not in SCENARIO.takeaway(BEFORE_WINS_RELU, None, None)
    assert SCENARIO.takeaway({}, None, None).startswith("Measuring")


def test_figures_without_and_with_results():
    empty = SCENARIO.draw({})
    assert len(empty) == 3 and all(not f.data for f in empty)
    for fig in empty + SCENARIO.draw(AFTER_WINS_SIGMOID):
        check_layout(fig)
    final, acc, loss = SCENARIO.draw(AFTER_WINS_SIGMOID)
    points = [t for t in final.data if len(t.y) == 5]
    assert len(points) == 4 and np.allclose(points[0].y, [80, 82, 78, 85, 80])
    note = final.layout.title.subtitle.text.replace("<br>", " ")
    assert "after higher? relu: not distinguishable (2/5 seeds); sigmoid: 5/5 seeds agree" in note
    names = [t.name for t in acc.data if t.showlegend is not False]
    assert names == ["relu, BN before", "relu, BN after", "sigmoid, BN before", "sigmoid, BN after"]
    assert sum(t.fill == "tonexty" for t in loss.data) == 4


def test_explain_without_runs():
    check_explain_without_runs(SCENARIO)
    assert "being measured" in SCENARIO.explain({}, None, None)
