"""The momentum-lag scenario: the experiment (tiny, a few steps) does what it says; the verdicts
come out as the per-seed numbers say (synthetic results where the answer is known); figures and
texts with no, partial and full results; the live action."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from conftest import check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.experiments import momentum_lag as experiment
from bnviz.measure import precise_statistics
from bnviz.scenarios.common import MEASURING, pct
from bnviz.scenarios.evidence import LAST_EVALS, REPLICATION_SEEDS, SEEDS, Spread, seeded
from bnviz.scenarios.momentum_lag import (
    MOMENTA,
    PRECISE_ACTION,
    SCENARIO,
    _label,
    render_precise,
)

TINY = dict(widths=(4, 8), steps=40, eval_every=10, precise_batches=5)


@pytest.fixture(scope="module")
def tiny() -> dict:
    """Two momenta of one seed, a few steps each."""
    return {m: experiment.momentum_run(m, **TINY) for m in (0.01, None)}


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "momentum-lag"
    assert SCENARIO.view == "Running statistics"
    check_preset(SCENARIO)
    assert SCENARIO.preset["momentum"] == 0.01 and SCENARIO.preset["twin"] == "off"
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(labels) == len(set(labels)) == len(MOMENTA) * len(SEEDS)
    assert {seeded(_label(m), s) for m in MOMENTA for s in SEEDS} == set(labels)
    assert all(j.fn is experiment.momentum_run for j in jobs)
    hash(tuple(j.key for j in jobs))
    other = SCENARIO.jobs(seeds=REPLICATION_SEEDS)
    assert {dict(j.kwargs)["seed"] for j in other} == set(REPLICATION_SEEDS)
    assert experiment.PRECISE_AT == LAST_EVALS  # precise statistics where final() reads


def test_the_experiment_measures_what_it_says(tiny):
    for momentum, r in tiny.items():
        # the running mean is the average the convention says it is
        batch = np.asarray(r["batch_mean"], dtype=np.float64)
        assert len(batch) == TINY["steps"]  # under MEAN_POINTS: every step
        if momentum is None:
            expected = batch.mean()  # cumulative: every batch weighs the same
        else:
            expected = 0.0
            for b in batch:
                expected = (1 - momentum) * expected + momentum * b
        assert r["running_mean"][-1] == pytest.approx(expected, rel=1e-3, abs=1e-5)
        assert r["lag"] == pytest.approx(abs(r["final_running_mean"] - batch[-20:].mean()))
        # precise statistics at the last evaluations, where the run recorded its accuracy
        assert r["precise_steps"] == [20, 30, 40] == r["eval_steps"][-3:]
        assert r["precise_before"] == pytest.approx(r["acc_running"][-3:], abs=1e-6)
        json.dumps(r)
    # momentum only touches the buffers: identical training, identical precise statistics
    a, b = tiny[0.01], tiny[None]
    assert a["loss_digest"] == b["loss_digest"] and a["precise_after"] == b["precise_after"]
    assert a["acc_batch"] == b["acc_batch"]


def test_measuring_precise_statistics_mid_run_leaves_training_alone(tiny):
    plain = experiment.momentum_run(0.01, **{**TINY, "precise_at": 0})
    assert plain["precise_steps"] == [] and plain["steps"] == TINY["steps"]
    r = tiny[0.01]
    assert plain["loss_digest"] == r["loss_digest"]
    assert plain["acc_running"] == r["acc_running"]
    assert plain["running_mean"] == r["running_mean"]


# ---------------------------------------------------------------- synthetic results


def _fake(running: dict, precise: dict, lag: dict | None = None, seeds=SEEDS) -> dict:
    """Results where momentum m's seed k has final eval accuracies running[m][k] (running
    averages) and precise[m][k] (precise statistics), flat over the last evaluations."""
    out = {}
    for m in MOMENTA:
        for k, s in enumerate(seeds):
            acc, prec = running[m][k], precise[m][k]
            out[seeded(_label(m), s)] = {
                "momentum": m, "seed": s, "steps": 60, "batch_size": 32, "lr": 0.05,
                "widths": [4, 8], "status": "completed", "block": 2, "channel": 0,
                "mean_steps": [1, 2, 3], "batch_mean": [0.1, 0.2, 0.3],
                "running_mean": [0.0, 0.1, 0.15], "recent_batches": 20,
                "recent_batch_mean": 0.2, "final_running_mean": 0.15,
                "lag": (lag or {}).get(m, [0.05] * len(seeds))[k],
                "eval_steps": [0, 20, 40, 60], "acc_running": [0.1, acc, acc, acc],
                "acc_batch": [0.1, 0.7, 0.7, 0.7], "precise_steps": [20, 40, 60],
                "precise_before": [acc] * 3, "precise_after": [prec] * 3,
                "precise_batches": 5, "final_loss": 1.0, "loss_digest": f"seed{s}",
            }  # fmt: skip
    return out


PRECISE = [0.80, 0.78, 0.82, 0.79, 0.81]


def _clear() -> dict:
    """Precise statistics win clearly at 0.01 and None, the momenta tie elsewhere."""
    running = {
        0.01: [0.45, 0.40, 0.50, 0.42, 0.48],
        0.1: [0.76, 0.75, 0.79, 0.77, 0.78],
        0.9: [0.80, 0.79, 0.81, 0.78, 0.82],  # mixed against precise: +0, +1, -1, +1, -1
        None: [0.30, 0.35, 0.25, 0.40, 0.33],
    }
    lag = {0.01: [0.2, 0.3, 0.25, 0.22, 0.28], 0.1: [0.01, 0.02, 0.03, 0.02, 0.01]}
    return _fake(running, {m: PRECISE for m in MOMENTA}, lag)


def _verdicts(results) -> dict:
    return {v.key: v for v in SCENARIO.verdicts(results)}


def test_verdicts_follow_the_seeds():
    v = _verdicts(_clear())
    assert v["precise-0.01"].holds is True and v["precise-0.01"].agree == 5
    assert v["precise-None"].holds is True
    assert v["precise-0.1"].holds is True  # +2 to +4 points in every seed
    assert v["precise-0.9"].holds is None  # seeds disagree
    assert v["running-0.1-over-0.01"].holds is True
    assert v["running-0.1-over-None"].holds is True
    assert v["running-0.9-over-0.1"].holds is True
    assert v["lag-0.01-over-0.1"].holds is True
    # the running averages beating precise statistics at 0.01: reversed
    flipped = _fake(
        {m: [p + 0.05 for p in PRECISE] for m in MOMENTA}, {m: PRECISE for m in MOMENTA}
    )
    assert _verdicts(flipped)["precise-0.01"].holds is False
    # fewer than five seeds: still being measured
    partial = {k: r for k, r in _clear().items() if not k.endswith("seed 4")}
    assert all(v.pending and v.holds is None for v in SCENARIO.verdicts(partial))
    assert all(v.pending for v in SCENARIO.verdicts({}))


def test_explain_quotes_every_verdict_and_the_spreads():
    results = _clear()
    text = SCENARIO.explain(results, None, None)
    for v in SCENARIO.verdicts(results):
        assert v.text in text
    running = [0.45, 0.40, 0.50, 0.42, 0.48]
    assert Spread.of(running).text(100, "%") in text  # mean ± sd over seeds
    assert Spread.of(PRECISE).text(100, "%") in text
    assert "steps 20–60" in text and "PyTorch 0.1 = Keras 0.9" in text
    assert "about 100 steps" in text
    assert "identical in 5 of 5 seeds: momentum changes only" in text
    assert text.startswith("A running average lags")  # the published finding reproduced
    # a difference within one accuracy's noise (momentum 0.9 here) is said to be fragile
    fragile = [line for line in text.split("\n\n") if "another five seeds may" in line]
    assert len(fragile) == 1 and fragile[0].startswith("- momentum 0.9")


def test_explain_says_first_when_the_finding_does_not_reproduce():
    tie = _fake({m: PRECISE for m in MOMENTA}, {m: PRECISE[::-1] for m in MOMENTA})
    text = SCENARIO.explain(tie, None, None)
    assert text.startswith("Wu & Johnson's (2021) finding")
    first = text.split(". ")[0]  # the first sentence says so
    assert "did not reproduce here at momentum 0.01: the seeds disagree" in first
    # different training at two momenta of a seed: no claim that they train identically
    odd = _clear()
    odd[seeded(_label(0.9), 2)]["loss_digest"] = "other"
    text = SCENARIO.explain(odd, None, None)
    assert "identical in 4 of 5 seeds." in text and "momentum changes only" not in text


def test_takeaway_follows_the_verdict():
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    results = _clear()
    text = SCENARIO.takeaway(results, None, None)
    assert Spread.of(PRECISE).text(100, "%") in text and "5 of 5 seeds" in text
    tie = _fake({m: PRECISE for m in MOMENTA}, {m: PRECISE[::-1] for m in MOMENTA})
    assert "not a clear difference" in SCENARIO.takeaway(tie, None, None)


def test_figures_with_no_partial_and_full_results(tiny):
    partial = {seeded(_label(0.01), 0): tiny[0.01]}
    for results in ({}, partial, _clear()):
        figs = SCENARIO.draw(results)
        assert len(figs) == 3 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    assert all(MEASURING in str(f.layout.annotations) for f in SCENARIO.draw({}))
    means, curves, final = SCENARIO.draw(_clear())
    # bands over seeds: a lower edge and a filled upper edge per momentum
    assert sum(t.fill == "tonexty" for t in curves.data) == len(MOMENTA)
    stars = [t for t in curves.data if t.marker.symbol == "star"]
    assert len(stars) == len(MOMENTA)
    assert list(stars[0].y) == pytest.approx([100 * np.mean(PRECISE)] * 3)
    # the final chart: per momentum, mean ± sd of both, each seed's pair behind
    slope = next(t for t in final.data if t.name == "momentum 0.01, mean ± sd")
    running = [0.45, 0.40, 0.50, 0.42, 0.48]
    assert list(slope.y) == pytest.approx([100 * np.mean(running), 100 * np.mean(PRECISE)])
    assert slope.error_y.array[0] == pytest.approx(100 * np.std(running, ddof=1))
    pairs = next(t for t in final.data if t.name == "each seed, momentum 0.01")
    assert len(pairs.x) == 3 * len(SEEDS)  # running, precise, gap
    subtitle = final.layout.title.subtitle.text.replace("<br>", " ")
    assert "0.01: 5/5 seeds agree" in subtitle and "0.9: not distinguishable" in subtitle
    assert "5/5 seeds agree" in means.layout.title.subtitle.text.replace("<br>", " ")


# ---------------------------------------------------------------- the live action and text


def test_action_measures_precise_statistics_and_leaves_the_live_run_alone():
    trainer = Trainer(TrainConfig(widths=(8, 16), batch_size=32, momentum=0.01, steps=40))
    trainer.step(40)
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    acc_before = trainer.accuracy()[0]
    result = PRECISE_ACTION.fn(trainer)
    assert result["applicable"] and result["batches"] > 0
    assert result["acc_before"] == acc_before
    after = trainer.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # restored for the live run
    # the reported accuracy is what the recomputed statistics give
    recomputed = precise_statistics(trainer, batches=result["batches"])
    assert result["acc_after"] == recomputed["acc_after"]
    text = PRECISE_ACTION.render(result)
    assert pct(result["acc_before"]) in text and pct(result["acc_after"]) in text
    assert "step 40" in text


def test_action_without_batchnorm_and_when_it_fails():
    plain = Trainer(TrainConfig(widths=(4,), norm="none", batch_size=8, steps=2))
    result = PRECISE_ACTION.fn(plain)
    assert not result["applicable"]
    assert "no running statistics" in render_precise(result)
    # one value per channel in the last block: the buffers must come back unchanged
    deep = Trainer(TrainConfig(widths=(4,) * 6, batch_size=1, steps=2))
    saved = [b.norm.running_mean.clone() for b in deep.model.blocks]
    result = PRECISE_ACTION.fn(deep)
    assert "error" in result and "Could not recompute" in render_precise(result)
    for b, s in zip(deep.model.blocks, saved):
        assert torch.equal(b.norm.running_mean, s)


def test_explain_quotes_the_live_run():
    trainer = Trainer(TrainConfig(widths=(4, 8), batch_size=16, momentum=0.01, steps=30))
    trainer.step(15)
    trainer.set(momentum=0.5)
    trainer.step(15)
    run = trainer.run
    text = SCENARIO.explain({}, run, None)
    assert "momentum 0.5, window about 2 steps" in text
    assert f"{float(run.layer_stat(1, 'running_mean')[-1, 0]):.3g}" in text
    assert pct(run.acc_running_stats[-1]) in text
    assert "Recompute precise statistics" in text
