"""Batch normalization from scratch: a drop-in for ``torch.nn.BatchNorm2d``.

For an input ``x`` of shape (N, C, H, W), each channel c is normalized with statistics over the
m = N * H * W values it holds in the batch:

    mean_c  = sum(x[:, c]) / m
    var_c   = sum((x[:, c] - mean_c) ** 2) / m      (BIASED: divide by m)
    y[:, c] = (x[:, c] - mean_c) / sqrt(var_c + eps) * weight_c + bias_c

``weight`` (gamma, init 1) and ``bias`` (beta, init 0) are learned; eps defaults to 1e-5.

In training mode the layer also keeps running estimates, later used in eval mode:

    running_mean_c = (1 - momentum) * running_mean_c + momentum * mean_c
    running_var_c  = (1 - momentum) * running_var_c  + momentum * var_c * m / (m - 1)

so ``running_var`` stores the UNBIASED variance (divide by m - 1), and ``num_batches_tracked``
counts the training batches. This is PyTorch's momentum convention (default 0.1); Keras calls
1 - momentum its "momentum". ``momentum=None`` means a cumulative (simple) average: the factor
is 1 / num_batches_tracked, so every batch so far has the same weight.

Training mode, or no running statistics: normalize with the batch statistics.
Eval mode with running statistics: normalize with ``running_mean`` and ``running_var``.
"""

import math

import torch
from torch import nn


def average_factor(momentum: float | None, k: int) -> float:
    """The weight of the k-th batch (counting from 1) in the running average: `momentum`, or
    1/k for a cumulative average (momentum None), which gives every batch so far the same."""
    return 1.0 / k if momentum is None else momentum


def keras_momentum(momentum: float | None) -> float | None:
    """Keras/TensorFlow's momentum for the same average: the weight of the old value,
    1 - momentum; None for a cumulative average, which Keras does not have."""
    return None if momentum is None else 1 - momentum


def effective_window(momentum: float | None, k: int) -> float:
    """About how many recent batches the average spans at batch k: 1/momentum, or all k for a
    cumulative average (and forever for momentum 0, which never moves)."""
    if momentum is None:
        return float(k)
    return math.inf if momentum == 0 else 1 / momentum


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Normalize each channel of x (N, C, H, W); update the running stats in place if given."""
    shape = (1, -1, 1, 1)  # (C,) -> (1, C, 1, 1), so per-channel values broadcast over N, H, W
    if training:
        # One mean and variance per channel, over the batch and both spatial axes.
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean.reshape(shape)) ** 2).mean(dim=(0, 2, 3))  # biased: divide by m
        m = x.shape[0] * x.shape[2] * x.shape[3]  # values per channel: N * H * W
        if running_mean is not None and m > 0:  # an empty batch carries no information
            with torch.no_grad():  # the estimates are bookkeeping, not part of the graph
                running_mean.copy_((1 - momentum) * running_mean + momentum * mean)
                unbiased_var = var * m / (m - 1)
                running_var.copy_((1 - momentum) * running_var + momentum * unbiased_var)
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)  # mean 0, variance ~1
    if weight is not None:  # learned per-channel scale (gamma) ...
        y = y * weight.reshape(shape)
    if bias is not None:  # ... and shift (beta) let the network undo the normalization if useful
        y = y + bias.reshape(shape)
    return y


class BatchNorm2d(nn.Module):
    """Batch normalization over a 4D input (N, C, H, W); see the module docstring for the math."""

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        # Unused slots are registered as None, like torch, so state_dict keys match exactly.
        gamma = nn.Parameter(torch.empty(num_features, **factory)) if affine else None
        beta = nn.Parameter(torch.empty(num_features, **factory)) if affine and bias else None
        self.register_parameter("weight", gamma)
        self.register_parameter("bias", beta)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            count = torch.tensor(0, dtype=torch.long, device=device)
            self.register_buffer("num_batches_tracked", count)
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self):
        """Forget the running estimates: mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        """Reset the running estimates and make the layer the identity: weight 1, bias 0."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )

    def forward(self, x):
        """Normalize x; in training mode also update the running estimates (if tracked)."""
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        # Batch statistics in training mode, or when there are no running estimates to use.
        use_batch_stats = self.training or self.running_mean is None
        # A variance from a single value is meaningless (and m - 1 would be 0).
        if use_batch_stats and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.size()}"
            )
        tracking = self.training and self.track_running_stats and self.running_mean is not None
        momentum = 0.0 if self.momentum is None else self.momentum
        if tracking:
            # Counted even for an empty batch (torch does the same), though the stats stay put.
            self.num_batches_tracked.add_(1)
            momentum = average_factor(self.momentum, self.num_batches_tracked.item())
        buffers = (self.running_mean, self.running_var)
        if self.training and not self.track_running_stats:
            # Switched off on the fly (as torch allows): hide the buffers so they stay untouched.
            buffers = (None, None)
        return batch_norm(x, self.weight, self.bias, *buffers, use_batch_stats, momentum, self.eps)
