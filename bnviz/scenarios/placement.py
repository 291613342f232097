"""Placement: BatchNorm before the activation (Ioffe & Szegedy's choice: normalize Wx, drop the
conv's bias) against after it (an empirical alternative), measured on the same data, batches and
initial conv weights, for relu and sigmoid, with two seeds each."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..config import TrainConfig
from ..experiments import common as xcommon
from ..plot import NEUTRAL, layer_color, layer_symbol, line_markers
from ..trainer import train
from . import common
from .base import Scenario, job

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 250
EVAL_EVERY = 25
ACTIVATIONS = ("relu", "sigmoid")
PLACEMENTS = ("before", "after")
SEEDS = (0, 1)
DASH = {"before": "solid", "after": "dash"}


def _color(activation: str) -> str:
    return layer_color(ACTIVATIONS.index(activation) * 2 if activation in ACTIVATIONS else 4)


def _symbol(activation: str) -> str:
    """A marker symbol per activation, so that its lines tell apart without hue too."""
    return layer_symbol(ACTIVATIONS.index(activation) * 2 if activation in ACTIVATIONS else 4)


def train_placement(
    activation: str, placement: str, seed: int = 0, steps: int = STEPS, widths: tuple = WIDTHS
) -> dict:
    """Train one (activation, placement, seed); curves and final numbers."""
    config = TrainConfig(
        widths=tuple(widths),
        activation=activation,
        placement=placement,
        batch_size=BATCH_SIZE,
        steps=steps,
        seed=seed,
        eval_every=min(EVAL_EVERY, steps),
        snapshot_every=steps,
    )
    run = train(config)
    return {"activation": activation, "placement": placement, "seed": seed, **xcommon.curves(run)}


def _label(activation: str, placement: str, seed: int) -> str:
    return f"{activation}, BN {placement} the activation, seed {seed}"


def jobs() -> list:
    return [
        job(_label(a, p, s), train_placement, activation=a, placement=p, seed=s)
        for s in SEEDS
        for a in ACTIVATIONS
        for p in PLACEMENTS
    ]


def _rows(results: dict) -> list[dict]:
    rows = [r for r in results.values() if "placement" in r and "final_acc" in r]
    order = {p: i for i, p in enumerate(PLACEMENTS)}
    return sorted(rows, key=lambda r: (r["activation"], order.get(r["placement"], 9), r["seed"]))


def _group(rows: list[dict], activation: str, placement: str) -> list[dict]:
    return [r for r in rows if r["activation"] == activation and r["placement"] == placement]


# ---------------------------------------------------------------- figures


def _curve_figure(results: dict, x_key: str, y_key: str, scale: float, title, y_title) -> go.Figure:
    fig = go.Figure()
    shown = set()
    for r in _rows(results):
        key = (r["activation"], r["placement"])
        name = f"{r['activation']}, BN {r['placement']}"
        fig.add_scatter(
            x=r[x_key],
            y=[scale * v for v in r[y_key]],
            mode="lines+markers",
            name=name,
            legendgroup=name,
            showlegend=key not in shown,
            line=dict(color=_color(r["activation"]), dash=DASH[r["placement"]], width=1.8),
            marker=line_markers(_symbol(r["activation"]), size=7),
            hovertemplate=f"{name}, seed {r['seed']}<br>step %{{x}}<br>%{{y:.3g}}<extra></extra>",
        )
        shown.add(key)
    if not fig.data:
        common.note(fig, size=14)
    return common.finish(fig, title, y_title=y_title, note="one line per seed")


def _final_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    rows = _rows(results)
    for activation in ACTIVATIONS:
        for placement in PLACEMENTS:
            group = _group(rows, activation, placement)
            if not group:
                continue
            fig.add_scatter(
                x=[f"{activation}, BN {placement}"] * len(group),
                y=[100 * r["final_acc"] for r in group],
                mode="markers",
                name=f"{activation}, BN {placement}",
                marker=dict(
                    color=_color(activation),
                    size=11,
                    symbol="circle" if placement == "before" else "diamond",
                ),
                customdata=[r["seed"] for r in group],
                hovertemplate="seed %{customdata}<br>%{y:.1f}%<extra>%{x}</extra>",
                showlegend=False,
            )
    if not fig.data:
        common.note(fig, size=14)
    fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    return common.finish(
        fig,
        "Final test accuracy, one point per seed",
        None,
        "test accuracy (%)",
        note=f"after {STEPS} steps; dotted: chance (10%)",
    )


def figures(results: dict) -> list[go.Figure]:
    return [
        _final_figure(results),
        _curve_figure(
            results,
            "eval_steps",
            "acc_running",
            100,
            "Test accuracy (eval mode) during training",
            "test accuracy (%)",
        ),
        _curve_figure(
            results,
            "loss_steps",
            "loss",
            1,
            "Training loss (mean over windows of steps)",
            "cross-entropy loss",
        ),
    ]


# ---------------------------------------------------------------- explanation


def _summary(group: list[dict]) -> str:
    accs = " and ".join(common.pct(r["final_acc"]) for r in group)
    loss = " and ".join(f"{r['final_loss']:.3f}" for r in group)
    seeds = "seeds " + " and ".join(str(r["seed"]) for r in group)
    return f"{accs} test accuracy, training loss {loss} over the last 20 steps ({seeds})"


def _verdict(rows: list[dict], activation: str) -> dict | None:
    """Before against after for one activation, over the seeds measured for both (None if
    none is): the mean difference in final test accuracy (before minus after), the spreads
    between seeds of one placement, the winner, and the kind of verdict: 'same', 'unresolved'
    (the difference is within the seeds' spread), 'every seed' or 'on average'."""
    before, after = _group(rows, activation, "before"), _group(rows, activation, "after")
    seeds_b = {r["seed"]: r for r in before}
    seeds_a = {r["seed"]: r for r in after}
    common_seeds = sorted(set(seeds_b) & set(seeds_a))
    if not common_seeds:
        return None
    diffs = [seeds_b[s]["final_acc"] - seeds_a[s]["final_acc"] for s in common_seeds]
    mean_diff = float(np.mean(diffs))
    spread = [
        max(r["final_acc"] for r in g) - min(r["final_acc"] for r in g)
        for g in (before, after)
        if len(g) > 1
    ]
    winner, loser = ("before", "after") if mean_diff > 0 else ("after", "before")
    consistent = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if mean_diff == 0:
        kind = "same"
    elif spread and abs(mean_diff) <= max(spread):
        kind = "unresolved"
    elif len(common_seeds) > 1 and consistent:
        kind = "every seed"
    else:
        kind = "on average"
    return dict(kind=kind, mean_diff=mean_diff, spread=spread, winner=winner, loser=loser)


def _compare(rows: list[dict], activation: str) -> str:
    before, after = _group(rows, activation, "before"), _group(rows, activation, "after")
    if not before or not after:
        return ""
    text = (
        f"With {activation}: BN before the activation reached {_summary(before)}; after it, "
        f"{_summary(after)}."
    )
    failed = [r for r in before + after if r["status"] != "completed"]
    for r in failed:
        text += f" ({r['placement']}, seed {r['seed']}: {r['status']}: {r['message']})"
    v = _verdict(rows, activation)
    if v is None:
        return text
    mean_diff, spread, winner, loser = v["mean_diff"], v["spread"], v["winner"], v["loser"]
    if v["kind"] == "same":
        text += " Both placements ended at the same test accuracy."
    elif v["kind"] == "unresolved":
        text += (
            f" BN {winner} did better by {common.points(mean_diff)} on average, but two seeds of "
            f"the same placement differed by up to {common.points(max(spread))}: at this scale the "
            "two placements are not told apart."
        )
    elif v["kind"] == "every seed":
        text += (
            f" BN {winner} beat BN {loser} with every seed, by {common.points(mean_diff)} on "
            "average"
            + (
                f", more than two seeds of the same placement differed (up to "
                f"{common.points(max(spread))})."
                if spread
                else "."
            )
        )
    else:
        text += (
            f" BN {winner} did better by {common.points(mean_diff)} on average, but not with "
            "every seed."
        )
    return text


def _live_text(run) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    c = run.config
    return (
        f"The live run ({c.activation}, {c.norm} norm placed {c.placement} the activation) is at "
        f"{common.pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}."
    )


def explain(results: dict, run, twin) -> str:
    parts = [
        "Ioffe & Szegedy (2015) put BatchNorm immediately before the nonlinearity: it normalizes "
        "Wx, and the layer's bias is dropped because BN's β takes its place (bnviz does the "
        "same). Putting BN after the activation is an empirical alternative, not the paper's. "
        f"Here each pair trains {STEPS} steps from the same initial conv weights on the same "
        "batches (the after-placement conv also gets a bias, since no BN directly follows it)."
    ]
    rows = _rows(results)
    if not rows:
        parts.append("The runs are being measured…")
    for activation in ACTIVATIONS:
        text = _compare(rows, activation)
        if text:
            parts.append(text)
    pending = len(jobs()) - len(rows)
    if rows and pending > 0:
        parts.append(f"{pending} run(s) still being measured…")
    live = _live_text(run)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """Both activations' verdicts in two lines, from the numbers the explanation quotes."""
    rows = _rows(results or {})
    verdicts = {a: _verdict(rows, a) for a in ACTIVATIONS}
    if len(rows) < len(jobs()) or None in verdicts.values():
        return "Measuring BatchNorm before and after the activation…"
    order = ("every seed", "on average", "unresolved", "same")
    clauses, bold = [], True
    for a, v in sorted(verdicts.items(), key=lambda item: order.index(item[1]["kind"])):
        if v["kind"] in ("every seed", "on average"):
            diff = common.points(v["mean_diff"])
            diff = f"**{diff}**" if bold else diff
            bold = False
            clauses.append(
                f"with {a}, BN {v['winner']} beat BN {v['loser']} with every seed, by {diff}"
                if v["kind"] == "every seed"
                else f"with {a}, BN {v['winner']} did better by {diff} on average, not every seed"
            )
        elif v["kind"] == "unresolved":
            clauses.append(f"with {a} the two placements are not told apart at this scale")
        else:
            clauses.append(f"with {a} both placements ended at the same test accuracy")
    text = "; ".join(clauses) + "."
    return text[0].upper() + text[1:]


SCENARIO = Scenario(
    id="placement",
    title="BatchNorm before or after the activation?",
    summary="Does it matter whether BatchNorm comes before or after the nonlinearity?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "placement": "before", "twin": "off"},
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
