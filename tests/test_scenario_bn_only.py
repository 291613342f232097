"""The bn-only scenario: the experiment freezes what it says it freezes, and the verdicts and
their prose follow per-seed numbers whose answer is known."""

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.experiments.bn_only import (
    SMALL_GAMMA,
    parameter_groups,
    random_masks,
    train_subset,
    train_variant,
)
from bnviz.scenarios.bn_only import LABELS, SCENARIO
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS

TINY = dict(widths=(4, 8), steps=4, eval_every=2)


@pytest.fixture(scope="module")
def tiny():
    """Each variant, one seed, a few steps of a tiny network."""
    return {f"{LABELS[v]}, seed 0": train_subset(v, seed=0, **TINY) for v in LABELS}


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "bn-only" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] == "off"
    jobs = SCENARIO.jobs()
    assert len(jobs) == len(LABELS) * len(SEEDS)
    assert {dict(j.kwargs)["seed"] for j in jobs} == set(SEEDS)
    assert {j.label for j in SCENARIO.jobs(seeds=REPLICATION_SEEDS)} == {
        f"{label}, seed {s}" for label in LABELS.values() for s in REPLICATION_SEEDS
    }


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
    trainer = Trainer(TrainConfig(widths=(8, 16, 32), batch_size=8))
    affine, weights = parameter_groups(trainer.model)
    count = sum(p.numel() for p in affine)
    masks = random_masks(weights, count, seed=0)
    assert [m.shape for m in masks] == [p.shape for p in weights]
    assert sum(int(m.sum()) for m in masks) == count
    assert all(set(np.unique(m.numpy())) <= {0.0, 1.0} for m in masks)
    other = random_masks(weights, count, seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(masks, other))


def test_the_variants_train_what_they_say_from_the_same_start(tiny):
    bn, rnd, full = (tiny[f"{LABELS[v]}, seed 0"] for v in ("bn_only", "random", "full"))
    assert bn["trainable"] == rnd["trainable"] == bn["affine_params"] == 2 * (4 + 8)
    assert full["trainable"] == full["total_params"] == bn["total_params"]
    assert 0 < bn["changed"] <= bn["trainable"] and 0 < rnd["changed"] <= rnd["trainable"]
    assert full["changed"] > 0.9 * full["total_params"]
    # same initial network and held-out images: the same accuracy before training
    assert bn["test_acc"][0] == rnd["test_acc"][0] == full["test_acc"][0]
    assert bn["eval_steps"] == [0, 2, 4]
    assert rnd["small_gamma_fraction"] == 0.0  # its gammas stay at 1


# ---------------------------------------------------------------- verdicts on known numbers


def _run(acc: float, off: float = 0.0) -> dict:
    """A finished run whose last evaluations average to `acc`."""
    return {
        "eval_steps": [0, 100, 150, 200],
        "test_acc": [0.1, acc - 0.01, acc, acc + 0.01],
        "chance": 0.1,
        "small_gamma_fraction": off,
        "gamma": [[1.0, 0.05], [0.5]],
        "trainable": 24,
        "total_params": 500,
        "frozen_max_change": 0.0,
        "widths": [4, 8],
        "batch_size": 32,
        "lr": 0.05,
        "steps": 200,
    }


def fake(bn, rnd, full, off_bn=0.15, off_full=0.02) -> dict:
    """Per-seed results: lists of final accuracies (and |gamma| < 0.1 fractions) per variant."""
    out = {}
    for s in range(len(bn)):
        out[f"{LABELS['bn_only']}, seed {s}"] = _run(bn[s], off_bn if np.isscalar(off_bn) else
                                                     off_bn[s])  # fmt: skip
        out[f"{LABELS['random']}, seed {s}"] = _run(rnd[s])
        out[f"{LABELS['full']}, seed {s}"] = _run(full[s], off_full)
    return out


CLEAR = fake([0.37, 0.36, 0.40, 0.35, 0.44], [0.27, 0.30, 0.31, 0.29, 0.24], [0.8] * 5)


def test_verdicts_hold_when_every_seed_agrees():
    found = {v.key: v for v in SCENARIO.verdicts(CLEAR)}
    assert set(found) == {
        "bn-only-above-chance",
        "bn-only-beats-random",
        "full-beats-bn-only",
        "more-gammas-off",
    }
    assert all(v.holds is True and v.agree == 5 for v in found.values())
    assert found["bn-only-beats-random"].spread.mean == pytest.approx(10.2)  # points


def test_mixed_seeds_are_not_distinguishable_and_the_opposite_is_reversed():
    mixed = fake([0.37, 0.26, 0.40, 0.25, 0.44], [0.27, 0.30, 0.31, 0.29, 0.24], [0.8] * 5)
    assert {v.key: v for v in SCENARIO.verdicts(mixed)}["bn-only-beats-random"].holds is None
    worse = fake([0.2] * 5, [0.3, 0.31, 0.29, 0.3, 0.32], [0.8] * 5, off_bn=0.0, off_full=0.02)
    found = {v.key: v for v in SCENARIO.verdicts(worse)}
    assert found["bn-only-beats-random"].holds is False
    assert found["more-gammas-off"].holds is False
    text = SCENARIO.explain(worse, None, None)
    assert text.startswith("Not reproduced here")  # the first sentence says so
    assert "beats training as many random weights (reversed)" in text.split(". ")[0]


def test_without_all_seeds_the_verdicts_are_pending():
    assert all(v.pending for v in SCENARIO.verdicts({}))
    three = {k: r for k, r in CLEAR.items() if int(k.rsplit(" ", 1)[1]) < 3}
    assert all(v.pending and v.holds is None for v in SCENARIO.verdicts(three))
    assert "Still measuring (3 of 5 seeds" in SCENARIO.explain(three, None, None)


def test_explain_quotes_every_verdict_and_the_spreads():
    text = SCENARIO.explain(CLEAR, None, None)
    assert text.startswith("**Frankle")  # every published finding held
    for v in SCENARIO.verdicts(CLEAR):
        assert v.text in text
    assert "38 ± 4%" in text  # only γβ: mean ± sd of the five seeds' final accuracies
    assert "(steps 100, 150, 200)" in text  # the evaluations the final accuracy averages
    assert "bit-for-bit equal" in text
    take = SCENARIO.takeaway(CLEAR, None, None)
    assert "**38 ± 4%**" in take and "5 of 5 seeds" in take


def test_takeaway_and_text_before_results():
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    assert "being measured" in SCENARIO.explain({}, None, None)
    check_explain_without_runs(SCENARIO)


# ---------------------------------------------------------------- figures


def test_figures_empty_partial_and_full(tiny):
    empty = SCENARIO.draw({})
    assert len(empty) == 3
    for fig in empty:
        assert not fig.data and any("measuring" in a.text for a in fig.layout.annotations)
    partial = SCENARIO.draw({f"{LABELS['bn_only']}, seed 0": tiny[f"{LABELS['bn_only']}, seed 0"]})
    assert all(fig.data for fig in partial)
    full = SCENARIO.draw(CLEAR)
    accuracy, switched, gammas = full
    bands = [t for t in accuracy.data if t.fill == "tonexty"]
    assert len(bands) == 3  # one band per variant
    means = [t for t in accuracy.data if t.name and "mean of 5 seeds" in t.name]
    assert [round(y, 6) for y in means[0].y] == [10.0, 37.4, 38.4, 39.4]
    assert "5/5 seeds agree" in accuracy.layout.title.subtitle.text.replace("<br>", " ")
    dots = [t for t in switched.data if t.mode == "markers" and t.error_y.array is None]
    assert [len(t.y) for t in dots] == [5, 5]
    assert len(gammas.data[0].x) == 5 * 3  # every channel of every seed
    for fig in (*empty, *partial, *full):
        check_layout(fig)
        fig.to_json()


def test_small_gamma_threshold_is_drawn():
    fig = SCENARIO.draw(CLEAR)[2]
    assert any(s.x0 == SMALL_GAMMA for s in fig.layout.shapes)
