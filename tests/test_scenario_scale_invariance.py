"""The scale-invariance scenario: scaling a conv that feeds BN leaves the output as it was and
divides its gradient by c (and not without a norm, nor for the head); weight decay shrinks ‖W‖;
the verdicts and their prose follow per-seed numbers whose answer is known; the live action."""

import json

import plotly.graph_objects as go
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import TrainConfig, Trainer
from bnviz.experiments.scale_invariance import FACTORS, init_check, scale_check, wd_run
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS
from bnviz.scenarios.high_lr import WEIGHTS_ACTION
from bnviz.scenarios.scale_invariance import (
    LABEL_CHECK,
    SCENARIO,
    WD,
    label_run,
    render_scale,
    scale_live,
)

TINY = dict(widths=(4, 8), batch_size=16)


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "scale-invariance" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["placement"] == "before" and SCENARIO.preset["norm"] == "batch"
    labels = {j.label for j in SCENARIO.jobs()}
    expected = {label_run(0.0), label_run(WD), LABEL_CHECK}
    assert labels == {f"{v}, seed {s}" for v in expected for s in SEEDS}
    assert {j.label for j in SCENARIO.jobs(seeds=REPLICATION_SEEDS)} == {
        f"{v}, seed {s}" for v in expected for s in REPLICATION_SEEDS
    }
    assert WEIGHTS_ACTION in SCENARIO.actions  # high-lr's action, reused


# ---------------------------------------------------------------- the experiments


def test_scaling_a_conv_that_feeds_bn_changes_neither_output_nor_direction_of_gradient():
    trainer = Trainer(TrainConfig(seed=2, **TINY))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    x, y = trainer.next_batch()
    out = scale_check(trainer.model, x, y)
    conv = [r for r in out["rows"] if r["layer"] == "conv"]
    head = [r for r in out["rows"] if r["layer"] == "head"]
    assert [r["c"] for r in conv] == list(FACTORS)
    for r in conv:
        assert r["max_diff"] < 1e-3 * r["logit_scale"]
        assert r["grad_ratio"] == pytest.approx(1 / r["c"], rel=0.01)
    assert all(r["max_diff"] > 0.05 * r["logit_scale"] for r in head)
    assert abs(out["cos"]) < 1e-4
    for n, p in trainer.model.named_parameters():  # the model itself is untouched
        assert torch.equal(p, before[n]), n
    json.dumps(init_check(seed=0, **TINY), allow_nan=False)


@pytest.mark.parametrize("config", [dict(norm="none"), dict(placement="after")])
def test_without_a_norm_after_the_conv_scaling_changes_the_output(config):
    trainer = Trainer(TrainConfig(seed=2, **TINY, **config))
    x, y = trainer.next_batch()
    conv = [r for r in scale_check(trainer.model, x, y)["rows"] if r["layer"] == "conv"]
    assert all(r["max_diff"] > 1e-3 * r["logit_scale"] for r in conv)


def test_a_run_tracks_norms_and_cosines_and_weight_decay_shrinks_the_weights():
    kw = dict(seed=1, steps=12, eval_every=4, **TINY)
    plain, decayed = wd_run(0.0, **kw), wd_run(0.1, **kw)
    json.dumps(plain, allow_nan=False)
    assert plain["eval_steps"] == [0, 4, 8, 12] == decayed["eval_steps"]
    assert plain["cos_steps"] == [4, 8, 12] and len(plain["cos"][0]) == 3  # 2 convs + head
    assert plain["weight_norm"][0] == decayed["weight_norm"][0]  # the same initial weights
    assert all(abs(c) < 1e-4 for row in plain["cos"] for c in row[:-1])
    assert all(w > w0 for w, w0 in zip(plain["weight_norm"][-1], plain["weight_norm"][0]))
    assert all(a < b for a, b in zip(decayed["weight_norm"][-1], plain["weight_norm"][-1]))


# ---------------------------------------------------------------- verdicts on synthetic seeds


def fake_run(wd, seed, end, acc=0.7, head_cos=0.05, conv_cos=1e-7):
    start = [1.0, 1.5, 2.0]
    steps = [0, 120, 240]
    return {
        "weight_decay": wd,
        "lr": 0.1,
        "seed": seed,
        "widths": [8, 16, 32],
        "batch_size": 64,
        "steps": 240,
        "status": "completed",
        "eval_steps": steps,
        "acc": [0.1, acc - 0.01, acc + 0.01],
        "weight_norm": [start, [(a + b) / 2 for a, b in zip(start, end)], end],
        "cos_steps": steps[1:],
        "cos": [[conv_cos, -conv_cos, conv_cos, -head_cos]] * 2,
    }


def fake_check(seed, conv=1e-5, head=0.4):
    rows = [
        dict(layer=layer, c=c, max_diff=d * (c if layer == "head" else 1), logit_scale=0.8,
             grad_ratio=1 / c if layer == "conv" else 1.1)
        for layer, d in (("conv", conv), ("head", head))
        for c in FACTORS
    ]  # fmt: skip
    return {"seed": seed, "widths": [8, 16, 32], "batch_size": 64, "block": 0, "cos": 1e-7,
            "rows": rows}  # fmt: skip


def fake(decay_ends, accs=(0.7,) * 5, plain_end=(3.0, 3.2, 3.4), heads=(0.05,) * 5):
    out = {}
    for s, (ends, acc, head) in enumerate(zip(decay_ends, accs, heads)):
        out[f"{label_run(0.0)}, seed {s}"] = fake_run(0.0, s, list(plain_end), 0.7, head)
        out[f"{label_run(WD)}, seed {s}"] = fake_run(WD, s, list(ends), acc, head)
        out[f"{LABEL_CHECK}, seed {s}"] = fake_check(s)
    return out


CLEAR = fake([[2.0 + 0.01 * s, 2.5, 2.9] for s in range(5)])


def _found(results):
    return {v.key: v for v in SCENARIO.verdicts(results)}


def test_verdicts_follow_synthetic_seeds():
    found = _found(CLEAR)
    for key in ("invariant", "orthogonal", "grows", "smaller-1", "step-1", "step-3"):
        assert found[key].holds is True and found[key].agree == 5, key
    assert found["accuracy"].holds is None  # identical accuracies
    reversed_ = _found(fake([[4.0 + 0.01 * s, 4.0, 4.0] for s in range(5)]))
    assert reversed_["smaller-1"].holds is False and reversed_["step-2"].holds is False
    mixed = _found(fake([[e, 3.2, 3.4] for e in (2.0, 4.0, 2.1, 4.1, 3.05)]))
    assert mixed["smaller-1"].holds is None and not mixed["smaller-1"].pending
    higher = _found(fake([[2.0, 2.5, 2.9]] * 5, accs=[0.8, 0.81, 0.82, 0.8, 0.83]))
    assert higher["accuracy"].holds is True
    assert all(v.pending for v in SCENARIO.verdicts({}))


def test_explanation_quotes_every_verdict_and_a_failure_comes_first():
    text = SCENARIO.explain(CLEAR, None, None)
    for v in SCENARIO.verdicts(CLEAR):
        assert v.text in text, v.key
    assert not text.startswith("Not reproduced") and "Fragile" not in text
    assert "not measurable" in text  # accuracy not distinguishable: said so
    bad = fake([[4.0 + 0.01 * s, 2.5, 2.9] for s in range(5)])
    text = SCENARIO.explain(bad, None, None)
    assert text.startswith("Not reproduced here") and "in block 1)" in text
    split = fake([[e, 2.5, 2.9] for e in (2.0, 4.0, 2.1, 2.2, 2.05)])
    assert "did not all agree on block 1's ‖W‖ and block 1's effective step," in SCENARIO.explain(
        split, None, None
    )
    check_explain_without_runs(SCENARIO)
    partial = {k: v for k, v in CLEAR.items() if k.startswith(LABEL_CHECK)}
    assert "being measured" in SCENARIO.explain(partial, None, None)


def test_takeaway_is_short_and_follows_the_verdicts():
    text = SCENARIO.takeaway(CLEAR, None, None)
    assert len(text) <= 160 and "5 of 5 seeds" in text
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    text = SCENARIO.takeaway(fake([[4.0 + 0.01 * s, 2.5, 2.9] for s in range(5)]), None, None)
    assert "blocks 2 and 3" in text and len(text) <= 160
    bad = fake([[4.0 + 0.01 * s, 4.0, 4.0] for s in range(5)])
    assert "did not keep any" in SCENARIO.takeaway(bad, None, None)


def test_figures_empty_partial_and_full():
    partial = {k: v for k, v in CLEAR.items() if k.startswith(label_run(0.0))}
    for results in ({}, partial, CLEAR):
        figs = SCENARIO.draw(results)
        assert len(figs) == 4 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    check, cos, norms, steps = SCENARIO.draw(CLEAR)
    assert any(t.fill == "tonexty" for t in norms.data)  # bands over seeds
    assert any(t.fill == "tonexty" for t in steps.data)
    assert "5/5 seeds agree" in norms.layout.title.subtitle.text.replace("<br>", " ")
    assert any(t.name == "1/c" for t in check.data)
    assert cos.layout.yaxis.type == "log"


# ---------------------------------------------------------------- the live action


@pytest.mark.parametrize(
    "config, words",
    [
        (dict(), "BatchNorm follows block 1's conv"),
        (dict(norm="none"), "not scale-invariant here"),
        (dict(placement="after"), "after the activation"),
    ],
)
def test_the_action_scales_a_copy_of_the_live_network(config, words):
    trainer = Trainer(TrainConfig(seed=3, steps=10, **TINY, **config))
    trainer.step(3)
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    result = scale_live(trainer)
    json.dumps(result, allow_nan=False)
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    twin = Trainer(TrainConfig(seed=3, steps=10, **TINY, **config))
    twin.step(3)
    trainer.step(2)  # the run's batch order is left untouched
    twin.step(2)
    assert trainer.run.metric("train_loss")[-1] == twin.run.metric("train_loss")[-1]
    assert result["step"] == 3 and result["images"] == 16
    text = render_scale(result)
    assert words in text and "At step 3" in text
    conv = [r for r in result["rows"] if r["layer"] == "conv"]
    if not config:
        assert all(r["grad_ratio"] == pytest.approx(1 / r["c"], rel=0.01) for r in conv)
    assert f"{conv[1]['grad_ratio']:.4g}" in text


def test_the_action_works_on_an_mlp_at_batch_size_one():
    trainer = Trainer(TrainConfig(arch="mlp", widths=(4,), batch_size=1, steps=3))
    result = scale_live(trainer)
    assert result["images"] == 2 and "BatchNorm follows" in render_scale(result)
