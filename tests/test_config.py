import json
import math

import pytest

from bnviz import TrainConfig
from bnviz.config import DEFAULT_LR, FIELDS


def test_defaults_match_the_documented_ones():
    c = TrainConfig()
    assert (c.dataset, c.arch, c.norm, c.bn_impl, c.placement, c.activation) == (
        "shapes", "conv", "batch", "torch", "before", "relu",
    )  # fmt: skip
    assert c.widths == (16, 32, 64)
    assert (c.batch_size, c.eps, c.momentum) == (64, 1e-5, 0.1)
    assert (c.optimizer, c.lr, c.steps, c.seed) == ("sgd", DEFAULT_LR["sgd"], 300, 0)
    assert TrainConfig(optimizer="adam").lr == DEFAULT_LR["adam"] != DEFAULT_LR["sgd"]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("dataset", "imagenet", "shapes, mnist"),
        ("arch", "resnet", "conv, mlp"),
        ("norm", "batchnorm", "batch, group"),
        ("bn_impl", "keras", "torch, scratch"),
        ("placement", "middle", "before, after"),
        ("activation", "gelu", "relu, tanh, sigmoid"),
        ("optimizer", "lion", "sgd, adam"),
        ("widths", (), "1 to 6 integers"),
        ("widths", (16, 0), "from 1 to 256"),
        ("widths", (16, 32, 64, 64, 64, 64, 64), "1 to 6"),
        ("widths", "16,32", "1 to 6 integers"),
        ("batch_size", 0, "from 1 to"),
        ("batch_size", 2.5, "integer"),
        ("batch_size", True, "integer"),
        ("batch_size", 10**9, "from 1 to"),
        ("eps", -1e-5, "[0, 1]"),
        ("eps", math.nan, "[0, 1]"),
        ("eps", math.inf, "[0, 1]"),
        ("eps", "1e-5", "[0, 1]"),
        ("momentum", 1.5, "[0, 1]"),
        ("momentum", -0.1, "[0, 1]"),
        ("lr", 0.0, "(0, "),
        ("lr", -1.0, "(0, "),
        ("lr", math.nan, "(0, "),
        ("steps", 0, "from 1 to"),
        ("seed", -1, "from 0 to"),
        ("snapshot_every", 0, "from 1 to"),
    ],
)
def test_invalid_values_name_the_field_and_range(field, value, words):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(field)
    assert words in message


def test_momentum_none_means_cumulative_average_and_is_allowed():
    assert TrainConfig(momentum=None).momentum is None


def test_dict_round_trip_and_json():
    c = TrainConfig(norm="group", widths=(8, 8), momentum=None, lr=0.3, optimizer="adam")
    d = c.to_dict()
    assert list(d) == list(FIELDS)
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == c


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown config keys: colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_replace_validates():
    assert TrainConfig().replace(batch_size=8).batch_size == 8
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig().replace(batch_size=-8)


def test_an_mlp_refuses_instance_norm_and_takes_every_other_norm():
    """InstanceNorm on a fully connected layer (1x1 maps) would set every value to 0."""
    with pytest.raises(ValueError, match="norm 'instance' does not work with arch 'mlp'"):
        TrainConfig(arch="mlp", norm="instance")
    for norm in ("batch", "group", "layer", "none"):
        assert TrainConfig(arch="mlp", norm=norm).arch == "mlp"
    assert TrainConfig(norm="instance").arch == "conv"
    with pytest.raises(ValueError, match="arch 'mlp'"):
        TrainConfig(norm="instance").replace(arch="mlp")
