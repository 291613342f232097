"""Scenario 'covariate-shift': is it really internal covariate shift? (Santurkar, Tsipras, Ilyas
& Madry 2018, "How Does Batch Normalization Help Optimization?") A network with BatchNorm and one
without, from the same initial weights on the same batches, measured every few steps of a short
training: (a) internal covariate shift as they define it through gradients (their section 2.2):
how much a layer's gradient changes when only the layers before it take their optimizer step;
(b) the loss landscape along the gradient (their section 3.1, Figure 4): how much the loss and
the gradient vary over steps w - eta * g."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from torch import nn

from ..config import NORM_NAMES, TrainConfig
from ..experiments.common import clean
from ..model import build_model
from ..plot import (
    HEAD_SYMBOL,
    MAIN_DASH,
    NEUTRAL,
    NORM_COLORS,
    TWIN_DASH,
    layer_color,
    layer_symbol,
)
from ..record import Run
from ..trainer import Trainer
from .base import Results, Scenario, job
from .common import finish, finite_mean, mean_rows, note, num, pct

NORMS = ("batch", "none")
DASHES = {"batch": MAIN_DASH, "none": TWIN_DASH}
SEEDS = (0, 1)
WIDTHS = (8, 16, 32)  # depth 3, width 8 in the sidebar's terms
BATCH_SIZE = 64
LR = 0.1  # SGD with momentum 0.9, the app's optimizer
STEPS = 200
EVERY = 25  # measure at steps 0, 25, ..., 175
# Absolute step sizes eta along -g (all parameters move); Santurkar et al. capped their
# Figure 4 at 0.4 times the gradient.
STEP_SIZES = (0.05, 0.1, 0.2, 0.4)

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
    optimizer really takes (momentum included). Measurements run on a scratch copy of the
    model, so the training itself is untouched."""
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
        k: [] for k in ("steps", "loss", "ics_l2", "ics_cos", "layer_grad_norm")
    }
    along: dict[str, list] = {}
    diverged_step = None
    for t in range(steps):
        x, y = trainer.next_batch(batch_size)

        def loss_fn(m: nn.Module, x=x, y=y) -> torch.Tensor:
            return F.cross_entropy(m(x), y)

        measure = t % every == 0
        if measure:
            scratch.load_state_dict(model.state_dict())
            for key, value in landscape(scratch, loss_fn, step_sizes).items():
                along.setdefault(key, []).append(value)
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
            rows["ics_l2"].append([clean(s[0]) for s in shifts])
            rows["ics_cos"].append([clean(s[1]) for s in shifts])
            rows["layer_grad_norm"].append([clean(s[2]) for s in shifts])
    acc_running, _ = trainer.accuracy()
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
        "test_acc": clean(acc_running),
        "diverged_step": diverged_step,
    }


def jobs():
    return [
        job(f"{NORM_NAMES[norm]}, seed {seed}", shift_and_smoothness, norm=norm, seed=seed)
        for seed in SEEDS
        for norm in NORMS
    ]


# ---------------------------------------------------------------- reading results


def runs_of(results: Results, norm: str) -> list[dict]:
    """The finished runs of one norm, by seed."""
    rows = [r for r in results.values() if r.get("norm") == norm and "ics_l2" in r]
    return sorted(rows, key=lambda r: r["seed"])


def summary(runs: list[dict]) -> dict:
    """Means over seeds and measured steps. Gradient shift: over the layers that have earlier
    layers (block 2 onwards and the head); the first layer's is 0 by definition."""
    if not runs:
        return {}

    def later_layers(key):
        return [v for r in runs for row in r[key] for v in row[1:]]

    relative = [
        a / g
        for r in runs
        for l2, norms in zip(r["ics_l2"], r["layer_grad_norm"])
        for a, g in zip(l2[1:], norms[1:])
        if g > 0
    ]
    return {
        "seeds": [r["seed"] for r in runs],
        "checkpoints": sum(len(r["steps"]) for r in runs),
        "ics_l2": finite_mean(later_layers("ics_l2")),
        "ics_cos": finite_mean(later_layers("ics_cos")),
        "grad_norm": finite_mean(later_layers("layer_grad_norm")),
        "ics_relative": finite_mean(relative),
        "loss_range": finite_mean(v for r in runs for v in r["loss_range"]),
        "grad_change_range": finite_mean(v for r in runs for v in r["grad_change_range"]),
        "beta_smoothness": finite_mean(v for r in runs for v in r["beta_smoothness"]),
        "test_acc": finite_mean(r["test_acc"] for r in runs),
        "diverged": [r["seed"] for r in runs if r.get("diverged_step")],
        "blew_up": sum(not math.isfinite(v) for r in runs for v in r["loss_range"]),
    }


def smaller_count(bn_runs: list[dict], none_runs: list[dict], key: str) -> tuple[int, int]:
    """At how many (seed, step) pairs measured for both was BN's `key` smaller than without BN."""
    by_seed = {r["seed"]: r for r in none_runs}
    wins = total = 0
    for r in bn_runs:
        other = by_seed.get(r["seed"])
        if other is None:
            continue
        for a, b in zip(r[key], other[key]):
            if math.isfinite(a) and math.isfinite(b):
                total += 1
                wins += a < b
    return wins, total


# ---------------------------------------------------------------- figures


def _per_layer_figure(results: Results, key: str, title: str, y_title: str, log_y: bool):
    fig = go.Figure()
    for norm in NORMS:
        runs = runs_of(results, norm)
        if not runs:
            continue
        longest = max(runs, key=lambda r: len(r["steps"]))
        for i, name in enumerate(longest["layers"]):
            if i == 0:  # no earlier layers: G' = G, shift 0 and cosine 1 by definition
                continue
            mean = mean_rows([[row[i] for row in r[key]] for r in runs])
            head = name == "head"
            fig.add_trace(
                go.Scatter(
                    x=longest["steps"][: len(mean)],
                    y=mean,
                    mode="lines+markers",
                    name=f"{name}, {NORM_NAMES[norm]}",
                    legendgroup=norm,  # a column of the legend per network
                    line=dict(
                        color=NEUTRAL if head else layer_color(i), dash=DASHES[norm], width=2
                    ),
                    marker=dict(size=6, symbol=HEAD_SYMBOL if head else layer_symbol(i)),
                )
            )
    if not fig.data:
        note(fig)
    return finish(fig, title, y_title=y_title, log_y=log_y)


def _range_figure(results: Results, key: str, title: str, y_title: str, details: str):
    fig = go.Figure()
    for norm in NORMS:
        runs = runs_of(results, norm)
        if not runs:
            continue
        longest = max(runs, key=lambda r: len(r["steps"]))
        mean = mean_rows([r[key] for r in runs])
        seeds = len(runs)
        fig.add_trace(
            go.Scatter(
                x=longest["steps"][: len(mean)],
                y=mean,
                mode="lines+markers",
                name=f"{NORM_NAMES[norm]} (mean of {seeds} seed{'s' * (seeds > 1)})",
                line=dict(color=NORM_COLORS[norm], dash=DASHES[norm], width=2),
                marker=dict(size=6),
            )
        )
    if not fig.data:
        note(fig)
    return finish(fig, title, y_title=y_title, note=details, log_y=True)


def figures(results: Results) -> list[go.Figure]:
    eta = f"step sizes η {STEP_SIZES[0]:g} to {STEP_SIZES[-1]:g}"
    return [
        _per_layer_figure(
            results,
            "ics_l2",
            "ICS: gradient change ‖G − G′‖₂",
            "‖G − G′‖₂ (log scale)",
            log_y=True,
        ),
        _per_layer_figure(
            results, "ics_cos", "ICS: cos(G, G′)", "cosine (1 = same direction)", log_y=False
        ),
        _range_figure(
            results,
            "loss_range",
            "Loss variation along −g",
            "max − min loss (nats)",
            f"max − min over η of the loss L(w − η·g), {eta}",
        ),
        _range_figure(
            results,
            "grad_change_range",
            "Gradient predictiveness along −g",
            "max − min ‖Δ∇L‖₂ over η",
            f"max − min over η of ‖∇L(w − η·g) − ∇L(w)‖₂, {eta}",
        ),
    ]


# ---------------------------------------------------------------- explanation

CLAIM = (
    "**The claim tested.** BatchNorm's benefit is often explained by a reduced *internal "
    "covariate shift* (ICS): each layer's inputs move less when the layers before it update "
    "(Ioffe & Szegedy 2015). Santurkar, Tsipras, Ilyas & Madry (2018, *How Does Batch "
    "Normalization Help Optimization?*) measured ICS through gradients: layer i's gradient "
    "G before, and G′ after, layers 1…i−1 take their step, on the same batch. They found BN does "
    "not clearly reduce it, and that BN instead smooths the loss landscape: along the gradient, "
    "the loss and the gradient change less."
)


def _compare(bn: float, none: float) -> str:
    if not (math.isfinite(bn) and math.isfinite(none)):
        return "could not be compared (a value was not finite)"
    if bn < none:
        return "smaller with BN"
    if bn > none:
        return "larger with BN"
    return "equal"


def _less_shift(bn: dict, none: dict) -> bool:
    """Whether the gradient shift ‖G − G′‖ was smaller with BN."""
    return bn["ics_l2"] < none["ics_l2"]


def _closer(bn: dict, none: dict) -> bool:
    """Whether cos(G, G′) was higher (the direction changed less) with BN."""
    return bn["ics_cos"] > none["ics_cos"]


def _smoother(bn: dict, none: dict) -> bool:
    """Whether the loss varied less along the gradient with BN."""
    return bn["loss_range"] < none["loss_range"]


def _paired(results: Results) -> tuple[list[dict], list[dict], list[int]]:
    """The finished runs with and without BN, kept to the seeds measured for both."""
    bn_runs, none_runs = runs_of(results, "batch"), runs_of(results, "none")
    seeds = sorted({r["seed"] for r in bn_runs} & {r["seed"] for r in none_runs})
    bn_runs = [r for r in bn_runs if r["seed"] in seeds]
    none_runs = [r for r in none_runs if r["seed"] in seeds]
    return bn_runs, none_runs, seeds


def _verdict(bn: dict, none: dict) -> str:
    """One sentence per question, from the numbers, set against Santurkar et al.'s findings."""
    less_shift, closer = _less_shift(bn, none), _closer(bn, none)
    if less_shift and closer:
        ics = (
            "So here BN did reduce ICS by this measure (smaller shift, higher cosine), unlike "
            "Santurkar et al., who found it not reduced, or even increased, with BN."
        )
    elif less_shift or closer:
        ics = (
            "So here the two ICS numbers disagree ("
            + ("smaller shift" if less_shift else "larger shift")
            + " but "
            + ("higher cosine" if closer else "lower cosine")
            + " with BN): no clear reduction, as Santurkar et al. found."
        )
    else:
        ics = (
            "So here BN did not reduce ICS by this measure (larger shift, lower cosine), as "
            "Santurkar et al. found."
        )
    if _smoother(bn, none):
        smooth = "The loss varied less along the gradient with BN, as Santurkar et al. found."
    else:
        smooth = (
            "The loss did not vary less along the gradient with BN here, unlike Santurkar et "
            "al.'s finding of a smoother landscape."
        )
    return f"{ics} {smooth}"


def _every(run: dict) -> int:
    steps = run["steps"]
    return steps[1] - steps[0] if len(steps) > 1 else run["steps_trained"]


def explain(results: Results, run: Run | None, twin: Run | None) -> str:
    bn_runs, none_runs = runs_of(results, "batch"), runs_of(results, "none")
    if not bn_runs and not none_runs:
        return CLAIM + "\n\nBoth networks are being measured…"
    if not bn_runs or not none_runs:
        done = "BatchNorm" if bn_runs else "no-norm"
        return f"{CLAIM}\n\nThe {done} network is measured; the other is being measured…"
    bn_runs, none_runs, seeds = _paired(results)
    if not seeds:
        return f"{CLAIM}\n\nThe second network of a pair is being measured…"
    bn, none = summary(bn_runs), summary(none_runs)
    first = bn_runs[0]
    setup = (
        f"Measured here: widths {tuple(first['widths'])}, batch {first['batch_size']}, SGD "
        f"(momentum 0.9) at lr {first['lr']:g}, same initial weights and batches with and "
        f"without BN; every {_every(first)} steps up to step {(first['steps'] or [0])[-1]}, "
        f"the earlier layers take the step the optimizer really takes; step sizes η = "
        f"{', '.join(f'{s:g}' for s in first['step_sizes'])}."
    )
    loss_wins, loss_total = smaller_count(bn_runs, none_runs, "loss_range")
    grad_wins, grad_total = smaller_count(bn_runs, none_runs, "grad_change_range")
    lines = [
        CLAIM,
        "",
        setup + f" Means over seeds {', '.join(map(str, seeds))} and the measured steps:",
        "",
        f"- **ICS (gradient shift)**, blocks 2+ and the head: ‖G − G′‖₂ = {num(bn['ics_l2'])} "
        f"with BN vs {num(none['ics_l2'])} without: **{_compare(bn['ics_l2'], none['ics_l2'])}**."
        f" cos(G, G′) = {num(bn['ics_cos'])} vs {num(none['ics_cos'])} (1 = direction "
        f"unchanged). The shift scales with the gradient (mean ‖G‖ {num(bn['grad_norm'])} vs "
        f"{num(none['grad_norm'])}); relative to it, ‖G − G′‖/‖G‖ = {num(bn['ics_relative'])} "
        f"vs {num(none['ics_relative'])}. Block 1 has no earlier layers: its G′ is G.",
        f"- **Loss variation** along −g: max − min loss over η = {num(bn['loss_range'])} with "
        f"BN vs {num(none['loss_range'])} without: "
        f"**{_compare(bn['loss_range'], none['loss_range'])}** (BN smaller at {loss_wins} of "
        f"{loss_total} measured steps).",
        f"- **Gradient predictiveness**: max − min gradient change over η = "
        f"{num(bn['grad_change_range'])} vs {num(none['grad_change_range'])}: "
        f"**{_compare(bn['grad_change_range'], none['grad_change_range'])}** (BN smaller at "
        f"{grad_wins} of {grad_total}); effective β-smoothness {num(bn['beta_smoothness'])} vs "
        f"{num(none['beta_smoothness'])}.",
        f"- Test accuracy after training: {pct(bn['test_acc'])} with BN, "
        f"{pct(none['test_acc'])} without.",
    ]
    for name, s in (("BatchNorm", bn), ("no-norm", none)):
        if s["diverged"]:
            lines.append(f"- The {name} run of seed {s['diverged'][0]} diverged before the end.")
        if s["blew_up"]:
            lines.append(
                f"- Along the gradient, the {name} loss became infinite or NaN at {s['blew_up']} "
                "measured steps (left out of the means above)."
            )
    lines += ["", _verdict(bn, none)]
    return "\n".join(lines)


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """The two verdicts in two lines, from the numbers the explanation quotes."""
    bn_runs, none_runs, seeds = _paired(results or {})
    if len(bn_runs) + len(none_runs) < len(jobs()):
        return "Measuring gradient shift and smoothness with and without BatchNorm…"
    bn, none = summary(bn_runs), summary(none_runs)
    shift = f"gradient shift **{num(bn['ics_l2'])}** vs {num(none['ics_l2'])} without"
    if _less_shift(bn, none) and _closer(bn, none):
        ics = f"BN reduced internal covariate shift here ({shift}), unlike Santurkar et al."
    elif _less_shift(bn, none) or _closer(bn, none):
        ics = f"The two measures of internal covariate shift disagree here ({shift})."
    else:
        ics = (
            f"BN did not reduce internal covariate shift here ({shift}), as Santurkar et al. found."
        )
    if _smoother(bn, none):
        return ics + " The loss varied less along the gradient with BN."
    return ics + " The loss did not vary less along the gradient with BN."


SCENARIO = Scenario(
    id="covariate-shift",
    title="Is it really internal covariate shift?",
    summary="Does BatchNorm help by reducing internal covariate shift, or by smoothing the "
    "loss landscape?",
    view="Gradients",
    preset={"twin": "none", "depth": 3, "width": 8, "lr": 0.1, "optimizer": "sgd", "steps": 300},
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
