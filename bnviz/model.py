"""The network: blocks of conv3x3 -> norm -> activation (or conv -> activation -> norm); every
block after the first downsamples 2x with a stride-2 conv; global average pooling; a linear head.
With arch='mlp', fully connected hidden layers instead: the image is flattened to a 1x1 "image"
of C*H*W channels, and each block's conv is 1x1 (a linear layer on it), with the same norm and
activation; everything that reads a conv block (statistics, hooks, records) reads these too."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from .batchnorm import BatchNorm2d
from .config import TrainConfig

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def group_count(channels: int) -> int:
    """GroupNorm groups: the largest divisor of C up to min(32, C / 2), so 2+ channels a group."""
    return max(g for g in range(1, max(1, min(32, channels // 2)) + 1) if channels % g == 0)


def make_norm(config: TrainConfig, channels: int) -> nn.Module:
    """The normalization layer of one block; 'none' is an identity (pre-activations still seen)."""
    if config.norm == "batch":
        momentum = config.momentum
        layer = BatchNorm2d if config.bn_impl == "scratch" else nn.BatchNorm2d
        return layer(channels, eps=config.eps, momentum=momentum)
    groups = {"group": group_count(channels), "layer": 1, "instance": channels}.get(config.norm)
    if groups is None:
        return nn.Identity()
    return nn.GroupNorm(groups, channels, eps=config.eps)


class Block(nn.Module):
    """conv -> norm -> activation, or conv -> activation -> norm (placement='after'). The conv
    is 3x3 (padding 1), or 1x1 in an MLP (kernel=1: a fully connected layer on 1x1 maps)."""

    def __init__(
        self, config: TrainConfig, in_channels: int, out_channels: int, stride: int, kernel: int = 3
    ):
        super().__init__()
        self.placement = config.placement
        conv_feeds_norm = config.placement == "before" and config.norm != "none"
        # a conv feeding a norm needs no bias: the norm subtracts the mean (and beta replaces it)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=kernel // 2,
            bias=not conv_feeds_norm,
        )
        self.norm = make_norm(config, out_channels)
        self.act = ACTIVATIONS[config.activation]()

    def forward(self, x):
        x = self.conv(x)
        if self.placement == "before":
            return self.act(self.norm(x))
        return self.norm(self.act(x))


class Net(nn.Module):
    """len(widths) blocks (stride 2 from the second on), average pooling, a linear head.
    A stride-2 conv downsamples at a quarter of the cost of a full conv followed by pooling.
    arch='mlp': the image flattened, len(widths) fully connected blocks (1x1 convs on 1x1 maps),
    the head; in_channels is then C*H*W, the inputs of the first hidden layer."""

    def __init__(self, config: TrainConfig, in_channels: int, num_classes: int):
        super().__init__()
        self.flatten = config.arch == "mlp"
        channels = (in_channels, *config.widths)
        kernel = 1 if self.flatten else 3
        self.blocks = nn.ModuleList(
            Block(config, a, b, stride=1 if i == 0 or self.flatten else 2, kernel=kernel)
            for i, (a, b) in enumerate(zip(channels, channels[1:]))
        )
        self.head = nn.Linear(config.widths[-1], num_classes)

    def forward(self, x):
        if self.flatten:
            x = x.flatten(1)[:, :, None, None]
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def block_sides(side: int, depth: int) -> list[int]:
    """Image side length at each block: 28 -> 28, 14, 7, 4, 2, 1."""
    sides = [side]
    for _ in range(depth - 1):
        sides.append((sides[-1] + 1) // 2)
    return sides


def feature_sides(config: TrainConfig, image_side: int) -> list[int]:
    """The side of each block's feature maps (its norm's input) for images `image_side` px
    square: halving from block to block in a conv net, 1 in every layer of an MLP."""
    if config.arch == "mlp":
        return [1] * len(config.widths)
    return block_sides(image_side, len(config.widths))


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> None:
    """PyTorch's default (Kaiming-uniform) init, drawn per tensor from a generator seeded by
    (seed, tensor name): models that differ in normalization start from identical conv and
    linear weights, and no global random state is touched. They differ in the conv biases too
    (a conv feeding a norm has none; one feeding none has), drawn from their own generators."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this bound
            module.weight.uniform_(-bound, bound, generator=_generator(seed, name + ".weight"))
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=_generator(seed, name + ".bias"))


def build_model(
    config: TrainConfig, in_channels: int, num_classes: int, image_side: int | None = None
) -> Net:
    """The network for `config`, initialised from config.seed. An MLP's first layer takes the
    whole image, so it needs `image_side` (pixels; images are square)."""
    if config.arch == "mlp":
        if image_side is None:
            raise ValueError("arch 'mlp' needs image_side: its first layer takes the whole image")
        in_channels = in_channels * image_side * image_side
    model = Net(config, in_channels, num_classes)
    init_weights(model, config.seed)
    return model
