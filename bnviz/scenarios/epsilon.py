"""Epsilon: BatchNorm divides by sqrt(var + eps). When a channel's variance is tiny, eps
competes with it: the gain 1/sqrt(var + eps) stops following 1/sqrt(var) and flattens at
1/sqrt(eps), and the layer no longer normalizes. The built-in data has unit variance per input
channel, so the jobs make the situation explicitly: the input images are multiplied by 1e-3."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import plotly.graph_objects as go
import torch

from .. import datasets
from ..config import TrainConfig
from ..experiments import common as xcommon
from ..measure import norm_inputs
from ..plot import NEUTRAL, NORM_COLORS, layer_color, layer_symbol
from ..trainer import Trainer
from . import common
from .base import Scenario, job

INPUT_SCALE = 1e-3  # the inputs are multiplied by this: variance x 1e-6
EPS_GRID = tuple(10.0**k for k in range(-8, 1))  # 1e-8 ... 1, the app's eps choices
WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 150
CONTROL_EPS = (1e-5, 1e-3, 1e-1, 1.0)  # unscaled inputs, for comparison
GAIN_LABEL = "gain of the first BN at init"
CHANCE = 0.1  # ten classes


def scaled_data(scale: float) -> datasets.Dataset:
    """The shapes data set with its inputs multiplied by `scale`: images are converted to tensors
    as (x / 255 - mean) / std, so dividing std by `scale` multiplies every input by `scale`."""
    data = datasets.load("shapes")
    return dataclasses.replace(data, std=tuple(s / scale for s in data.std))


def _trainer(scale: float, eps: float, widths, seed: int, steps: int) -> Trainer:
    config = TrainConfig(
        widths=tuple(widths),
        batch_size=BATCH_SIZE,
        eps=eps,
        steps=steps,
        seed=seed,
        snapshot_every=max(steps, 1),
        eval_every=max(steps, 1),
    )
    return Trainer(config, scaled_data(scale))


@torch.no_grad()
def measure_gain(trainer: Trainer, eps: float, x: torch.Tensor | None = None) -> dict:
    """The first BN's per-channel input variance over the held-out images (biased, over
    images x H x W, in float64), the gain 1/sqrt(var + eps) computed from it, and the gain the
    layer actually applies: a copy of the first BN with this eps, run in training mode on that
    input, scales each channel's standard deviation by std(out) / std(in) = |gamma| / sqrt(var
    + eps) (gamma is 1 at init; divided out after training). x: that input, if already known."""
    if x is None:
        x = norm_inputs(trainer, 0, trainer.eval_x)
    var = x.double().var(dim=(0, 2, 3), unbiased=False)
    bn = copy.deepcopy(trainer.model.blocks[0].norm)
    bn.eps = eps
    bn.train()
    out_std = bn(x).double().std(dim=(0, 2, 3), unbiased=False)
    gamma = bn.weight.double().abs() if bn.weight is not None else torch.ones_like(var)
    return {
        "var": xcommon.float_list(var),
        "gain": xcommon.float_list(1 / (var + eps).sqrt()),
        "gain_measured": xcommon.float_list(out_std / var.sqrt() / gamma),
        "out_std": xcommon.float_list(out_std),
    }


@torch.no_grad()
def block_variances(trainer: Trainer, eps: float) -> list[list[float]]:
    """Each BN's per-channel input variance at this eps, with every BN in training mode (batch
    statistics over the held-out images), on a copy of the model: a BN whose eps dominates
    passes a weaker signal to the next block."""
    model = copy.deepcopy(trainer.model)
    out: list[list[float]] = []
    hooks = []
    for block in model.blocks:
        block.norm.eps = eps
        hooks.append(
            block.norm.register_forward_pre_hook(
                lambda m, args: out.append(
                    xcommon.float_list(args[0].double().var(dim=(0, 2, 3), unbiased=False))
                )
            )
        )
    model.train()
    model(trainer.eval_x)
    for h in hooks:
        h.remove()
    return out


def gain_at_init(
    eps_grid: tuple = EPS_GRID, scale: float = INPUT_SCALE, widths: tuple = WIDTHS, seed: int = 0
) -> dict:
    """The first BN's gain per channel at init for every eps of the grid (no training), and how
    many channels of each block have eps >= their input variance at that eps."""
    trainer = _trainer(scale, eps_grid[0], widths, seed, 1)
    x = norm_inputs(trainer, 0, trainer.eval_x)  # the same for every eps
    rows = [measure_gain(trainer, eps, x) for eps in eps_grid]
    dominated = []
    for eps in eps_grid:
        variances = block_variances(trainer, eps)
        dominated.append([int(sum(eps >= v for v in block)) for block in variances])
    return {
        "scale": scale,
        "images": len(trainer.eval_y),
        "eps": [float(e) for e in eps_grid],
        "var": rows[0]["var"],
        "gain": [r["gain"] for r in rows],
        "gain_measured": [r["gain_measured"] for r in rows],
        "out_std": [r["out_std"] for r in rows],
        "channels": [int(w) for w in widths],
        "dominated": dominated,
    }


def train_with_eps(
    eps: float,
    scale: float = INPUT_SCALE,
    steps: int = STEPS,
    widths: tuple = WIDTHS,
    seed: int = 0,
) -> dict:
    """Train with this eps (in every BN layer) on inputs multiplied by `scale`; test accuracy,
    and the first BN's variance and gain after training."""
    trainer = _trainer(scale, eps, widths, seed, steps)
    trainer.step(steps)
    run = trainer.run
    acc_running, acc_batch = trainer.accuracy()
    after = measure_gain(trainer, eps)
    return {
        "eps": float(eps),
        "scale": scale,
        "steps": run.num_steps,
        "status": run.status,
        "acc": acc_running,
        "acc_batch": acc_batch,
        "loss": xcommon.final_loss(run),
        "var_after": after["var"],
        "gain_after": after["gain"],
        "gain_after_measured": after["gain_measured"],
    }


def _train_label(eps: float, scale: float) -> str:
    inputs = "inputs x 1e-3" if scale == INPUT_SCALE else "unscaled inputs"
    return f"train, eps {eps:g}, {inputs}"


def jobs() -> list:
    out = [job(GAIN_LABEL, gain_at_init)]
    out += [job(_train_label(e, INPUT_SCALE), train_with_eps, eps=e) for e in EPS_GRID]
    out += [job(_train_label(e, 1.0), train_with_eps, eps=e, scale=1.0) for e in CONTROL_EPS]
    return out


def _runs(results: dict, scale: float) -> list[dict]:
    rows = [r for r in results.values() if "acc" in r and r.get("scale") == scale]
    return sorted(rows, key=lambda r: r["eps"])


# ---------------------------------------------------------------- figures


def _gain_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    init = results.get(GAIN_LABEL)
    trained = _runs(results, INPUT_SCALE)
    eps_all = sorted({*(init["eps"] if init else ()), *(r["eps"] for r in trained)})
    if init:
        gain = np.asarray(init["gain"])  # eps x channels
        for c in range(gain.shape[1]):
            fig.add_scatter(
                x=init["eps"],
                y=gain[:, c],
                mode="lines",
                name="each channel at init",
                legendgroup="init",
                showlegend=c == 0,
                line=dict(color=layer_color(0), width=1.5),
                hovertemplate=f"channel {c}<br>ε %{{x:.0e}}<br>gain %{{y:.4g}}<extra></extra>",
            )
        var = np.asarray(init["var"])
        fig.add_scatter(
            x=var,
            y=1 / np.sqrt(2 * var),
            mode="markers",
            name="ε = the channel's variance",
            marker=dict(color=layer_color(0), symbol="x", size=9),
            customdata=np.arange(len(var)),
            hovertemplate="channel %{customdata}<br>var %{x:.3g}<br>gain %{y:.4g}<extra></extra>",
        )
        fig.add_vrect(x0=var.min(), x1=var.max(), fillcolor=NEUTRAL, opacity=0.15, line_width=0)
    if trained:
        fig.add_scatter(
            x=[r["eps"] for r in trained],
            y=[float(np.median(r["gain_after"])) for r in trained],
            mode="markers",
            name=f"median over channels after {trained[0]['steps']} steps",
            marker=dict(color=layer_color(2), symbol="diamond", size=8),
            hovertemplate="ε %{x:.0e}<br>median gain %{y:.4g}<extra>after training</extra>",
        )
    if eps_all:
        eps = np.asarray(eps_all)
        fig.add_scatter(
            x=eps,
            y=eps**-0.5,
            mode="lines",
            name="1/√ε (the ceiling)",
            line=dict(color=NEUTRAL, dash="dot"),
            hovertemplate="1/√ε = %{y:.4g}<extra></extra>",
        )
    else:
        common.note(fig, size=14)
    return common.finish(
        fig,
        "First BN: gain 1/√(var + ε) per channel",
        "ε (log scale)",
        "gain (log scale)",
        note="inputs × 1e-3; shaded: the range of the channels' variances at init",
        log_x=True,
        log_y=True,
    )


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for scale, key, name, color, dash in (
        (INPUT_SCALE, "acc", "inputs × 1e-3, eval mode", NORM_COLORS["batch"], "solid"),
        (INPUT_SCALE, "acc_batch", "inputs × 1e-3, batch statistics", NORM_COLORS["batch"], "dot"),
        (1.0, "acc", "unscaled inputs, eval mode", NORM_COLORS["none"], "dash"),
    ):
        rows = _runs(results, scale)
        if rows:
            fig.add_scatter(
                x=[r["eps"] for r in rows],
                y=[100 * r[key] for r in rows],
                mode="lines+markers",
                name=name,
                line=dict(color=color, dash=dash),
                hovertemplate="ε %{x:.0e}<br>test accuracy %{y:.1f}%<extra>" + name + "</extra>",
            )
    init = results.get(GAIN_LABEL)
    details = "dotted: chance (10%)"
    if init:
        var = np.asarray(init["var"])
        fig.add_vrect(x0=var.min(), x1=var.max(), fillcolor=NEUTRAL, opacity=0.15, line_width=0)
        details += "; shaded: the range of block1's variances (inputs × 1e-3, at init)"
    if not fig.data:
        common.note(fig, size=14)
    steps = next((r["steps"] for r in results.values() if "steps" in r), STEPS)
    fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    return common.finish(
        fig,
        f"Test accuracy after {steps} steps against ε",
        "ε, in every BN layer (log scale)",
        "test accuracy (%)",
        note=details,
        log_x=True,
    )


def _dominance_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    init = results.get(GAIN_LABEL)
    if init:
        dominated = np.asarray(init["dominated"], dtype=float)  # eps x blocks
        for b, channels in enumerate(init["channels"]):
            fig.add_scatter(
                x=init["eps"],
                y=100 * dominated[:, b] / channels,
                mode="lines+markers",
                name=f"block{b + 1} ({channels} channels)",
                line=dict(color=layer_color(b)),
                marker=dict(symbol=layer_symbol(b), size=8),
                customdata=dominated[:, b],
                hovertemplate=f"block{b + 1}<br>ε %{{x:.0e}}<br>%{{customdata:.0f}} of {channels}"
                " channels (%{y:.0f}%)<extra></extra>",
            )
    else:
        common.note(fig, size=14)
    fig.update_yaxes(range=[-5, 105])
    return common.finish(
        fig,
        "Channels with ε ≥ their variance",
        "ε, in every BN layer (log scale)",
        "channels with ε ≥ var (%)",
        note="block by block, at init, inputs × 1e-3",
        log_x=True,
    )


def figures(results: dict) -> list[go.Figure]:
    return [_gain_figure(results), _dominance_figure(results), _accuracy_figure(results)]


# ---------------------------------------------------------------- explanation


def _gain_text(init: dict) -> str:
    var = np.asarray(init["var"])
    eps = np.asarray(init["eps"])
    gain = np.asarray(init["gain"])
    lo, hi = float(var.min()), float(var.max())
    first = [int((e >= var).sum()) for e in eps]
    parts = [
        f"With the inputs multiplied by {init['scale']:g}, the first BN's {len(var)} channels "
        f"have variances from {common.num(lo)} to {common.num(hi)} at init (over "
        f"{init['images']} held-out images × 28 × 28 positions)."
    ]
    some = next((i for i, d in enumerate(first) if d > 0), None)
    every = next((i for i, d in enumerate(first) if d == len(var)), None)
    if some is not None:
        parts.append(
            f"ε starts to dominate (ε ≥ var) at ε = {eps[some]:g}, for {first[some]} of "
            f"{len(var)} channels"
            + (f"; from ε = {eps[every]:g} for all of them." if every is not None else ".")
        )
    small, big = int(np.argmin(eps)), int(np.argmax(eps))
    ratio = gain[small] * np.sqrt(var)  # gain / (1/sqrt(var))
    off = 100 * float(np.max(np.abs(gain[big] * np.sqrt(eps[big]) - 1)))
    parts.append(
        f"At ε = {eps[small]:g} the gains range from {common.num(gain[small].min())} to "
        f"{common.num(gain[small].max())}, {common.num(ratio.min())}–{common.num(ratio.max())} "
        f"times 1/√var. At ε = {eps[big]:g} they range from {common.num(gain[big].min())} to "
        f"{common.num(gain[big].max())}, each within {off:.2g}% of 1/√ε = "
        f"{common.num(eps[big] ** -0.5)}: the gain no longer depends on the channel's variance, "
        "so BN no longer normalizes it. The standard deviation of its output, which BN should "
        f"make 1, is {common.num(np.min(init['out_std'][big]))}–"
        f"{common.num(np.max(init['out_std'][big]))} there."
    )
    return " ".join(parts)


def _table(init: dict | None, scaled: list[dict], control: list[dict]) -> str:
    """Markdown: per eps, the channels with eps >= var per block, and the accuracies."""
    eps_all = sorted({*(init["eps"] if init else ()), *(r["eps"] for r in scaled + control)})
    by_scaled = {r["eps"]: r for r in scaled}
    by_control = {r["eps"]: r for r in control}
    blocks = (
        " / ".join(f"block{b + 1}" for b in range(len(init["channels"]))) if init else "per block"
    )
    lines = [
        f"| ε | channels with ε ≥ var at init ({blocks}), inputs × 1e-3 | test accuracy, inputs "
        "× 1e-3: eval mode / batch statistics | test accuracy, unscaled inputs: eval mode |",
        "|---|---|---|---|",
    ]
    for e in eps_all:
        dom = "…"
        if init and e in init["eps"]:
            row = init["dominated"][init["eps"].index(e)]
            dom = " / ".join(f"{d}/{c}" for d, c in zip(row, init["channels"]))
        r = by_scaled.get(e)
        a = f"{common.pct(r['acc'])} / {common.pct(r['acc_batch'])}" if r else "…"
        b = common.pct(by_control[e]["acc"]) if e in by_control else "–"
        lines.append(f"| {e:g} | {dom} | {a} | {b} |")
    return "\n".join(lines)


def _dominated_at(init: dict | None, eps: float) -> str:
    """'8 of 8 channels in block1, 2 of 16 in block2, ...' at this eps ('' if not measured)."""
    if not init or eps not in init["eps"]:
        return ""
    row = init["dominated"][init["eps"].index(eps)]
    parts = [f"{d} of {c} in block{b + 1}" for b, (d, c) in enumerate(zip(row, init["channels"]))]
    parts[0] = parts[0].replace(" in ", " channels in ", 1)
    return "ε ≥ var at init for " + ", ".join(parts)


def _halfway(rows: list[dict], key: str) -> tuple[dict, float, dict | None]:
    """The best run, halfway from its accuracy to chance, and the first run (by eps) whose
    accuracy fell below that (None if none did)."""
    best = max(rows, key=lambda r: r[key])
    halfway = (best[key] + CHANCE) / 2
    return best, halfway, next((r for r in rows if r[key] < halfway), None)


def _halfway_text(init: dict | None, rows: list[dict], key: str, what: str) -> str:
    """Best accuracy, and the first eps whose accuracy fell below halfway to chance."""
    best, halfway, drop = _halfway(rows, key)
    text = f"{what}: best {common.pct(best[key])} (ε = {best['eps']:g})"
    if drop is None:
        return text + f"; no ε of the grid fell below halfway to chance ({common.pct(halfway)})."
    where = _dominated_at(init, drop["eps"])
    return (
        text + f"; the first ε below halfway to chance ({common.pct(halfway)}) was "
        f"ε = {drop['eps']:g}, at {common.pct(drop[key])}" + (f", where {where}." if where else ".")
    )


def _survival_text(init: dict | None, scaled: list[dict]) -> str:
    """Where eps dominated block1 but accuracy held, and where eval mode alone failed."""
    text = ""
    best = max(r["acc"] for r in scaled)
    best_batch = max(r["acc_batch"] for r in scaled)
    half, half_batch = (best + CHANCE) / 2, (best_batch + CHANCE) / 2
    if init:
        channels = init["channels"]
        survived = [
            r
            for r in scaled
            if r["acc"] >= half
            and r["eps"] in init["eps"]
            and (row := init["dominated"][init["eps"].index(r["eps"])])[0] == channels[0]
            and any(d < c for d, c in zip(row[1:], channels[1:]))
        ]
        if survived:
            r = survived[-1]
            text += (
                f" At ε = {r['eps']:g}, ε dominated every channel of block1, yet accuracy stayed "
                f"above halfway: {common.pct(r['acc'])} (eval) / {common.pct(r['acc_batch'])} "
                f"(batch statistics). There {_dominated_at(init, r['eps'])}: the later BNs still "
                "normalize, so they scale the weakened signal back up."
            )
    split = [r for r in scaled if r["acc"] < half and r["acc_batch"] >= half_batch]
    if split:
        r = split[0]
        text += (
            f" At ε = {r['eps']:g} batch statistics still gave {common.pct(r['acc_batch'])} but "
            f"eval mode only {common.pct(r['acc'])}: normalizing this weak signal with the running "
            "averages went wrong where normalizing it with the batch's own statistics did not."
        )
    return text


def _accuracy_text(init: dict | None, scaled: list[dict], control: list[dict]) -> str:
    if not scaled:
        text = "Test accuracy against ε on the scaled inputs is being measured…"
    else:
        text = (
            f"Trained for {scaled[0]['steps']} steps on the scaled inputs, with ε in every BN "
            "layer as in the app, test accuracy was measured in eval mode (running statistics) "
            "and with batch statistics. "
            + _halfway_text(init, scaled, "acc", "Eval mode")
            + " "
            + _halfway_text(init, scaled, "acc_batch", "Batch statistics")
        )
        text += _survival_text(init, scaled)
    if control:
        series = ", ".join(f"ε = {r['eps']:g}: {common.pct(r['acc'])}" for r in control)
        text += f" With the usual unscaled inputs (eval mode): {series}."
    return text


def _live_text(run) -> str:
    if run is None or run.num_steps == 0 or run.layer_stat(0, "batch_var") is None:
        return ""
    var = np.asarray(run.layer_stat(0, "batch_var")[-1], dtype=np.float64)
    step = int(run.steps[-1])
    changes = [c for c in run.changes if c["field"] == "eps"]
    eps = changes[-1]["new"] if changes else run.config.eps
    n = int((eps >= var).sum())
    return (
        f"In the live run (unscaled inputs, ε = {eps:g}), at step {step} {n} of {len(var)} "
        f"channels of block1 have ε ≥ their batch variance (which ranges from "
        f"{common.num(var.min())} to {common.num(var.max())}): the red bars of the gain chart."
    )


def explain(results: dict, run, twin) -> str:
    init = results.get(GAIN_LABEL)
    scaled, control = _runs(results, INPUT_SCALE), _runs(results, 1.0)
    parts = [
        "BatchNorm computes y = γ (x − mean) / √(var + ε) + β: each channel is multiplied by "
        "the gain γ/√(var + ε). ε guards against dividing by zero (PyTorch's default 1e-5, "
        "Keras' 1e-3). The shapes data is normalized to variance 1, so here the inputs are "
        "multiplied by 1e-3 inside the jobs (a transformation of the data, nothing else "
        "changes), which makes the first convolution's output variances 1e-6 times smaller."
    ]
    if init is None and not scaled and not control:
        parts.append("The gains and accuracies are being measured…")
    if init is not None:
        parts.append(_gain_text(init))
    elif scaled or control:
        parts.append("The gains at init are being measured…")
    if scaled or control:
        parts.append(_accuracy_text(init, scaled, control))
    if init is not None or scaled or control:
        parts.append(_table(init, scaled, control))
    live = _live_text(run)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """The eval-mode accuracy against ε in two lines, from the numbers the explanation quotes."""
    scaled = _runs(results or {}, INPUT_SCALE)
    if len(scaled) < len(EPS_GRID):
        return "Measuring accuracy against ε on inputs with tiny variances…"
    best, _, drop = _halfway(scaled, "acc")
    text = (
        f"Inputs × 1e-3: eval accuracy peaked at **{common.pct(best['acc'])}** (ε = "
        f"{best['eps']:g})"
    )
    if drop is None:
        return text + "; no ε of the grid fell below halfway to chance."
    text += f", then fell to {common.pct(drop['acc'])} at ε = {drop['eps']:g}"
    init = results.get(GAIN_LABEL)
    if init and drop["eps"] in init["eps"]:
        row = init["dominated"][init["eps"].index(drop["eps"])]
        if row[0] == init["channels"][0]:
            text += ", where ε ≥ every block1 variance at init"
    return text + "."


SCENARIO = Scenario(
    id="epsilon",
    title="Epsilon: when ε competes with the variance",
    summary="What does ε in 1/√(var + ε) do when a channel's variance is tiny?",
    view="Running statistics",
    preset={"dataset": "shapes", "norm": "batch", "eps": 0.1, "twin": "off"},
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
