import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from conftest import check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.measure import precise_statistics
from bnviz.scenarios.common import num, pct
from bnviz.scenarios.momentum_lag import (
    MOMENTA,
    PRECISE_ACTION,
    SCENARIO,
    _label,
    momentum_name,
    momentum_run,
    render_precise,
)

REDUCED = dict(steps=100, precise_batches=20)


@pytest.fixture(scope="module")
def results() -> dict:
    """The lagging momenta at reduced scale (same seed and batches)."""
    return {_label(m): momentum_run(m, **REDUCED) for m in (0.01, None)}


def _by_momentum(results: dict):
    return [(m, results[_label(m)]) for m in (0.01, None)]


def test_id_view_and_preset():
    assert SCENARIO.id == "momentum-lag"
    assert SCENARIO.view == "Running statistics"
    check_preset(SCENARIO)
    assert SCENARIO.preset["momentum"] == 0.01 and SCENARIO.preset["twin"] == "off"
    labels = [j.label for j in SCENARIO.jobs()]
    assert len(labels) == len(set(labels)) == len(MOMENTA)
    hash(tuple(j.key for j in SCENARIO.jobs()))


def test_precise_statistics_recover_eval_accuracy_when_the_average_lags(results):
    for momentum in (0.01, None):
        r = results[_label(momentum)]
        lagging, precise = r["acc_running_stats"][-1], r["precise_after"]
        assert precise >= lagging + 0.05, (momentum, lagging, precise)
        # the running mean is the average the convention says it is
        batch = np.asarray(r["batch_mean"], dtype=np.float64)
        assert len(batch) == REDUCED["steps"]
        if momentum is None:
            expected = batch.mean()  # cumulative: every batch weighs the same
        else:
            expected = 0.0
            for b in batch:
                expected = (1 - momentum) * expected + momentum * b
        assert r["running_mean"][-1] == pytest.approx(expected, rel=1e-3, abs=1e-5)
    # momentum only touches the buffers: identical training
    a, b = (results[_label(m)]["train_loss"] for m in (0.01, None))
    assert a == b


def test_figures_on_empty_partial_and_full_results(results):
    for res in ({}, {_label(0.01): results[_label(0.01)]}, results):
        figs = SCENARIO.figures(res)
        assert len(figs) == 2 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    empty = SCENARIO.figures({})
    assert any("measuring" in a.text for a in empty[1].layout.annotations)
    full = SCENARIO.figures(results)
    stars = [t for t in full[1].data if t.marker.symbol and "star" in t.marker.symbol]
    assert len(stars) == 2
    for t, m in zip(stars, (0.01, None)):
        r = results[_label(m)]
        assert t.y[0] == pytest.approx(100 * r["acc_running_stats"][-1])
        assert t.y[1] == pytest.approx(100 * r["precise_after"])


def test_explain_quotes_the_measured_numbers(results):
    text = SCENARIO.explain(results, None, None)
    for r in results.values():
        assert pct(r["acc_running_stats"][-1]) in text
        assert pct(r["precise_after"]) in text
    assert "PyTorch 0.1 = Keras 0.9" in text
    assert "about 100 steps" in text
    assert "are identical" in text
    assert "being measured" in text  # two of the four momenta are missing
    assert "being measured" in SCENARIO.explain({}, None, None)


def test_explain_says_so_when_precise_statistics_do_not_help(results):
    r = dict(results[_label(0.01)])
    r["precise_after"] = r["acc_running_stats"][-1] - 0.01
    text = SCENARIO.explain({_label(0.01): r}, None, None)
    assert "did not raise eval accuracy" in text
    gains = {m: r["precise_after"] - r["acc_running_stats"][-1] for m, r in _by_momentum(results)}
    best = max(gains, key=gains.get)
    text = SCENARIO.explain(results, None, None)
    assert f"helped most at momentum {momentum_name(best)}: +{num(100 * gains[best], 3)}" in text


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


def test_results_are_json_ready(results):
    import json

    for r in results.values():
        json.dumps(r)
        assert all(isinstance(v, float) and not math.isinf(v) for v in r["running_mean"])


def test_explain_quotes_the_live_run():
    trainer = Trainer(TrainConfig(widths=(4, 8), batch_size=16, momentum=0.01, steps=30))
    trainer.step(15)
    trainer.set(momentum=0.5)
    trainer.step(15)
    run = trainer.run
    text = SCENARIO.explain({}, run, None)
    assert "momentum 0.5, window about 2 steps" in text
    assert num(float(run.layer_stat(1, "running_mean")[-1, 0])) in text
    assert pct(run.acc_running_stats[-1]) in text
    assert "Recompute precise statistics" in text
