import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import check_layout, check_preset

from bnviz import Lockstep, TrainConfig
from bnviz.scenarios.common import num, pct
from bnviz.scenarios.sigmoid_drift import (
    NORMS,
    SCENARIO,
    _label,
    drift,
    result_drift,
    run_drift,
    sigmoid_run,
)

STEPS = 150  # reduced from 300


@pytest.fixture(scope="module")
def results() -> dict:
    return {_label(n): sigmoid_run(n, steps=STEPS) for n in NORMS}


def test_id_view_and_preset():
    assert SCENARIO.id == "sigmoid-drift"
    assert SCENARIO.view == "Activations"
    check_preset(SCENARIO)
    assert SCENARIO.preset["activation"] == "sigmoid" and SCENARIO.preset["twin"] == "none"
    labels = [j.label for j in SCENARIO.jobs()]
    assert len(labels) == len(set(labels)) == 2


def test_sigmoid_inputs_drift_more_without_bn(results):
    bn, none = (result_drift(results[_label(n)]) for n in NORMS)
    assert none["median_shift"] > 2 * bn["median_shift"]
    assert none["median_shift"] > 1.0

    # the 15-85 spread changes by a larger factor without BN
    def factor(d):
        return abs(math.log(d["late_spread"] / d["early_spread"]))

    assert factor(none) > factor(bn)
    for r in results.values():
        assert len(r["p15"]) == len(r["p50"]) == len(r["p85"]) == len(r["snapshot_steps"])
        assert np.all(np.asarray(r["p15"]) <= np.asarray(r["p85"]))
        assert r["eval_steps"][-1] == STEPS and len(r["acc_running_stats"]) >= 10
        json.dumps(r)


def test_drift_averages_the_first_and_last_tenth():
    p50 = list(range(20))
    d = drift([x - 1 for x in p50], p50, [x + 2 for x in p50])
    assert d["snapshots_each"] == 2
    assert d["early_median"] == 0.5 and d["late_median"] == 18.5
    assert d["median_shift"] == 18 and d["early_spread"] == d["late_spread"] == 3
    assert drift([0.0], [0.0], [0.0]) is None


def test_figures_on_empty_partial_and_full_results(results):
    partial = {_label("none"): results[_label("none")]}
    for res in ({}, partial, results):
        figs = SCENARIO.figures(res)
        assert len(figs) == 2 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
            assert f.layout.title.text
    assert all(
        any("measuring" in a.text for a in f.layout.annotations) for f in SCENARIO.figures({})
    )
    bands = SCENARIO.figures(results)[0]
    assert len(bands.data) == 6  # 15th, 85th (filled) and median, for BN and for no norm
    assert sum(t.fill == "tonexty" for t in bands.data) == 2


def test_explain_quotes_the_measured_numbers(results):
    text = SCENARIO.explain(results, None, None)
    for n in NORMS:
        d = result_drift(results[_label(n)])
        for key in ("early_median", "late_median", "median_shift", "early_spread", "late_spread"):
            assert num(d[key]) in text, key
        assert pct(results[_label(n)]["acc_running_stats"][-1]) in text
    assert "drifted further without BN" in text
    assert "Ioffe & Szegedy (2015, Figure 1" in text
    assert "being measured" in SCENARIO.explain({}, None, None)
    assert "being measured" in SCENARIO.explain(
        {_label("batch"): results[_label("batch")]}, None, None
    )


def test_explain_says_so_when_bn_drifts_more(results):
    swapped = {
        _label("batch"): {**results[_label("none")], "norm": "batch"},
        _label("none"): {**results[_label("batch")], "norm": "none"},
    }
    text = SCENARIO.explain(swapped, None, None)
    assert "did **not** drift further without BN" in text


def test_explain_quotes_the_live_run():
    config = TrainConfig(
        activation="sigmoid", widths=(4, 8), batch_size=16, steps=20, snapshot_every=2
    )
    lockstep = Lockstep([config, config.replace(norm="none")])
    lockstep.step(20)
    run, twin = lockstep.runs
    text = SCENARIO.explain({}, run, twin)
    for r in (run, twin):
        assert num(run_drift(r)["median_shift"]) in text
    assert "Live run" in text
