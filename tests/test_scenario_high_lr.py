import json
import math

import plotly.graph_objects as go
import pytest
from conftest import check_layout, check_preset

from bnviz import Lockstep, TrainConfig
from bnviz.scenarios.common import num, pct
from bnviz.scenarios.high_lr import (
    DEEP_LR,
    NORMS,
    SCENARIO,
    SWEEP_LRS,
    _label_deep,
    _label_probe,
    _label_sweep,
    activation_scale,
    loss_ratio,
    lr_run,
)

LR = 1.0  # where the network without BN fails and BN still trains
STEPS = 100  # reduced from 150


@pytest.fixture(scope="module")
def results() -> dict:
    out = {_label_sweep(n, LR): lr_run(n, LR, steps=STEPS) for n in NORMS}
    for n in NORMS:
        out[_label_probe(n, 100)] = loss_ratio(n, after_steps=100, lrs=(0.001, 1.0, 10.0))
        out[_label_deep(n)] = activation_scale(n)
    return out


def test_id_view_and_preset():
    assert SCENARIO.id == "high-lr"
    assert SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] == "none" and SCENARIO.preset["lr"] >= 1.0
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(labels) == len(set(labels)) == 2 * len(SWEEP_LRS) + 6
    hash(tuple(j.key for j in jobs))


def test_bn_trains_at_a_learning_rate_where_no_norm_fails(results):
    bn, none = (results[_label_sweep(n, LR)] for n in NORMS)
    assert bn["status"] == "completed" and bn["final_acc"] >= 0.4
    assert none["status"] == "diverged" or none["final_acc"] <= 0.2
    assert bn["final_acc"] - none["final_acc"] >= 0.2


def test_after_training_a_big_step_hurts_more_without_bn(results):
    bn, none = (results[_label_probe(n, 100)] for n in NORMS)
    assert bn["ratio"][0] == pytest.approx(1, abs=0.01)  # a tiny step barely changes the loss
    # lr 10: the loss without BN grows by orders of magnitude more (NaN = overflow)
    assert math.isnan(none["ratio"][-1]) or none["ratio"][-1] > 10 * bn["ratio"][-1]


def test_activations_compound_through_depth_without_bn(results):
    bn, none = (results[_label_deep(n)] for n in NORMS)
    assert bn["lr"] == none["lr"] == DEEP_LR
    assert none["status"] == "diverged" and bn["status"] == "completed"
    growth_none = none["post_act_std"][-1][-1] / none["post_act_std"][-1][0]
    growth_bn = bn["post_act_std"][-1][-1] / bn["post_act_std"][-1][0]
    assert growth_none > 1e3 and growth_bn < 10
    assert len(bn["steps"]) == len(bn["pre_norm_std"]) == len(bn["post_act_std"])


def test_results_are_json_ready(results):
    for r in results.values():
        json.dumps(r, allow_nan=False)  # strict JSON: a NaN or inf would be written as a bare word


def test_figures_on_empty_partial_and_full_results(results):
    partial = {_label_sweep("batch", LR): results[_label_sweep("batch", LR)]}
    for res in ({}, partial, results):
        figs = SCENARIO.figures(res)
        assert len(figs) == 3 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
            assert f.layout.title.text
    assert all(
        any("measuring" in a.text for a in f.layout.annotations) for f in SCENARIO.figures({})
    )
    sweep = SCENARIO.figures(results)[0]
    assert sweep.layout.xaxis.type == "log"
    ys = sorted(y for t in sweep.data for y in t.y)
    expected = sorted(100 * results[_label_sweep(n, LR)]["final_acc"] for n in NORMS)
    assert ys == pytest.approx(expected)


def test_explain_quotes_the_measured_numbers(results):
    text = SCENARIO.explain(results, None, None)
    for n in NORMS:
        r = results[_label_sweep(n, LR)]
        outcome = f"diverged at step {r['diverged_step']}" if r["status"] == "diverged" else None
        assert (outcome or pct(r["final_acc"])) in text
        assert num(results[_label_probe(n, 100)]["ratio"][-1]) in text
        deep = results[_label_deep(n)]
        assert num(deep["post_act_std"][-1][-1]) in text
    assert "being measured" in text  # most of the sweep is missing
    assert "Ioffe & Szegedy" in text and "Bjorck" in text
    assert "being measured" in SCENARIO.explain({}, None, None)


def _sweep(accs: dict) -> dict:
    """Synthetic complete sweep: accs[norm] = final accuracies by SWEEP_LRS."""
    out = {}
    for norm, values in accs.items():
        for lr, acc in zip(SWEEP_LRS, values):
            out[_label_sweep(norm, lr)] = {
                "norm": norm,
                "lr": lr,
                "status": "completed",
                "diverged_step": None,
                "final_acc": acc,
            }
    return out


def test_explain_wording_follows_the_measurement():
    n = len(SWEEP_LRS)
    tolerant = _sweep({"batch": [0.6] * (n - 1) + [0.1], "none": [0.6] * 3 + [0.1] * (n - 3)})
    text = SCENARIO.explain(tolerant, None, None)
    top_bn, top_none = SWEEP_LRS[n - 2], SWEEP_LRS[2]
    assert f"BN learned up to lr {top_bn:g}, no norm only up to lr {top_none:g}" in text
    assert "did **not**" not in text
    reversed_ = _sweep({"batch": [0.6] * 2 + [0.1] * (n - 2), "none": [0.6] * 4 + [0.1] * (n - 4)})
    text = SCENARIO.explain(reversed_, None, None)
    assert "BN did **not** tolerate a larger learning rate" in text


def test_explain_quotes_the_live_run():
    config = TrainConfig(widths=(4, 8), batch_size=16, lr=1.0, steps=20, eval_every=10)
    lockstep = Lockstep([config, config.replace(norm="none")])
    lockstep.step(10)
    lockstep.set(lr=3.0)
    lockstep.step(10)
    run, twin = lockstep.runs
    text = SCENARIO.explain({}, run, twin)
    assert "**Live run** (lr 3, sgd)" in text
    assert pct(run.acc_running_stats[-1]) in text and pct(twin.acc_running_stats[-1]) in text
