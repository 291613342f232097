"""Epsilon: BatchNorm divides by sqrt(var + eps). When a channel's variance is tiny, eps
competes with it: the gain 1/sqrt(var + eps) stops following 1/sqrt(var) and flattens at
1/sqrt(eps), and the layer no longer normalizes. The built-in data has unit variance per input
channel, so the jobs make the situation explicitly: the input images are multiplied by 1e-3.
Five seeds of every variant; the jobs are in bnviz/experiments/epsilon.py."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..experiments.epsilon import INPUT_SCALE, STEPS, gain_at_init, train_with_eps
from ..plot import NEUTRAL, NORM_COLORS, NORM_SYMBOLS, layer_color, layer_symbol, rgba
from . import common, evidence
from .base import Chart, Scenario
from .evidence import SEEDS, Spread, Verdict, across, by_seed, compare, final, sweep

SCALED_EPS = (1e-8, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # trained on inputs x 1e-3
CONTROL_EPS = (1e-5, 1e-1, 1.0)  # trained on the usual (unscaled) inputs, for comparison
GAIN_LABEL = "gain of the first BN at init"
CHANCE = 0.1  # ten classes
TITLE_GAIN = "First BN: gain 1/√(var + ε) per channel"
TITLE_DOMINANCE = "Channels with ε ≥ their variance"
TITLE_ACC = f"Test accuracy after {STEPS} steps against ε"
EPS_AXIS = "ε, in every BN layer (log scale)"
ACC_AXIS = "test accuracy (%)"
SCALED, UNSCALED = "inputs x 1e-3", "unscaled inputs"


def _train_label(eps: float, scale: float) -> str:
    return f"train, eps {eps:g}, {SCALED if scale == INPUT_SCALE else UNSCALED}"


def jobs(seeds=SEEDS) -> list:
    out = sweep(GAIN_LABEL, gain_at_init, seeds)
    for e in SCALED_EPS:
        out += sweep(_train_label(e, INPUT_SCALE), train_with_eps, seeds, eps=e)
    for e in CONTROL_EPS:
        out += sweep(_train_label(e, 1.0), train_with_eps, seeds, eps=e, scale=1.0)
    return out


# ---------------------------------------------------------------- numbers across seeds


def _inits(results: dict) -> dict[int, dict]:
    """{seed: the gain at init} of the seeds measured so far."""
    return by_seed(results, GAIN_LABEL)


def _acc(results: dict, eps: float, scale: float, key: str = "acc") -> dict[int, float]:
    """{seed: test accuracy, the mean of the last evaluations}; key 'acc' (eval mode) or
    'acc_batch' (batch statistics)."""
    return across(results, _train_label(eps, scale), lambda r: final(r[key]))


def _at(init: dict, eps: float) -> int | None:
    """The index of eps in a gain-at-init result's grid (the nearest on a log scale, within a
    factor of 2), or None."""
    grid = np.log10(np.asarray(init["eps"], dtype=np.float64))
    k = int(np.argmin(np.abs(grid - np.log10(eps))))
    return k if abs(grid[k] - np.log10(eps)) < np.log10(2) else None


def _gain_ratio(eps: float):
    """A seed's largest over smallest first-BN gain at init at this eps: 1 when the gain no
    longer depends on the channel's variance."""

    def ratio(init: dict) -> float:
        gain = np.asarray(init["gain"][_at(init, eps)])
        return float(gain.max() / gain.min())

    return ratio


def _pct(values: dict[int, float]) -> str:
    """'57 ± 4%': mean ± standard deviation over the seeds, digits as the spread allows."""
    return Spread.of(values.values()).text(scale=100, unit="%")


def verdicts(results: dict) -> list[Verdict]:
    """Each conclusion the text draws, paired by seed (the gain at init and the training runs
    of one seed share their initial weights)."""
    results = results or {}
    s, u = INPUT_SCALE, 1.0
    return [
        compare(
            "gain-spread",
            "at init, the first BN's gains differed more between channels at ε = 1e-8 than at "
            "ε = 1e-5 (largest over smallest gain)",
            "at init, the first BN's gains differed more between channels at ε = 1e-5 than at "
            "ε = 1e-8 (largest over smallest gain)",
            across(results, GAIN_LABEL, _gain_ratio(1e-8)),
            across(results, GAIN_LABEL, _gain_ratio(1e-5)),
            unit="×",
        ),
        compare(
            "scaled-1e-8-over-1e-5",
            "on inputs × 1e-3, ε = 1e-8 reached a higher eval accuracy than ε = 1e-5",
            "on inputs × 1e-3, ε = 1e-5 reached a higher eval accuracy than ε = 1e-8",
            _acc(results, 1e-8, s),
            _acc(results, 1e-5, s),
            scale=100,
            unit=" points",
        ),
        compare(
            "scaled-1e-5-over-0.1",
            "on inputs × 1e-3, ε = 1e-5 reached a higher eval accuracy than ε = 0.1",
            "on inputs × 1e-3, ε = 0.1 reached a higher eval accuracy than ε = 1e-5",
            _acc(results, 1e-5, s),
            _acc(results, 1e-1, s),
            scale=100,
            unit=" points",
        ),
        compare(
            "eval-1e-5-over-1e-3",
            "on inputs × 1e-3, eval mode reached a higher accuracy at ε = 1e-5 than at ε = 1e-3",
            "on inputs × 1e-3, eval mode reached a higher accuracy at ε = 1e-3 than at ε = 1e-5",
            _acc(results, 1e-5, s),
            _acc(results, 1e-3, s),
            scale=100,
            unit=" points",
        ),
        compare(
            "batch-1e-5-over-1e-3",
            "on inputs × 1e-3, batch statistics reached a higher accuracy at ε = 1e-5 than at "
            "ε = 1e-3",
            "on inputs × 1e-3, batch statistics reached a higher accuracy at ε = 1e-3 than at "
            "ε = 1e-5",
            _acc(results, 1e-5, s, "acc_batch"),
            _acc(results, 1e-3, s, "acc_batch"),
            scale=100,
            unit=" points",
        ),
        compare(
            "unscaled-1e-5-over-1",
            "on the usual inputs, ε = 1e-5 reached a higher eval accuracy than ε = 1",
            "on the usual inputs, ε = 1 reached a higher eval accuracy than ε = 1e-5",
            _acc(results, 1e-5, u),
            _acc(results, 1.0, u),
            scale=100,
            unit=" points",
        ),
        compare(
            "eps-0.1-unscaled-over-scaled",
            "at ε = 0.1, the usual inputs reached a higher eval accuracy than inputs × 1e-3",
            "at ε = 0.1, inputs × 1e-3 reached a higher eval accuracy than the usual inputs",
            _acc(results, 1e-1, u),
            _acc(results, 1e-1, s),
            scale=100,
            unit=" points",
        ),
    ]


def _verdict(found: list[Verdict], key: str) -> Verdict:
    return next(v for v in found if v.key == key)


# ---------------------------------------------------------------- figures


def _gain_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    inits = _inits(results)
    first = True
    variances = []
    for seed, init in inits.items():
        gain = np.asarray(init["gain"])  # eps x channels
        for c in range(gain.shape[1]):
            fig.add_scatter(
                x=init["eps"],
                y=gain[:, c],
                mode="lines",
                name="each channel at init, each seed",
                legendgroup="init",
                showlegend=first,
                line=dict(color=layer_color(0), width=1),
                hovertemplate=f"seed {seed}, channel {c}<br>ε %{{x:.0e}}<br>gain %{{y:.4g}}"
                "<extra></extra>",
            )
            first = False
        variances.append(np.asarray(init["var"]))
    if variances:
        var = np.concatenate(variances)
        fig.add_scatter(
            x=var,
            y=1 / np.sqrt(2 * var),
            mode="markers",
            name="ε = the channel's variance",
            marker=dict(color=layer_color(0), symbol="x", size=7),
            hovertemplate="var %{x:.3g}<br>gain %{y:.4g}<extra></extra>",
        )
        fig.add_vrect(x0=var.min(), x1=var.max(), fillcolor=NEUTRAL, opacity=0.15, line_width=0)
    trained = [(e, by_seed(results, _train_label(e, INPUT_SCALE))) for e in SCALED_EPS]
    trained = [(e, runs) for e, runs in trained if runs]
    if trained:
        xs = [e for e, runs in trained for _ in runs]
        ys = [float(np.median(r["gain_after"])) for _, runs in trained for r in runs.values()]
        steps = next(iter(trained[0][1].values()))["steps"]
        fig.add_scatter(
            x=xs,
            y=ys,
            mode="markers",
            name=f"median over channels after {steps} steps, each seed",
            marker=dict(color=layer_color(2), symbol="diamond", size=7),
            hovertemplate="ε %{x:.0e}<br>median gain %{y:.4g}<extra>after training</extra>",
        )
    eps_all = sorted({e for init in inits.values() for e in init["eps"]} | set(SCALED_EPS))
    if inits or trained:
        eps = np.asarray(eps_all)
        fig.add_scatter(
            x=eps,
            y=eps**-0.5,
            mode="lines",
            name="1/√ε (the ceiling)",
            line=dict(color=NEUTRAL, dash="dot"),
            hovertemplate="1/√ε = %{y:.4g}<extra></extra>",
        )
    details = "inputs × 1e-3; shaded: the range of the channels' variances at init"
    if inits:
        v = _verdict(verdicts(results), "gain-spread")
        details += f"; gains more alike at ε = 1e-5 than 1e-8: {v.mark}"
    return common.finish(
        fig, TITLE_GAIN, "ε (log scale)", "gain (log scale)", note=details, log_x=True, log_y=True
    )


def _dominance_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    inits = list(_inits(results).values())
    if inits:
        eps, channels = inits[0]["eps"], inits[0]["channels"]
        # seeds x eps x blocks
        dominated = np.asarray([init["dominated"] for init in inits], dtype=float)
        for b, width in enumerate(channels):
            share = 100 * dominated[:, :, b] / width
            mean, low, _ = evidence.band(share)
            fig.add_scatter(
                x=eps,
                y=mean,
                error_y=dict(
                    type="data",
                    array=np.nan_to_num(mean - low),
                    color=layer_color(b),
                    thickness=1.5,
                ),
                mode="lines+markers",
                name=f"block{b + 1} ({width} channels)",
                line=dict(color=layer_color(b)),
                marker=dict(symbol=layer_symbol(b), size=8),
                hovertemplate=f"block{b + 1}<br>ε %{{x:.0e}}<br>%{{y:.0f}}% of {width} channels, "
                f"mean of {len(inits)} seeds<extra></extra>",
            )
    fig.update_yaxes(range=[-5, 105])
    return common.finish(
        fig,
        TITLE_DOMINANCE,
        EPS_AXIS,
        "channels with ε ≥ var (%)",
        note="block by block, at init, inputs × 1e-3; mean ± sd over seeds",
        log_x=True,
    )


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    found = verdicts(results)
    for grid, scale, key, name, color, dash, symbol in (
        (SCALED_EPS, INPUT_SCALE, "acc", "inputs × 1e-3, eval mode", "batch", "solid", None),
        (SCALED_EPS, INPUT_SCALE, "acc_batch", "inputs × 1e-3, batch statistics", "batch", "dot",
         "diamond"),
        (CONTROL_EPS, 1.0, "acc", "unscaled inputs, eval mode", "none", "dash", None),
    ):  # fmt: skip
        color = NORM_COLORS[color]
        rows = [(e, _acc(results, e, scale, key)) for e in grid]
        rows = [(e, acc) for e, acc in rows if acc]
        if not rows:
            continue
        x = [e for e, _ in rows]
        spreads = [Spread.of(acc.values()) for _, acc in rows]
        mean = np.asarray([100 * s.mean for s in spreads])
        sd = np.asarray([100 * s.sd if np.isfinite(s.sd) else 0.0 for s in spreads])
        edge = dict(legendgroup=name, showlegend=False, hoverinfo="skip", mode="lines")
        fig.add_scatter(x=x, y=mean - sd, line=dict(color=color, width=0), **edge)
        fig.add_scatter(
            x=x, y=mean + sd, fill="tonexty", fillcolor=rgba(color, 0.15), line=dict(width=0),
            **edge,
        )  # fmt: skip
        fig.add_scatter(
            x=x,
            y=mean,
            mode="lines+markers",
            name=name + ", mean ± sd",
            legendgroup=name,
            line=dict(color=color, dash=dash),
            marker=dict(symbol=symbol or NORM_SYMBOLS["batch" if scale != 1.0 else "none"]),
            customdata=[f"{s.text(100, '%')} over {s.n} seeds" for s in spreads],
            hovertemplate="ε %{x:.0e}<br>test accuracy %{customdata}<extra>" + name + "</extra>",
        )
    details = "dotted grey: chance (10%); bands: ± one standard deviation over seeds"
    if fig.data:
        marks = [
            f"ε 1e-5 above 0.1: {_verdict(found, 'scaled-1e-5-over-0.1').mark}",
            f"eval mode at 1e-5 above 1e-3: {_verdict(found, 'eval-1e-5-over-1e-3').mark}",
        ]
        details += "; " + "; ".join(marks)
    fig.add_hline(y=100 * CHANCE, line=dict(color=NEUTRAL, width=1, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    return common.finish(fig, TITLE_ACC, EPS_AXIS, ACC_AXIS, note=details, log_x=True)


FIGURES = (
    Chart(TITLE_GAIN, _gain_figure, (GAIN_LABEL, "train"), "ε (log scale)", "gain (log scale)"),
    Chart(TITLE_DOMINANCE, _dominance_figure, (GAIN_LABEL,), EPS_AXIS, "channels with ε ≥ var (%)"),
    Chart(TITLE_ACC, _accuracy_figure, ("train",), EPS_AXIS, ACC_AXIS),
)


# ---------------------------------------------------------------- explanation


def _e(eps: float) -> str:
    """An eps as the texts write it: 1e-08 -> '1e-8', 0.001 -> '0.001'."""
    return f"{eps:g}".replace("e-0", "e-")


def _eps_range(values: list[float]) -> str:
    """'1e-7' or '1e-7 to 1e-6' (the first ε of the grid at which something held, per seed)."""
    lo, hi = min(values), max(values)
    return _e(lo) if lo == hi else f"{_e(lo)} to {_e(hi)} (depending on the seed)"


def _first_eps(init: dict, test) -> float | None:
    """The first eps of the grid at which test(channels of block1 with eps >= var) holds."""
    return next((e for e, row in zip(init["eps"], init["dominated"]) if test(row[0])), None)


def _gain_text(inits: dict[int, dict], found: list[Verdict]) -> str:
    runs = list(inits.values())
    first = runs[0]
    var = np.concatenate([np.asarray(r["var"]) for r in runs])
    eps = first["eps"]
    width = first["channels"][0]
    parts = [
        f"With the inputs multiplied by {_e(first['scale'])}, the first BN's {width} channels have "
        f"variances from {common.num(var.min())} to {common.num(var.max())} at init over "
        f"{len(runs)} seeds' initial weights (each over {first['images']} held-out images × "
        "28 × 28 positions)."
    ]
    some = [_first_eps(r, lambda d: d > 0) for r in runs]
    every = [_first_eps(r, lambda d: d == width) for r in runs]
    if all(e is not None for e in some):
        text = f"ε ≥ var for some channel of block1 from ε = {_eps_range(some)}"
        if all(e is not None for e in every):
            text += f", and for every one from ε = {_eps_range(every)}"
        parts.append(text + ".")
    small, big = int(np.argmin(eps)), int(np.argmax(eps))
    gains_small = np.concatenate([np.asarray(r["gain"][small]) for r in runs])
    ratio = np.concatenate([np.asarray(r["gain"][small]) * np.sqrt(r["var"]) for r in runs])
    gains_big = np.concatenate([np.asarray(r["gain"][big]) for r in runs])
    off = 100 * float(np.max(np.abs(gains_big * np.sqrt(eps[big]) - 1)))
    out_std = np.concatenate([np.asarray(r["out_std"][big]) for r in runs])
    parts.append(
        f"At ε = {_e(eps[small])} the gains range from {common.num(gains_small.min())} to "
        f"{common.num(gains_small.max())}, {common.num(ratio.min())}–{common.num(ratio.max())} "
        f"times 1/√var. At ε = {_e(eps[big])} they are each within {off:.2g}% of 1/√ε = "
        f"{common.num(eps[big] ** -0.5)}: the gain no longer depends on the channel's variance, "
        "so BN no longer normalizes it. The standard deviation of its output, which BN should "
        f"make 1, is {common.num(out_std.min())}–{common.num(out_std.max())} there. "
        + _verdict(found, "gain-spread").text
    )
    return " ".join(parts)


def _dominated_cell(inits: dict[int, dict], eps: float) -> str:
    """'8/8 / 0–2/16 / 0/32': channels with eps >= var per block at init, over the seeds."""
    runs = [r for r in inits.values() if _at(r, eps) is not None]
    if not runs:
        return "…"
    rows = np.asarray([r["dominated"][_at(r, eps)] for r in runs])
    cells = []
    for b, width in enumerate(runs[0]["channels"]):
        lo, hi = int(rows[:, b].min()), int(rows[:, b].max())
        cells.append(f"{lo}/{width}" if lo == hi else f"{lo}–{hi}/{width}")
    return " / ".join(cells)


def _blocks(inits: dict[int, dict]) -> str:
    """'1 / 2 / 3': the blocks, in the order _dominated_cell lists them."""
    runs = list(inits.values())
    return " / ".join(str(b + 1) for b in range(len(runs[0]["channels"]))) if runs else "1"


def _below_every(inits: dict[int, dict], eps: float) -> str:
    """'5 of 5 seeds': the seeds in which eps is below every block1 variance at init."""
    n = sum(all(eps < v for v in r["var"]) for r in inits.values())
    return f"{n} of {len(inits)} seeds"


def _above_every(inits: dict[int, dict], eps: float, block: int) -> str:
    """'5 of 5 seeds': the seeds in which eps >= every variance of `block` at init."""
    n = sum(
        r["dominated"][_at(r, eps)][block] == r["channels"][block]
        for r in inits.values()
        if _at(r, eps) is not None
    )
    return f"{n} of {len(inits)} seeds"


def _table(results: dict) -> str:
    """Markdown: per eps, the channels with eps >= var per block, and the accuracies."""
    inits = _inits(results)
    blocks = (
        " / ".join(f"block{b + 1}" for b in range(len(next(iter(inits.values()))["channels"])))
        if inits
        else "per block"
    )
    lines = [
        f"| ε | channels with ε ≥ var at init ({blocks}), inputs × 1e-3 | test accuracy, inputs "
        "× 1e-3: eval mode / batch statistics | test accuracy, unscaled inputs: eval mode |",
        "|---|---|---|---|",
    ]
    for e in sorted(set(SCALED_EPS) | set(CONTROL_EPS)):
        scaled, batch = _acc(results, e, INPUT_SCALE), _acc(results, e, INPUT_SCALE, "acc_batch")
        a = f"{_pct(scaled)} / {_pct(batch)}" if scaled else ("…" if e in SCALED_EPS else "–")
        unscaled = _acc(results, e, 1.0)
        b = _pct(unscaled) if unscaled else ("…" if e in CONTROL_EPS else "–")
        lines.append(f"| {_e(e)} | {_dominated_cell(inits, e)} | {a} | {b} |")
    return "\n".join(lines)


def _accuracy_text(results: dict, found: list[Verdict]) -> str:
    """Three paragraphs: eps against block1's variances, against every BN's, and on the usual
    inputs; each quoting its verdicts."""
    any_run = next(
        (r for e in SCALED_EPS + CONTROL_EPS for s in (INPUT_SCALE, 1.0)
         for r in by_seed(results, _train_label(e, s)).values()),
        None,
    )  # fmt: skip
    if any_run is None:
        return "Test accuracy against ε is being measured, five seeds each…"
    steps = any_run["eval_steps"]
    when = f"steps {steps[0]}–{steps[-1]}" if len(steps) > 1 else f"step {steps[0]}"
    v = {key: _verdict(found, key) for key in (
        "scaled-1e-8-over-1e-5", "scaled-1e-5-over-0.1", "eval-1e-5-over-1e-3",
        "batch-1e-5-over-1e-3", "unscaled-1e-5-over-1", "eps-0.1-unscaled-over-scaled",
    )}  # fmt: skip
    inits = _inits(results)
    first = v["scaled-1e-8-over-1e-5"]
    block1 = (
        f"Trained for {any_run['steps']} steps with ε in every BN layer as in the app, test "
        f"accuracy is the mean of the evaluations at {when}, in eval mode (running statistics) "
        "and with batch statistics (mean ± standard deviation over the seeds in the table "
        f"below). On inputs × 1e-3, ε = 1e-8 is below every block1 variance at init in "
        f"{_below_every(inits, 1e-8)}, and ε = 1e-5 at or above every one in "
        f"{_above_every(inits, 1e-5, 0)}. " + first.text
    )
    if first.holds is not True and not first.pending:
        block1 += (
            " An ε that swamps the first BN's variances did not cost accuracy: the later BNs "
            "still normalize, so they scale the weakened signal back up."
        )
    every = f"At ε = 0.1, ε ≥ var at init for {_dominated_cell(inits, 1e-1)} channels of blocks "
    every += f"{_blocks(inits)}"
    every += ": it dominates every BN. " if _dominates_all(inits, 1e-1) else ". "
    every += v["scaled-1e-5-over-0.1"].text
    eval_v, batch_v = v["eval-1e-5-over-1e-3"], v["batch-1e-5-over-1e-3"]
    every += (
        f" In between, at ε = 1e-3 (Keras' default), ε ≥ var at init for "
        f"{_dominated_cell(inits, 1e-3)} channels of blocks {_blocks(inits)}. "
        f"{eval_v.text} {batch_v.text}"
    )
    if eval_v.holds and batch_v.holds is not True and not batch_v.pending:
        every += (
            " Normalizing the weak signal with the running averages (eval mode) went wrong "
            "where normalizing it with each batch's own statistics did not."
        )
    usual = v["eps-0.1-unscaled-over-scaled"]
    control = "For comparison, the same training on the usual unit-variance inputs. "
    control += v["unscaled-1e-5-over-1"].text + " " + usual.text
    if usual.holds:
        control += " What matters is ε against the variance, not ε alone."
    return "\n\n".join([block1, every, control])


def _dominates_all(inits: dict[int, dict], eps: float) -> bool:
    """Whether eps >= every variance of every block at init, in every seed measured."""
    return bool(inits) and all(
        row == r["channels"]
        for r in inits.values()
        for row in [r["dominated"][_at(r, eps)]]
        if _at(r, eps) is not None
    )


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
    results = results or {}
    found = verdicts(results)
    parts = [
        "BatchNorm computes y = γ (x − mean) / √(var + ε) + β: each channel is multiplied by "
        "the gain γ/√(var + ε). ε guards against dividing by zero (PyTorch's default 1e-5, "
        "Keras' 1e-3). The shapes data is normalized to variance 1, so here the inputs are "
        "multiplied by 1e-3 inside the jobs (a transformation of the data, nothing else "
        "changes), which makes the first convolution's output variances 1e-6 times smaller."
    ]
    inits = _inits(results)
    if inits:
        parts.append(_gain_text(inits, found))
    else:
        parts.append("The gains at init are being measured, five seeds…")
    parts.append(_accuracy_text(results, found))
    if results:
        parts.append(_table(results))
    live = _live_text(run)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """The same ε on two input scales, from the numbers the explanation quotes."""
    results = results or {}
    v = _verdict(verdicts(results), "eps-0.1-unscaled-over-scaled")
    if v.pending:
        return "Measuring accuracy against ε on inputs with tiny variances…"
    usual, scaled = _pct(_acc(results, 1e-1, 1.0)), _pct(_acc(results, 1e-1, INPUT_SCALE))
    if v.holds:
        return (
            f"ε = 0.1: test accuracy {usual} on the usual inputs, **{scaled}** on inputs × 1e-3, "
            f"whose variances it swamps ({v.agree} of {v.seeds} seeds)."
        )
    return (
        f"ε = 0.1: test accuracy {usual} on the usual inputs, {scaled} on inputs × 1e-3: not a "
        f"clear difference here ({v.agree} of {v.seeds} seeds)."
    )


SCENARIO = Scenario(
    id="epsilon",
    title="Epsilon: when ε competes with the variance",
    summary="What does ε in 1/√(var + ε) do when a channel's variance is tiny?",
    view="Running statistics",
    preset={"dataset": "shapes", "norm": "batch", "eps": 0.1, "twin": "off"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
)
