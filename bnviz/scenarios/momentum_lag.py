"""Scenario 'momentum-lag': BatchNorm's running averages lag behind the weights they describe
(Wu & Johnson 2021). The same run with momentum 0.01, 0.1, 0.9 and None (cumulative average):
running against batch mean of one channel, eval accuracy against steps, and eval accuracy after
recomputing precise statistics (Ioffe & Szegedy 2015, Algorithm 2)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from ..batchnorm import effective_window, keras_momentum
from ..config import TrainConfig
from ..experiments.common import clean_list
from ..measure import precise_statistics
from ..plot import NEUTRAL, TWO_ROW_PLOT_HEIGHT, layer_color, layer_symbol, line_markers
from ..record import Run
from ..series import stride
from ..trainer import Trainer
from .base import Action, Scenario, job
from .common import finish, note, num, pct, subplots

MOMENTA = (0.01, 0.1, 0.9, None)
RUN = dict(widths=(8, 16, 32), batch_size=32, steps=300, lr=0.05, seed=0)
LAYER = -1  # the last block
CHANNEL = 0
PRECISE_BATCHES = 50
TITLE_MEANS = "Running mean against batch mean"
TITLE_ACC = "Test accuracy with running statistics"


def momentum_name(momentum: float | None) -> str:
    return "None (cumulative)" if momentum is None else f"{momentum:g}"


def keras_name(momentum: float | None) -> str:
    return "no equivalent" if momentum is None else f"{keras_momentum(momentum):.2g}"


def window_text(momentum: float | None) -> str:
    if momentum is None:
        return "every step so far, equally"
    return f"about {effective_window(momentum, 0):.3g} steps"


def _label(momentum: float | None) -> str:
    return f"momentum {momentum_name(momentum)}"


def _color(momentum: float | None) -> str:
    return layer_color(MOMENTA.index(momentum)) if momentum in MOMENTA else NEUTRAL


def _symbol(momentum: float | None) -> str:
    """A marker symbol per momentum, so that its lines tell apart without hue too."""
    return layer_symbol(MOMENTA.index(momentum) if momentum in MOMENTA else len(MOMENTA))


def momentum_run(
    momentum: float | None,
    widths: tuple[int, ...] = RUN["widths"],
    batch_size: int = RUN["batch_size"],
    steps: int = RUN["steps"],
    lr: float = RUN["lr"],
    seed: int = RUN["seed"],
    channel: int = CHANNEL,
    precise_batches: int = PRECISE_BATCHES,
) -> dict:
    """Train with BN at one momentum; return one channel's batch and running mean (last block)
    per step, eval accuracy with running statistics against steps, and eval accuracy after
    recomputing precise statistics on the trained model."""
    config = TrainConfig(
        momentum=momentum,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        seed=seed,
        snapshot_every=steps,
        eval_every=max(10, steps // 15),
    )
    trainer = Trainer(config)
    trainer.step(steps)
    run = trainer.run
    layer = len(widths) + LAYER if LAYER < 0 else LAYER
    batch_mean = run.layer_stat(layer, "batch_mean")[:, channel]
    running_mean = run.layer_stat(layer, "running_mean")[:, channel]
    idx = stride(run.num_steps, 400)
    precise = precise_statistics(trainer, batches=precise_batches)
    return {
        "momentum": momentum,
        "steps": steps,
        "batch_size": batch_size,
        "lr": float(lr),
        "widths": list(widths),
        "status": run.status,
        "block": layer + 1,
        "channel": channel,
        "mean_steps": [int(s) for s in run.steps[idx]],
        "batch_mean": clean_list(batch_mean[idx]),
        "running_mean": clean_list(running_mean[idx]),
        "eval_steps": list(run.eval_steps),
        "acc_running_stats": clean_list(run.acc_running_stats),
        "acc_batch_stats": clean_list(run.acc_batch_stats),
        "train_loss": clean_list(run.metric("train_loss")),
        "precise_before": float(precise["acc_before"]),
        "precise_after": float(precise["acc_after"]),
        "precise_batches": int(precise["batches"]),
    }


def jobs():
    return [job(_label(m), momentum_run, momentum=m) for m in MOMENTA]


def _done(results: dict) -> list[dict]:
    rows = [r for r in results.values() if "precise_after" in r]
    order = {m: k for k, m in enumerate(MOMENTA)}
    return sorted(rows, key=lambda r: order.get(r["momentum"], len(order)))


def lag(result: dict, last: int = 20) -> dict:
    """The final running mean against the average of the last `last` batch means."""
    recent = float(np.mean(result["batch_mean"][-last:]))
    running = float(result["running_mean"][-1])
    return {"running": running, "recent_batches": recent, "gap": abs(running - recent)}


# ---------------------------------------------------------------- figures


def _means_figure(results: dict) -> go.Figure:
    rows = _done(results)
    titles = [_label(m) for m in MOMENTA]
    fig = subplots(
        titles,
        rows=2,
        cols=2,
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.06,
    )
    block = channel = None
    for r in rows:
        k = MOMENTA.index(r["momentum"]) if r["momentum"] in MOMENTA else 0
        row, col = k // 2 + 1, k % 2 + 1
        block, channel = r["block"], r["channel"]
        first = k == 0
        fig.add_trace(
            go.Scatter(
                x=r["mean_steps"],
                y=r["batch_mean"],
                name="batch mean",
                legendgroup="batch",
                showlegend=first,
                mode="markers",
                marker=dict(color=NEUTRAL, size=3),
                hovertemplate="step %{x}: batch mean %{y:.4g}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=r["mean_steps"],
                y=r["running_mean"],
                name=f"running mean, {_label(r['momentum'])}",
                mode="lines+markers",
                line=dict(color=_color(r["momentum"]), width=2.5),
                marker=line_markers(_symbol(r["momentum"])),
                hovertemplate="step %{x}: running mean %{y:.4g}<extra>"
                + _label(r["momentum"])
                + "</extra>",
            ),
            row=row,
            col=col,
        )
    if not rows:
        note(fig)
    details = "dots: the mean of each training batch; lines: the running mean"
    if block is not None:
        details = f"block {block}, channel {channel}; {details}"
    return finish(
        fig,
        TITLE_MEANS,
        y_title="mean (value)",
        note=details,
        plot_height=TWO_ROW_PLOT_HEIGHT,
        panel_titles=True,
    )


def _accuracy_figure(results: dict) -> go.Figure:
    rows = _done(results)
    fig = go.Figure()
    if rows:
        ref = rows[0]
        fig.add_trace(
            go.Scatter(
                x=ref["eval_steps"],
                y=[100 * a for a in ref["acc_batch_stats"]],
                name="batch statistics (train mode)",
                mode="lines",
                line=dict(color=NEUTRAL, dash="dot"),
                hovertemplate="step %{x}: %{y:.1f}%<extra>batch statistics</extra>",
            )
        )
    for r in rows:
        color = _color(r["momentum"])
        fig.add_trace(
            go.Scatter(
                x=r["eval_steps"],
                y=[100 * a for a in r["acc_running_stats"]],
                name=_label(r["momentum"]),
                legendgroup=_label(r["momentum"]),
                mode="lines+markers",
                line=dict(color=color),
                marker=dict(symbol=_symbol(r["momentum"]), size=7),
                hovertemplate="step %{x}: %{y:.1f}%<extra>" + _label(r["momentum"]) + "</extra>",
            )
        )
        k = MOMENTA.index(r["momentum"]) if r["momentum"] in MOMENTA else len(MOMENTA)
        last = r["eval_steps"][-1]
        x_star = last + (k + 1) * max(1, last // 40)  # side by side when the values coincide
        fig.add_trace(
            go.Scatter(
                x=[last, x_star],
                y=[100 * r["acc_running_stats"][-1], 100 * r["precise_after"]],
                name=f"precise statistics, {_label(r['momentum'])}",
                legendgroup=_label(r["momentum"]),
                showlegend=False,
                mode="lines+markers",
                line=dict(color=color, dash="dot", width=1.5),
                marker=dict(
                    color=color, symbol=["circle", "star"], size=[1, 15], line=dict(width=1)
                ),
                hovertemplate="%{y:.1f}%<extra>" + _label(r["momentum"]) + "</extra>",
            )
        )
    details = None
    if rows:
        details = "★ = after recomputing precise statistics at the end"
    else:
        note(fig)
    fig.update_yaxes(range=[0, 100])
    return finish(fig, TITLE_ACC, y_title="test accuracy, eval mode (%)", note=details)


def figures(results: dict) -> list[go.Figure]:
    results = results or {}
    return [_means_figure(results), _accuracy_figure(results)]


# ---------------------------------------------------------------- explanation

CONVENTION = (
    "PyTorch updates running = (1 − momentum)·running + momentum·batch, so momentum is the "
    "weight of the **new** batch (default 0.1); Keras' momentum is the weight of the **old** "
    "value (default 0.99): PyTorch 0.1 = Keras 0.9, and Keras 0.99 = PyTorch 0.01. The average "
    "spans about 1/momentum steps (PyTorch convention); momentum=None is a cumulative average "
    "in which step k gets weight 1/k, so the start of training counts as much as the end."
)


def _best_gain(rows: list[dict]) -> tuple[dict, float]:
    """The run whose eval accuracy precise statistics raised most, and by how much (0..1)."""
    best = max(rows, key=lambda r: r["precise_after"] - r["acc_running_stats"][-1])
    return best, best["precise_after"] - best["acc_running_stats"][-1]


def _explain_jobs(results: dict) -> list[str]:
    rows = _done(results)
    if not rows:
        return ["The four runs are being measured."]
    r0 = rows[0]
    lines = [
        f"**Measured** (widths {'-'.join(map(str, r0['widths']))}, batch {r0['batch_size']}, "
        f"SGD lr {r0['lr']:g}, {r0['steps']} steps, same seed and batches; test accuracy in "
        f"eval mode, then after recomputing precise statistics from {r0['precise_batches']} "
        "training batches):"
    ]
    for r in rows:
        m = r["momentum"]
        gap = lag(r)
        if m is None:
            what = "a cumulative average: every step so far weighs the same; no Keras equivalent"
        else:
            what = f"Keras {keras_name(m)}; averages over {window_text(m)}"
        lines.append(
            f"- momentum {'None' if m is None else f'{m:g}'} ({what}): "
            f"{pct(r['acc_running_stats'][-1])} → {pct(r['precise_after'])} with precise "
            f"statistics; final running mean {num(gap['running'])} against "
            f"{num(gap['recent_batches'])} for the last 20 batches."
        )
    best, gain = _best_gain(rows)
    if gain > 0:
        lines.append(
            f"Recomputing precise statistics helped most at momentum "
            f"{momentum_name(best['momentum'])}: +{num(100 * gain, 3)} points."
        )
    else:
        lines.append("Here recomputing precise statistics did not raise eval accuracy.")
    if len(rows) > 1:
        losses = [np.asarray(r["train_loss"], dtype=np.float64) for r in rows]
        n = min(len(x) for x in losses)
        diff = max(float(np.max(np.abs(x[:n] - losses[0][:n]))) for x in losses) if n else 0.0
        same = "are identical" if diff == 0 else f"agree to within {num(diff)}"
        lines.append(
            f"The training losses of these {len(rows)} runs {same}: momentum changes only the "
            "running buffers, which training mode never reads. Batch-statistics accuracy at the "
            f"end: {pct(r0['acc_batch_stats'][-1])}."
        )
    if len(rows) < len(MOMENTA):
        lines.append("The other momenta are being measured.")
    return lines


def _explain_live(run: Run | None) -> list[str]:
    if run is None or run.num_steps == 0 or run.config.norm != "batch":
        return []
    momentum = run.setting_at("momentum")
    layer = len(run.layers) - 1
    running = run.layer_stat(layer, "running_mean")
    batch = run.layer_stat(layer, "batch_mean")
    if running is None or batch is None:
        return []
    recent = float(np.mean(batch[-20:, CHANNEL]))
    text = (
        f"**Live run** (momentum {momentum_name(momentum)}, window {window_text(momentum)}, "
        f"{run.num_steps} steps): block {layer + 1}, channel {CHANNEL}: running mean "
        f"{num(float(running[-1, CHANNEL]))} against {num(recent)} for the last "
        f"{min(20, run.num_steps)} batches"
    )
    if run.eval_steps:
        text += (
            f"; test accuracy at step {run.eval_steps[-1]}: {pct(run.acc_running_stats[-1])} "
            f"in eval mode, {pct(run.acc_batch_stats[-1])} with batch statistics"
        )
    return [text + ". Press **Recompute precise statistics** to measure the fix on it."]


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    lines = [
        "A running average lags: it mixes statistics from older weights. Wu & Johnson (2021) "
        "show that recomputing 'precise' statistics after training (Ioffe & Szegedy 2015, "
        "Algorithm 2: average the batch statistics of many batches with the weights fixed) "
        "repairs eval accuracy. " + CONVENTION
    ]
    if not results:
        lines.append("The four runs are being measured.")
    else:
        lines += _explain_jobs(results)
    lines += _explain_live(run)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The four runs' verdict in two lines, from the numbers the explanation quotes."""
    rows = _done(results or {})
    if len(rows) < len(MOMENTA):
        return "Measuring the four momenta…"
    best, gain = _best_gain(rows)
    if gain <= 0:
        return "Here recomputing precise statistics did not raise eval accuracy at any momentum."
    return (
        f"Recomputing precise statistics helped most at momentum "
        f"{momentum_name(best['momentum'])}: eval accuracy {pct(best['acc_running_stats'][-1])} "
        f"→ **{pct(best['precise_after'])}** (+{num(100 * gain, 3)} points)."
    )


# ---------------------------------------------------------------- the action


def recompute_precise(trainer: Trainer, batches: int = PRECISE_BATCHES) -> dict:
    """Precise statistics on the live main network (Ioffe & Szegedy, Algorithm 2), measured
    and then undone: the live run goes on with its own running averages, so its recorded
    statistics and the update formula stay consistent."""
    blocks = trainer.model.blocks
    norms = [b.norm for b in blocks if getattr(b.norm, "running_mean", None) is not None]
    saved = [{k: v.clone() for k, v in n.state_dict().items()} for n in norms]
    try:
        result = precise_statistics(trainer, batches=batches)
    except (ValueError, RuntimeError) as e:
        return {"error": str(e), "step": trainer.steps_done}
    finally:
        with torch.no_grad():
            for n, state in zip(norms, saved):
                n.load_state_dict(state)
    return {
        "acc_before": float(result["acc_before"]),
        "acc_after": float(result["acc_after"]),
        "batches": int(result["batches"]),
        "applicable": bool(result["applicable"]),
        "batch_size": int(trainer.batch_size),
        "step": int(trainer.steps_done),
    }


def render_precise(result: dict) -> str:
    if "error" in result:
        return f"Could not recompute the statistics at step {result.get('step')}: {result['error']}"
    if not result.get("applicable", True):
        return (
            "This network keeps no running statistics (its normalization is not BatchNorm): "
            f"eval accuracy stays {pct(result['acc_before'])}."
        )
    delta = 100 * (result["acc_after"] - result["acc_before"])
    return (
        f"At step {result['step']}: test accuracy in eval mode {pct(result['acc_before'])} "
        f"before, **{pct(result['acc_after'])}** after recomputing every BatchNorm's running "
        f"mean and variance as a plain average over {result['batches']} training batches of "
        f"{result['batch_size']} ({delta:+.1f} points). The live run then goes on with its own "
        "running averages, so press again at a later step to compare."
    )


PRECISE_ACTION = Action(
    label="Recompute precise statistics",
    fn=recompute_precise,
    render=render_precise,
    help="Ioffe & Szegedy's Algorithm 2: freeze the weights, average the batch statistics of "
    f"{PRECISE_BATCHES} training batches, and measure eval accuracy before and after.",
)

SCENARIO = Scenario(
    id="momentum-lag",
    title="Running statistics lag behind",
    summary="How far do BatchNorm's running averages lag behind the network, and does "
    "recomputing them fix eval accuracy?",
    view="Running statistics",
    preset=dict(dataset="shapes", norm="batch", momentum=0.01, momentum_none=False, twin="off"),
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
    actions=(PRECISE_ACTION,),
)
