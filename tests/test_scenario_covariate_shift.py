import math

import numpy as np
import pytest
import torch
from conftest import check_layout, check_preset
from torch import nn

from bnviz import TrainConfig, Trainer
from bnviz.scenarios.covariate_shift import (
    SCENARIO,
    _range,
    _verdict,
    gradient_shift,
    landscape,
    layer_params,
    shift_and_smoothness,
    summary,
)
from bnviz.trainer import to_tensor

REDUCED = dict(steps=125, every=25, seed=0)  # 5 measured steps instead of 8, one seed


@pytest.fixture(scope="module")
def results():
    return {
        "BatchNorm, seed 0": shift_and_smoothness("batch", **REDUCED),
        "no norm, seed 0": shift_and_smoothness("none", **REDUCED),
    }


def test_id_view_and_preset_use_allowed_values():
    assert SCENARIO.id == "covariate-shift"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] == "none"


def _linear_chain(weights):
    layers = [nn.Linear(w.shape[1], w.shape[0], bias=False).double() for w in weights]
    with torch.no_grad():
        for layer, w in zip(layers, weights):
            layer.weight.copy_(torch.from_numpy(w))
    return nn.Sequential(*layers)


def test_gradient_shift_of_a_three_layer_linear_chain_by_hand():
    rng = np.random.default_rng(0)
    w1, w2, w3 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4)), rng.normal(size=(1, 2))
    new = [w + rng.normal(size=w.shape) for w in (w1, w2, w3)]  # any step, not only SGD's
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    model = _linear_chain([w1, w2, w3])

    def loss_fn(m):  # 0.5 * sum of squared errors
        return 0.5 * (m(torch.from_numpy(x)) - torch.from_numpy(y)).square().sum()

    layers = [[layer.weight] for layer in model]
    shifts = gradient_shift(model, layers, [[torch.from_numpy(w)] for w in new], loss_fn)

    def grads(a, b, c):  # dL/dW of each layer of x -> a -> b -> c, by the chain rule
        h1, h2 = x @ a.T, x @ a.T @ b.T
        r = h2 @ c.T - y  # residuals, batch x 1
        return [((r @ c) @ b).T @ x, (r @ c).T @ h1, r.T @ h2]

    before = grads(w1, w2, w3)
    expected = [
        before[0],  # no earlier layers
        grads(new[0], w2, w3)[1],  # layer 2 after layer 1's step; layers 2, 3 unchanged
        grads(new[0], new[1], w3)[2],  # layer 3 after layers 1 and 2 took their steps
    ]
    for (l2, cos, norm), g, g_after in zip(shifts, before, expected):
        assert l2 == pytest.approx(np.linalg.norm(g - g_after), rel=1e-9, abs=1e-12)
        cos_hand = (g * g_after).sum() / (np.linalg.norm(g) * np.linalg.norm(g_after))
        assert cos == pytest.approx(cos_hand, rel=1e-9)
        assert norm == pytest.approx(np.linalg.norm(g), rel=1e-9)
    assert shifts[1][0] > 0.1 and shifts[2][0] > 0.1  # the earlier steps did change G
    for layer, w in zip(model, (w1, w2, w3)):  # restored
        assert np.array_equal(layer.weight.detach().numpy(), w)


def test_first_block_has_no_shift_and_later_ones_do():
    config = TrainConfig(widths=(4, 8), batch_size=16, lr=0.1)
    trainer = Trainer(config)
    model, data = trainer.model, trainer.data
    idx = trainer.batches.next(16)
    x, y = to_tensor(data, data.x_train[idx]), torch.from_numpy(data.y_train[idx])

    def loss_fn(m):
        return nn.functional.cross_entropy(m(x), y)

    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_fn(model).backward()
    updated = [[p.detach() - 0.1 * p.grad for p in params] for _, params in layer_params(model)]
    shifts = gradient_shift(model, [p for _, p in layer_params(model)], updated, loss_fn)
    assert [name for name, _ in layer_params(model)] == ["block 1", "block 2", "head"]
    assert shifts[0][0] == 0.0 and shifts[0][1] == 1.0
    assert all(l2 > 0 and cos < 1 for l2, cos, _ in shifts[1:])
    for name, p in model.named_parameters():  # restored
        assert torch.equal(p.detach(), start[name]), name


def test_landscape_of_a_quadratic():
    # L(w) = 0.5 |w|^2: g = w, L(w - eta g) = 0.5 (1 - eta)^2 |w|^2, gradient change eta |w|
    w = torch.tensor([3.0, -4.0], dtype=torch.float64)
    model = nn.Module()
    model.w = nn.Parameter(w.clone())
    etas = (0.1, 0.2, 0.4)
    out = landscape(model, lambda m: 0.5 * m.w.square().sum(), etas)
    expected = [0.5 * (1 - eta) ** 2 * 25 for eta in etas]
    assert out["losses"] == pytest.approx(expected, rel=1e-12)
    assert out["grad_changes"] == pytest.approx([5 * eta for eta in etas], rel=1e-12)
    assert out["loss_range"] == pytest.approx(max(expected) - min(expected), rel=1e-12)
    assert out["grad_change_range"] == pytest.approx(5 * 0.3, rel=1e-12)
    assert out["beta_smoothness"] == pytest.approx(1.0, rel=1e-12)  # the Hessian is I
    assert torch.equal(model.w.detach(), w)
    assert math.isnan(_range([0.5, math.inf])) and _range([0.5, 2.0, 1.0]) == 1.5


def test_finding_bn_loss_varies_less_along_the_gradient(results):
    bn, none = results["BatchNorm, seed 0"], results["no norm, seed 0"]
    assert bn["steps"] == none["steps"] == [0, 25, 50, 75, 100]
    assert bn["diverged_step"] is None and none["diverged_step"] is None
    for r in (bn, none):
        assert all(row[0] == 0.0 for row in r["ics_l2"])  # block 1: G' is G
        assert all(row[0] == 1.0 for row in r["ics_cos"])
        assert len(r["loss_range"]) == len(r["steps"])
    # Santurkar et al.'s smoothing, at this scale (mean over the 5 measured steps; the no-norm
    # net sits on its initial plateau for the first ~50 steps, where its loss is flatter)
    assert np.mean(bn["loss_range"]) < np.mean(none["loss_range"])
    assert np.mean(bn["grad_change_range"]) < np.mean(none["grad_change_range"])


def test_explain_quotes_the_measured_means(results):
    text = SCENARIO.explain(results, None, None)
    bn, none = results["BatchNorm, seed 0"], results["no norm, seed 0"]
    for r in (bn, none):
        later = np.asarray(r["ics_l2"])[:, 1:]
        assert f"{later.mean():.3g}" in text
        assert f"{np.asarray(r['ics_cos'])[:, 1:].mean():.3g}" in text
        assert f"{np.mean(r['loss_range']):.3g}" in text
        assert f"{np.mean(r['grad_change_range']):.3g}" in text
        assert f"{100 * r['test_acc']:.1f}%" in text
    wins = sum(a < b for a, b in zip(bn["loss_range"], none["loss_range"]))
    assert f"BN smaller at {wins} of 5 measured steps" in text
    smaller = np.mean(bn["loss_range"]) < np.mean(none["loss_range"])
    assert ("varied less along the gradient with BN" in text) == smaller
    ics_smaller = np.asarray(bn["ics_l2"])[:, 1:].mean() < np.asarray(none["ics_l2"])[:, 1:].mean()
    assert f"‖G − G′‖₂ = {summary([bn])['ics_l2']:.3g} with BN" in text
    assert ("**smaller with BN**." in text) == ics_smaller
    assert "Santurkar" in text and "2018" in text


def test_verdict_reports_either_outcome():
    base = dict(ics_l2=0.1, ics_cos=0.9, loss_range=0.1)
    worse = dict(ics_l2=0.2, ics_cos=0.8, loss_range=0.2)
    text = _verdict(base, worse)  # BN: less shift, higher cosine, smoother
    assert "BN did reduce ICS" in text and "varied less along the gradient with BN" in text
    text = _verdict(worse, base)
    assert "did not reduce ICS" in text and "did not vary less" in text
    text = _verdict(dict(base, ics_cos=0.7), worse)
    assert "disagree" in text and "smaller shift but lower cosine" in text


def test_empty_and_partial_results(results):
    run = Trainer(TrainConfig(widths=(4,), steps=2)).run
    assert "being measured" in SCENARIO.explain({}, run, None)
    figures = SCENARIO.figures({})
    assert len(figures) == 4
    for fig in figures:
        assert not fig.data
        assert any("measuring" in a.text for a in fig.layout.annotations)
    partial = {"BatchNorm, seed 0": results["BatchNorm, seed 0"]}
    assert "being measured" in SCENARIO.explain(partial, run, None)
    figures = SCENARIO.figures(partial)
    assert all(fig.data for fig in figures)
    names = {t.name for fig in figures for t in fig.data}
    assert not any("no norm" in n for n in names)
    full = SCENARIO.figures(results)
    for fig in (*figures, *full):
        check_layout(fig)
    assert len(full[0].data) == 6  # blocks 2 and the head (block 1 is 0) x with and without BN
    assert math.isclose(full[2].data[0].y[0], results["BatchNorm, seed 0"]["loss_range"][0])
