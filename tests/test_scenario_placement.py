"""The placement scenario: BN before vs after the activation, same seed, data and initial conv
weights; whatever is measured is what the text reports."""

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.scenarios import common, placement
from bnviz.scenarios.placement import SCENARIO

SMALL = dict(steps=30, widths=(8, 16))
BATCH = dict(batch_size=placement.BATCH_SIZE)


@pytest.fixture(scope="module")
def results():
    return {
        placement._label(a, p, s): placement.train_placement(a, p, seed=s, **SMALL)
        for s in (0, 1)
        for a in ("relu",)
        for p in ("before", "after")
    }


def test_id_preset_and_jobs():
    assert SCENARIO.id == "placement"
    check_preset(SCENARIO)
    assert SCENARIO.preset["placement"] == "before" and SCENARIO.preset["twin"] == "off"
    assert SCENARIO.view == "Training"
    jobs = SCENARIO.jobs()
    assert len({j.label for j in jobs}) == len(jobs) == 8
    kinds = {(dict(j.kwargs)["activation"], dict(j.kwargs)["placement"]) for j in jobs}
    assert kinds == {(a, p) for a in ("relu", "sigmoid") for p in ("before", "after")}
    hash(tuple(j.key for j in jobs))


def test_placements_share_initial_conv_weights_and_batches():
    a, b = (Trainer(TrainConfig(placement=p, **BATCH, **SMALL)) for p in ("before", "after"))
    for block_a, block_b in zip(a.model.blocks, b.model.blocks):
        assert torch.equal(block_a.conv.weight, block_b.conv.weight)
        assert block_a.conv.bias is None and block_b.conv.bias is not None  # as the text says
    assert torch.equal(a.model.head.weight, b.model.head.weight)
    assert np.array_equal(a.batches.next(32), b.batches.next(32))


def test_runs_are_what_the_trainer_measures(results):
    r = results[placement._label("relu", "after", 0)]
    again = Trainer(
        TrainConfig(placement="after", eval_every=25, snapshot_every=30, **BATCH, **SMALL)
    )
    again.step(30)
    assert r["final_acc"] == pytest.approx(again.run.acc_running_stats[-1])
    assert r["final_loss"] == pytest.approx(float(np.mean(again.run.metric("train_loss")[-20:])))
    assert r["status"] == "completed" and r["steps"] == 30


def test_explain_reports_what_was_measured(results):
    assert "being measured" in SCENARIO.explain({}, None, None)
    text = SCENARIO.explain(results, None, None)
    assert "Ioffe & Szegedy (2015)" in text and "before the nonlinearity" in text
    for r in results.values():
        assert common.pct(r["final_acc"]) in text and f"{r['final_loss']:.3f}" in text
    assert "run(s) still being measured" in text  # sigmoid runs missing here


def _fake(placement_, seed, acc):
    return {"activation": "relu", "placement": placement_, "seed": seed, "final_acc": acc,
            "final_loss": 1.0, "status": "completed", "message": ""}  # fmt: skip


@pytest.mark.parametrize(
    "accs, expected",
    [
        ((0.8, 0.82, 0.6, 0.62), "BN before beat BN after with every seed, by 20.0 pp"),
        ((0.6, 0.62, 0.8, 0.82), "BN after beat BN before with every seed, by 20.0 pp"),
        ((0.7, 0.5, 0.6, 0.55), "not told apart"),
        ((0.7, 0.7, 0.7, 0.7), "same test accuracy"),
    ],
)
def test_either_winner_is_reported(accs, expected):
    b0, b1, a0, a1 = accs
    fake = {"1": _fake("before", 0, b0), "2": _fake("before", 1, b1),
            "3": _fake("after", 0, a0), "4": _fake("after", 1, a1)}  # fmt: skip
    assert expected in SCENARIO.explain(fake, None, None)


def test_figures_on_empty_and_partial_results(results):
    first = dict(list(results.items())[:1])
    for subset in ({}, first, results):
        figs = SCENARIO.figures(subset)
        assert len(figs) == 3
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    assert all(common.MEASURING in str(f.layout.annotations) for f in SCENARIO.figures({}))
    final = SCENARIO.figures(results)[0]
    plotted = sorted(y for trace in final.data for y in trace.y)
    assert plotted == pytest.approx(sorted(100 * r["final_acc"] for r in results.values()))


def test_live_text(small_trainer):
    run = small_trainer.run
    text = SCENARIO.explain({}, run, None)
    assert common.pct(run.acc_running_stats[-1]) in text and "placed before" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
