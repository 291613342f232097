"""bnviz.optim against torch.optim: the same parameters, bit for bit, step after step."""

import subprocess
import sys

import pytest
import torch

from bnviz import optim


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    twin.load_state_dict(net.state_dict())
    return net, twin


@pytest.mark.parametrize(
    "make",
    [
        lambda lib, params: lib.SGD(params, lr=0.1, momentum=0.9),
        lambda lib, params: lib.SGD(params, lr=0.3),
        lambda lib, params: lib.Adam(params, lr=1e-2),
    ],
    ids=["sgd-momentum", "sgd", "adam"],
)
def test_same_parameters_as_torch_optim_bit_for_bit(make):
    net, twin = _nets()
    mine, reference = make(optim, net.parameters()), make(torch.optim, twin.parameters())
    lr = mine.param_groups[0]["lr"]
    gen = torch.Generator().manual_seed(1)
    for step in range(12):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        if step == 6:  # a learning-rate change mid-run, as the app makes them
            for opt in (mine, reference):
                opt.param_groups[0]["lr"] = lr / 3
        for model, opt in ((net, mine), (twin, reference)):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            if step == 3:  # a parameter without a gradient is left alone
                loss = loss + 0 * model[0].weight.sum()
                model[2].bias.requires_grad_(False)
            loss.backward()
            model[2].bias.requires_grad_(True)
            opt.step()
        for p, q in zip(net.parameters(), twin.parameters()):
            assert torch.equal(p, q), (step, p - q)


def test_training_never_imports_the_compiler():
    """The reason bnviz.optim exists: a trainer must not pull in torch._dynamo."""
    code = (
        "import sys; from bnviz import TrainConfig, Trainer; "
        "[Trainer(TrainConfig(widths=(4,), steps=2, optimizer=o)).step(2) "
        "for o in ('sgd', 'adam')]; "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
