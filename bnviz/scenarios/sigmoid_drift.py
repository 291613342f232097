"""Scenario 'sigmoid-drift': Ioffe & Szegedy (2015) Figure 1 at classroom scale. Their network
(three fully connected hidden layers of 100 sigmoids, batches of 60) with and without BatchNorm,
five seeds each, on the built-in shapes: test accuracy against steps, and the 15th/50th/85th
percentiles of the sigmoids' inputs over training. The runs are bnviz/experiments/
sigmoid_drift.py; this module turns them into verdicts, figures and text."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..config import NORM_NAMES
from ..experiments import sigmoid_drift as x
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS, line_markers, rgba
from ..record import Run
from ..trainer import PERCENTILES
from .base import Chart, Scenario
from .common import finish, lr_text, num, subplots
from .evidence import (
    LAST_EVALS,
    SEEDS,
    Spread,
    Verdict,
    across,
    band,
    by_seed,
    compare,
    final,
    sweep,
)

NORMS = ("batch", "none")
CHANCE = 0.1  # ten classes
WINDOW, SNAPSHOT_EVERY = x.WINDOW, x.SNAPSHOT_EVERY  # named here: the text quotes them
DASHES = {15.0: "dot", 50.0: "solid", 85.0: "dash"}  # the percentiles tell apart without hue
KEYS = {15.0: "p15", 50.0: "p50", 85.0: "p85"}
TITLE_BANDS = "One sigmoid's input over training"
TITLE_ACC = "Test accuracy against steps (sigmoid MLP)"
TITLE_DRIFT = "How far the sigmoids' inputs moved"


def _variant(norm: str) -> str:
    return f"{NORM_NAMES[norm]}, sigmoid MLP"


PREFIXES = tuple(_variant(n) for n in NORMS)


def jobs(seeds=SEEDS) -> list:
    return [j for n in NORMS for j in sweep(_variant(n), x.drift_run, seeds, norm=n)]


def _final_acc(result: dict) -> float:
    return final(result["acc"])


def _numbers(results: dict) -> dict:
    """{norm: {quantity: {seed: value}}} for the quantities the verdicts compare."""
    return {
        n: {
            "acc": across(results, _variant(n), _final_acc),
            "shift": across(results, _variant(n), "median_shift"),
            "width": across(results, _variant(n), "width_factor"),
        }
        for n in NORMS
    }


def verdicts(results: dict) -> list[Verdict]:
    v = _numbers(results or {})
    bn, none = v["batch"], v["none"]
    chance = f"chance ({CHANCE:.0%})"
    return [
        compare(
            "none-learns",
            f"without normalization the sigmoid MLP learned: its final test accuracy was above "
            f"{chance}",
            f"without normalization the sigmoid MLP stayed below {chance}",
            none["acc"],
            CHANCE,
            scale=100,
            unit=" pp",
        ),
        compare(
            "bn-learns",
            f"with BatchNorm the sigmoid MLP learned: its final test accuracy was above {chance}",
            f"with BatchNorm the sigmoid MLP stayed below {chance}",
            bn["acc"],
            CHANCE,
            scale=100,
            unit=" pp",
        ),
        compare(
            "bn-higher",
            "BatchNorm reached a higher final test accuracy than no normalization",
            "no normalization reached a higher final test accuracy than BatchNorm",
            bn["acc"],
            none["acc"],
            scale=100,
            unit=" pp",
        ),
        compare(
            "median-drift",
            "the median of a sigmoid's input moved further without BatchNorm than with it",
            "the median of a sigmoid's input moved further with BatchNorm than without it",
            none["shift"],
            bn["shift"],
        ),
        compare(
            "width-drift",
            "the 15th-85th percentile width of a sigmoid's input changed by a larger factor "
            "without BatchNorm than with it",
            "the 15th-85th percentile width of a sigmoid's input changed by a larger factor "
            "with BatchNorm than without it",
            none["width"],
            bn["width"],
        ),
    ]


def _by_key(results: dict) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures


def _seeds(results: dict, norm: str) -> list[dict]:
    return list(by_seed(results, _variant(norm)).values())


def _common_length(rows: list[dict], key: str) -> int:
    return min(len(r[key]) for r in rows)


def _bands_figure(results: dict) -> go.Figure:
    """Two panels (with BN, without): the mean over seeds of each percentile of the drawn
    sigmoid's input, with a band of ± one standard deviation over the seeds."""
    present = [n for n in NORMS if _seeds(results, n)]
    fig = subplots([f"{NORM_NAMES[n]}" for n in present], rows=1, cols=len(present),
                   shared_yaxes=True, horizontal_spacing=0.06)  # fmt: skip
    for col, norm in enumerate(present, start=1):
        rows = _seeds(results, norm)
        n = _common_length(rows, "snapshot_steps")
        steps = rows[0]["snapshot_steps"][:n]
        color = NORM_COLORS[norm]
        for q in PERCENTILES:
            mean, low, high = band([r[KEYS[q]][:n] for r in rows])
            name = f"{NORM_NAMES[norm]}: {q:.0f}th"
            edge = dict(width=0, color=color)
            fig.add_scatter(x=steps, y=low, line=edge, showlegend=False, hoverinfo="skip",
                            legendgroup=name, row=1, col=col)  # fmt: skip
            fig.add_scatter(x=steps, y=high, line=edge, fill="tonexty", showlegend=False,
                            fillcolor=rgba(color, 0.15), hoverinfo="skip", legendgroup=name,
                            row=1, col=col)  # fmt: skip
            fig.add_scatter(
                x=steps,
                y=mean,
                name=name,
                legendgroup=name,
                mode="lines+markers",
                line=dict(color=color, dash=DASHES[q], width=2),
                marker=line_markers(NORM_SYMBOLS[norm], color),
                hovertemplate=f"step %{{x}}<br>{q:.0f}th percentile %{{y:.3g}}<extra>"
                f"{NORM_NAMES[norm]}</extra>",
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=None, row=1, col=col)
    r = next(iter(_seeds(results, present[0])))
    v = _by_key(results)
    details = (
        f"sigmoid {r['unit'] + 1} of hidden layer {r['layer']}, percentiles over each training "
        f"batch; line: mean over {len(_seeds(results, present[0]))} seeds, band: ± 1 sd; "
        f"median moved further without BN: {v['median-drift'].mark}"
    )
    return finish(fig, TITLE_BANDS, y_title="sigmoid input", note=details, panel_titles=True)


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        rows = _seeds(results, norm)
        if not rows:
            continue
        n = _common_length(rows, "eval_steps")
        steps = rows[0]["eval_steps"][:n]
        mean, low, high = (100 * a for a in band([r["acc"][:n] for r in rows]))
        color, name = NORM_COLORS[norm], NORM_NAMES[norm]
        edge = dict(width=0, color=color)
        fig.add_scatter(x=steps, y=low, line=edge, showlegend=False, hoverinfo="skip",
                        legendgroup=name)  # fmt: skip
        fig.add_scatter(x=steps, y=high, line=edge, fill="tonexty", fillcolor=rgba(color, 0.2),
                        showlegend=False, hoverinfo="skip", legendgroup=name)  # fmt: skip
        fig.add_scatter(
            x=steps,
            y=mean,
            name=name,
            legendgroup=name,
            mode="lines+markers",
            line=dict(color=color, dash="solid" if norm == "batch" else "dash"),
            marker=line_markers(NORM_SYMBOLS[norm], color),
            hovertemplate="step %{x}: %{y:.1f}%<extra>" + name + "</extra>",
        )
    fig.add_hline(y=100 * CHANCE, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    v = _by_key(results)
    note = f"mean over seeds, band: ± 1 sd; dotted: chance; BN higher: {v['bn-higher'].mark}"
    return finish(fig, TITLE_ACC, y_title="test accuracy, eval mode (%)", note=note)


def _drift_figure(results: dict) -> go.Figure:
    """One point per seed: the median shift averaged over the last hidden layer's sigmoids;
    mean ± sd over seeds as an error bar beside them."""
    fig = go.Figure()
    for norm in NORMS:
        shifts = across(results, _variant(norm), "median_shift")
        if not shifts:
            continue
        name = NORM_NAMES[norm]
        color = NORM_COLORS[norm]
        fig.add_scatter(
            x=[name] * len(shifts),
            y=list(shifts.values()),
            mode="markers",
            name=f"{name}: one seed each",
            marker=dict(color=color, symbol=NORM_SYMBOLS[norm], size=10, opacity=0.6),
            customdata=list(shifts),
            hovertemplate="seed %{customdata}: %{y:.3g}<extra>" + name + "</extra>",
            showlegend=False,
        )
        s = Spread.of(shifts.values())
        fig.add_scatter(
            x=[name],
            y=[s.mean],
            mode="markers",
            name=f"{name}: mean ± sd",
            marker=dict(color=color, symbol=NORM_SYMBOLS[norm] + "-open", size=16),
            error_y=dict(type="data", array=[s.sd if np.isfinite(s.sd) else 0], color=color),
            hovertemplate="mean %{y:.3g}<extra>" + name + "</extra>",
            showlegend=False,
        )
    fig.update_yaxes(rangemode="tozero")
    v = _by_key(results)
    layer = next(iter(results.values()))["layer"]
    note = (
        f"|late − early| median of each sigmoid's input in hidden layer {layer}, mean over its "
        f"sigmoids; one point per seed, open: mean ± sd; {v['median-drift'].mark}"
    )
    return finish(fig, TITLE_DRIFT, None, "median shift (sigmoid input)", note=note)


FIGURES = (
    Chart(TITLE_BANDS, _bands_figure, PREFIXES, y_title="sigmoid input"),
    Chart(TITLE_ACC, _accuracy_figure, PREFIXES, y_title="test accuracy, eval mode (%)"),
    Chart(TITLE_DRIFT, _drift_figure, PREFIXES, x_title=None, y_title="median shift"),
)


# ---------------------------------------------------------------- explanation


def _spread(results: dict, norm: str, key, scale: float = 1.0, unit: str = "") -> str:
    return Spread.of(across(results, _variant(norm), key).values()).text(scale, unit)


def _first_sentence(v: dict[str, Verdict]) -> str:
    learned = v["none-learns"].holds and v["bn-learns"].holds
    if any(item.pending for item in v.values()):
        return (
            "Ioffe & Szegedy (2015, Figure 1) tracked the 15th, 50th and 85th percentiles of one "
            "sigmoid's input while a network learned: stable with BatchNorm, drifting without. "
            "The same network is being trained here, with and without BatchNorm."
        )
    if learned and v["median-drift"].holds:
        return (
            "Ioffe & Szegedy's Figure 1 reproduces here, on the built-in shapes instead of "
            "MNIST: both networks learn, and the sigmoids' inputs drift further without "
            "BatchNorm than with it."
        )
    if not learned:
        why = "a network that does not learn shows no drift worth comparing"
        return (
            "Ioffe & Szegedy's Figure 1 does not reproduce here: at this scale the networks do "
            f"not both learn, and {why}."
        )
    return (
        "Ioffe & Szegedy's Figure 1 does not reproduce here: both networks learn, but the "
        "median of a sigmoid's input does not drift further without BatchNorm in enough seeds."
    )


def _setup(results: dict) -> str:
    rows = _seeds(results, "batch") or _seeds(results, "none")
    paper = (
        "Their network: MNIST, three fully connected hidden layers of 100 sigmoid units, "
        "batches of 60, BatchNorm before each sigmoid."
    )
    if not rows:
        return paper
    r = rows[0]
    n = len(by_seed(results, _variant("batch"))) or len(rows)
    return (
        f"{paper} Here: the same network (the sidebar's 'fully connected (MLP)'; "
        f"{r['inputs']} inputs, the flattened image, then {len(r['widths'])} hidden layers of "
        f"{r['widths'][0]} sigmoids), batches of {r['batch_size']}, SGD with momentum 0.9 at "
        f"learning rate {lr_text(r['lr'])} for {r['steps']} steps, {n} seeds per network, on "
        "the built-in shapes data set (generated line drawings, ten classes, no download) "
        "rather than MNIST."
    )


def _learning(results: dict, v: dict[str, Verdict]) -> str:
    rows = _seeds(results, "batch") or _seeds(results, "none")
    if not rows:
        return ""
    step = rows[0]["eval_steps"][-1]
    accs = ", ".join(
        f"{NORM_NAMES[n]} {_spread(results, n, _final_acc, 100, '%')}"
        for n in NORMS
        if _seeds(results, n)
    )
    return (
        f"**Learning.** Final test accuracy (eval mode, the mean of the last {LAST_EVALS} "
        f"evaluations up to step {step}, mean ± sd over seeds): {accs}. "
        f"{v['none-learns'].text} {v['bn-learns'].text} {v['bn-higher'].text}"
    )


def _drift(results: dict, v: dict[str, Verdict]) -> str:
    rows = _seeds(results, "batch") or _seeds(results, "none")
    if not rows:
        return ""
    r = rows[0]
    k, steps = r["snapshots_each"], r["snapshot_steps"]
    windows = f"steps {steps[0]}–{steps[k - 1]} and {steps[-k]}–{steps[-1]}" if k and steps else ""
    measured = [n for n in NORMS if _seeds(results, n)]
    shifts = ", ".join(f"{NORM_NAMES[n]} {_spread(results, n, 'median_shift')}" for n in measured)
    widths = ", ".join(f"{NORM_NAMES[n]} ×{_spread(results, n, 'width_factor')}" for n in measured)
    unit_widths = ", ".join(
        f"{NORM_NAMES[n]} {_spread(results, n, 'early_width')} → "
        f"{_spread(results, n, 'late_width')}"
        for n in measured
    )
    return (
        f"**Drift.** For every sigmoid of hidden layer {r['layer']}, the percentiles of its "
        f"input over each training batch (every {SNAPSHOT_EVERY} steps), averaged over the "
        f"first and the last {WINDOW:.0%} of the snapshots ({windows}). The median moved by "
        f"(mean over the layer's sigmoids, mean ± sd over seeds): {shifts}. "
        f"{v['median-drift'].text} The 15th–85th width changed by a factor of (up or down, "
        f"geometric mean over the sigmoids): {widths}. {v['width-drift'].text} The drawn "
        f"sigmoid's 15th–85th width, early → late: {unit_widths}."
    )


MECHANISM = (
    "Why: BatchNorm sits before each sigmoid, so over every batch each sigmoid's input has mean "
    "β and standard deviation γ, whatever the earlier layers do; only γ and β, which are learned, "
    "move it (which is why it is not frozen here either). Without BatchNorm the input is Wx + b "
    "of the previous layer's outputs, and it shifts as every earlier layer learns; here it "
    "starts out nearly the same for every image (the drawn sigmoid's early width above), and "
    "its spread grows as the network learns."
)


def _unit_drift(run: Run) -> str | None:
    """The live run's tracked unit in its last block: median and 15-85 width over the first
    and the last WINDOW of its snapshots."""
    if not run.layers or len(run.snapshots[-1].steps) < 2:
        return None
    p = np.asarray(run.snapshots[-1].unit_percentiles, dtype=np.float64).reshape(-1, 3)
    k = max(1, int(round(len(p) * WINDOW)))
    early, late = p[:k].mean(0), p[-k:].mean(0)
    name = NORM_NAMES.get(run.config.norm, run.config.norm)
    return (
        f"{name}: median {num(early[1])} → {num(late[1])}, 15th–85th width "
        f"{num(early[2] - early[0])} → {num(late[2] - late[0])}"
    )


def _explain_live(run: Run | None, twin: Run | None) -> str:
    if run is None or run.num_steps == 0:
        return ""
    parts = [d for d in (_unit_drift(r) for r in (run, twin) if r is not None) if d]
    if not parts:
        return ""
    snaps = run.snapshots[-1].steps
    c = run.config
    arch = "fully connected" if c.arch == "mlp" else "conv"
    return (
        f"**Live run** (one seed: {arch}, {c.activation}, batches of {c.batch_size}, "
        f"{run.num_steps} steps so far; the tracked unit of the last block, its snapshots of "
        f"steps {snaps[0]} to {snaps[-1]}): " + "; ".join(parts) + "."
    )


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    v = _by_key(results)
    parts = [_first_sentence(v) + " " + _setup(results)]
    if not results:
        parts.append("The runs with and without BatchNorm are being measured…")
    parts += [_learning(results, v), _drift(results, v)]
    pending = [item.text for item in v.values() if item.pending]
    if pending and results:
        parts.append(" ".join(pending))
    elif not results:
        parts.append(" ".join(item.text for item in v.values()))
    parts += [MECHANISM, _explain_live(run, twin)]
    return "\n\n".join(p for p in parts if p)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The drift verdict and its numbers in two short sentences."""
    v = _by_key(results or {})
    drift = v["median-drift"]
    if drift.pending:
        return "Measuring a sigmoid's input with and without BatchNorm…"
    none = _spread(results, "none", "median_shift")
    bn = _spread(results, "batch", "median_shift")
    if drift.holds:
        text = (
            f"Without BatchNorm a sigmoid's input median moved **{none}**, with it {bn} "
            f"({drift.agree}/{drift.seeds} seeds)."
        )
        if v["none-learns"].holds and v["bn-learns"].holds:
            accs = [_spread(results, n, _final_acc, 100, "%") for n in ("none", "batch")]
            learned = f" Both learned: {accs[0]} test accuracy without, {accs[1]} with."
            text += learned if len(text + learned) <= 160 else ""
        return text
    if drift.holds is False:
        return f"Here the median moved further **with** BatchNorm ({bn} vs {none} without)."
    return f"Median shift with and without BatchNorm not distinguishable here ({bn} vs {none})."


SCENARIO = Scenario(
    id="sigmoid-drift",
    title="Sigmoid inputs drift without BatchNorm",
    summary="Does BatchNorm keep the distribution of a sigmoid's input stable during training?",
    view="Activations",
    preset=dict(
        dataset="shapes",
        arch="mlp",
        depth=len(x.WIDTHS),
        width=x.WIDTHS[0],
        activation="sigmoid",
        norm="batch",
        placement="before",
        optimizer="sgd",
        lr=x.LR,
        batch_size=64,  # the sidebar's nearest to the paper's 60
        steps=x.STEPS,
        twin="none",
    ),
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
