"""Internal covariate shift and the loss landscape along the gradient, measured during a short
training with and without BatchNorm (Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch
Normalization Help Optimization?"): (a) internal covariate shift as they define it through
gradients (their section 2.2): how much a layer's gradient changes when only the layers before
it take their optimizer step; (b) the loss landscape along the gradient (their section 3.1,
Figure 4): how much the loss and the gradient vary over steps w - eta * g."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..model import build_model
from ..trainer import Trainer
from .common import clean

NORMS = ("batch", "none")
WIDTHS = (8, 16, 32)  # depth 3, width 8 in the sidebar's terms
BATCH_SIZE = 64
LR = 0.1  # SGD with momentum 0.9, the app's optimizer
STEPS = 300
EVERY = 10  # measure at steps 0, 10, ..., 290: 30 checkpoints a run
# Absolute step sizes eta along -g (all parameters move); Santurkar et al. capped their
# Figure 4 at 0.4 times the gradient.
STEP_SIZES = (0.05, 0.1, 0.2, 0.4)
LANDSCAPE_KEYS = ("loss_range", "grad_change_range", "beta_smoothness")  # what a job keeps

LossFn = Callable[[nn.Module], torch.Tensor]


# ---------------------------------------------------------------- the measurements


def layer_params(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The layers of a bnviz Net: each block (its conv weight first, then its conv bias or its
    BatchNorm gamma and beta) and the linear head (weight, bias)."""
    layers = []
    for i, block in enumerate(model.blocks):
        rest = [p for n, p in block.named_parameters() if n != "conv.weight"]
        layers.append((f"block {i + 1}", [block.conv.weight, *rest]))
    layers.append(("head", [model.head.weight, model.head.bias]))
    return layers


def _l2_cos(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """||a - b||_2 and cos(a, b), in float64."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    dot, aa, bb = float(a @ b), float(a @ a), float(b @ b)
    cos = dot / math.sqrt(aa * bb) if aa > 0 and bb > 0 else math.nan
    return float((a - b).norm()), cos


def gradient_shift(
    model: nn.Module,
    layers: Sequence[Sequence[nn.Parameter]],
    updated: Sequence[Sequence[torch.Tensor]],
    loss_fn: LossFn,
) -> list[tuple[float, float, float]]:
    """Internal covariate shift as Santurkar et al. define it (section 2.2), for every layer i:
    G = the gradient of the loss w.r.t. layer i's weight (layers[i][0]) at the current weights;
    G' = the same gradient, on the same batch, after layers 1..i-1 (and only they) have taken
    their step to `updated` (updated[j] holds the new values of layers[j]'s parameters), with
    layer i and later unchanged. Returns (||G - G'||_2, cos(G, G'), ||G||_2) per layer; the
    first layer has no earlier layers, so there G' is G. The parameters are restored after."""
    weights = [params[0] for params in layers]
    start = [[p.detach().clone() for p in params] for params in layers]
    shifts = []
    try:
        grads = torch.autograd.grad(loss_fn(model), weights)  # G of every layer
        for i, params in enumerate(layers):
            after = grads[0] if i == 0 else torch.autograd.grad(loss_fn(model), [weights[i]])[0]
            shifts.append((*_l2_cos(grads[i], after), float(grads[i].double().norm())))
            with torch.no_grad():  # layer i takes its step before layer i + 1 is measured
                for p, value in zip(params, updated[i]):
                    p.copy_(value)
    finally:
        with torch.no_grad():
            for params, values in zip(layers, start):
                for p, value in zip(params, values):
                    p.copy_(value)
    return shifts


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().square().sum()) for t in tensors))


def _range(values: list[float]) -> float:
    """max - min, or NaN if any value is not finite (the loss or gradient blew up)."""
    if not all(math.isfinite(v) for v in values):
        return math.nan
    return max(values) - min(values)


def landscape(model: nn.Module, loss_fn: LossFn, step_sizes: Sequence[float]) -> dict:
    """The loss landscape along the gradient (Santurkar et al. section 3.1): with g the gradient
    of all parameters at w, for each eta the loss L(w - eta g) and the gradient change
    ||grad L(w - eta g) - grad L(w)||_2; their ranges (max - min over eta) and the effective
    beta-smoothness max ||grad change|| / ||eta g||. The parameters are restored after."""
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    losses, changes = [], []
    try:
        grads = torch.autograd.grad(loss_fn(model), params)
        for eta in step_sizes:
            with torch.no_grad():
                for p, w, g in zip(params, start, grads):
                    p.copy_(w - eta * g)
            loss = loss_fn(model)
            moved = torch.autograd.grad(loss, params)
            losses.append(clean(loss.detach()))
            changes.append(clean(_norm(a - b for a, b in zip(moved, grads))))
    finally:
        with torch.no_grad():
            for p, w in zip(params, start):
                p.copy_(w)
    grad_norm = _norm(grads)
    ratios = [
        c / (eta * grad_norm) if grad_norm > 0 else math.nan for c, eta in zip(changes, step_sizes)
    ]
    return {
        "losses": losses,
        "grad_changes": changes,
        "grad_norm": clean(grad_norm),
        "loss_range": _range(losses),
        "grad_change_range": _range(changes),
        "beta_smoothness": _range([0.0, *ratios]),
    }


def ics_summary(shifts: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """One checkpoint's gradient shift (gradient_shift's rows) in three numbers, each the mean
    over the layers that have earlier layers (the first layer's G' is G by definition):
    ||G - G'||, ||G - G'|| / ||G|| and 1 - cos(G, G') (0: the same direction)."""
    later = shifts[1:]
    return {
        "shift": _mean([l2 for l2, _, _ in later]),
        "relative_shift": _mean([l2 / g for l2, _, g in later if g > 0]),
        "direction_change": _mean([1 - cos for _, cos, _ in later]),
    }


def _mean(values: list[float]) -> float:
    return clean(sum(values) / len(values)) if values else math.nan


def shift_and_smoothness(
    norm: str,
    seed: int = 0,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    steps: int = STEPS,
    every: int = EVERY,
    step_sizes: tuple[float, ...] = STEP_SIZES,
) -> dict:
    """Train `steps` SGD steps (momentum 0.9, the app's optimizer); at steps 0, every, 2 every,
    ... measure, on that step's batch and at that step's weights: the landscape along the
    gradient, and the gradient shift of every layer when the earlier layers take the step the
    optimizer really takes (momentum included), summarised by ics_summary. Measurements run on
    a scratch copy of the model, so the training itself is untouched. Test accuracy (eval mode)
    at every measured step and after the last step."""
    config = TrainConfig(
        norm=norm,
        widths=widths,
        batch_size=batch_size,
        lr=lr,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    model, data = trainer.model, trainer.data
    scratch = build_model(config, data.x_train.shape[1], len(data.classes))
    names = [name for name, _ in layer_params(model)]
    rows: dict[str, list] = {
        k: [] for k in ("steps", "loss", "shift", "relative_shift", "direction_change")
    }
    along: dict[str, list] = {k: [] for k in LANDSCAPE_KEYS}
    eval_steps: list[int] = []
    test_acc: list[float] = []
    diverged_step = None
    for t in range(steps):
        x, y = trainer.next_batch(batch_size)

        def loss_fn(m: nn.Module, x=x, y=y) -> torch.Tensor:
            return F.cross_entropy(m(x), y)

        measure = t % every == 0
        if measure:
            eval_steps.append(t)
            test_acc.append(clean(trainer.eval_accuracy()))
            scratch.load_state_dict(model.state_dict())
            measured = landscape(scratch, loss_fn, step_sizes)
            for key in LANDSCAPE_KEYS:
                along[key].append(measured[key])
        loss = trainer.plain_step(x, y)
        if not math.isfinite(loss):
            diverged_step = t + 1
            for key in along:  # keep the series aligned with the recorded steps
                along[key] = along[key][: len(rows["steps"])]
            break
        if measure:
            updated = [[p.detach().clone() for p in params] for _, params in layer_params(model)]
            layers = [params for _, params in layer_params(scratch)]
            shifts = gradient_shift(scratch, layers, updated, loss_fn)
            rows["steps"].append(t)
            rows["loss"].append(clean(loss))
            for key, value in ics_summary(shifts).items():
                rows[key].append(value)
    if diverged_step is None:
        eval_steps.append(steps)
        test_acc.append(clean(trainer.eval_accuracy()))
    return {
        "norm": norm,
        "seed": seed,
        "widths": list(widths),
        "batch_size": batch_size,
        "lr": float(lr),
        "steps_trained": steps if diverged_step is None else diverged_step - 1,
        "step_sizes": [float(s) for s in step_sizes],
        "layers": names,
        **rows,
        **along,
        "eval_steps": eval_steps,
        "test_acc": test_acc,
        "diverged_step": diverged_step,
    }
