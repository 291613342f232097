import pytest
import torch
from torch import nn

from bnviz import BatchNorm2d, TrainConfig
from bnviz.model import block_sides, build_model, feature_sides, group_count


def model(**kw):
    return build_model(TrainConfig(**kw), in_channels=1, num_classes=10)


@pytest.mark.parametrize(
    "kw, bias",
    [
        ({}, False),
        ({"norm": "group"}, False),
        ({"norm": "none"}, True),
        ({"placement": "after"}, True),
    ],
)
def test_conv_has_bias_only_when_not_followed_by_a_norm(kw, bias):
    assert all((b.conv.bias is not None) == bias for b in model(**kw).blocks)


def test_norm_choices():
    assert all(type(b.norm) is nn.BatchNorm2d for b in model().blocks)
    assert all(type(b.norm) is BatchNorm2d for b in model(bn_impl="scratch").blocks)
    assert all(type(b.norm) is nn.Identity for b in model(norm="none").blocks)
    for norm, groups in (("layer", lambda c: 1), ("instance", lambda c: c), ("group", group_count)):
        for block, width in zip(model(norm=norm).blocks, (16, 32, 64)):
            assert type(block.norm) is nn.GroupNorm
            assert block.norm.num_groups == groups(width)
    assert [group_count(c) for c in (1, 2, 16, 64, 128, 6)] == [1, 1, 8, 32, 32, 3]


def test_norm_gets_eps_and_momentum():
    bn = model(eps=1e-3, momentum=None).blocks[0].norm
    assert (bn.eps, bn.momentum) == (1e-3, None)


def test_placement_order():
    for placement, expected in (
        ("before", ["conv", "norm", "act"]),
        ("after", ["conv", "act", "norm"]),
    ):
        block = model(placement=placement).blocks[0]
        order = []
        for name in ("conv", "norm", "act"):
            getattr(block, name).register_forward_hook(lambda *a, n=name, o=order: o.append(n))
        block(torch.zeros(2, 1, 28, 28))
        assert order == expected


def test_blocks_downsample_2x_from_the_second_on():
    net = model(widths=(4, 4, 4, 4, 4, 4))
    sizes = []
    for block in net.blocks:
        block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sizes == block_sides(28, 6) == [28, 14, 7, 4, 2, 1]


def test_initial_weights_depend_on_seed_only_not_on_norm():
    a, b, c = (dict(m.named_parameters()) for m in (model(), model(norm="none"), model(seed=1)))
    shared = [n for n in a if n.endswith("conv.weight") or n.startswith("head")]
    assert len(shared) == 5
    for name in shared:
        assert torch.equal(a[name], b[name]), name
        assert not torch.equal(a[name], c[name]), name


def test_init_is_independent_of_global_rng():
    state = torch.get_rng_state()
    first = model().blocks[0].conv.weight.clone()
    torch.manual_seed(123)
    assert torch.equal(model().blocks[0].conv.weight, first)
    torch.set_rng_state(state)


def test_an_mlp_is_fully_connected_layers_on_the_flattened_image():
    """arch='mlp': each block's conv is 1x1 on 1x1 maps, i.e. a linear layer, with the norm
    and activation of a conv block; it equals nn.Linear with the same weights."""
    config = TrainConfig(arch="mlp", widths=(100, 100, 100), activation="sigmoid")
    net = build_model(config, in_channels=1, num_classes=10, image_side=28)
    shapes, inputs = [], []
    for block in net.blocks:
        block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
        block.norm.register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    x = torch.randn(6, 1, 28, 28)
    assert net(x).shape == (6, 10)
    assert shapes == [(6, 100, 1, 1)] * 3
    assert [b.conv.kernel_size for b in net.blocks] == [(1, 1)] * 3
    assert net.blocks[0].conv.weight.shape == (100, 784, 1, 1)
    assert all(b.conv.bias is None for b in net.blocks)  # BN before the activation
    linear = nn.Linear(784, 100, bias=False)
    linear.weight.data = net.blocks[0].conv.weight.data.view(100, 784)
    torch.testing.assert_close(inputs[0][:, :, 0, 0], linear(x.flatten(1)))
    assert feature_sides(config, 28) == [1, 1, 1]
    assert feature_sides(TrainConfig(), 28) == block_sides(28, 3) == [28, 14, 7]


def test_an_mlps_init_is_pytorchs_linear_default_and_seeded():
    """The 1x1 conv's fan-in is the linear layer's: bound 1/sqrt(784) for the first layer."""
    config = TrainConfig(arch="mlp", widths=(16, 16))
    a, b = (build_model(config, 1, 10, image_side=28) for _ in range(2))
    w = a.blocks[0].conv.weight.detach()
    assert torch.equal(w, b.blocks[0].conv.weight)
    assert 0.9 / 28 < float(w.abs().max()) <= 1 / 28
    with pytest.raises(ValueError, match="image_side"):
        build_model(config, 1, 10)
