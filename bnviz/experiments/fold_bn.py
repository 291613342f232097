"""The 'fold-bn' experiments: at inference (eval mode) BatchNorm is a fixed per-channel affine
map, y = γ(x − μ)/√(σ² + ε) + β with the running mean μ and variance σ², so it folds into the
convolution before it:

    W′ = γ W / √(σ² + ε)            (each output channel's filter scaled)
    b′ = β + γ (b − μ) / √(σ² + ε)   (b = 0 when the conv has no bias)

`fold_bn(model)` returns a folded copy of a bnviz Net (BN placed before the activation only).
`fold_run` trains one network per seed and measures how far the folded network's logits are
from the eval-mode network's, in float32 and float64, and from train mode's, whose batch
statistics change with the batch: no fixed affine map can reproduce it. Numbers only: no wall
clock timings here (the scenario's live action times the forward passes)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..trainer import Trainer
from .common import clean

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 200
TOL = {"float32": 1e-4, "float64": 1e-12}  # largest |Δlogit| / largest |logit| counted "equal"
# a difference below the dtype's rounding unit counts as that unit (a 0 would be -inf in log10)
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
TRAIN_BATCHES = (4, 20, 100, 500)  # test batch sizes for the train-mode comparison
QUOTE_BATCH = 20  # the batch size whose train-mode difference the verdicts compare
SHUFFLE_STREAM = 17  # random stream of the test-set reshuffle (another batch composition)


class NotFoldable(ValueError):
    """The model has no BatchNorm that folds into the conv before it."""


def _is_batchnorm(norm: nn.Module) -> bool:
    return getattr(norm, "running_mean", None) is not None and hasattr(norm, "running_var")


def check_foldable(model: nn.Module) -> None:
    """Raise NotFoldable, with the reason, unless every block is conv -> BatchNorm -> act."""
    for i, block in enumerate(model.blocks):
        if getattr(block, "placement", "before") != "before":
            raise NotFoldable(
                "BatchNorm after the activation cannot be folded into the conv before it: the "
                "activation sits between them, and an affine map does not pass through it "
                f"(block {i + 1} is conv -> activation -> BatchNorm)"
            )
        if not _is_batchnorm(block.norm):
            raise NotFoldable(
                f"block {i + 1} has no BatchNorm with running statistics to fold (its norm is "
                f"{type(block.norm).__name__}); only BatchNorm becomes a fixed per-channel map "
                "at inference"
            )


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of a bnviz Net with each block's BatchNorm folded into its conv: the conv gets
    W′ = γW/√(σ² + ε) and bias b′ = β + γ(b − μ)/√(σ² + ε), the norm becomes an identity. The
    copy is in eval mode, in the model's dtype (the fold is computed in float64); `model` is
    not touched. Only for BN placed before the activation (raises NotFoldable otherwise)."""
    check_foldable(model)
    folded = copy.deepcopy(model)
    for block in folded.blocks:
        conv, norm = block.conv, block.norm
        dtype = conv.weight.dtype
        mean, var = norm.running_mean.double(), norm.running_var.double()
        channels = mean.shape[0]
        gamma = norm.weight.double() if norm.weight is not None else torch.ones(channels)
        beta = norm.bias.double() if norm.bias is not None else torch.zeros(channels)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros(channels)
        scale = gamma / torch.sqrt(var + norm.eps)
        new = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=True,
            dtype=dtype,
        )
        new.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(dtype))
        new.bias.copy_((beta + scale * (bias - mean)).to(dtype))
        block.conv, block.norm = new, nn.Identity()
    return folded.eval()


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """The model's logits for x, `batch` images a forward pass, in the mode the model is in."""
    return torch.cat([model(part) for part in x.split(batch)])


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a − b| over the largest |b|."""
    return clean((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def compare_eval(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> dict:
    """Eval-mode logits of `model` against its folded copy's, both in `dtype`: the largest
    absolute and relative difference, and how many predictions agree."""
    net = copy.deepcopy(model).to(dtype).eval()
    folded = fold_bn(net)
    x = x.to(dtype)
    a, b = logits(folded, x), logits(net, x)
    return {
        "max_abs": clean((a - b).abs().max()),
        "relative": _relative(a, b),
        "max_logit": clean(b.abs().max()),
        "agree": int((a.argmax(1) == b.argmax(1)).sum()),
        "images": len(x),
    }


@torch.no_grad()
def train_mode_logits(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Train-mode logits (batch statistics) of x in consecutive batches of `batch` images,
    on a copy (the running buffers of `model` are untouched)."""
    net = copy.deepcopy(model).train()
    for block in net.blocks:
        block.norm.track_running_stats = False  # batch statistics; buffers neither used nor set
    return logits(net, x, batch)


@torch.no_grad()
def compare_train(model: nn.Module, x: torch.Tensor, batches=TRAIN_BATCHES, seed: int = 0) -> dict:
    """Train-mode logits against the folded network's (float32), per test batch size: the
    largest relative difference, the mean |Δlogit|, the predictions that differ; and, at
    QUOTE_BATCH, the same images' train-mode logits when the test set is reshuffled into other
    batches (the batch's other images changed, nothing else)."""
    folded = fold_bn(model)
    ref = logits(folded, x)
    rows = []
    for b in batches:
        t = train_mode_logits(model, x, b)
        rows.append(
            {
                "batch": b,
                "relative": _relative(t, ref),
                "mean_abs": clean((t - ref).abs().mean()),
                "changed": int((t.argmax(1) != ref.argmax(1)).sum()),
            }
        )
    order = torch.from_numpy(np.random.default_rng([seed, SHUFFLE_STREAM]).permutation(len(x)))
    first = train_mode_logits(model, x, QUOTE_BATCH)
    shuffled = torch.empty_like(first)
    shuffled[order] = train_mode_logits(model, x[order], QUOTE_BATCH)
    return {
        "by_batch": rows,
        "reshuffled": {
            "batch": QUOTE_BATCH,
            "relative": _relative(shuffled, first),
            "mean_abs": clean((shuffled - first).abs().mean()),
            "changed": int((shuffled.argmax(1) != first.argmax(1)).sum()),
        },
    }


def fold_run(
    seed: int = 0,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    steps: int = STEPS,
) -> dict:
    """One job: a BatchNorm network trained for `steps` steps (SGD, the app's default lr),
    folded; its eval-mode logits on the held-out images against the folded network's in
    float32 and float64, and train mode's against the folded network's."""
    config = TrainConfig(
        widths=tuple(widths),
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    trainer.plain_steps(steps)
    x = trainer.eval_x
    return {
        "seed": seed,
        "widths": list(widths),
        "batch_size": batch_size,
        "steps": steps,
        "test_acc": clean(trainer.eval_accuracy()),
        "float32": compare_eval(trainer.model, x, torch.float32),
        "float64": compare_eval(trainer.model, x, torch.float64),
        "train": compare_train(trainer.model, x, seed=seed),
        "tol": dict(TOL),
        "eps": dict(EPS),
    }
