"""Scenario 'fold-bn': the fold gives eval mode's outputs (both BN implementations, conv and MLP,
a conv with a bias), refuses what cannot be folded, and the verdicts, figures, text and live
action follow per-seed numbers whose answer is known."""

import copy
import json
import math

import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.experiments.fold_bn import (
    QUOTE_BATCH,
    TOL,
    TRAIN_BATCHES,
    NotFoldable,
    compare_eval,
    compare_train,
    fold_bn,
    fold_run,
)
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS
from bnviz.scenarios.fold_bn import LABEL, SCENARIO, fold_live, render_live

TINY = dict(widths=(4, 8), batch_size=16)


def _trained(**kw) -> Trainer:
    config = TrainConfig(**{**TINY, "seed": 3, **kw})
    trainer = Trainer(config)
    trainer.plain_steps(5)
    return trainer


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "fold-bn" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["placement"] == "before" and SCENARIO.preset["norm"] == "batch"
    jobs = SCENARIO.jobs()
    assert [j.label for j in jobs] == [f"{LABEL}, seed {s}" for s in SEEDS]
    assert {j.label for j in SCENARIO.jobs(seeds=REPLICATION_SEEDS)} == {
        f"{LABEL}, seed {s}" for s in REPLICATION_SEEDS
    }


# ---------------------------------------------------------------- the fold itself


@pytest.mark.parametrize(
    "kw",
    [
        dict(bn_impl="torch"),
        dict(bn_impl="scratch"),
        dict(arch="mlp", widths=(8, 8)),
        dict(momentum=None),
    ],
)
def test_folded_equals_eval_mode(kw):
    trainer = _trained(**kw)
    before = copy.deepcopy(trainer.model.state_dict())
    was_training = trainer.model.training
    folded = fold_bn(trainer.model)
    # the trainer's model is untouched
    assert trainer.model.training == was_training
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(isinstance(b.norm, torch.nn.Identity) for b in folded.blocks)
    assert all(b.conv.bias is not None for b in folded.blocks)
    x = trainer.eval_x[:50]
    net = copy.deepcopy(trainer.model).eval()
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5, rtol=1e-4)
    r64 = compare_eval(trainer.model, x, torch.float64)
    assert r64["relative"] < 1e-12 and r64["agree"] == 50


def test_fold_formula_with_a_conv_bias():
    """A conv that has a bias b: b′ = β + γ(b − μ)/√(σ² + ε), checked by hand on one block."""
    trainer = _trained(seed=1)
    model = copy.deepcopy(trainer.model)
    block = model.blocks[0]
    old = block.conv
    conv = torch.nn.Conv2d(old.in_channels, old.out_channels, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(old.weight)
        conv.bias.uniform_(-1, 1)
        block.norm.weight.uniform_(0.5, 2)
        block.norm.bias.uniform_(-1, 1)
    block.conv = conv
    folded = fold_bn(model)
    n = block.norm
    scale = n.weight / torch.sqrt(n.running_var + n.eps)
    expected = n.bias + scale * (conv.bias - n.running_mean)
    assert torch.allclose(folded.blocks[0].conv.bias, expected, atol=1e-6)
    assert torch.allclose(
        folded.blocks[0].conv.weight, conv.weight * scale.reshape(-1, 1, 1, 1), atol=1e-6
    )
    x = trainer.eval_x[:20]
    with torch.no_grad():
        assert torch.allclose(folded(x), model.eval()(x), atol=1e-5)


@pytest.mark.parametrize("kw", [dict(placement="after"), dict(norm="group"), dict(norm="none")])
def test_what_cannot_be_folded_is_refused(kw):
    trainer = _trained(**kw)
    with pytest.raises(NotFoldable) as e:
        fold_bn(trainer.model)
    if kw.get("placement") == "after":
        assert "BatchNorm after the activation cannot be folded into the conv before it" in str(
            e.value
        )
    result = fold_live(trainer)
    json.dumps(result, allow_nan=False)
    assert result["foldable"] is False
    assert "nothing was folded" in render_live(result)


def test_train_mode_depends_on_the_batch():
    trainer = _trained()
    out = compare_train(trainer.model, trainer.eval_x[:40], batches=(4, 40))
    assert [r["batch"] for r in out["by_batch"]] == [4, 40]
    assert all(r["relative"] > TOL["float32"] for r in out["by_batch"])
    assert out["reshuffled"]["relative"] > TOL["float32"]


def test_fold_run_is_deterministic_and_json_ready():
    a = fold_run(seed=2, widths=(4, 8), batch_size=16, steps=3)
    b = fold_run(seed=2, widths=(4, 8), batch_size=16, steps=3)
    assert a == b
    json.dumps(a, allow_nan=False)
    assert a["float32"]["relative"] < TOL["float32"] and a["float64"]["relative"] < TOL["float64"]
    assert [r["batch"] for r in a["train"]["by_batch"]] == list(TRAIN_BATCHES)
    assert not any("time" in k or "second" in k for k in json.dumps(a).split('"'))


# ---------------------------------------------------------------- verdicts on known numbers


def _result(rel32=1e-7, rel64=1e-16, train=(2.0, 1.2, 1.1, 1.0), train_rel=0.3, reshuffle=0.4):
    rows = [
        {"batch": b, "relative": train_rel, "mean_abs": m, "changed": 10}
        for b, m in zip(TRAIN_BATCHES, train)
    ]
    return {
        "seed": 0,
        "widths": [8, 16, 32],
        "batch_size": 32,
        "steps": 200,
        "test_acc": 0.6,
        "float32": {
            "max_abs": 1e-5,
            "relative": rel32,
            "max_logit": 20.0,
            "agree": 500,
            "images": 500,
        },  # fmt: skip
        "float64": {
            "max_abs": 1e-14,
            "relative": rel64,
            "max_logit": 20.0,
            "agree": 500,
            "images": 500,
        },  # fmt: skip
        "train": {
            "by_batch": rows,
            "reshuffled": {
                "batch": QUOTE_BATCH,
                "relative": reshuffle,
                "mean_abs": 0.7,
                "changed": 9,
            },  # fmt: skip
        },
        "tol": dict(TOL),
        "eps": {"float32": 1.1920928955078125e-07, "float64": 2.220446049250313e-16},
    }


def fake(per_seed: list[dict]) -> dict:
    return {f"{LABEL}, seed {s}": _result(**kw) for s, kw in enumerate(per_seed)}


CLEAR = fake(
    [dict(rel32=r, train=(2.0 + r * 1e6, 1.2, 1.1, 1.0)) for r in (1e-7, 3e-7, 5e-7, 2e-7, 6e-7)]
)


def test_verdicts_hold_on_a_clear_case():
    found = {v.key: v for v in SCENARIO.verdicts(CLEAR)}
    assert set(found) == {
        "fold equals eval, float32",
        "fold equals eval, float64",
        "train mode differs from fold",
        "train mode depends on the batch",
        "smaller batches differ more",
    }
    assert all(v.holds is True and v.agree == 5 for v in found.values())
    # a difference below the rounding unit counts as the unit: log10(1e-4 / 1.19e-7) = 2.92
    assert found["fold equals eval, float32"].diffs[0] == pytest.approx(2.924, abs=1e-3)


def test_a_broken_fold_and_a_foldable_train_mode_are_reversed():
    broken = fake([dict(rel32=1e-2, rel64=1e-3, train_rel=1e-6, reshuffle=1e-7)] * 5)
    found = {v.key: v for v in SCENARIO.verdicts(broken)}
    assert found["fold equals eval, float32"].holds is False
    assert found["fold equals eval, float64"].holds is False
    assert found["train mode differs from fold"].holds is False
    assert found["train mode depends on the batch"].holds is False
    mixed = fake([dict(rel32=r) for r in (1e-7, 1e-2, 1e-7, 1e-2, 1e-7)])
    assert {v.key: v for v in SCENARIO.verdicts(mixed)}["fold equals eval, float32"].holds is None


def test_without_all_seeds_the_verdicts_are_pending():
    assert all(v.pending for v in SCENARIO.verdicts({}))
    three = {k: r for k, r in CLEAR.items() if int(k.rsplit(" ", 1)[1]) < 3}
    assert all(v.pending and v.holds is None for v in SCENARIO.verdicts(three))
    assert "Still measuring (3 of 5 seeds" in SCENARIO.explain(three, None, None)
    assert "Measuring" in SCENARIO.takeaway(three, None, None)


def test_explain_quotes_every_verdict_and_takeaway_is_short():
    text = SCENARIO.explain(CLEAR, None, None)
    for v in SCENARIO.verdicts(CLEAR):
        assert v.text in text
    assert "500 of 500 images" in text
    take = SCENARIO.takeaway(CLEAR, None, None)
    assert len(take) <= 160 and "5 of 5 seeds" in take
    assert "being folded and measured" in SCENARIO.explain({}, None, None)
    check_explain_without_runs(SCENARIO)


# ---------------------------------------------------------------- figures


def test_figures_empty_partial_and_full():
    empty = SCENARIO.draw({})
    assert len(empty) == 2
    for fig in empty:
        assert not fig.data and any("measuring" in a.text for a in fig.layout.annotations)
    one = dict(list(CLEAR.items())[:1])
    full = SCENARIO.draw(CLEAR)
    diffs, batches = full
    dots = [t for t in diffs.data if t.mode == "markers"]
    assert [len(t.y) for t in dots] == [5, 5, 5, 5]
    assert min(dots[1].y) >= 2e-16  # a difference below float64's rounding unit drawn at it
    assert "5/5 seeds agree" in diffs.layout.title.subtitle.text.replace("<br>", " ")
    assert any(t.fill == "tonexty" for t in batches.data)
    for fig in (*empty, *SCENARIO.draw(one), *full):
        check_layout(fig)
        fig.to_json()


# ---------------------------------------------------------------- the live action


def test_live_action_folds_a_copy_and_times_both():
    trainer = _trained(seed=4)
    trainer.step(2)
    before = copy.deepcopy(trainer.model.state_dict())
    result = fold_live(trainer)
    json.dumps(result, allow_nan=False)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert result["foldable"] and result["float32"]["agree"] == result["float32"]["images"]
    assert result["float32"]["relative"] < TOL["float32"]
    assert result["train_relative"] > TOL["float32"]
    assert result["seconds_eval"] > 0 and result["seconds_folded"] > 0
    text = render_live(result)
    assert f"predictions agree on all {result['float32']['images']} test images" in text
    assert "this machine" in text and "folded/unfolded ×" in text
    assert SCENARIO.actions[0].fn is fold_live
    assert not math.isnan(result["float64"]["relative"])
