"""The epsilon scenario: with inputs multiplied by 1e-3 the first BN's channel variances are
tiny, and its gain 1/sqrt(var + eps) flattens at 1/sqrt(eps) once eps >= var (arithmetic,
checked here against an independent recomputation and against what the layer does); the
verdicts come out as per-seed numbers say (synthetic results where the answer is known); figures
and texts with no, partial and full results."""

import json

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig
from bnviz.datasets import load
from bnviz.experiments import epsilon as experiment
from bnviz.model import build_model
from bnviz.scenarios import common
from bnviz.scenarios.epsilon import (
    CONTROL_EPS,
    GAIN_LABEL,
    SCALED_EPS,
    SCENARIO,
    _train_label,
)
from bnviz.scenarios.evidence import LAST_EVALS, REPLICATION_SEEDS, SEEDS, Spread, seeded
from bnviz.trainer import EVAL_SIZE, to_tensor

GRID = (1e-10, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-1, 1.0)  # 1e-10: below every variance
SCALE = experiment.INPUT_SCALE


@pytest.fixture(scope="module")
def init():
    return experiment.gain_at_init(seed=0, eps_grid=GRID, widths=(8, 16))


@pytest.fixture(scope="module")
def trained():
    return {e: experiment.train_with_eps(e, steps=25, widths=(8, 16)) for e in (1e-8, 1.0)}


def test_id_preset_and_jobs():
    assert SCENARIO.id == "epsilon"
    check_preset(SCENARIO)
    assert SCENARIO.preset["eps"] in (0.1, 1.0)  # a visible effect on the live run
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(set(labels)) == len(labels) == (1 + len(SCALED_EPS) + len(CONTROL_EPS)) * 5
    assert {seeded(GAIN_LABEL, s) for s in SEEDS} <= set(labels)  # the init depends on the seed
    train = [dict(j.kwargs) for j in jobs if j.fn is experiment.train_with_eps]
    assert {k["eps"] for k in train if k.get("scale", SCALE) == SCALE} == set(SCALED_EPS)
    assert {k["eps"] for k in train if k.get("scale") == 1.0} == set(CONTROL_EPS)
    hash(tuple(j.key for j in jobs))  # cacheable
    other = SCENARIO.jobs(seeds=REPLICATION_SEEDS)
    assert {dict(j.kwargs)["seed"] for j in other} == set(REPLICATION_SEEDS)
    assert experiment.FINAL_EVALS == LAST_EVALS


def test_inputs_are_scaled_by_exactly_the_stated_factor():
    plain, scaled = load("shapes"), experiment.scaled_data(1e-3)
    images = plain.x_test[:8]
    ratio = to_tensor(scaled, images).double() / to_tensor(plain, images).double()
    ratio = ratio[to_tensor(plain, images).abs() > 1e-3]
    np.testing.assert_allclose(ratio.numpy(), 1e-3, rtol=1e-5)


def test_gain_saturates_at_one_over_sqrt_eps_once_eps_reaches_the_variance(init):
    # independent recomputation of the first BN's input: the same init, conv of the scaled images
    data = experiment.scaled_data(1e-3)
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


def test_the_variances_at_init_depend_on_the_seed(init):
    other = experiment.gain_at_init(seed=1, eps_grid=GRID[:1], widths=(8, 16))
    assert not np.allclose(other["var"], init["var"])  # so the gain job runs every seed too


def test_training_measures_the_last_evaluations_and_the_gain_after(trained):
    for eps, r in trained.items():
        assert r["eval_steps"] == [5, 15, 25] and r["steps"] == 25 and r["eps"] == eps
        assert all(0 <= a <= 1 for a in r["acc"] + r["acc_batch"])
        var = np.asarray(r["var_after"])
        np.testing.assert_allclose(r["gain_after"], 1 / np.sqrt(var + r["eps"]), rtol=1e-9)
        np.testing.assert_allclose(r["gain_after_measured"], r["gain_after"], rtol=2e-3)
        json.dumps(r)
    np.testing.assert_allclose(trained[1.0]["gain_after"], 1.0, rtol=1e-4)  # var ~1e-7 << 1


# ---------------------------------------------------------------- synthetic results


def _fake_init(init: dict, seed: int) -> dict:
    return {**init, "seed": seed}


def _run(eps, scale, seed, acc, acc_batch) -> dict:
    return {
        "eps": eps, "scale": scale, "seed": seed, "steps": 150, "status": "completed",
        "eval_steps": [130, 140, 150], "acc": [acc] * 3, "acc_batch": [acc_batch] * 3,
        "loss": 1.0, "var_after": [1e-7, 2e-7], "gain_after": [1 / np.sqrt(eps + 1e-7)] * 2,
        "gain_after_measured": [1 / np.sqrt(eps + 1e-7)] * 2,
    }  # fmt: skip


NOISE = [0.00, 0.01, -0.01, 0.02, -0.02]


def _fake(init: dict, acc: dict, batch_at_1e3=(0.60, 0.62, 0.58, 0.61, 0.59)) -> dict:
    """Results where (eps, scale)'s seed k reaches acc[(eps, scale)] + NOISE[k] in eval mode,
    and batch statistics reach 0.6 + NOISE[k] (batch_at_1e3 at eps 1e-3)."""
    out = {seeded(GAIN_LABEL, s): _fake_init(init, s) for s in SEEDS}
    for (eps, scale), value in acc.items():
        for k, s in enumerate(SEEDS):
            batch = batch_at_1e3[k] if eps == 1e-3 else 0.6 + NOISE[k]
            label = seeded(_train_label(eps, scale), s)
            out[label] = _run(eps, scale, s, value + NOISE[k], batch)
    return out


def _accuracies(at_1e8=0.5, at_1e3=0.2) -> dict:
    acc = {(e, SCALE): 0.55 for e in SCALED_EPS}
    acc.update({(1e-8, SCALE): at_1e8, (1e-3, SCALE): at_1e3, (1e-2, SCALE): 0.15})
    acc.update({(1e-1, SCALE): 0.1, (1e-5, 1.0): 0.6, (1e-1, 1.0): 0.6, (1.0, 1.0): 0.25})
    return acc


def _verdicts(results) -> dict:
    return {v.key: v for v in SCENARIO.verdicts(results)}


def test_verdicts_follow_the_seeds(init):
    v = _verdicts(_fake(init, _accuracies()))
    assert v["gain-spread"].holds is True  # identical inits: 5 of 5 by construction
    assert v["scaled-1e-8-over-1e-5"].holds is False  # 0.50 against 0.55 in every seed
    assert v["scaled-1e-5-over-0.1"].holds is True
    assert v["eval-1e-5-over-1e-3"].holds is True
    assert v["batch-1e-5-over-1e-3"].holds is None  # mixed: +0, -1, +1, +1, -1 points
    assert v["unscaled-1e-5-over-1"].holds is True
    assert v["eps-0.1-unscaled-over-scaled"].holds is True
    same = _verdicts(_fake(init, _accuracies(at_1e8=0.55)))
    assert same["scaled-1e-8-over-1e-5"].holds is None  # identical: not distinguishable
    assert all(v.pending and v.holds is None for v in SCENARIO.verdicts({}))


def test_explain_quotes_every_verdict_and_draws_only_what_they_allow(init):
    results = _fake(init, _accuracies())
    text = SCENARIO.explain(results, None, None)
    for v in SCENARIO.verdicts(results):
        assert v.text in text
    assert Spread.of([0.2 + n for n in NOISE]).text(100, "%") in text  # eval mode at 1e-3
    assert "steps 130–150" in text
    assert "went wrong where normalizing it with each batch's own statistics did not" in text
    assert "did not cost accuracy" in text and "not ε alone" in text
    # batch statistics clearly worse at 1e-3 as well: no claim that they held up
    worse = _fake(init, _accuracies(), batch_at_1e3=(0.3, 0.32, 0.28, 0.31, 0.29))
    assert _verdicts(worse)["batch-1e-5-over-1e-3"].holds is True
    assert "did not." not in SCENARIO.explain(worse, None, None)
    # eps = 1e-8 clearly better than 1e-5: no claim that swamping block1 cost nothing
    better = _fake(init, _accuracies(at_1e8=0.7))
    assert "did not cost accuracy" not in SCENARIO.explain(better, None, None)


def test_explain_quotes_the_gains_at_init(init):
    text = SCENARIO.explain(_fake(init, _accuracies()), None, None)
    var = np.asarray(init["var"])
    assert common.num(var.min()) in text and common.num(var.max()) in text
    first = next(e for e, row in zip(init["eps"], init["dominated"]) if row[0] > 0)
    assert f"ε ≥ var for some channel of block1 from ε = {first:g}".replace("e-0", "e-") in text
    partial = SCENARIO.explain({seeded(GAIN_LABEL, 0): init}, None, None)
    assert common.num(var.min()) in partial and "being measured" in partial


def test_takeaway_follows_the_verdict(init):
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    text = SCENARIO.takeaway(_fake(init, _accuracies()), None, None)
    assert "5 of 5 seeds" in text and Spread.of([0.1 + n for n in NOISE]).text(100, "%") in text


def test_figures_on_empty_partial_and_full_results(init, trained):
    partial = {seeded(GAIN_LABEL, 0): init}
    partial |= {seeded(_train_label(e, SCALE), 0): r for e, r in trained.items()}
    full = _fake(init, _accuracies())
    for results in ({}, {seeded(GAIN_LABEL, 0): init}, partial, full):
        figs = SCENARIO.draw(results)
        assert len(figs) == 3
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    assert all(common.MEASURING in str(f.layout.annotations) for f in SCENARIO.draw({}))
    gain, dominance, accuracy = SCENARIO.draw(full)
    assert gain.layout.xaxis.type == "log" and gain.layout.yaxis.type == "log"
    assert common.MEASURING not in str(gain.layout.annotations)
    # accuracy against eps: bands (mean ± sd over seeds) and the verdicts in the subtitle
    assert sum(t.fill == "tonexty" for t in accuracy.data) == 3
    eval_mode = next(t for t in accuracy.data if t.name == "inputs × 1e-3, eval mode, mean ± sd")
    assert list(eval_mode.x) == list(SCALED_EPS)
    assert eval_mode.y[3] == pytest.approx(100 * np.mean([0.2 + n for n in NOISE]))
    assert "5/5 seeds agree" in accuracy.layout.title.subtitle.text
    assert len([t for t in dominance.data if t.name and t.name.startswith("block")]) == 2


def test_live_run_is_quoted(small_trainer):
    run = small_trainer.run
    text = SCENARIO.explain({}, run, None)
    var = run.layer_stat(0, "batch_var")[-1]
    n = int((run.config.eps >= var).sum())
    assert f"at step {int(run.steps[-1])} {n} of {len(var)} channels of block1" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
