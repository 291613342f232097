import json

import plotly.graph_objects as go
import pytest
from conftest import check_layout, check_preset

from bnviz import Lockstep, TrainConfig
from bnviz.scenarios.tiny_batches import (
    BATCHES,
    NORMS,
    PUBLISHED,
    SCENARIO,
    TITLE_PUBLISHED,
    _label,
    batch_run,
    err,
    lr_for,
)


@pytest.fixture(scope="module")
def results() -> dict:
    """Batch size 2 at full scale (the finding), batch 32 with fewer images (cheap)."""
    out = {_label(n, 2): batch_run(n, 2) for n in NORMS}
    out[_label("batch", 32)] = batch_run("batch", 32, images=640)
    return out


def test_id_view_and_preset():
    assert SCENARIO.id == "tiny-batches"
    assert SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["batch_size"] in (2, 4) and SCENARIO.preset["twin"] == "group"
    labels = [j.label for j in SCENARIO.jobs()]
    assert len(labels) == len(set(labels)) == 2 * len(BATCHES)


def test_group_norm_beats_batch_norm_at_batch_size_2(results):
    bn, gn = (results[_label(n, 2)] for n in NORMS)
    assert bn["status"] == gn["status"] == "completed"
    assert gn["error_eval_mode"] < bn["error_eval_mode"]
    # GroupNorm has no running statistics: both test modes compute the same thing
    assert gn["error_eval_mode"] == gn["error_batch_stats"]
    # the same images for every batch size, with the learning rate scaled linearly
    assert bn["steps"] * 2 == bn["images"] == results[_label("batch", 32)]["steps"] * 32 * 5
    assert lr_for(32) == 16 * lr_for(2)
    for r in results.values():
        json.dumps(r)


def test_figures_on_empty_partial_and_full_results(results):
    partial = {_label("group", 2): results[_label("group", 2)]}
    for res in ({}, partial, results):
        figs = SCENARIO.figures(res)
        assert len(figs) == 2 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    assert any("measuring" in a.text for a in SCENARIO.figures({})[0].layout.annotations)
    published = SCENARIO.figures({})[1]
    assert published.layout.title.text == TITLE_PUBLISHED
    assert "Wu & He 2018" in TITLE_PUBLISHED and "not measured here" in TITLE_PUBLISHED
    assert all("published" in t.name for t in published.data)
    bn_trace = next(t for t in published.data if t.name.startswith("BatchNorm"))
    assert list(bn_trace.y) == list(PUBLISHED["batch"])
    measured = SCENARIO.figures(results)[0]
    assert "Measured" in measured.layout.title.text
    assert all("published" not in (t.name or "") for t in measured.data)


def test_explain_quotes_the_measured_numbers(results):
    text = SCENARIO.explain(results, None, None)
    bn, gn = (results[_label(n, 2)] for n in NORMS)
    assert err(bn["error_eval_mode"]) in text
    assert err(gn["error_eval_mode"]) in text
    assert err(bn["error_batch_stats"]) in text
    assert err(results[_label("batch", 32)]["error_eval_mode"]) in text
    assert "GroupNorm beat BatchNorm" in text
    assert "same number of training images" in text
    assert "ResNet-50 on ImageNet" in text and "not measured here" in text
    assert "being measured" in text  # most of the sweep is missing
    assert "being measured" in SCENARIO.explain({}, None, None)


def test_explain_says_so_when_group_norm_does_not_win(results):
    bn, gn = (results[_label(n, 2)] for n in NORMS)
    swapped = {
        _label("batch", 2): {**bn, "error_eval_mode": gn["error_eval_mode"]},
        _label("group", 2): {**gn, "error_eval_mode": bn["error_eval_mode"]},
    }
    text = SCENARIO.explain(swapped, None, None)
    assert "GroupNorm did **not** beat BatchNorm at batch size 2" in text


def test_explain_quotes_the_live_run():
    config = TrainConfig(widths=(4, 8), batch_size=4, steps=20, eval_every=10)
    lockstep = Lockstep([config, config.replace(norm="group")])
    lockstep.step(20)
    run, twin = lockstep.runs
    text = SCENARIO.explain({}, run, twin)
    assert "**Live run** (batch 4, 20 steps)" in text
    assert err(1 - run.acc_running_stats[-1]) in text
    assert err(1 - run.acc_batch_stats[-1]) in text
    assert err(1 - twin.acc_running_stats[-1]) in text
