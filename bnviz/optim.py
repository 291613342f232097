"""SGD with momentum and Adam, doing exactly the arithmetic of torch.optim's default CPU
implementations (tests/test_optim.py checks that parameters agree bit for bit).

Why not torch.optim itself: the first torch.optim optimizer a process builds imports
torch._dynamo (through a decorator on add_param_group), which costs 1.7 s and about 70 MB on
this machine: half of the app's start-up budget and a fifth of its memory budget, for a
compiler bnviz never uses. These classes keep the small part of the interface bnviz uses:
`param_groups[0]["lr"]`, `zero_grad()` and `step()`."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class _Optimizer:
    def __init__(self, params: Iterable[torch.nn.Parameter], **group):
        self.param_groups = [{"params": list(params), **group}]
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _with_grads(self):
        return [p for p in self.param_groups[0]["params"] if p.grad is not None]


class SGD(_Optimizer):
    """torch.optim.SGD(params, lr, momentum) without dampening, nesterov or weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum = group["lr"], group["momentum"]
        for p in self._with_grads():
            grad = p.grad
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1)
                grad = buf
            p.add_(grad, alpha=-lr)


class Adam(_Optimizer):
    """torch.optim.Adam(params, lr) with the default betas (0.9, 0.999) and eps 1e-8."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in self._with_grads():
            grad, state = p.grad, self.state.setdefault(p, {})
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = state["step"].item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)
