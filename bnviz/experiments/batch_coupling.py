"""Experiments of the scenario 'batch-coupling' (bnviz/scenarios/batch_coupling.py): in train
mode BatchNorm couples the examples of a batch, since each is normalized with statistics of all.

- `coupling`: one fixed test image, its batch mates drawn again and again; its loss, logits and
  gradient in train mode (batch statistics) and in eval mode (running statistics).
- `backward_check`: Ioffe & Szegedy's (2015, section 3) backward pass written out by hand
  (∂ℓ/∂x̂, ∂ℓ/∂σ², ∂ℓ/∂μ, ∂ℓ/∂x) against autograd, in float64, in every block of a trained
  network; and the share of the gradient that flows through μ_B and σ²_B (what is lost when
  the statistics are treated as constants).
- `ghost_run`: ghost batch norm (Hoffer, Hubara & Soudry 2017; Keras's `virtual_batch_size`):
  the batch of 64 normalized in sub-batches of g images.

One seed per call; the scenario runs the seeds."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..trainer import Trainer, to_tensor
from .common import clean, clean_list

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32  # the coupling measure: the fixed image and 31 batch mates
WARMUP = 60  # steps trained before measuring: a network past its initialisation
MATE_SETS = 8  # sets of batch mates drawn for the fixed image
CHECK_BATCH = 16  # the backward check's batch
GHOST_BATCH = 64
GHOST_SIZES = (2, 4, 8, 16, 64)  # 64: ordinary BatchNorm over the whole batch
GHOST_STEPS = 150
GHOST_LR = 0.05
EVALS = 3  # ghost runs: evaluations at the end, every EVAL_EVERY steps (their mean is final)
EVAL_EVERY = 10
MATE_STREAM = 7  # the random stream that draws batch mates (apart from the run's batches)


def _trained(seed: int, steps: int = WARMUP, widths=WIDTHS, batch_size: int = BATCH_SIZE):
    config = TrainConfig(widths=widths, batch_size=batch_size, steps=max(steps, 1), seed=seed)
    trainer = Trainer(config)
    trainer.plain_steps(steps)
    return trainer


def _frozen_stats(model: nn.Module) -> nn.Module:
    """A copy of the model whose BatchNorms use batch statistics in train mode but never update
    their running estimates (measuring must not change the network)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0
    return model


def fixed_image_outputs(model: nn.Module, image: torch.Tensor, label: torch.Tensor, mates):
    """The fixed image's loss, logits and loss gradient (w.r.t. every parameter, flattened) with
    `mates` as the rest of its batch, in the model's current mode. The image sits first."""
    x = torch.cat([image[None], mates])
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits[:1], label[None])
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    grad = torch.cat([g.reshape(-1) for g in grads]).double()
    return float(loss.detach()), logits[0].detach().double(), grad


def _variation(rows) -> dict:
    """How far outputs moved between sets of batch mates: the largest absolute difference from
    the first set, and the relative spread (sd over sets over the mean's norm)."""
    arr = torch.stack(rows)
    largest = float((arr - arr[0]).abs().max())
    mean = arr.mean(0)
    spread = float((arr - mean).norm(dim=-1).pow(2).mean().sqrt() / mean.norm().clamp_min(1e-300))
    return {"largest": largest, "relative": spread}


def coupling(
    seed: int,
    mate_sets: int = MATE_SETS,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = BATCH_SIZE,
    warmup: int = WARMUP,
) -> dict:
    """A network trained `warmup` steps; the first held-out image, with `mate_sets` different
    sets of batch_size − 1 training images as batch mates (drawn from the seed). Per mode, per
    set: the fixed image's loss; across the sets, the variation of its loss, logits and
    parameter gradient."""
    trainer = _trained(seed, warmup, widths, batch_size)
    data = trainer.data
    model = _frozen_stats(trainer.model)
    image, label = trainer.eval_x[0], trainer.eval_y[0]
    rng = np.random.default_rng([seed, MATE_STREAM])
    mates = [
        to_tensor(data, data.x_train[rng.choice(len(data.y_train), batch_size - 1, replace=False)])
        for _ in range(mate_sets)
    ]
    out = {
        "seed": seed,
        "widths": list(widths),
        "batch_size": batch_size,
        "mates": batch_size - 1,
        "mate_sets": mate_sets,
        "warmup": warmup,
    }
    for mode in ("train", "eval"):
        model.train(mode == "train")
        losses, logits, grads = [], [], []
        for m in mates:
            loss, logit, grad = fixed_image_outputs(model, image, label, m)
            losses.append(loss)
            logits.append(logit)
            grads.append(grad)
        spread = np.asarray(losses)
        out[mode] = {
            "loss": clean_list(losses),
            "predicted": [int(row.argmax()) for row in logits],
            "loss_range": clean(spread.max() - spread.min()),
            "loss_sd": clean(spread.std(ddof=1)),
            "logits": _variation(logits),
            "grad": _variation(grads),
        }
    out["label"] = int(label)
    return out


# ---------------------------------------------------------------- the backward pass by hand


def bn_backward(dy, x, gamma, eps, through_stats: bool = True):
    """Ioffe & Szegedy (2015), section 3, for x (N, C, H, W): m = N·H·W values per channel.

    ∂ℓ/∂x̂ = ∂ℓ/∂y · γ
    ∂ℓ/∂σ² = Σ ∂ℓ/∂x̂ · (x − μ) · (−½)(σ² + ε)^(−3/2)
    ∂ℓ/∂μ = Σ ∂ℓ/∂x̂ · (−1/√(σ² + ε)) + ∂ℓ/∂σ² · Σ −2(x − μ) / m
    ∂ℓ/∂x = ∂ℓ/∂x̂ / √(σ² + ε) + ∂ℓ/∂σ² · 2(x − μ)/m + ∂ℓ/∂μ / m
    ∂ℓ/∂γ = Σ ∂ℓ/∂y · x̂,  ∂ℓ/∂β = Σ ∂ℓ/∂y

    With through_stats=False, μ and σ² are treated as constants: ∂ℓ/∂x = ∂ℓ/∂x̂ / √(σ² + ε)."""
    dims, shape = (0, 2, 3), (1, -1, 1, 1)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mu = x.mean(dims).reshape(shape)
    var = ((x - mu) ** 2).mean(dims).reshape(shape)
    inv = 1 / torch.sqrt(var + eps)
    xhat = (x - mu) * inv
    dxhat = dy * gamma.reshape(shape)
    dgamma, dbeta = (dy * xhat).sum(dims), dy.sum(dims)
    if not through_stats:
        return dxhat * inv, dgamma, dbeta
    dvar = (dxhat * (x - mu)).sum(dims, keepdim=True) * -0.5 * inv**3
    dmu = (dxhat * -inv).sum(dims, keepdim=True) + dvar * (-2 * (x - mu)).sum(
        dims, keepdim=True
    ) / m
    dx = dxhat * inv + dvar * 2 * (x - mu) / m + dmu / m
    return dx, dgamma, dbeta


class _ByHand(torch.autograd.Function):
    """Batch normalization (batch statistics) whose backward pass is bn_backward."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, through_stats):
        ctx.save_for_backward(x, gamma)
        ctx.eps, ctx.through = eps, through_stats
        shape = (1, -1, 1, 1)
        mu = x.mean((0, 2, 3)).reshape(shape)
        var = ((x - mu) ** 2).mean((0, 2, 3)).reshape(shape)
        return (x - mu) / torch.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)

    @staticmethod
    def backward(ctx, dy):
        x, gamma = ctx.saved_tensors
        dx, dgamma, dbeta = bn_backward(dy, x, gamma, ctx.eps, ctx.through)
        return dx, dgamma, dbeta, None, None


class HandBN(nn.Module):
    """A BatchNorm in train mode (batch statistics, no running estimates) with the backward pass
    written out by hand; `through_stats=False` drops the gradient through μ_B and σ²_B."""

    def __init__(self, bn: nn.BatchNorm2d, through_stats: bool = True):
        super().__init__()
        self.weight, self.bias, self.eps, self.through = bn.weight, bn.bias, bn.eps, through_stats

    def forward(self, x):
        return _ByHand.apply(x, self.weight, self.bias, self.eps, self.through)


def _network_gradient(model, x, y, norms=None):
    """The loss gradient w.r.t. every parameter and each block's norm input, train mode."""
    inputs = []
    hooks = []
    for block in model.blocks:

        def keep(module, args):
            args[0].retain_grad()
            inputs.append(args[0])

        hooks.append(block.norm.register_forward_pre_hook(keep))
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    params = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return params, [t.grad for t in inputs]


def backward_check(
    seed: int,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = CHECK_BATCH,
    warmup: int = WARMUP,
) -> dict:
    """A network trained `warmup` steps, copied to float64, on one training batch: the gradient
    by autograd (torch's BatchNorm), by the hand-written backward pass, and by the hand-written
    pass with μ_B and σ²_B treated as constants. Returns the largest absolute difference
    between autograd and the hand-written pass, and, per block, the share ‖∂ℓ/∂x − ∂ℓ/∂x
    (constant statistics)‖ / ‖∂ℓ/∂x‖ of the norm's input gradient that flows through μ_B and
    σ²_B; with the statistics as constants the input gradient of a channel no longer sums to
    0 over the batch (it does through them: shifting a whole channel changes nothing)."""
    trainer = _trained(seed, warmup, widths)
    x, y = trainer.next_batch(batch_size)
    x = x.double()
    torch_net = copy.deepcopy(trainer.model).double()
    for m in torch_net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    nets = {}
    for through in (True, False):
        net = copy.deepcopy(torch_net)
        for block in net.blocks:
            block.norm = HandBN(block.norm, through)
        nets[through] = net
    auto_p, auto_x = _network_gradient(torch_net, x, y)
    hand_p, hand_x = _network_gradient(nets[True], x, y)
    const_p, const_x = _network_gradient(nets[False], x, y)
    largest = max(
        float((auto_p - hand_p).abs().max()),
        max(float((a - h).abs().max()) for a, h in zip(auto_x, hand_x)),
    )
    scale = max(float(auto_p.abs().max()), max(float(a.abs().max()) for a in auto_x))
    share = [float((h - c).norm() / h.norm()) for h, c in zip(hand_x, const_x)]
    channel_sum = [
        float(h.sum((0, 2, 3)).abs().max() / h.abs().sum((0, 2, 3)).max()) for h in hand_x
    ]
    const_sum = [
        float(c.sum((0, 2, 3)).abs().max() / c.abs().sum((0, 2, 3)).max()) for c in const_x
    ]
    return {
        "seed": seed,
        "widths": list(widths),
        "batch_size": batch_size,
        "warmup": warmup,
        "largest_difference": largest,
        "largest_gradient": scale,
        "share_through_stats": share,
        "param_share_through_stats": float((hand_p - const_p).norm() / hand_p.norm()),
        "channel_sum": channel_sum,
        "channel_sum_constants": const_sum,
    }


# ---------------------------------------------------------------- ghost batch norm


class GhostBatchNorm2d(nn.Module):
    """BatchNorm over sub-batches ("ghost batches") of `ghost` images: in train mode a batch of
    N = k·ghost images is normalized in k groups, each with its own mean and variance (Hoffer
    et al. 2017; Keras's BatchNormalization(virtual_batch_size=ghost)). The running estimates
    average the ghost batches' statistics (as Keras does) and serve eval mode as usual. A batch
    that is not a multiple of `ghost` is normalized in groups of its largest divisor ≤ ghost."""

    def __init__(self, bn: nn.BatchNorm2d, ghost: int):
        super().__init__()
        self.ghost, self.eps, self.momentum = ghost, bn.eps, bn.momentum
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean.clone())
        self.register_buffer("running_var", bn.running_var.clone())

    def forward(self, x):
        n, c, h, w = x.shape
        if self.training:
            g = max(d for d in range(1, min(self.ghost, n) + 1) if n % d == 0)
            k = n // g
            # each (ghost batch, channel) pair as one channel of a batch of g images: torch's
            # own batch_norm then normalizes every ghost batch with its own statistics
            pairs = x.reshape(k, g, c, h, w).transpose(0, 1).reshape(g, k * c, h, w)
            mean, var = torch.zeros(k * c), torch.ones(k * c)  # filled with these batch stats
            y = F.batch_norm(
                pairs,
                mean,
                var,
                self.weight.repeat(k),
                self.bias.repeat(k),
                training=True,
                momentum=1.0,
                eps=self.eps,
            )
            with torch.no_grad():  # the ghost batches' mean and unbiased variance, averaged
                self.running_mean.lerp_(mean.reshape(k, c).mean(0), self.momentum)
                self.running_var.lerp_(var.reshape(k, c).mean(0), self.momentum)
            return y.reshape(g, k, c, h, w).transpose(0, 1).reshape(n, c, h, w)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def ghost_model(model: nn.Module, ghost: int) -> nn.Module:
    """The model with every block's BatchNorm replaced by a GhostBatchNorm2d (same γ, β)."""
    for block in model.blocks:
        block.norm = GhostBatchNorm2d(block.norm, ghost)
    return model


@torch.no_grad()
def _test_measures(trainer: Trainer, batch: int) -> dict:
    """Test accuracy and loss in eval mode (running estimates) and in train mode (ghost
    statistics of batches of `batch` test images), the running estimates left untouched."""
    model = trainer.model
    saved = [b.clone() for b in model.buffers()]
    usable = len(trainer.eval_y) // batch * batch
    x, y = trainer.eval_x[:usable], trainer.eval_y[:usable]
    out = {}
    try:
        for mode in ("eval", "train"):
            model.train(mode == "train")
            logits = torch.cat([model(chunk) for chunk in x.split(batch)])
            out[f"acc_{mode}"] = clean((logits.argmax(1) == y).double().mean())
            out[f"loss_{mode}"] = clean(F.cross_entropy(logits, y))
    finally:
        for b, s in zip(model.buffers(), saved):
            b.copy_(s)
        model.train()
    return out


def ghost_run(
    ghost: int,
    seed: int,
    widths: tuple[int, ...] = WIDTHS,
    batch_size: int = GHOST_BATCH,
    steps: int = GHOST_STEPS,
    lr: float = GHOST_LR,
    evals: int = EVALS,
    eval_every: int = EVAL_EVERY,
) -> dict:
    """Train with ghost batches of `ghost` images in batches of `batch_size` (the trainer's SGD,
    momentum 0.9). At the last `evals` evaluations, `eval_every` steps apart: test accuracy and
    loss in eval mode and in train mode (ghost statistics of test batches of `batch_size`); the
    train/eval gap is train mode minus eval mode."""
    config = TrainConfig(
        widths=widths, batch_size=batch_size, lr=lr, steps=steps, seed=seed, eval_every=steps
    )
    trainer = Trainer(config)
    ghost_model(trainer.model, ghost)
    at = [steps - eval_every * k for k in reversed(range(evals))]
    keys = ("acc_eval", "acc_train", "loss_eval", "loss_train")
    out: dict = {"eval_steps": at, **{k: [] for k in keys}}
    losses = []
    status = "completed"
    for step in range(1, steps + 1):
        x, y = trainer.next_batch()
        loss = trainer.plain_step(x, y)
        losses.append(clean(loss))
        if not math.isfinite(loss):
            status = "diverged"
            break
        if step in at:
            for k, v in _test_measures(trainer, batch_size).items():
                out[k].append(v)
    return {
        "ghost": ghost,
        "seed": seed,
        "widths": list(widths),
        "batch_size": batch_size,
        "steps": steps,
        "lr": float(lr),
        "status": status,
        "train_loss": losses[:: max(1, steps // 30)],
        **out,
    }
