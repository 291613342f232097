"""Scenario 'sigmoid-drift': Ioffe & Szegedy (2015) Figure 1 at classroom scale. Sigmoid
networks with and without BatchNorm: the 15th/50th/85th percentiles of one sigmoid's input in the
last block over training, and test accuracy against steps."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..config import NORM_NAMES, TrainConfig
from ..experiments.common import clean_list
from ..plot import NORM_COLORS, rgba
from ..record import Run
from ..trainer import Trainer
from .base import Scenario, job
from .common import finish, lr_text, note, num, pct

NORMS = ("batch", "none")
DASHES = {"batch": "solid", "none": "dash"}
PATTERNS = {"batch": "", "none": "/"}  # the bands tell apart without hue too
FILLS = {"batch": rgba(NORM_COLORS["batch"], 0.25), "none": rgba(NORM_COLORS["none"], 0.15)}
RUN = dict(lr=0.3, widths=(8, 16, 32), batch_size=32, steps=300, seed=0)
SNAPSHOT_EVERY = 10  # percentiles every 10 steps: histograms cost time
EVALS = 10  # test-accuracy measurements per run (eval mode only)
WINDOW = 0.1  # early / late = the first / last 10% of the snapshots
TITLE_BANDS = "One sigmoid's input in the last block"
TITLE_ACC = "Test accuracy against steps (sigmoid)"


def _label(norm: str) -> str:
    return f"{NORM_NAMES[norm]}, sigmoid"


def sigmoid_run(
    norm: str,
    lr: float = RUN["lr"],
    widths: tuple[int, ...] = RUN["widths"],
    batch_size: int = RUN["batch_size"],
    steps: int = RUN["steps"],
    seed: int = RUN["seed"],
) -> dict:
    """Train a sigmoid network; return test accuracy (running statistics) against steps and the
    15/50/85th percentiles, over each batch, of one sigmoid's input in the last block."""
    config = TrainConfig(
        norm=norm,
        activation="sigmoid",
        lr=lr,
        widths=widths,
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=SNAPSHOT_EVERY,
        eval_every=steps,
    )
    trainer = Trainer(config)
    eval_steps, accuracy = [0], [trainer.eval_accuracy()]
    every = max(1, steps // EVALS)
    while not trainer.finished:
        trainer.step(min(every, steps - trainer.steps_done))
        if trainer.run.status != "diverged":
            eval_steps.append(trainer.steps_done)
            accuracy.append(trainer.eval_accuracy())
    run = trainer.run
    last = len(widths) - 1
    snaps = run.snapshots[last]
    p = np.asarray(snaps.unit_percentiles, dtype=np.float64).reshape(-1, 3)
    return {
        "norm": norm,
        "lr": float(lr),
        "steps": steps,
        "batch_size": batch_size,
        "widths": list(widths),
        "status": run.status,
        "diverged_step": run.diverged_step,
        "eval_steps": eval_steps,
        "acc_running_stats": clean_list(accuracy),
        "unit": list(run.layers[last].unit),
        "block": last + 1,
        "snapshot_steps": list(snaps.steps),
        "p15": clean_list(p[:, 0]),
        "p50": clean_list(p[:, 1]),
        "p85": clean_list(p[:, 2]),
    }


def jobs():
    return [job(_label(n), sigmoid_run, norm=n) for n in NORMS]


# ---------------------------------------------------------------- drift


def drift(p15, p50, p85, window: float = WINDOW) -> dict | None:
    """Median and 15-85 spread averaged over the first and the last `window` of the snapshots;
    None with fewer than two snapshots."""
    p = np.column_stack([p15, p50, p85]).astype(np.float64) if len(p50) else np.zeros((0, 3))
    if len(p) < 2:
        return None
    k = max(1, int(round(len(p) * window)))
    early, late = p[:k], p[-k:]
    e_med, l_med = float(np.nanmean(early[:, 1])), float(np.nanmean(late[:, 1]))
    e_spread = float(np.nanmean(early[:, 2] - early[:, 0]))
    l_spread = float(np.nanmean(late[:, 2] - late[:, 0]))
    return {
        "early_median": e_med,
        "late_median": l_med,
        "median_shift": abs(l_med - e_med),
        "early_spread": e_spread,
        "late_spread": l_spread,
        "snapshots_each": k,
    }


def result_drift(result: dict) -> dict | None:
    return drift(result["p15"], result["p50"], result["p85"])


def run_drift(run: Run) -> dict | None:
    """drift() of the live run's last block."""
    if not run.layers:
        return None
    p = np.asarray(run.snapshots[-1].unit_percentiles, dtype=np.float64).reshape(-1, 3)
    return drift(p[:, 0], p[:, 1], p[:, 2])


# ---------------------------------------------------------------- figures


def _bands_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        r = results.get(_label(norm))
        if not r or not r["snapshot_steps"]:
            continue
        steps = r["snapshot_steps"]
        group = dict(legendgroup=norm, line=dict(color=NORM_COLORS[norm], width=0))
        fig.add_trace(go.Scatter(x=steps, y=r["p15"], showlegend=False, hoverinfo="skip", **group))
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=r["p85"],
                name=f"{NORM_NAMES[norm]}: 15th–85th",
                fill="tonexty",
                fillcolor=FILLS[norm],
                fillpattern=dict(shape=PATTERNS[norm], fgcolor=NORM_COLORS[norm]),
                hoverinfo="skip",
                **group,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=r["p50"],
                name=f"{NORM_NAMES[norm]}: median",
                legendgroup=norm,
                line=dict(color=NORM_COLORS[norm], dash=DASHES[norm]),
                customdata=np.column_stack([r["p15"], r["p85"]]),
                hovertemplate="step %{x}<br>15th %{customdata[0]:.3g}<br>median %{y:.3g}"
                "<br>85th %{customdata[1]:.3g}<extra>" + NORM_NAMES[norm] + "</extra>",
            )
        )
    title = TITLE_BANDS
    details = "line: median, band: 15th to 85th percentile over the images of each batch"
    r = results.get(_label("batch")) or results.get(_label("none"))
    if r:
        c, y, x = r["unit"]
        title = f"Sigmoid input of one unit in block {r['block']}"
        details = f"the unit at channel {c}, y {y}, x {x}; {details}"
    else:
        note(fig)
    return finish(fig, title, y_title="sigmoid input (pre-activation)", note=details)


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        r = results.get(_label(norm))
        if not r:
            continue
        fig.add_trace(
            go.Scatter(
                x=r["eval_steps"],
                y=[100 * a for a in r["acc_running_stats"]],
                name=NORM_NAMES[norm],
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash=DASHES[norm]),
                hovertemplate="step %{x}: %{y:.1f}%<extra>" + NORM_NAMES[norm] + "</extra>",
            )
        )
    if not fig.data:
        note(fig)
    fig.update_yaxes(range=[0, 100])
    return finish(fig, TITLE_ACC, y_title="test accuracy, eval mode (%)")


def figures(results: dict) -> list[go.Figure]:
    results = results or {}
    return [_bands_figure(results), _accuracy_figure(results)]


# ---------------------------------------------------------------- explanation


def _describe(name: str, d: dict) -> str:
    return (
        f"{name}: median {num(d['early_median'])} → {num(d['late_median'])} (moved "
        f"{num(d['median_shift'])}), 15–85 spread {num(d['early_spread'])} → "
        f"{num(d['late_spread'])}"
    )


def _spread_change(d: dict) -> float:
    return d["late_spread"] / d["early_spread"] if d["early_spread"] > 0 else float("nan")


def _further_without(bn: dict, none: dict) -> bool:
    """Whether the median drifted further without BN than with it."""
    return none["median_shift"] > bn["median_shift"]


def _compare(bn: dict, none: dict) -> str:
    a, b = bn["median_shift"], none["median_shift"]
    spreads = (
        f" The 15–85 spread changed ×{num(_spread_change(bn))} with BN and "
        f"×{num(_spread_change(none))} without."
    )
    if _further_without(bn, none):
        ratio = f" ({num(b / a, 2)}× as far)" if a > 0 else ""
        return f"The median drifted further without BN{ratio}." + spreads
    return (
        f"Here the median did **not** drift further without BN ({num(b)} vs {num(a)} with BN); "
        "the textbook picture does not hold in this measurement." + spreads
    )


def _explain_jobs(results: dict) -> list[str]:
    bn, none = results.get(_label("batch")), results.get(_label("none"))
    if not bn and not none:
        return ["The two sigmoid networks (with and without BN) are being trained."]
    r = bn or none
    c, y, x = r["unit"]
    lines = [
        f"**Measured** (widths {'-'.join(map(str, r['widths']))}, batch {r['batch_size']}, "
        f"SGD lr {lr_text(r['lr'])}, {r['steps']} steps; the input of the sigmoid at channel {c}, "
        f"y {y}, x {x} of block {r['block']}, percentiles over each batch, averaged over the "
        f"first and the last {WINDOW:.0%} of the snapshots):"
    ]
    drifts = {}
    for norm, res in (("batch", bn), ("none", none)):
        if not res:
            lines.append(f"{NORM_NAMES[norm]} is being measured.")
            continue
        d = result_drift(res)
        drifts[norm] = d
        acc = res["acc_running_stats"]
        text = _describe(NORM_NAMES[norm], d) if d else f"{NORM_NAMES[norm]}: too few snapshots"
        text += f"; test accuracy {pct(acc[-1])} after {res['eval_steps'][-1]} steps"
        if res["status"] == "diverged":
            text += f" (diverged at step {res['diverged_step']})"
        lines.append("- " + text + ".")
    if drifts.get("batch") and drifts.get("none"):
        lines.append(_compare(drifts["batch"], drifts["none"]))
    return lines


def _explain_live(run: Run | None, twin: Run | None) -> list[str]:
    if run is None or run.num_steps == 0:
        return []
    parts = []
    for r, role in ((run, "main"), (twin, "twin")):
        if r is None:
            continue
        d = run_drift(r)
        if d is None:
            continue
        name = NORM_NAMES.get(r.config.norm, r.config.norm)
        parts.append(_describe(f"{name} ({role})", d))
    if not parts:
        return []
    return [
        f"**Live run** ({run.config.activation}, {run.num_steps} steps so far, last block, "
        f"snapshots of steps {run.snapshots[-1].steps[0]} to {run.snapshots[-1].steps[-1]}): "
        + "; ".join(parts)
        + "."
    ]


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    lines = [
        "Ioffe & Szegedy (2015, Figure 1; MNIST, three hidden layers of 100 sigmoid units, "
        "batch 60) tracked the 15th, 50th and 85th percentiles of one sigmoid's input: stable "
        "with BN, drifting without. BN sits before the nonlinearity there, so the sigmoid "
        "sees a normalized input whose scale only γ and β change. Here the network is a small "
        "conv net on the built-in shapes."
    ]
    if not results:
        lines.append("The runs with and without BN are being measured.")
    else:
        lines += _explain_jobs(results)
    lines += _explain_live(run, twin)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The drift of the two sigmoid inputs in two lines, from the numbers the explanation
    quotes."""
    results = results or {}
    bn, none = results.get(_label("batch")), results.get(_label("none"))
    bn, none = (result_drift(r) if r else None for r in (bn, none))
    if not bn or not none:
        return "Measuring a sigmoid's input with and without BatchNorm…"
    a, b = bn["median_shift"], none["median_shift"]
    steps = results[_label("batch")]["steps"]
    if _further_without(bn, none):
        text = f"Over {steps} steps the median of a sigmoid's input drifted"
        if a > 0:
            far = f"**{num(b / a, 2)}×** as far as with BN ({num(a)})"
            return text + f" {num(b)} without BN, {far}."
        return text + f" **{num(b)}** without BN, and not at all with BN."
    return (
        f"Here the median of a sigmoid's input did **not** drift further without BatchNorm "
        f"({num(b)} vs {num(a)} with it, {steps} steps)."
    )


SCENARIO = Scenario(
    id="sigmoid-drift",
    title="Sigmoid inputs drift without BatchNorm",
    summary="Does BatchNorm keep the distribution of a sigmoid's input stable during training?",
    view="Activations",
    preset=dict(
        dataset="shapes",
        activation="sigmoid",
        norm="batch",
        placement="before",
        optimizer="sgd",
        lr=0.3,
        steps=300,
        twin="none",
    ),
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
