"""Scenario 'high-lr': its experiments (tiny runs), scale invariance against torch, its verdicts on
synthetic per-seed results whose answer is known, its figures, its text and its action."""

import json
import math

import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import Lockstep, TrainConfig, Trainer
from bnviz.experiments.high_lr import (
    DEEP_WIDTHS,
    PROBE_LRS,
    STEPS,
    activation_scale,
    loss_ratio_at_init,
    lr_run,
    weight_norms,
)
from bnviz.scenarios.common import pct
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS, seeded
from bnviz.scenarios.high_lr import (
    LEARNED,
    NORM_LRS,
    NORMS,
    PROBE_TRAIN_LR,
    SCENARIO,
    SWEEP_LRS,
    label_deep,
    label_init,
    label_sweep,
    measure_weights,
    norm_verdicts,
    probe_verdicts,
    render_weights,
    sweep_verdicts,
)

TINY = dict(widths=(4, 8), batch_size=16)


# ---------------------------------------------------------------- jobs and experiments


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "high-lr" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] == "none" and SCENARIO.preset["lr"] >= 1.0
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    variants = [label_sweep(n, lr) for lr in SWEEP_LRS for n in NORMS]
    variants += [label_init(n) for n in NORMS] + [label_deep(n) for n in NORMS]
    assert sorted(labels) == sorted(seeded(v, s) for v in variants for s in SEEDS)
    hash(tuple(j.key for j in jobs))
    # only the sweep's runs at PROBE_TRAIN_LR probe one step when trained
    probing = [j.label for j in jobs if dict(j.kwargs).get("probe_lrs")]
    assert sorted(probing) == sorted(
        seeded(label_sweep(n, PROBE_TRAIN_LR), s) for n in NORMS for s in SEEDS
    )
    again = [j.label for j in SCENARIO.jobs(seeds=REPLICATION_SEEDS[:1])]
    assert sorted(again) == sorted(seeded(v, REPLICATION_SEEDS[0]) for v in variants)


def test_a_sweep_run_records_accuracy_and_weight_norms_from_initialisation():
    r = lr_run("batch", 0.1, seed=3, steps=6, eval_every=3, probe_lrs=(1e-3, 10.0), **TINY)
    json.dumps(r, allow_nan=False)  # strict JSON
    assert r["status"] == "completed" and r["eval_steps"] == [0, 3, 6]
    assert len(r["acc"]) == len(r["weight_norm"]) == 3
    initial = Trainer(TrainConfig(norm="batch", seed=3, **TINY)).model
    assert r["weight_norm"][0] == pytest.approx(weight_norms(initial))  # the seed's init
    assert r["weight_norm"][-1] != r["weight_norm"][0]
    probe = r["probe"]
    assert probe["step"] == 6 and probe["lrs"] == [1e-3, 10.0]
    assert probe["ratio"][0] == pytest.approx(1, abs=0.01)  # a tiny step barely moves the loss


def test_a_diverged_sweep_run_is_measured_where_it_stopped():
    r = lr_run("none", 1e4, seed=0, steps=20, eval_every=10, **TINY)
    assert r["status"] == "diverged" and r["steps_done"] == r["diverged_step"] - 1
    assert r["eval_steps"][-1] == r["steps_done"]  # the evaluation where it stopped
    assert len(r["acc"]) == len(r["weight_norm"]) == len(r["eval_steps"])


def test_the_probe_at_init_and_the_depth_runs():
    p = loss_ratio_at_init("none", seed=1, lrs=(1e-3, 1.0), **TINY)
    assert p["step"] == 0 and len(p["ratio"]) == 2 and p["grad_norm"] > 0
    d = activation_scale("batch", seed=0, lr=0.1, widths=(4, 8, 8), steps=3)
    json.dumps(d, allow_nan=False)
    assert d["steps"] == [1, 2, 3] and d["status"] == "completed"
    assert len(d["pre_norm_std"]) == len(d["post_act_std"]) == 3
    assert len(d["weight_norm"]) == 4  # initialisation, then after each completed step
    assert all(len(row) == 3 for row in d["pre_norm_std"] + d["weight_norm"])


def _loss_and_grad(model, weight, x, y, scale: float) -> tuple[float, torch.Tensor]:
    """The loss and its gradient with `weight` scaled by `scale` (then put back)."""
    with torch.no_grad():
        saved = weight.clone()
        weight.mul_(scale)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, weight)
    with torch.no_grad():
        weight.copy_(saved)
    return float(loss.detach()), grad.double()


def test_scale_invariance_behind_the_explanation():
    """BN(cWx) = BN(Wx): scaling a conv that feeds BatchNorm leaves the loss unchanged; the
    gradient is orthogonal to W and shrinks as 1/c (what 'effective lr ~ lr/‖W‖²' rests on).
    Without a norm, the loss changes."""
    for norm in NORMS:
        trainer = Trainer(TrainConfig(norm=norm, seed=2, **TINY))
        model, (x, y) = trainer.model, trainer.next_batch()
        weight = model.blocks[1].conv.weight
        loss1, grad1 = _loss_and_grad(model, weight, x, y, 1.0)
        loss4, grad4 = _loss_and_grad(model, weight, x, y, 4.0)
        if norm == "batch":
            assert loss4 == pytest.approx(loss1, rel=1e-4)
            w = weight.detach().double()
            assert abs(float((grad1 * w).sum() / grad1.norm() / w.norm())) < 1e-3  # orthogonal
            assert float(grad4.norm()) == pytest.approx(float(grad1.norm()) / 4, rel=1e-3)
        else:
            assert abs(loss4 - loss1) > 1e-3


# ---------------------------------------------------------------- synthetic results


def _sweep_result(norm, lr, seed, acc, growth=2.0, diverged=False):
    evals = list(range(0, STEPS + 1, 15))
    start = [1.6, 2.3, 3.3]
    norms = [
        [w * (1 + (growth - 1) * k / (len(evals) - 1)) for w in start] for k in range(len(evals))
    ]
    r = {
        "norm": norm,
        "lr": lr,
        "seed": seed,
        "steps": STEPS,
        "steps_done": 7 if diverged else STEPS,
        "status": "diverged" if diverged else "completed",
        "diverged_step": 8 if diverged else None,
        "eval_steps": evals,
        "acc": [0.1] + [acc] * (len(evals) - 1),
        "weight_norm": norms,
    }
    if lr == PROBE_TRAIN_LR:
        r["probe"] = _probe(seed, 10.0 if norm == "batch" else 1000.0)
    return r


def _probe(seed, at_ten):
    ratios = [1.0 if lr < 1 else at_ten * (1 + 0.1 * seed) for lr in PROBE_LRS]
    return {"step": 0, "lrs": list(PROBE_LRS), "ratio": ratios, "loss": 2.3, "grad_norm": 0.5}


def _deep_result(norm, seed, blow_up):
    blocks = len(DEEP_WIDTHS)
    post = [1.0] * blocks if not blow_up else [10.0**k for k in range(blocks)]
    pre = [0.5] * blocks
    return {
        "norm": norm,
        "seed": seed,
        "lr": 10.0,
        "widths": list(DEEP_WIDTHS),
        "steps": [1, 2],
        "pre_norm_std": [pre, [p * 1000 if norm == "batch" else p for p in pre]],
        "post_act_std": [[1.0] * blocks, post],
        "weight_norm": [[1.0] * blocks, [50.0 if norm == "batch" else 1.0] * blocks],
        "train_loss": [2.3],
        "status": "diverged" if blow_up else "completed",
        "diverged_step": 2 if blow_up else None,
    }


def synthetic(acc, deep_blows_up=(True,) * 5, seeds=SEEDS):
    """acc[norm][lr] = final accuracy per seed (a number, or a list by seed)."""
    out = {}
    for k, s in enumerate(seeds):
        for lr in SWEEP_LRS:
            for n in NORMS:
                a = acc[n][lr]
                a = a[k] if isinstance(a, list) else a + 0.01 * k
                growth = 3.0 if n == "batch" else 1.5
                out[seeded(label_sweep(n, lr), s)] = _sweep_result(n, lr, s, a, growth)
        for n in NORMS:
            out[seeded(label_init(n), s)] = {"norm": n, "seed": s, **_probe(s, 2.0)}
            blows = n == "none" and deep_blows_up[k]
            out[seeded(label_deep(n), s)] = _deep_result(n, s, blows)
    return out


BN_TOLERATES = {  # BN learns up to lr 1 and beats no norm there; no norm fails from lr 0.3
    "batch": {0.1: 0.6, 0.3: 0.62, 1.0: 0.6, 3.0: 0.5, 10.0: 0.1},
    "none": {0.1: 0.6, 0.3: 0.1, 1.0: 0.1, 3.0: 0.1, 10.0: 0.1},
}


@pytest.fixture(scope="module")
def tolerant():
    return synthetic(BN_TOLERATES)


def test_verdicts_follow_synthetic_seeds(tolerant):
    per_lr = sweep_verdicts(tolerant)
    assert per_lr[1.0]["batch"].holds and per_lr[1.0]["beats"].holds
    assert per_lr[1.0]["none"].holds is False and per_lr[1.0]["none"].against == 5
    assert per_lr[0.1]["beats"].holds is None  # equal accuracies
    assert per_lr[10.0]["batch"].holds is False  # below LEARNED in every seed
    probe = probe_verdicts(tolerant)
    assert probe["trained"].holds and probe["init"].holds is None  # equal ratios at init
    weights = norm_verdicts(tolerant)
    assert weights["batch"].holds and weights["none"].holds and weights["more"].holds
    for v in SCENARIO.verdicts(tolerant):
        assert v.seeds == 5 and not v.pending, v.key


def test_mixed_seeds_are_not_distinguishable():
    mixed = dict(BN_TOLERATES, batch=dict(BN_TOLERATES["batch"]))
    mixed["batch"][1.0] = [0.6, 0.05, 0.6, 0.05, 0.6]  # learned in 3 of 5 seeds
    v = sweep_verdicts(synthetic(mixed))[1.0]
    assert v["batch"].holds is None and v["batch"].agree == 3
    assert "Not distinguishable" in v["batch"].text


def test_without_results_every_verdict_is_pending():
    verdicts = SCENARIO.verdicts({})
    assert verdicts and all(v.pending and v.holds is None for v in verdicts)
    assert len({v.key for v in verdicts}) == len(verdicts)


# ---------------------------------------------------------------- text


def test_the_explanation_quotes_every_verdict_and_what_it_measured(tolerant):
    text = SCENARIO.explain(tolerant, None, None)
    for v in SCENARIO.verdicts(tolerant):
        assert v.text in text, v.key
    assert "So here BN learned, and beat no norm, at lr 0.3–3." in text
    assert "at lr 10 BN did not learn either" in text
    assert "the smoother landscape Santurkar et al. (2018) describe" in text
    assert "Ioffe & Szegedy" in text and "Bjorck" in text and "van Laarhoven 2017" in text
    assert "reported not to hold" not in text  # the unsourced claim is gone
    assert "cannot compound" not in text  # the wrong depth-6 sentence is gone
    # with no norm's depth-6 runs blowing up in every seed, the contrast reproduced
    assert not text.startswith("Not reproduced")
    takeaway = SCENARIO.takeaway(tolerant, None, None)
    assert "lr **0.3–3**" in takeaway and "At lr 10 it failed too." in takeaway
    assert len(takeaway.replace("**", "")) <= 160


def test_a_finding_that_does_not_reproduce_comes_first():
    calm = synthetic(BN_TOLERATES, deep_blows_up=(True, False, False, True, False))
    text = SCENARIO.explain(calm, None, None)
    assert text.startswith("Not reproduced here, at this scale: Bjorck et al.'s (2018)")
    none = {lr: 0.6 for lr in SWEEP_LRS}
    flat = synthetic({"batch": none, "none": none})
    text = SCENARIO.explain(flat, None, None)
    assert text.startswith("Not reproduced here, at this scale: Ioffe & Szegedy's (2015)")
    assert "did **not** measurably tolerate" in text
    assert "did **not**" in SCENARIO.takeaway(flat, None, None)


def test_partial_and_empty_results_claim_nothing(tolerant):
    assert "being measured" in SCENARIO.explain({}, None, None)
    assert SCENARIO.takeaway({}, None, None).startswith("Measuring")
    some = {k: v for k, v in tolerant.items() if k.endswith("seed 0")}
    text = SCENARIO.explain(some, None, None)
    assert "Still measuring (1 of 5 seeds so far)" in text
    assert "So here" not in text and not text.startswith("Not reproduced")
    check_explain_without_runs(SCENARIO)


def test_explain_quotes_the_live_run():
    config = TrainConfig(widths=(4, 8), batch_size=16, lr=1.0, steps=20, eval_every=10)
    lockstep = Lockstep([config, config.replace(norm="none")])
    lockstep.step(10)
    lockstep.set(lr=3.0)
    lockstep.step(10)
    run, twin = lockstep.runs
    text = SCENARIO.explain({}, run, twin)
    assert "**Live run** (lr 3, sgd)" in text and "Measure ‖W‖" in text
    assert pct(run.acc_running_stats[-1]) in text and pct(twin.acc_running_stats[-1]) in text


# ---------------------------------------------------------------- figures


def test_figures_empty_partial_and_full(tolerant):
    partial = {k: v for k, v in tolerant.items() if k.startswith(label_sweep("batch", 1.0))}
    for results in ({}, partial, tolerant):
        figs = SCENARIO.draw(results)
        assert len(figs) == 5 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    assert all(any("measuring" in a.text for a in f.layout.annotations) for f in SCENARIO.draw({}))
    sweep, probe, deep, norms, steps = SCENARIO.draw(tolerant)
    means = {t.name: t for t in sweep.data if t.name and "mean" in t.name}
    bn = means["BatchNorm (mean ± sd)"]
    assert list(bn.x) == list(SWEEP_LRS) and bn.error_y.array is not None
    assert bn.y[list(SWEEP_LRS).index(1.0)] == pytest.approx(100 * (0.6 + 0.02), abs=0.01)
    subtitle = sweep.layout.title.subtitle.text.replace("<br>", " ")
    assert "BN beat no norm at lr 0.3 (5/5 seeds agree)" in subtitle
    assert any(t.fill == "tonexty" for t in probe.data)  # the spread over seeds is drawn
    assert "5/5 seeds agree" in norms.layout.title.subtitle.text.replace("<br>", " ")
    named = {t.name for t in norms.data if t.name}
    assert {f"BatchNorm, lr {lr:g}" for lr in NORM_LRS} <= named
    assert len([t for t in steps.data if t.name]) == len(SWEEP_LRS)
    assert deep.layout.yaxis.type == "log"


# ---------------------------------------------------------------- the action


def test_the_action_compares_weight_norms_with_the_initial_ones():
    for norm in NORMS:
        trainer = Trainer(TrainConfig(norm=norm, lr=0.5, steps=10, seed=4, **TINY))
        trainer.step(5)
        trainer.set(lr=0.25)
        trainer.step(2)
        result = measure_weights(trainer)
        json.dumps(result, allow_nan=False)
        fresh = Trainer(TrainConfig(norm=norm, seed=4, **TINY)).model
        assert result["then"] == pytest.approx(weight_norms(fresh))
        assert result["now"] == pytest.approx(weight_norms(trainer.model))
        assert result["now"] != result["then"] and result["step"] == 7
        assert (result["lr_then"], result["lr_now"]) == (0.5, 0.25)
        text = render_weights(result)
        assert "At step 7 (lr 0.5 at step 1, 0.25 now)" in text
        w0, w = result["then"][0], result["now"][0]
        assert f"×{w / w0:.3g}" in text and f"{0.25 / w**2:.3g}" in text
        assert ("not an effective step" in text) == (norm == "none")
    assert SCENARIO.actions and SCENARIO.actions[0].fn is measure_weights
    mlp = Trainer(TrainConfig(arch="mlp", widths=(8, 8), batch_size=16, steps=3, seed=1))
    mlp.step(2)
    result = measure_weights(mlp)  # an MLP's first layer takes the whole image
    assert result["then"] == pytest.approx(
        weight_norms(Trainer(TrainConfig(arch="mlp", widths=(8, 8), seed=1)).model)
    )


def test_learned_threshold_is_above_chance():
    assert 0.1 < LEARNED < 1 and math.isclose(PROBE_TRAIN_LR, 0.1)
