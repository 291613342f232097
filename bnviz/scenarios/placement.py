"""Placement: BatchNorm before the activation (Ioffe & Szegedy's choice: normalize Wx, drop the
conv's bias) against after it (an empirical alternative), measured on the same data, batches and
initial conv weights, for relu and sigmoid, five seeds each. The runs are
bnviz/experiments/placement.py; this module turns them into verdicts, figures and text."""

from __future__ import annotations

import plotly.graph_objects as go

from ..experiments import placement as x
from ..plot import NEUTRAL, layer_color, layer_symbol, line_markers, rgba
from . import common
from .base import Chart, Scenario
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
    rounded,
    sweep,
)

ACTIVATIONS = ("relu", "sigmoid")
PLACEMENTS = ("before", "after")
STEPS, EVAL_EVERY = x.STEPS, x.EVAL_EVERY
HALFWAY = STEPS // 2  # the caveat compares the final accuracy with the accuracy here
CHANCE = 0.1  # ten classes
DASH = {"before": "solid", "after": "dash"}
TITLE_FINAL = "Final test accuracy, one point per seed"
TITLE_ACC = "Test accuracy (eval mode) during training"
TITLE_LOSS = "Training loss (mean over windows of steps)"


def _variant(activation: str, placement: str) -> str:
    return f"{activation}, BN {placement} the activation"


PREFIXES = tuple(_variant(a, p) for a in ACTIVATIONS for p in PLACEMENTS)


def jobs(seeds=SEEDS) -> list:
    return [
        j
        for a in ACTIVATIONS
        for p in PLACEMENTS
        for j in sweep(_variant(a, p), x.train_placement, seeds, activation=a, placement=p)
    ]


def _color(activation: str) -> str:
    return layer_color(ACTIVATIONS.index(activation) * 2 if activation in ACTIVATIONS else 4)


def _symbol(activation: str) -> str:
    """A marker symbol per activation, so that its lines tell apart without hue too."""
    return layer_symbol(ACTIVATIONS.index(activation) * 2 if activation in ACTIVATIONS else 4)


def _final_acc(result: dict) -> float:
    return final(result["acc"])


def _midway(result: dict) -> float:
    """Accuracy over the last LAST_EVALS evaluations up to half the run's steps (HALFWAY)."""
    half = result["steps"] // 2
    return final(a for s, a in zip(result["eval_steps"], result["acc"]) if s <= half)


def _acc(results: dict, activation: str, placement: str, fn=_final_acc) -> dict[int, float]:
    return across(results, _variant(activation, placement), fn)


def verdicts(results: dict) -> list[Verdict]:
    results = results or {}
    out = [
        compare(
            f"after-{a}",
            f"with {a}, BN after the activation reached a higher final test accuracy than BN "
            "before it",
            f"with {a}, BN before the activation reached a higher final test accuracy than BN "
            "after it",
            _acc(results, a, "after"),
            _acc(results, a, "before"),
            scale=100,
            unit=" pp",
        )
        for a in ACTIVATIONS
    ]
    out.append(
        compare(
            "sigmoid-before-learns",
            f"with sigmoid, the networks with BN before the activation learned: their final "
            f"test accuracy was above chance ({CHANCE:.0%})",
            f"with sigmoid, the networks with BN before the activation stayed below chance "
            f"({CHANCE:.0%})",
            _acc(results, "sigmoid", "before"),
            CHANCE,
            scale=100,
            unit=" pp",
        )
    )
    out += [
        compare(
            f"before-improving-{a}",
            f"with {a}, the networks with BN before the activation were still improving: their "
            f"final test accuracy was higher than halfway through",
            f"with {a}, the networks with BN before the activation got worse in the second half "
            "of their training",
            _acc(results, a, "before"),
            _acc(results, a, "before", _midway),
            scale=100,
            unit=" pp",
        )
        for a in ACTIVATIONS
    ]
    return out


def _by_key(results: dict) -> dict[str, Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures


def _rows(results: dict, activation: str, placement: str) -> list[dict]:
    return list(by_seed(results, _variant(activation, placement)).values())


def _band_figure(results: dict, x_key: str, y_key: str, scale: float, title, y_title, note):
    """Mean over seeds per (activation, placement), with a band of ± one standard deviation."""
    fig = go.Figure()
    for a in ACTIVATIONS:
        for p in PLACEMENTS:
            rows = _rows(results, a, p)
            if not rows:
                continue
            n = min(len(r[x_key]) for r in rows)
            steps = rows[0][x_key][:n]
            mean, low, high = (scale * v for v in band([r[y_key][:n] for r in rows]))
            name, color = f"{a}, BN {p}", _color(a)
            edge = dict(width=0, color=color)
            fig.add_scatter(x=steps, y=low, line=edge, showlegend=False, hoverinfo="skip",
                            legendgroup=name)  # fmt: skip
            fig.add_scatter(x=steps, y=high, line=edge, fill="tonexty", showlegend=False,
                            fillcolor=rgba(color, 0.15), hoverinfo="skip",
                            legendgroup=name)  # fmt: skip
            fig.add_scatter(
                x=steps,
                y=mean,
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line=dict(color=color, dash=DASH[p], width=2),
                marker=line_markers(_symbol(a), color),
                hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3g}}<extra></extra>",
            )
    return common.finish(fig, title, y_title=y_title, note=note)


def _accuracy_figure(results: dict) -> go.Figure:
    fig = _band_figure(
        results,
        "eval_steps",
        "acc",
        100,
        TITLE_ACC,
        "test accuracy (%)",
        f"mean over seeds, band: ± 1 sd; dotted: chance; {_marks(results)}",
    )
    fig.add_hline(y=100 * CHANCE, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    return fig


def _loss_figure(results: dict) -> go.Figure:
    return _band_figure(
        results, "loss_steps", "loss", 1, TITLE_LOSS, "cross-entropy loss",
        "mean over seeds, band: ± 1 sd",
    )  # fmt: skip


def _final_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for a in ACTIVATIONS:
        for p in PLACEMENTS:
            accs = _acc(results, a, p)
            if not accs:
                continue
            name = f"{a}, BN {p}"
            symbol = "circle" if p == "before" else "diamond"
            fig.add_scatter(
                x=[name] * len(accs),
                y=[100 * v for v in accs.values()],
                mode="markers",
                name=name,
                marker=dict(color=_color(a), size=10, symbol=symbol, opacity=0.6),
                customdata=list(accs),
                hovertemplate="seed %{customdata}<br>%{y:.1f}%<extra>%{x}</extra>",
                showlegend=False,
            )
            s = Spread.of(accs.values())
            fig.add_scatter(
                x=[name],
                y=[100 * s.mean],
                mode="markers",
                name=f"{name}: mean ± sd",
                marker=dict(color=_color(a), size=16, symbol=symbol + "-open"),
                error_y=dict(type="data", array=[100 * s.sd if s.n > 1 else 0], color=_color(a)),
                hovertemplate="mean %{y:.1f}%<extra>%{x}</extra>",
                showlegend=False,
            )
    fig.add_hline(y=100 * CHANCE, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    return common.finish(
        fig,
        TITLE_FINAL,
        None,
        "test accuracy (%)",
        note=f"step {STEPS}; open: mean ± sd; dotted: chance; {_marks(results)}",
    )


def _marks(results: dict) -> str:
    """'after higher? relu: not distinguishable (2/5 seeds); sigmoid: 5/5 seeds agree'."""
    v = _by_key(results)
    return "after higher? " + "; ".join(f"{a}: {v[f'after-{a}'].mark}" for a in ACTIVATIONS)


FIGURES = (
    Chart(TITLE_FINAL, _final_figure, PREFIXES, y_title="test accuracy (%)"),
    Chart(TITLE_ACC, _accuracy_figure, PREFIXES, y_title="test accuracy (%)"),
    Chart(TITLE_LOSS, _loss_figure, PREFIXES, y_title="cross-entropy loss"),
)


# ---------------------------------------------------------------- explanation


def _spread(values: dict[int, float]) -> str:
    return Spread.of(values.values()).text(100, "%")


def _activation_text(results: dict, a: str, v: dict[str, Verdict]) -> str:
    parts = []
    for p in PLACEMENTS:
        accs = _acc(results, a, p)
        if accs:
            parts.append(f"BN {p} {_spread(accs)}")
    if not parts:
        return ""
    failed = [
        f"{r['placement']}, seed {r['seed']}: {r['status']} after {r['steps_done']} steps"
        for p in PLACEMENTS
        for r in _rows(results, a, p)
        if r["status"] != "completed"
    ]
    text = f"**With {a}:** " + ", ".join(parts) + f". {v[f'after-{a}'].text}"
    if failed:
        text += " (" + "; ".join(failed) + ")"
    return text


def _caveat(results: dict, v: dict[str, Verdict]) -> str:
    measured = [a for a in ACTIVATIONS if _acc(results, a, "before")]
    if not measured:
        return ""
    halfway = "; ".join(
        f"{a} {_spread(_acc(results, a, 'before', _midway))} → "
        f"{_spread(_acc(results, a, 'before'))}"
        for a in measured
    )
    improving = all(v[f"before-improving-{a}"].holds for a in ACTIVATIONS)
    still = ", and the networks with BN before the activation were still improving" * improving
    return (
        f"**Caveat.** Both comparisons are at step {STEPS}{still}. Test accuracy with BN before "
        f"the activation, halfway (step {HALFWAY}) → at the end: {halfway}. "
        + " ".join(v[f"before-improving-{a}"].text for a in ACTIVATIONS)
        + f" {v['sigmoid-before-learns'].text} So these comparisons say how fast the two "
        f"placements learn in {STEPS} steps at this learning rate, not where each would end."
    )


def _live_text(run) -> str:
    if run is None or not run.eval_steps or run.num_steps == 0:
        return ""
    c = run.config
    return (
        f"The live run ({c.activation}, {c.norm} norm placed {c.placement} the activation) is at "
        f"{common.pct(run.acc_running_stats[-1])} test accuracy at step {run.eval_steps[-1]}."
    )


def _setup(results: dict) -> str:
    rows = next((r for r in (_rows(results, a, p) for a in ACTIVATIONS for p in PLACEMENTS) if r),
                None)  # fmt: skip
    text = (
        "Ioffe & Szegedy (2015) put BatchNorm immediately before the nonlinearity: it normalizes "
        "Wx, and the layer's bias is dropped because BN's β takes its place (bnviz does the "
        "same). Putting BN after the activation is an empirical alternative, not the paper's. "
        f"Here each pair trains {STEPS} steps from the same initial conv weights on the same "
        "batches (the after-placement conv also gets a bias, since no BN directly follows it)"
    )
    if not rows:
        return text + "."
    r = rows[0]
    n = len(by_seed(results, _variant(r["activation"], r["placement"])))
    return (
        text + f": conv widths {'-'.join(map(str, r['widths']))}, batches of {r['batch_size']}, "
        f"SGD with momentum 0.9 at learning rate {common.lr_text(r['lr'])}, {n} seeds per "
        f"placement. Final test accuracy is the mean of the last {LAST_EVALS} evaluations "
        f"(eval mode, every {EVAL_EVERY} steps up to step {r['eval_steps'][-1]}), mean ± sd "
        "over seeds."
    )


def explain(results: dict, run, twin) -> str:
    results = results or {}
    v = _by_key(results)
    parts = [_setup(results)]
    if not results:
        parts.append("The runs are being measured…")
    for a in ACTIVATIONS:
        parts.append(_activation_text(results, a, v))
    parts.append(_caveat(results, v))
    pending = [item.text for item in v.values() if item.pending]
    if pending:
        parts.append(" ".join(pending))
    parts.append(_live_text(run))
    return "\n\n".join(p for p in parts if p)


def _clause(a: str, verdict: Verdict) -> str:
    s = verdict.spread
    diff = rounded(abs(s.mean), s.se, " pp")
    if verdict.holds:
        return f"with {a}, BN after won by {diff} ({verdict.agree}/{verdict.seeds} seeds)"
    if verdict.holds is False:
        return f"with {a}, BN before won by {diff} ({verdict.against}/{verdict.seeds} seeds)"
    return f"with {a}, not distinguishable"


def takeaway(results: dict, run, twin) -> str:
    """Both activations' verdicts and the caveat, from the numbers the explanation quotes."""
    v = _by_key(results or {})
    if any(v[f"after-{a}"].pending for a in ACTIVATIONS):
        return "Measuring BatchNorm before and after the activation…"
    text = "; ".join(_clause(a, v[f"after-{a}"]) for a in ACTIVATIONS)
    text = text[0].upper() + text[1:] + f" at step {STEPS}."
    if all(v[f"before-improving-{a}"].holds for a in ACTIVATIONS):
        text += " BN before was still learning."
    return text


SCENARIO = Scenario(
    id="placement",
    title="BatchNorm before or after the activation?",
    summary="Does it matter whether BatchNorm comes before or after the nonlinearity?",
    view="Training",
    preset={"dataset": "shapes", "norm": "batch", "placement": "before", "twin": "off"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
