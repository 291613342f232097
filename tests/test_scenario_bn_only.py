import numpy as np
import pytest
import torch
from conftest import check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.scenarios.bn_only import (
    SCENARIO,
    _verdict,
    parameter_groups,
    random_masks,
    train_subset,
    train_variant,
)

WIDTHS = (8, 16, 32, 64, 128)
GAMMA_BETA = 2 * sum(WIDTHS)  # 496


@pytest.fixture(scope="module")
def results():
    """BN-only at reduced scale (100 of 200 steps, one seed); the baselines only briefly."""
    return {
        "only γ and β, seed 0": train_subset("bn_only", seed=0, steps=100, eval_every=50),
        "as many random weights, seed 0": train_subset("random", seed=0, steps=10, eval_every=5),
        "all parameters, seed 0": train_subset("full", seed=0, steps=10, eval_every=5),
    }


def test_id_view_and_preset_use_allowed_values():
    assert SCENARIO.id == "bn-only"
    assert SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] == "off"


def test_finding_bn_only_reaches_far_above_chance(results):
    bn = results["only γ and β, seed 0"]
    assert bn["chance"] == pytest.approx(0.1)
    assert bn["test_acc"][0] < 0.2  # random network at step 0
    assert bn["final_acc"] > 0.30  # Frankle et al.: far above chance
    assert bn["trainable"] == bn["affine_params"] == GAMMA_BETA
    assert bn["frozen_max_change"] == 0.0
    assert 0 < bn["changed"] <= GAMMA_BETA  # only gammas and betas moved


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("variant", ["bn_only", "random"])
def test_frozen_weights_equal_their_initial_values(variant):
    config = TrainConfig(widths=(4, 8), batch_size=16, optimizer="adam", lr=0.05, seed=3)
    trainer = Trainer(config)
    start = _snapshot(trainer.model)
    out = train_variant(trainer, variant, steps=5, eval_every=5)
    end = _snapshot(trainer.model)
    affine, weights = parameter_groups(trainer.model)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    count = sum(p.numel() for p in affine)
    assert out["trainable"] == count == 2 * (4 + 8)
    if variant == "bn_only":
        for p in weights:
            assert torch.equal(end[names[id(p)]], start[names[id(p)]]), names[id(p)]
        assert all(not torch.equal(end[names[id(p)]], start[names[id(p)]]) for p in affine)
    else:
        for p in affine:
            assert torch.equal(end[names[id(p)]], start[names[id(p)]]), names[id(p)]
        masks = random_masks(weights, count, config.seed)  # the same draw as in training
        changed = 0
        for p, mask in zip(weights, masks):
            delta = end[names[id(p)]] - start[names[id(p)]]
            assert torch.all(delta[mask == 0] == 0), names[id(p)]
            changed += int((delta != 0).sum())
        assert 0 < changed <= count
    assert out["frozen_max_change"] == 0.0
    assert out["final_acc"] == trainer.eval_accuracy()
    assert out["final_acc"] == pytest.approx(trainer.accuracy()[0], abs=1e-6)  # eval mode


def test_random_masks_choose_exactly_count_entries():
    trainer = Trainer(TrainConfig(widths=WIDTHS, batch_size=8))
    affine, weights = parameter_groups(trainer.model)
    count = sum(p.numel() for p in affine)
    assert count == GAMMA_BETA
    masks = random_masks(weights, count, seed=0)
    assert [m.shape for m in masks] == [p.shape for p in weights]
    assert sum(int(m.sum()) for m in masks) == count
    assert all(set(np.unique(m.numpy())) <= {0.0, 1.0} for m in masks)
    other = random_masks(weights, count, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(masks, other))


def test_baselines_train_the_same_number_and_everything(results):
    bn = results["only γ and β, seed 0"]
    rnd = results["as many random weights, seed 0"]
    full = results["all parameters, seed 0"]
    assert rnd["trainable"] == bn["trainable"] == GAMMA_BETA
    assert rnd["frozen_max_change"] == 0.0
    assert 0 < rnd["changed"] <= GAMMA_BETA
    assert full["trainable"] == full["total_params"] == bn["total_params"]
    assert full["changed"] > 0.9 * full["total_params"]
    # same initial network and held-out images: the same accuracy before training
    assert bn["test_acc"][0] == rnd["test_acc"][0] == full["test_acc"][0]


def test_explain_quotes_the_measured_numbers(results):
    bn = results["only γ and β, seed 0"]
    rnd = results["as many random weights, seed 0"]
    full = results["all parameters, seed 0"]
    text = SCENARIO.explain(results, None, None)
    for r in (bn, rnd, full):
        assert f"{100 * r['final_acc']:.1f}%" in text
    assert f"{100 * bn['small_gamma_fraction']:.1f}% of the channels" in text
    assert f"{100 * full['small_gamma_fraction']:.1f}% after full training" in text
    assert f"({GAMMA_BETA} of {bn['total_params']:,} parameters)" in text
    assert f"**{GAMMA_BETA} randomly chosen conv/linear weights**" in text
    above = 100 * (bn["final_acc"] - bn["chance"])
    assert f"{above:.1f} percentage points above chance" in text
    assert "bit-for-bit equal" in text
    assert "Frankle" in text and "2021" in text


def test_verdict_reports_either_outcome():
    def s(acc, small):
        return dict(final_acc=acc, chance=0.1, small_gamma_fraction=small)

    text = _verdict({"bn_only": s(0.4, 0.2), "random": s(0.3, 0.0), "full": s(0.8, 0.05)})
    assert "30.0 percentage points above chance" in text
    assert "10.0 points more than training as many random weights" in text
    assert "More γ shrank towards 0" in text
    text = _verdict({"bn_only": s(0.25, 0.0), "random": s(0.3, 0.0), "full": s(0.8, 0.05)})
    assert "5.0 points less than training as many random weights" in text
    assert "No more γ shrank towards 0" in text


def test_empty_and_partial_results(results):
    run = Trainer(TrainConfig(widths=(4,), steps=2)).run
    assert "being measured" in SCENARIO.explain({}, run, None)
    figures = SCENARIO.figures({})
    assert len(figures) == 2
    for fig in figures:
        assert not fig.data
        assert any("measuring" in a.text for a in fig.layout.annotations)
    partial = {"only γ and β, seed 0": results["only γ and β, seed 0"]}
    text = SCENARIO.explain(partial, run, None)
    assert "random-subset baseline is being measured" in text
    figures = SCENARIO.figures(partial)
    assert len(figures[0].data) == 1 and len(figures[1].data) == 1
    assert list(figures[0].data[0].y) == [
        100 * a for a in results["only γ and β, seed 0"]["test_acc"]
    ]
    full = SCENARIO.figures(results)
    for fig in (*figures, *full):
        check_layout(fig)
    assert len(full[0].data) == 3 and len(full[1].data) == 2
    assert len(full[1].data[0].x) == sum(WIDTHS)  # one |gamma| per channel
