"""bnviz.batchnorm checked against torch.nn.BatchNorm2d as the oracle, in float64."""

import inspect
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bnviz.batchnorm import BatchNorm2d, batch_norm

F64 = torch.float64
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rand(shape, seed, scale=3.0, shift=2.0):
    """Data whose channels are far from mean 0 / variance 1, so normalization is visible."""
    return torch.randn(shape, generator=gen(seed), dtype=F64) * scale + shift


def make_pair(num_features, seed=0, **kwargs):
    """(scratch, torch) modules in float64 with identical random weight and bias."""
    ours = BatchNorm2d(num_features, dtype=F64, **kwargs)
    ref = nn.BatchNorm2d(num_features, dtype=F64, **kwargs)
    with torch.no_grad():
        g = gen(seed)
        if ref.weight is not None:
            ref.weight.copy_(torch.rand(num_features, generator=g, dtype=F64) + 0.5)
            ours.weight.copy_(ref.weight)
        if ref.bias is not None:
            ref.bias.copy_(torch.randn(num_features, generator=g, dtype=F64))
            ours.bias.copy_(ref.bias)
    return ours, ref


def manual_batch_norm(x, weight=None, bias=None, eps=1e-5):
    """Independent reference for batch-statistics normalization."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), correction=0, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def assert_same_buffers(ours, ref):
    for name in BUFFERS:
        a, b = getattr(ours, name), getattr(ref, name)
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == b.dtype, name
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def train_steps(modules, shapes, seed=100):
    for i, shape in enumerate(shapes):
        x = rand(shape, seed + i, scale=1.0 + i, shift=float(i))
        for m in modules:
            m(x)


SHAPES = [(4, 3, 5, 7), (2, 3, 4, 4), (2, 3, 1, 1), (8, 1, 3, 2), (3, 5, 1, 6), (1, 2, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_training_matches_torch(shape):
    ours, ref = make_pair(shape[1], seed=1)
    x = rand(shape, seed=2)
    y = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-10, atol=1e-10)
    # The output really is normalized, not just "close to torch": per channel mean = bias.
    assert not torch.allclose(y, x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), ours.bias.detach(), rtol=0, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 4),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_forward_training_matches_torch_random_shapes(n, c, h, w, seed):
    if n * h * w == 1:
        return  # rejected by both; covered by test_one_value_per_channel_raises_like_torch
    ours, ref = make_pair(c, seed=seed)
    x = rand((n, c, h, w), seed=seed + 1)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)
    assert_same_buffers(ours, ref)


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (2, 2, 1, 1), (3, 4, 2, 3)])
def test_backward_matches_torch(shape):
    ours, ref = make_pair(shape[1], seed=3)
    x = rand(shape, seed=4)
    upstream = torch.randn(shape, generator=gen(5), dtype=F64)
    grads = []
    for module in (ours, ref):
        xi = x.clone().requires_grad_(True)
        (module(xi) * upstream).sum().backward()
        grads.append((xi.grad, module.weight.grad, module.bias.grad))
    for name, a, b in zip(("input", "weight", "bias"), *grads, strict=True):
        assert a is not None and a.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)
    # The running estimates were updated from a graph-connected batch but stay out of the graph.
    for buffer in (ours.running_mean, ours.running_var):
        assert not buffer.requires_grad and buffer.grad_fn is None
    assert_same_buffers(ours, ref)


def test_gradcheck_input_weight_bias():
    ours, _ = make_pair(2, seed=6)
    x = rand((3, 2, 2, 3), seed=7).requires_grad_(True)
    weight = ours.weight.detach().clone().requires_grad_(True)
    bias = ours.bias.detach().clone().requires_grad_(True)

    def forward(x, weight, bias):
        return torch.func.functional_call(ours, {"weight": weight, "bias": bias}, (x,))

    assert ours.training
    assert torch.autograd.gradcheck(forward, (x, weight, bias))


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_stats_after_several_steps(momentum):
    ours, ref = make_pair(3, seed=8, momentum=momentum)
    train_steps((ours, ref), [(4, 3, 5, 5), (2, 3, 3, 7), (8, 3, 1, 2), (3, 3, 4, 4)])
    assert_same_buffers(ours, ref)
    assert ours.num_batches_tracked.item() == 4
    assert not torch.allclose(ours.running_mean, torch.zeros(3, dtype=F64))
    assert not ours.running_mean.requires_grad and not ours.running_var.requires_grad


def test_cumulative_average_is_plain_mean_of_batch_stats():
    ours = BatchNorm2d(2, momentum=None, dtype=F64)
    batches = [rand((3, 2, 2, 2), seed=s, shift=s) for s in range(4)]
    for x in batches:
        ours(x)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches])
    variances = torch.stack([x.var(dim=(0, 2, 3), correction=1) for x in batches])
    torch.testing.assert_close(ours.running_mean, means.mean(0))
    torch.testing.assert_close(ours.running_var, variances.mean(0))


def test_running_var_is_unbiased():
    ours = BatchNorm2d(2, momentum=1.0, dtype=F64)  # momentum 1: running = latest batch
    x = rand((2, 2, 1, 3), seed=9)
    ours(x)
    torch.testing.assert_close(ours.running_var, x.var(dim=(0, 2, 3), correction=1))
    torch.testing.assert_close(ours.running_mean, x.mean(dim=(0, 2, 3)))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_eval_uses_running_stats(momentum):
    ours, ref = make_pair(3, seed=10, momentum=momentum)
    train_steps((ours, ref), [(4, 3, 3, 3), (5, 3, 2, 4)])
    ours.eval()
    ref.eval()
    x = rand((2, 3, 4, 5), seed=11, scale=5.0, shift=-3.0)
    y = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-10, atol=1e-10)
    expected = (x - ours.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        ours.running_var.view(1, -1, 1, 1) + ours.eps
    ) * ours.weight.view(1, -1, 1, 1) + ours.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y, expected)
    assert not torch.allclose(y, manual_batch_norm(x, ours.weight, ours.bias))
    # Eval never touches the buffers; a single value per channel is fine here.
    torch.testing.assert_close(ours(x[:1, :, :1, :1]), ref(x[:1, :, :1, :1]))
    assert_same_buffers(ours, ref)
    assert ours.num_batches_tracked.item() == 2


@pytest.mark.parametrize("training", [True, False])
def test_affine_false(training):
    ours, ref = make_pair(3, affine=False)
    assert ours.weight is None and ours.bias is None
    assert list(ours.parameters()) == []
    train_steps((ours, ref), [(4, 3, 2, 2)])
    ours.train(training)
    ref.train(training)
    x = rand((3, 3, 2, 5), seed=12)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)
    assert_same_buffers(ours, ref)


def test_bias_false_like_torch():
    ours, ref = make_pair(3, seed=13, bias=False)
    assert ours.bias is None and ours.weight is not None
    x = rand((4, 3, 2, 2), seed=14)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)
    assert list(ours.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("training", [True, False])
def test_track_running_stats_false_always_uses_batch_stats(training):
    ours, ref = make_pair(3, seed=15, track_running_stats=False)
    for name in BUFFERS:
        assert getattr(ours, name) is None
    assert list(ours.buffers()) == []
    ours.train(training)
    ref.train(training)
    x = rand((4, 3, 3, 2), seed=16)
    y = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, manual_batch_norm(x, ours.weight, ours.bias))
    if not training:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            ours(x[:1, :, :1, :1])


def test_temporarily_disabling_tracking_in_training_mode():
    """The trainer's trick: batch-statistics output without touching the buffers."""
    ours, ref = make_pair(3, seed=17)
    train_steps((ours, ref), [(4, 3, 3, 3), (2, 3, 5, 2)])
    before = {name: getattr(ours, name).clone() for name in BUFFERS}
    x = rand((5, 3, 2, 3), seed=18, scale=4.0, shift=-1.0)
    for module in (ours, ref):
        module.track_running_stats = False
    assert ours.training
    y = ours(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, manual_batch_norm(x, ours.weight, ours.bias))
    for name in BUFFERS:
        assert torch.equal(getattr(ours, name), before[name]), name
    assert_same_buffers(ours, ref)
    # In eval mode the buffers still exist, so (like torch) they are used for normalization.
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)
    # Switching tracking back on resumes updating.
    ours.train()
    ours.track_running_stats = True
    ours(x)
    assert ours.num_batches_tracked.item() == before["num_batches_tracked"].item() + 1
    assert not torch.equal(ours.running_mean, before["running_mean"])


@pytest.mark.parametrize(
    "kwargs", [{}, {"affine": False}, {"track_running_stats": False}, {"momentum": None}]
)
def test_state_dict_keys_and_repr_match_torch(kwargs):
    ours, ref = make_pair(4, **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert repr(ours) == repr(ref)
    if ours.num_batches_tracked is not None:
        assert ours.num_batches_tracked.dtype == torch.long
        assert ours.num_batches_tracked.shape == ()


def test_load_state_dict_both_ways():
    ours, ref = make_pair(3, seed=19)
    train_steps((ours,), [(4, 3, 3, 3), (2, 3, 2, 2), (6, 3, 1, 3)])
    with torch.no_grad():
        ours.weight.mul_(2.0)
    fresh_ref = nn.BatchNorm2d(3, dtype=F64)
    fresh_ref.load_state_dict(ours.state_dict())
    assert_same_buffers(ours, fresh_ref)
    torch.testing.assert_close(fresh_ref.weight, ours.weight)

    train_steps((ref,), [(3, 3, 4, 4), (2, 3, 3, 1)], seed=200)
    fresh_ours = BatchNorm2d(3, dtype=F64)
    fresh_ours.load_state_dict(ref.state_dict())
    assert_same_buffers(fresh_ours, ref)
    torch.testing.assert_close(fresh_ours.bias, ref.bias)
    for module in (fresh_ours, ref):
        module.eval()
    x = rand((2, 3, 2, 2), seed=20)
    torch.testing.assert_close(fresh_ours(x), ref(x), rtol=1e-10, atol=1e-10)


def test_reset_parameters_and_running_stats():
    ours, ref = make_pair(3, seed=21)
    train_steps((ours,), [(4, 3, 2, 2)])
    ours.reset_running_stats()
    assert ours.num_batches_tracked.item() == 0
    assert torch.equal(ours.running_mean, torch.zeros(3, dtype=F64))
    assert torch.equal(ours.running_var, torch.ones(3, dtype=F64))
    assert not torch.equal(ours.weight, torch.ones(3, dtype=F64))  # parameters untouched
    train_steps((ours,), [(4, 3, 2, 2)])
    ours.reset_parameters()
    fresh = nn.BatchNorm2d(3, dtype=F64)
    for key, value in fresh.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def torch_error(module, x):
    with pytest.raises(ValueError) as info:
        module(x)
    return str(info.value)


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 2, 1, 1)])
def test_one_value_per_channel_raises_like_torch(shape):
    ours, ref = make_pair(shape[1])
    x = rand(shape, seed=22)
    message = torch_error(ref, x)
    assert message.startswith("Expected more than 1 value per channel when training")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ours(x)
    # Deliberate difference: torch bumps num_batches_tracked before raising; we validate first.
    assert ours.num_batches_tracked.item() == 0
    assert torch.equal(ours.running_mean, torch.zeros(shape[1], dtype=F64))


@pytest.mark.parametrize("shape", [(3, 4, 4), (2, 3, 4, 4, 4), (3,)])
def test_wrong_number_of_dimensions_raises_like_torch(shape):
    ours, ref = make_pair(3)
    x = torch.zeros(shape, dtype=F64)
    message = torch_error(ref, x)
    assert message == f"expected 4D input (got {len(shape)}D input)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ours(x)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_empty_batch_leaves_statistics_alone(shape, momentum):
    ours, ref = make_pair(3, seed=23, momentum=momentum)
    train_steps((ours, ref), [(4, 3, 2, 2)])
    before = {name: getattr(ours, name).clone() for name in ("running_mean", "running_var")}
    x = torch.zeros(shape, dtype=F64, requires_grad=True)
    y = ours(x)
    assert y.shape == shape
    torch.testing.assert_close(y, ref(x))
    y.sum().backward()
    assert x.grad.shape == shape
    for name, value in before.items():
        assert torch.equal(getattr(ours, name), value), name
    # Like torch, the empty batch is still counted (which matters for momentum=None).
    assert_same_buffers(ours, ref)
    train_steps((ours, ref), [(3, 3, 2, 3)], seed=300)
    assert_same_buffers(ours, ref)


def test_trains_like_torch_inside_a_small_cnn():
    torch_net = nn.Sequential(nn.Conv2d(2, 4, 3, dtype=F64), nn.BatchNorm2d(4, dtype=F64))
    our_net = nn.Sequential(nn.Conv2d(2, 4, 3, dtype=F64), BatchNorm2d(4, dtype=F64))
    our_net.load_state_dict(torch_net.state_dict())
    optimizers = [torch.optim.SGD(net.parameters(), lr=0.1) for net in (our_net, torch_net)]
    for step in range(3):
        x = rand((4, 2, 6, 5), seed=400 + step)
        target = torch.randn((4, 4, 4, 3), generator=gen(500 + step), dtype=F64)
        for net, opt in zip((our_net, torch_net), optimizers, strict=True):
            opt.zero_grad()
            ((net(x) - target) ** 2).mean().backward()
            opt.step()
    for (key, a), b in zip(
        our_net.state_dict().items(), torch_net.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=key)
    assert our_net[1].num_batches_tracked.item() == 3


def test_math_function_is_short_and_from_scratch():
    source = inspect.getsource(batch_norm)
    body = source.split('"""')[-1]
    assert len(source.splitlines()) <= 30
    assert "/ (m - 1)" in body  # the unbiased running variance
    assert "** 2).mean(" in body  # the biased batch variance
    for forbidden in ("F.", "functional", "torch.batch_norm", "native_batch_norm", "nn."):
        assert forbidden not in body, forbidden
