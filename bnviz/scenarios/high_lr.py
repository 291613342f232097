"""Scenario 'high-lr': does BatchNorm tolerate larger learning rates? (Ioffe & Szegedy 2015,
section 3.3; Bjorck et al. 2018.) A learning-rate sweep with and without BN, the loss after one
plain gradient step at initialisation, and the activation scale per block of a deeper network
during its first steps at a large learning rate."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from ..config import NORM_NAMES, TrainConfig
from ..experiments.common import clean, clean_list
from ..plot import NEUTRAL, NORM_COLORS
from ..record import Run
from ..series import stride
from ..trainer import Trainer
from .base import Scenario, job
from .common import finish, lr_text, note, num, pct, placeholder, subplots

NORMS = ("batch", "none")
DASHES = {"batch": "solid", "none": "dash"}
SWEEP_LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SWEEP = dict(widths=(8, 16, 32), batch_size=64, steps=150, seed=0)
LEARNED = 0.25  # final test accuracy counted as "learned" (10 classes: chance is 10%)
PROBE_LRS = tuple(float(f"{10**e:.3g}") for e in np.arange(-3, 2.01, 0.25))
PROBE_AFTER = (0, 100)  # the probe at initialisation and after 100 steps of training
PROBE_TRAIN_LR = 0.1  # lr of those 100 steps (both networks learn at it)
PROBE_QUOTE_LR = 10.0  # the step size the explanation quotes
DEEP_WIDTHS = (8, 16, 32, 64, 128, 128)  # depth 6, width 8 in the sidebar's terms
DEEP_LR = 10.0
DEEP_STEPS = 12
DEEP_SHOWN = (1, 4, 8, 12)  # steps drawn in the activation-scale figure (and a diverged one)
TITLE_SWEEP = "Final test accuracy against learning rate"
TITLE_PROBE = "Loss after one gradient step, by its size"
TITLE_DEEP = "Activation scale per block, first steps"


def _label_sweep(norm: str, lr: float) -> str:
    return f"{NORM_NAMES[norm]}, lr {lr_text(lr)}"


def _label_probe(norm: str, after: int) -> str:
    when = "at init" if after == 0 else f"after {after} steps"
    return f"{NORM_NAMES[norm]}: one-step loss ratio {when}"


def _label_deep(norm: str) -> str:
    return f"{NORM_NAMES[norm]}: depth 6, lr {lr_text(DEEP_LR)}"


# ---------------------------------------------------------------- jobs


def lr_run(
    norm: str,
    lr: float,
    widths: tuple[int, ...] = SWEEP["widths"],
    batch_size: int = SWEEP["batch_size"],
    steps: int = SWEEP["steps"],
    seed: int = SWEEP["seed"],
    optimizer: str = "sgd",
) -> dict:
    """Train one network at one learning rate; final test accuracy with running statistics
    (eval mode), measured also when the run diverged (the model as it stood then)."""
    config = TrainConfig(
        norm=norm,
        lr=lr,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        optimizer=optimizer,
        snapshot_every=steps,
        eval_every=max(10, steps // 6),
    )
    trainer = Trainer(config)
    trainer.step(steps)
    run = trainer.run
    acc_running, acc_batch = trainer.accuracy()
    loss = run.metric("train_loss")
    idx = stride(len(loss), 150)
    tail = loss[-10:] if len(loss) else np.zeros(0)
    return {
        "norm": norm,
        "lr": float(lr),
        "optimizer": optimizer,
        "steps": steps,
        "steps_done": run.num_steps,
        "status": run.status,
        "diverged_step": run.diverged_step,
        "final_acc": clean(acc_running),
        "final_acc_batch_stats": clean(acc_batch),
        "eval_steps": list(run.eval_steps),
        "acc_running_stats": clean_list(run.acc_running_stats),
        "loss_steps": [int(s) for s in run.steps[idx]],
        "train_loss": clean_list(loss[idx]),
        "final_loss": clean(tail.mean()) if len(tail) else math.nan,
    }


@torch.no_grad()
def _loss(model, x, y) -> float:
    return float(F.cross_entropy(model(x), y))


def loss_ratio(
    norm: str,
    after_steps: int = 0,
    lrs: tuple[float, ...] = PROBE_LRS,
    widths: tuple[int, ...] = SWEEP["widths"],
    batch_size: int = SWEEP["batch_size"],
    seed: int = SWEEP["seed"],
    train_lr: float = PROBE_TRAIN_LR,
) -> dict:
    """L(w - lr * g) / L(w) for each lr, on one batch: g is the gradient at w on that batch
    (training mode: BN uses the batch's statistics). w is the initialisation (after_steps=0) or
    the weights after `after_steps` SGD steps at `train_lr`. Non-finite losses become NaN."""
    config = TrainConfig(
        norm=norm,
        widths=widths,
        batch_size=batch_size,
        seed=seed,
        lr=train_lr,
        steps=max(1, after_steps),
        snapshot_every=max(1, after_steps),
        eval_every=max(1, after_steps),
    )
    trainer = Trainer(config)
    if after_steps:
        trainer.plain_steps(after_steps)
    model = trainer.model
    x, y = trainer.next_batch(batch_size)
    model.train()
    loss = F.cross_entropy(model(x), y)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    start = [p.detach().clone() for p in params]
    base = float(loss.detach())
    ratios = []
    with torch.no_grad():
        for lr in lrs:
            for p, w, g in zip(params, start, grads):
                p.copy_(w - lr * g)
            ratios.append(clean(_loss(model, x, y) / base))
        for p, w in zip(params, start):
            p.copy_(w)
    grad_norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
    return {
        "norm": norm,
        "after_steps": after_steps,
        "train_lr": float(train_lr),
        "lrs": [float(lr) for lr in lrs],
        "ratio": ratios,
        "loss": clean(base),
        "grad_norm": clean(grad_norm),
    }


def activation_scale(
    norm: str,
    lr: float = DEEP_LR,
    widths: tuple[int, ...] = DEEP_WIDTHS,
    steps: int = DEEP_STEPS,
    batch_size: int = SWEEP["batch_size"],
    seed: int = SWEEP["seed"],
) -> dict:
    """Standard deviation of each block's conv output (the norm's input) and post-activation
    values, over the training batch, at each of the first `steps` steps at a large lr."""
    config = TrainConfig(
        norm=norm,
        lr=lr,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    pre: list[float] = [math.nan] * len(widths)
    post: list[float] = [math.nan] * len(widths)

    def hook(store, i):
        def record(module, inputs, output):
            if trainer.recording:  # the training forward pass only
                value = inputs[0] if store is pre else output
                store[i] = clean(value.detach().double().std())

        return record

    handles = []
    for i, block in enumerate(trainer.model.blocks):
        handles.append(block.norm.register_forward_hook(hook(pre, i)))
        handles.append(block.act.register_forward_hook(hook(post, i)))
    pre_rows, post_rows, losses = [], [], []
    try:
        for _ in range(steps):
            trainer.step(1)
            if trainer.run.num_steps > len(losses):
                losses.append(clean(trainer.run.metric("train_loss")[-1]))
            elif trainer.run.status == "diverged":
                pre_rows.append(list(pre))  # the forward pass that diverged
                post_rows.append(list(post))
                break
            pre_rows.append(list(pre))
            post_rows.append(list(post))
            if trainer.finished:
                break
    finally:
        for h in handles:
            h.remove()
    run = trainer.run
    return {
        "norm": norm,
        "lr": float(lr),
        "widths": list(widths),
        "steps": list(range(1, len(pre_rows) + 1)),
        "pre_norm_std": pre_rows,
        "post_act_std": post_rows,
        "train_loss": losses,
        "status": run.status,
        "diverged_step": run.diverged_step,
    }


def jobs():
    out = [job(_label_sweep(n, lr), lr_run, norm=n, lr=lr) for lr in SWEEP_LRS for n in NORMS]
    out += [
        job(_label_probe(n, a), loss_ratio, norm=n, after_steps=a)
        for a in PROBE_AFTER
        for n in NORMS
    ]
    out += [job(_label_deep(n), activation_scale, norm=n) for n in NORMS]
    return out


# ---------------------------------------------------------------- reading results


def sweep_points(results: dict, norm: str) -> list[dict]:
    """The finished sweep runs of one norm, by learning rate."""
    rows = [r for r in results.values() if r.get("norm") == norm and "final_acc" in r]
    return sorted(rows, key=lambda r: r["lr"])


def learned(row: dict) -> bool:
    return row["status"] != "diverged" and row["final_acc"] >= LEARNED


def largest_learned_lr(rows: list[dict]) -> float | None:
    good = [r["lr"] for r in rows if learned(r)]
    return max(good) if good else None


def _outcome(row: dict) -> str:
    if row["status"] == "diverged":
        return f"diverged at step {row['diverged_step']}"
    return pct(row["final_acc"])


# ---------------------------------------------------------------- figures


def _sweep_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        rows = sweep_points(results, norm)
        if not rows:
            continue
        lrs = [r["lr"] for r in rows]
        acc = [100 * r["final_acc"] for r in rows]
        symbols = ["x" if r["status"] == "diverged" else "circle" for r in rows]
        text = [_outcome(r) for r in rows]
        fig.add_trace(
            go.Scatter(
                x=lrs,
                y=acc,
                name=NORM_NAMES[norm],
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash=DASHES[norm]),
                marker=dict(symbol=symbols, size=[12 if s == "x" else 8 for s in symbols]),
                text=text,
                hovertemplate="lr %{x:g}: %{text}<extra>" + NORM_NAMES[norm] + "</extra>",
            )
        )
    fig.add_hline(
        y=10,
        line=dict(color=NEUTRAL, dash="dot"),
        annotation_text="chance (10%)",
        annotation_position="bottom left",
    )
    fig.update_yaxes(range=[0, 100])
    steps, widths = SWEEP["steps"], "-".join(map(str, SWEEP["widths"]))
    details = f"SGD momentum 0.9, {steps} steps, widths {widths}"
    if not fig.data:
        note(fig)
    elif any(r["status"] == "diverged" for n in NORMS for r in sweep_points(results, n)):
        details += "; × = diverged (accuracy of the model when it stopped)"
    return finish(
        fig,
        TITLE_SWEEP,
        "learning rate (log scale)",
        "test accuracy, eval mode (%)",
        note=details,
        log_x=True,
    )


def _probe_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for after in PROBE_AFTER:
        for norm in NORMS:
            r = results.get(_label_probe(norm, after))
            if not r:
                continue
            ratio = np.asarray(r["ratio"], dtype=float)
            lrs = np.asarray(r["lrs"], dtype=float)
            ok = np.isfinite(ratio) & (ratio > 0)
            when = "at init" if after == 0 else f"after {after} steps"
            name = f"{NORM_NAMES[norm]}, {when}"
            if not ok.all():
                name += f" (overflow from lr {lrs[~ok][0]:g})"
            fig.add_trace(
                go.Scatter(
                    x=lrs[ok],
                    y=ratio[ok],
                    name=name,
                    mode="lines+markers",
                    opacity=0.55 if after == 0 else 1.0,
                    marker=dict(symbol="circle-open" if after == 0 else "circle", size=6),
                    line=dict(
                        color=NORM_COLORS[norm], dash=DASHES[norm], width=1.5 if after == 0 else 2.5
                    ),
                    hovertemplate="lr %{x:g}: loss × %{y:.3g}<extra>" + name + "</extra>",
                )
            )
    fig.add_hline(
        y=1,
        line=dict(color=NEUTRAL, dash="dot"),
        annotation_text="no change",
        annotation_position="top left",
    )
    if not fig.data:
        note(fig)
    return finish(
        fig,
        TITLE_PROBE,
        "step size lr (log scale)",
        "L(w − lr·g) / L(w) (log scale)",
        log_x=True,
        log_y=True,
    )


def _shown_steps(r: dict) -> list[int]:
    shown = [s for s in r["steps"] if s in DEEP_SHOWN]
    if r["steps"] and r["steps"][-1] not in shown:
        shown.append(r["steps"][-1])  # e.g. the forward pass that diverged
    return shown


def _deep_figure(results: dict) -> go.Figure:
    fig = subplots(
        ("conv output (the norm's input)", "post-activation"),
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
    )
    blocks = None
    for norm in NORMS:
        r = results.get(_label_deep(norm))
        if not r:
            continue
        blocks = list(range(1, len(r["widths"]) + 1))
        shown = _shown_steps(r)
        for k, step in enumerate(shown):
            i = r["steps"].index(step)
            fade = 0.35 + 0.65 * (k + 1) / len(shown)
            for col, key in ((1, "pre_norm_std"), (2, "post_act_std")):
                y = np.asarray(r[key][i], dtype=float)
                fig.add_trace(
                    go.Scatter(
                        x=blocks,
                        y=np.where(np.isfinite(y) & (y > 0), y, np.nan),
                        name=f"{NORM_NAMES[norm]}, step {step}"
                        + (" (diverged)" if step == r["diverged_step"] else ""),
                        legendgroup=f"{norm}{step}",
                        showlegend=col == 1,
                        mode="lines+markers",
                        opacity=fade,
                        line=dict(color=NORM_COLORS[norm], dash=DASHES[norm]),
                        hovertemplate="block %{x}: std %{y:.3g}<extra>"
                        + f"{NORM_NAMES[norm]}, step {step}</extra>",
                    ),
                    row=1,
                    col=col,
                )
    if not fig.data:
        note(fig)
    fig.update_xaxes(dtick=1)
    return finish(
        fig,
        TITLE_DEEP,
        "block (depth)",
        "std over the batch (log scale)",
        note=f"depth 6, lr {lr_text(DEEP_LR)}; the later the step, the stronger the colour",
        log_y=True,
        panel_titles=True,
    )


def figures(results: dict) -> list[go.Figure]:
    results = results or {}
    if not results:
        return [
            placeholder(TITLE_SWEEP, "learning rate (log scale)", "test accuracy (%)", log_x=True),
            placeholder(TITLE_PROBE, "step size lr (log scale)", "L(w − lr·g) / L(w)", log_x=True),
            placeholder(TITLE_DEEP, "block (depth)", "standard deviation (log scale)"),
        ]
    return [_sweep_figure(results), _probe_figure(results), _deep_figure(results)]


# ---------------------------------------------------------------- explanation


def _nearest(values: list[float], target: float) -> int:
    return int(np.argmin([abs(math.log10(v) - math.log10(target)) for v in values]))


def _tops(results: dict) -> tuple[float | None, float | None] | None:
    """The largest learning rate at which each network learned (BN, no norm), once the whole
    sweep is measured; None before."""
    bn, none = sweep_points(results, "batch"), sweep_points(results, "none")
    if len(bn) < len(SWEEP_LRS) or len(none) < len(SWEEP_LRS):
        return None
    return largest_learned_lr(bn), largest_learned_lr(none)


def _explain_sweep(results: dict) -> list[str]:
    bn, none = sweep_points(results, "batch"), sweep_points(results, "none")
    if not bn and not none:
        return ["The learning-rate sweep is being measured."]
    setup = (
        f"**Sweep** (SGD with momentum 0.9, {SWEEP['steps']} steps, widths "
        f"{'-'.join(map(str, SWEEP['widths']))}, batch {SWEEP['batch_size']}; final test accuracy "
        "with running statistics, chance is 10%): "
    )
    by_lr = {}
    for r in bn + none:
        by_lr.setdefault(r["lr"], {})[r["norm"]] = r
    parts = []
    for lr in sorted(by_lr):
        pair = by_lr[lr]
        a = _outcome(pair["batch"]) if "batch" in pair else "…"
        b = _outcome(pair["none"]) if "none" in pair else "…"
        parts.append(f"lr {lr_text(lr)}: BN {a}, none {b}")
    lines = [setup + "; ".join(parts) + "."]
    done = len(bn) == len(SWEEP_LRS) and len(none) == len(SWEEP_LRS)
    if not done:
        lines.append("The rest of the sweep is being measured.")
        return lines
    top_bn, top_none = _tops(results)
    rule = f'("learned" = at least {LEARNED:.0%} and no divergence)'
    if top_bn is None and top_none is None:
        lines.append(f"Neither learned at any of these learning rates {rule}.")
    elif top_none is None:
        lines.append(f"BN learned up to lr {lr_text(top_bn)}; without it no run learned {rule}.")
    elif top_bn is None:
        lines.append(f"Without BN runs learned up to lr {lr_text(top_none)}; with BN none did.")
    elif top_bn > top_none:
        lines.append(
            f"BN learned up to lr {lr_text(top_bn)}, no norm only up to lr "
            f"{lr_text(top_none)} {rule}: here BN tolerated a {top_bn / top_none:g}× larger "
            "learning rate."
        )
    else:
        lines.append(
            f"Here BN did **not** tolerate a larger learning rate: it learned up to lr "
            f"{lr_text(top_bn)}, no norm up to lr {lr_text(top_none)} {rule}."
        )
    return lines


def _worse(bn: float, none: float) -> str | None:
    """Which network's loss rose more (NaN = overflow = infinitely more); None if equal."""
    bn = math.inf if not math.isfinite(bn) else bn
    none = math.inf if not math.isfinite(none) else none
    if none > bn:
        return "none"
    if bn > none:
        return "batch"
    return None


def _explain_probe(results: dict) -> list[str]:
    parts, worse = [], {}
    for after in PROBE_AFTER:
        bn = results.get(_label_probe("batch", after))
        none = results.get(_label_probe("none", after))
        if not bn or not none:
            continue
        i = _nearest(bn["lrs"], PROBE_QUOTE_LR)
        lr = bn["lrs"][i]
        when = (
            "at initialisation"
            if after == 0
            else (f"after {after} SGD steps at lr {lr_text(bn['train_lr'])}")
        )
        parts.append(
            f"{when}, a step of lr {lr_text(lr)} multiplied the loss by {num(bn['ratio'][i])} "
            f"with BN and by {num(none['ratio'][i])} without (gradient norms "
            f"{num(bn['grad_norm'])} and {num(none['grad_norm'])})"
        )
        worse[after] = _worse(bn["ratio"][i], none["ratio"][i])
    if not parts:
        return ["The one-step loss probe is being measured."]
    text = (
        "**One gradient step** (one batch; w − lr·g with g the gradient at w; 'n/a' = the loss "
        "overflowed): " + "; ".join(parts) + "."
    )
    if worse.get(0) == "batch" and worse.get(PROBE_AFTER[-1]) == "none":
        text += (
            " So at initialisation the network without BN was not the more fragile one (its "
            "gradient was smaller), but after training had shaped it, its loss rose far more "
            "along the gradient than BN's: the smoother landscape Santurkar et al. (2018) "
            "describe."
        )
    elif all(w == "none" for w in worse.values()) and len(worse) == len(PROBE_AFTER):
        text += " Both times the loss without BN rose more along the gradient than with BN."
    elif len(worse) == len(PROBE_AFTER):
        text += (
            " Here, at this scale, the loss without BN did **not** rise more than with BN "
            f"after training (lr {lr_text(PROBE_QUOTE_LR)})."
        )
    return [text]


def _growth(post: list[float]) -> float:
    first, last = post[0], post[-1]
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0:
        return math.nan
    return last / first


def _explain_deep(results: dict) -> list[str]:
    bn, none = results.get(_label_deep("batch")), results.get(_label_deep("none"))
    if not bn or not none:
        return ["The depth-6 activation scales are being measured."]
    parts = []
    for r in (bn, none):
        if not r["steps"]:
            parts.append(f"{NORM_NAMES[r['norm']]}: no step recorded")
            continue
        last = r["steps"][-1]
        post = r["post_act_std"][-1]
        text = (
            f"{NORM_NAMES[r['norm']]}: at step {last} the post-activation std was "
            f"{num(post[0])} in block 1 and {num(post[-1])} in block {len(post)}"
        )
        if r["status"] == "diverged":
            text += " (the step at which it diverged)"
        parts.append(text)
    text = (
        f"**Depth 6 at lr {lr_text(DEEP_LR)}** (widths {'-'.join(map(str, DEEP_WIDTHS))}, first "
        f"{DEEP_STEPS} steps): " + "; ".join(parts) + "."
    )
    if bn["steps"] and none["steps"]:
        g_bn, g_none = _growth(bn["post_act_std"][-1]), _growth(none["post_act_std"][-1])
        if math.isfinite(g_bn) and math.isfinite(g_none) and g_none > g_bn:
            text += (
                f" From block 1 to block 6 the scale changed ×{num(g_none)} without BN and "
                f"×{num(g_bn)} with it: BN renormalizes every block, so a too-large step "
                "cannot compound through depth."
            )
        elif math.isfinite(g_bn) and math.isfinite(g_none):
            text += (
                f" Here the scale did not compound more through depth without BN (×{num(g_none)} "
                f"from block 1 to block 6, against ×{num(g_bn)} with BN)."
            )
    return [text]


def _explain_live(run: Run | None, twin: Run | None) -> list[str]:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return []
    text = (
        f"**Live run** (lr {lr_text(run.setting_at('lr'))}, {run.config.optimizer}), "
        f"{run.num_steps} steps so far: the main network "
        f"({NORM_NAMES.get(run.config.norm, run.config.norm)}) was at "
        f"{pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}"
    )
    if run.status == "diverged":
        text += f" (diverged at step {run.diverged_step})"
    if twin is not None and twin.eval_steps:
        name = NORM_NAMES.get(twin.config.norm, twin.config.norm)
        text += (
            f"; the twin ({name}) at {pct(twin.acc_running_stats[-1])} at step "
            f"{twin.eval_steps[-1]}"
        )
        if twin.status == "diverged":
            text += f" (diverged at step {twin.diverged_step})"
    return [text + "."]


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    lines = [
        "Ioffe & Szegedy (2015, section 3.3) report that BN tolerates much higher learning "
        "rates; Bjorck et al. (2018) show why: without BN, large steps make the loss and the "
        "activations blow up with depth. That is a claim to test, not to repeat: it is not "
        "guaranteed (it has been reported not to hold with ReLU and Adam). The sweep below uses "
        "SGD with momentum; switch the optimizer to Adam in the sidebar to measure that case on "
        "the live run."
    ]
    if not results:
        lines.append("The learning-rate sweep and the probes are being measured.")
    else:
        lines += _explain_sweep(results) + _explain_probe(results) + _explain_deep(results)
    lines += _explain_live(run, twin)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The sweep's verdict in two lines, from the numbers the explanation quotes."""
    tops = _tops(results or {})
    if tops is None:
        return "Measuring the learning-rate sweep…"
    top_bn, top_none = tops
    steps = SWEEP["steps"]
    if top_bn is None and top_none is None:
        return f"Neither network learned at any learning rate of the {steps}-step sweep."
    if top_none is None:
        return (
            f"In a {steps}-step sweep BatchNorm learned up to lr **{lr_text(top_bn)}**; without "
            "it no run learned."
        )
    if top_bn is None:
        return (
            f"In a {steps}-step sweep runs without BN learned up to lr **{lr_text(top_none)}**; "
            "with BN none did."
        )
    if top_bn > top_none:
        return (
            f"In a {steps}-step sweep BatchNorm learned up to lr {lr_text(top_bn)}, no norm only "
            f"up to lr {lr_text(top_none)}: it tolerated a **{top_bn / top_none:g}×** larger "
            "learning rate."
        )
    return (
        f"In a {steps}-step sweep BatchNorm did **not** tolerate a larger learning rate: it "
        f"learned up to lr {lr_text(top_bn)}, no norm up to lr {lr_text(top_none)}."
    )


SCENARIO = Scenario(
    id="high-lr",
    title="Higher learning rates with BatchNorm",
    summary="Does BatchNorm let a network train at learning rates where it would otherwise fail?",
    view="Training",
    preset=dict(dataset="shapes", norm="batch", optimizer="sgd", lr=1.0, steps=300, twin="none"),
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
