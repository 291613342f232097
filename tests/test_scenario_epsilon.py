"""The epsilon scenario: with inputs multiplied by 1e-3 the first BN's channel variances are
tiny, and its gain 1/sqrt(var + eps) flattens at 1/sqrt(eps) once eps >= var (arithmetic,
checked here against an independent recomputation and against what the layer does)."""

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig
from bnviz.datasets import load
from bnviz.model import build_model
from bnviz.scenarios import common, epsilon
from bnviz.scenarios.epsilon import GAIN_LABEL, SCENARIO
from bnviz.trainer import EVAL_SIZE, to_tensor

GRID = (1e-10, 1e-8, 1e-7, 1e-6, 1e-4, 1.0)  # 1e-10: below every variance


@pytest.fixture(scope="module")
def init():
    return epsilon.gain_at_init(eps_grid=GRID, widths=(8, 16))


@pytest.fixture(scope="module")
def trained():
    return {
        f"train {e:g}": epsilon.train_with_eps(e, steps=15, widths=(8, 16)) for e in (1e-8, 1.0)
    }


def test_id_preset_and_jobs():
    assert SCENARIO.id == "epsilon"
    check_preset(SCENARIO)
    assert SCENARIO.preset["eps"] in (0.1, 1.0)  # a visible effect on the live run
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(set(labels)) == len(labels)
    assert GAIN_LABEL in labels
    assert {dict(j.kwargs)["eps"] for j in jobs if j.fn is epsilon.train_with_eps} == set(
        epsilon.EPS_GRID
    )
    hash(tuple(j.key for j in jobs))  # cacheable


def test_inputs_are_scaled_by_exactly_the_stated_factor():
    plain, scaled = load("shapes"), epsilon.scaled_data(1e-3)
    images = plain.x_test[:8]
    ratio = to_tensor(scaled, images).double() / to_tensor(plain, images).double()
    ratio = ratio[to_tensor(plain, images).abs() > 1e-3]
    np.testing.assert_allclose(ratio.numpy(), 1e-3, rtol=1e-5)


def test_gain_saturates_at_one_over_sqrt_eps_once_eps_reaches_the_variance(init):
    # independent recomputation of the first BN's input: the same init, conv of the scaled images
    data = epsilon.scaled_data(1e-3)
    model = build_model(TrainConfig(widths=(8, 16)), 1, len(data.classes))
    with torch.no_grad():
        x = model.blocks[0].conv(to_tensor(data, data.x_test[:EVAL_SIZE]))
    var = x.double().var(dim=(0, 2, 3), unbiased=False).numpy()
    np.testing.assert_allclose(init["var"], var, rtol=1e-6)
    assert var.max() < 1e-5  # tiny: the unscaled first layer has variances of order 0.1-1
    eps = np.asarray(init["eps"])[:, None]
    gain = np.asarray(init["gain"])
    np.testing.assert_allclose(gain, 1 / np.sqrt(var + eps), rtol=1e-9)
    # what the BatchNorm layer really does agrees with the formula
    np.testing.assert_allclose(init["gain_measured"], gain, rtol=2e-3)
    dominated = eps >= var
    assert dominated.any() and (~dominated).any()  # both regimes are on the grid
    # eps >= var: the gain is within sqrt(2) of 1/sqrt(eps), whatever the channel's variance
    g = gain * np.sqrt(eps)
    assert np.all(g[dominated] <= 1) and np.all(g[dominated] >= 2**-0.5)
    far = eps >= 100 * var
    assert far.any() and np.all(g[far] > 0.995)
    # eps << var: the gain is 1/sqrt(var), different per channel
    small = eps * 100 <= var
    assert small.any() and np.all((gain * np.sqrt(var))[small] > 0.995)
    # the block-by-block count of dominated channels agrees for block 1
    assert [row[0] for row in init["dominated"]] == list(dominated.sum(1))
    # output std (BN should make it 1) collapses to sqrt(var / (var + eps))
    np.testing.assert_allclose(init["out_std"], np.sqrt(var / (var + eps)), rtol=2e-3)


def test_gain_after_training(trained):
    for r in trained.values():
        var = np.asarray(r["var_after"])
        np.testing.assert_allclose(r["gain_after"], 1 / np.sqrt(var + r["eps"]), rtol=1e-9)
        np.testing.assert_allclose(r["gain_after_measured"], r["gain_after"], rtol=2e-3)
        assert 0 <= r["acc"] <= 1 and r["steps"] == 15
    big = trained["train 1"]
    np.testing.assert_allclose(big["gain_after"], 1.0, rtol=1e-4)  # var ~1e-7 << eps = 1


def test_figures_on_empty_and_partial_results(init, trained):
    for results in ({}, {GAIN_LABEL: init}, dict(trained), {GAIN_LABEL: init, **trained}):
        figs = SCENARIO.figures(results)
        assert len(figs) == 3
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    empty = SCENARIO.figures({})
    assert all(common.MEASURING in str(f.layout.annotations) for f in empty)
    full = SCENARIO.figures({GAIN_LABEL: init, **trained})
    assert full[0].layout.xaxis.type == "log" and full[0].layout.yaxis.type == "log"
    assert common.MEASURING not in str(full[0].layout.annotations)


def test_explain_quotes_measured_numbers(init, trained):
    assert "being measured" in SCENARIO.explain({}, None, None)
    text = SCENARIO.explain({GAIN_LABEL: init, **trained}, None, None)
    var = np.asarray(init["var"])
    assert common.num(var.min()) in text and common.num(var.max()) in text
    for r in trained.values():
        assert common.pct(r["acc"]) in text and common.pct(r["acc_batch"]) in text
    # where eps starts to dominate, from the measured variances
    first = next(e for e in init["eps"] if (np.asarray(e) >= var).any())
    assert f"ε starts to dominate (ε ≥ var) at ε = {first:g}" in text
    partial = SCENARIO.explain({GAIN_LABEL: init}, None, None)
    assert "Test accuracy" not in partial and common.num(var.min()) in partial


def _fake(eps, acc, acc_batch):
    return {"eps": eps, "scale": epsilon.INPUT_SCALE, "steps": 150, "acc": acc,
            "acc_batch": acc_batch}  # fmt: skip


def test_accuracy_wording_follows_the_numbers(init):
    kept = {f"{e}": _fake(e, 0.6, 0.6) for e in GRID}
    text = SCENARIO.explain({GAIN_LABEL: init, **kept}, None, None)
    assert "no ε of the grid fell below halfway" in text
    dropped = {f"{e}": _fake(e, 0.6 if e < 1e-4 else 0.1, 0.6 if e < 1.0 else 0.1) for e in GRID}
    text = SCENARIO.explain({GAIN_LABEL: init, **dropped}, None, None)
    assert "the first ε below halfway to chance (35.0%) was ε = 0.0001, at 10.0%" in text
    assert "At ε = 0.0001 batch statistics still gave 60.0% but eval mode only 10.0%" in text


def test_live_run_is_quoted(small_trainer):
    run = small_trainer.run
    text = SCENARIO.explain({}, run, None)
    var = run.layer_stat(0, "batch_var")[-1]
    n = int((run.config.eps >= var).sum())
    assert f"at step {int(run.steps[-1])} {n} of {len(var)} channels of block1" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
