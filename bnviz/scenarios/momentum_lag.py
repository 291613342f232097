"""Scenario 'momentum-lag': BatchNorm's running averages lag behind the weights they describe
(Wu & Johnson 2021). The same training with momentum 0.01, 0.1, 0.9 and None (cumulative
average), five seeds each: running against batch mean of one channel, eval accuracy against
steps with its spread over seeds, and eval accuracy with the running averages against eval
accuracy after recomputing precise statistics (Ioffe & Szegedy 2015, Algorithm 2) over the last
evaluations. The jobs are in bnviz/experiments/momentum_lag.py."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from ..batchnorm import effective_window, keras_momentum
from ..experiments.momentum_lag import PRECISE_BATCHES, momentum_run, precise_and_restore
from ..plot import NEUTRAL, TWO_ROW_PLOT_HEIGHT, layer_color, layer_symbol, line_markers, rgba
from ..record import Run
from ..trainer import EVAL_SIZE, Trainer
from . import evidence
from .base import Action, Chart, Scenario
from .common import finish, num, pct, subplots
from .evidence import SEEDS, Spread, Verdict, across, by_seed, compare, final, sweep

MOMENTA = (0.01, 0.1, 0.9, None)
CHANNEL = 0
TITLE_MEANS = "Running mean against batch mean"
TITLE_CURVES = "Test accuracy in eval mode, over 5 seeds"
TITLE_FINAL = "Running averages against precise statistics"
ACC_AXIS = "test accuracy, eval mode (%)"
# One accuracy's standard error at 50% on the held-out images, in points: a mean difference
# smaller than this is one that another five seeds may well decide differently.
NOISE_POINTS = 100 * math.sqrt(0.25 / EVAL_SIZE)
WITH_RUNNING, WITH_PRECISE = "running averages", "precise statistics"  # the final chart's x


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


def _short(momentum: float | None) -> str:
    return "None" if momentum is None else f"{momentum:g}"


def _color(momentum: float | None) -> str:
    return layer_color(MOMENTA.index(momentum)) if momentum in MOMENTA else NEUTRAL


def _symbol(momentum: float | None) -> str:
    """A marker symbol per momentum, so that its lines tell apart without hue too."""
    return layer_symbol(MOMENTA.index(momentum) if momentum in MOMENTA else len(MOMENTA))


def jobs(seeds=SEEDS) -> list:
    return [j for m in MOMENTA for j in sweep(_label(m), momentum_run, seeds, momentum=m)]


# ---------------------------------------------------------------- numbers across seeds


def _running(results: dict, m) -> dict[int, float]:
    """{seed: eval accuracy with the running averages, the mean of the last evaluations}."""
    return across(results, _label(m), lambda r: final(r["acc_running"]))


def _precise(results: dict, m) -> dict[int, float]:
    """{seed: eval accuracy after recomputing precise statistics, at the same evaluations}."""
    return across(results, _label(m), lambda r: final(r["precise_after"]))


def _batch(results: dict, m) -> dict[int, float]:
    """{seed: test accuracy with batch statistics (train mode), at the same evaluations}."""
    return across(results, _label(m), lambda r: final(r["acc_batch"]))


def _lag(results: dict, m) -> dict[int, float]:
    return across(results, _label(m), "lag")


def verdicts(results: dict) -> list[Verdict]:
    """Precise statistics against the running averages at each momentum, the momenta against
    each other (running averages), and how far the running mean lags, paired by seed."""
    results = results or {}
    out = []
    for m in MOMENTA:
        out.append(
            compare(
                f"precise-{_short(m)}",
                f"precise statistics gave a higher eval accuracy than the running averages at "
                f"momentum {_short(m)}",
                f"the running averages gave a higher eval accuracy than precise statistics at "
                f"momentum {_short(m)}",
                _precise(results, m),
                _running(results, m),
                scale=100,
                unit=" points",
            )
        )
    for a, b in ((0.1, 0.01), (0.1, None), (0.9, 0.1)):
        out.append(
            compare(
                f"running-{_short(a)}-over-{_short(b)}",
                f"momentum {_short(a)} gave a higher eval accuracy than momentum {_short(b)} "
                "with the running averages",
                f"momentum {_short(b)} gave a higher eval accuracy than momentum {_short(a)} "
                "with the running averages",
                _running(results, a),
                _running(results, b),
                scale=100,
                unit=" points",
            )
        )
    out.append(
        compare(
            "lag-0.01-over-0.1",
            "the final running mean lay further from the recent batch means at momentum 0.01 "
            "than at 0.1",
            "the final running mean lay further from the recent batch means at momentum 0.1 "
            "than at 0.01",
            _lag(results, 0.01),
            _lag(results, 0.1),
        )
    )
    return out


def _verdict(found: list[Verdict], key: str) -> Verdict:
    return next(v for v in found if v.key == key)


def _fragile(v: Verdict) -> str:
    """A sentence for a difference within one accuracy's noise ('' otherwise)."""
    if v.pending or not abs(v.spread.mean) < NOISE_POINTS:
        return ""
    return (
        f" A mean difference this small is within the standard error of one accuracy on "
        f"{EVAL_SIZE} test images: another five seeds may decide it differently."
    )


def _pct(values: dict[int, float]) -> str:
    """'49 ± 8%': mean ± standard deviation over the seeds, digits as the spread allows."""
    return Spread.of(values.values()).text(scale=100, unit="%")


# ---------------------------------------------------------------- figures


def _first_seed(results: dict, m) -> tuple[int, dict] | None:
    runs = by_seed(results, _label(m))
    return next(iter(runs.items()), None)


def _means_figure(results: dict) -> go.Figure:
    fig = subplots(
        [_label(m) for m in MOMENTA],
        rows=2,
        cols=2,
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.06,
    )
    shown = None
    for k, m in enumerate(MOMENTA):
        found = _first_seed(results, m)
        if found is None:
            continue
        seed, r = found
        shown = shown or (seed, r)
        row, col = k // 2 + 1, k % 2 + 1
        fig.add_trace(
            go.Scatter(
                x=r["mean_steps"],
                y=r["batch_mean"],
                name="batch mean",
                legendgroup="batch",
                showlegend=shown[1] is r,
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
                name=f"running mean, {_label(m)}",
                mode="lines+markers",
                line=dict(color=_color(m), width=2.5),
                marker=line_markers(_symbol(m)),
                hovertemplate="step %{x}: running mean %{y:.4g}<extra>" + _label(m) + "</extra>",
            ),
            row=row,
            col=col,
        )
    details = "dots: the mean of each training batch; lines: the running mean"
    if shown is not None:
        seed, r = shown
        lag = _verdict(verdicts(results), "lag-0.01-over-0.1")
        details = (
            f"seed {seed}, block {r['block']}, channel {r['channel']}; {details}; lag larger at "
            f"0.01 than at 0.1: {lag.mark}"
        )
    return finish(
        fig,
        TITLE_MEANS,
        y_title="mean (value)",
        note=details,
        plot_height=TWO_ROW_PLOT_HEIGHT,
        panel_titles=True,
    )


def _stack(rows: list[list[float]]) -> np.ndarray:
    """Seeds' series as one array, shorter ones (a run that stopped early) padded with NaN."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = np.asarray(r, dtype=np.float64)
    return out


def _band(fig: go.Figure, x, rows, color: str, group: str, row: int, col: int) -> np.ndarray:
    """A band of mean ± sd over seeds (two edge traces) at x; returns the mean."""
    mean, low, high = evidence.band(_stack(rows) * 100)
    edge = dict(legendgroup=group, showlegend=False, hoverinfo="skip", mode="lines")
    fig.add_trace(go.Scatter(x=x, y=low, line=dict(color=color, width=0), **edge), row, col)
    fig.add_trace(
        go.Scatter(
            x=x, y=high, fill="tonexty", fillcolor=rgba(color, 0.2), line=dict(width=0), **edge
        ),
        row,
        col,
    )
    return mean


def _curves_figure(results: dict) -> go.Figure:
    fig = subplots(
        [_label(m) for m in MOMENTA],
        rows=2,
        cols=2,
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=0.14,
        horizontal_spacing=0.06,
    )
    legend = {"batch": True, "precise": True}
    last = None
    for k, m in enumerate(MOMENTA):
        runs = list(by_seed(results, _label(m)).values())
        if not runs:
            continue
        row, col = k // 2 + 1, k % 2 + 1
        longest = max(runs, key=lambda r: len(r["eval_steps"]))
        x = longest["eval_steps"]
        seeds = f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"
        batch = evidence.band(_stack([r["acc_batch"] for r in runs]) * 100)[0]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=batch,
                name="batch statistics (train mode), mean",
                legendgroup="batch",
                showlegend=legend.pop("batch", False),
                mode="lines",
                line=dict(color=NEUTRAL, dash="dot"),
                hovertemplate="step %{x}: %{y:.0f}%<extra>batch statistics</extra>",
            ),
            row,
            col,
        )
        mean = _band(fig, x, [r["acc_running"] for r in runs], _color(m), _label(m), row, col)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean,
                name=f"running averages, {_label(m)}",
                legendgroup=_label(m),
                mode="lines+markers",
                line=dict(color=_color(m)),
                marker=line_markers(_symbol(m)),
                hovertemplate="step %{x}: %{y:.0f}% (mean of " + seeds + ")<extra>"
                f"{_label(m)}</extra>",
            ),
            row,
            col,
        )
        precise = _stack([r["precise_after"] for r in runs]) * 100
        mean, low, _ = evidence.band(precise)
        fig.add_trace(
            go.Scatter(
                x=longest["precise_steps"],
                y=mean,
                error_y=dict(type="data", array=mean - low, color=_color(m), thickness=1.5),
                name="precise statistics, mean ± sd",
                legendgroup="precise",
                showlegend=legend.pop("precise", False),
                mode="markers",
                marker=dict(color=_color(m), symbol="star", size=11, line=dict(width=1)),
                hovertemplate="step %{x}: %{y:.0f}% after precise statistics<extra>"
                f"{_label(m)}</extra>",
            ),
            row,
            col,
        )
        last = len(runs)
    fig.update_yaxes(range=[0, 100])
    details = None
    if last is not None:
        details = (
            "lines: mean over seeds; bands: ± one standard deviation; ★ after recomputing "
            "precise statistics at the last evaluations"
        )
    return finish(
        fig,
        TITLE_CURVES,
        y_title=ACC_AXIS,
        note=details,
        plot_height=TWO_ROW_PLOT_HEIGHT,
        panel_titles=True,
    )


def _final_figure(results: dict) -> go.Figure:
    """Per momentum, eval accuracy with the running averages and after precise statistics
    (mean ± sd over seeds), joined; each seed's pair as a thin line behind."""
    fig = go.Figure()
    found = verdicts(results)
    x = [WITH_RUNNING, WITH_PRECISE]
    for m in MOMENTA:
        running, precise = _running(results, m), _precise(results, m)
        if not running:
            continue
        color = _color(m)
        seeds = sorted(set(running) & set(precise))
        pairs_x = [v for _ in seeds for v in (*x, None)]
        pairs_y = [v for s in seeds for v in (100 * running[s], 100 * precise[s], None)]
        fig.add_trace(
            go.Scatter(
                x=pairs_x,
                y=pairs_y,
                name=f"each seed, {_label(m)}",
                legendgroup=_label(m),
                showlegend=False,
                mode="lines",
                line=dict(color=rgba(color, 0.35), width=1),
                hoverinfo="skip",
            )
        )
        spreads = [Spread.of(running.values()), Spread.of(precise.values())]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[100 * s.mean for s in spreads],
                error_y=dict(
                    type="data",
                    array=[100 * s.sd if np.isfinite(s.sd) else 0.0 for s in spreads],
                    color=color,
                    thickness=1.5,
                ),
                name=f"{_label(m)}, mean ± sd",
                legendgroup=_label(m),
                mode="lines+markers",
                line=dict(color=color, width=2.5),
                marker=dict(symbol=_symbol(m), size=10, color=color),
                customdata=[f"{s.text(100, '%')} over {s.n} seeds" for s in spreads],
                hovertemplate="%{x}: %{customdata}<extra>" + _label(m) + "</extra>",
            )
        )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=x, range=[-0.35, 1.35])
    fig.update_yaxes(range=[0, 100])
    marks = "; ".join(
        f"{_short(m)}: {_verdict(found, f'precise-{_short(m)}').mark}" for m in MOMENTA
    )
    return finish(
        fig,
        TITLE_FINAL,
        "",
        ACC_AXIS,
        note=f"mean of the evaluations at {_steps_text(results)}; precise higher? {marks}",
    )


def _steps_text(results: dict) -> str:
    """'steps 260–300': where the final accuracies were measured (the last evaluations)."""
    runs = [r for m in MOMENTA for r in by_seed(results, _label(m)).values()]
    if not runs:
        return "the last evaluations"
    steps = runs[0]["precise_steps"]
    return f"steps {steps[0]}–{steps[-1]}" if len(steps) > 1 else f"step {steps[0]}"


FIGURES = (
    Chart(TITLE_MEANS, _means_figure, ("momentum",), None, "mean (value)"),
    Chart(TITLE_CURVES, _curves_figure, ("momentum",), None, ACC_AXIS),
    Chart(TITLE_FINAL, _final_figure, ("momentum",), None, ACC_AXIS),
)


# ---------------------------------------------------------------- explanation

CONVENTION = (
    "PyTorch updates running = (1 − momentum)·running + momentum·batch, so momentum is the "
    "weight of the **new** batch (default 0.1); Keras' momentum is the weight of the **old** "
    "value (default 0.99): PyTorch 0.1 = Keras 0.9, and Keras 0.99 = PyTorch 0.01. The average "
    "spans about 1/momentum steps (PyTorch convention); momentum=None is a cumulative average "
    "in which step k gets weight 1/k, so the start of training counts as much as the end."
)


def _first_sentence(found: list[Verdict]) -> str:
    """The published finding, and whether it reproduced here (at momentum 0.01, the lag that
    Wu & Johnson discuss)."""
    v = _verdict(found, "precise-0.01")
    if v.pending or v.holds:
        return (
            "A running average lags: it mixes statistics from older weights. Wu & Johnson (2021) "
            "show that recomputing 'precise' statistics after training (Ioffe & Szegedy 2015, "
            "Algorithm 2: average the batch statistics of many batches with the weights fixed) "
            "repairs eval accuracy."
        )
    how = "the running averages did better" if v.holds is False else "the seeds disagree"
    return (
        "Wu & Johnson's (2021) finding, that recomputing 'precise' statistics (Ioffe & Szegedy "
        "2015, Algorithm 2) repairs eval accuracy when running averages lag, did not reproduce "
        f"here at momentum 0.01: {how}. A running average lags because it mixes statistics "
        "from older weights."
    )


def _identical(results: dict) -> tuple[int, int]:
    """(seeds whose runs at every measured momentum have one loss digest, seeds measured at
    more than one momentum)."""
    digests: dict[int, list[str]] = {}
    for m in MOMENTA:
        for s, r in by_seed(results, _label(m)).items():
            digests.setdefault(s, []).append(r["loss_digest"])
    several = {s: d for s, d in digests.items() if len(d) > 1}
    return sum(len(set(d)) == 1 for d in several.values()), len(several)


def _explain_jobs(results: dict, found: list[Verdict]) -> list[str]:
    first = next((r for m in MOMENTA for r in by_seed(results, _label(m)).values()), None)
    if first is None:
        return ["The four momenta are being measured, five seeds each."]
    seeds = sorted({s for m in MOMENTA for s in by_seed(results, _label(m))})
    seed_text = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    lines = [
        f"**Measured** (widths {'-'.join(map(str, first['widths']))}, batch "
        f"{first['batch_size']}, SGD lr {first['lr']:g}, {first['steps']} steps, {seed_text}; "
        f"each seed trains on the same batches at every momentum). Final test accuracy is the "
        f"mean of the evaluations at {_steps_text(results)} ({len(first['precise_steps'])} of "
        f"them: eval-mode accuracy swings from one evaluation to the next), in eval mode with the "
        f"running averages, then with precise statistics recomputed from "
        f"{first['precise_batches']} training batches at each of those steps (and put back "
        "before training went on). Mean ± standard deviation over the seeds:"
    ]
    for m in MOMENTA:
        running, precise, lag = _running(results, m), _precise(results, m), _lag(results, m)
        if not running:
            lines.append(f"- momentum {_short(m)}: being measured.")
            continue
        ran = next(iter(by_seed(results, _label(m)).values()))["momentum"]  # as the job ran
        if ran is None:
            what = "a cumulative average: every step so far weighs the same; no Keras equivalent"
        else:
            what = f"Keras {keras_name(ran)}; averages over {window_text(ran)}"
        recent = first["recent_batches"]
        lines.append(
            f"- momentum {_short(m)} ({what}): {_pct(running)} with the running averages → "
            f"{_pct(precise)} with precise statistics; the final running mean of block "
            f"{first['block']}, channel {first['channel']} lay "
            f"{Spread.of(lag.values()).text()} from the mean of the last {recent} batch means. "
            + _verdict(found, f"precise-{_short(m)}").text
            + _fragile(_verdict(found, f"precise-{_short(m)}"))
        )
    lines.append(
        "Between momenta (running averages, same seeds): "
        + " ".join(v.text for v in found if v.key.startswith("running-"))
        + " "
        + _verdict(found, "lag-0.01-over-0.1").text
    )
    same, several = _identical(results)
    if several:
        # the same weights at every momentum, so the same batch-statistics accuracy
        batch = next(b for m in MOMENTA if (b := _batch(results, m)))
        text = f"The training losses at every momentum are identical in {same} of {several} seeds"
        if same == several:
            text += (
                ": momentum changes only the running buffers, which training mode never reads, "
                "so precise statistics give the same accuracy at every momentum"
            )
        lines.append(
            f"{text}. With batch statistics (train mode) test accuracy was {_pct(batch)} over "
            "the same steps."
        )
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
    found = verdicts(results)
    lines = [_first_sentence(found) + " " + CONVENTION]
    lines += _explain_jobs(results, found)
    lines += _explain_live(run)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The momentum-0.01 verdict in two lines, with the numbers the explanation quotes."""
    results = results or {}
    v = _verdict(verdicts(results), "precise-0.01")
    if v.pending:
        return "Measuring the four momenta over five seeds…"
    running, precise = _pct(_running(results, 0.01)), _pct(_precise(results, 0.01))
    if v.holds:
        return (
            f"Momentum 0.01 (Keras 0.99): eval accuracy {running} with running averages, "
            f"**{precise}** with precise statistics ({v.agree} of {v.seeds} seeds)."
        )
    return (
        f"Momentum 0.01: {running} with running averages, {precise} with precise statistics; "
        f"not a clear difference here ({v.agree} of {v.seeds} seeds)."
    )


# ---------------------------------------------------------------- the action


def recompute_precise(trainer: Trainer, batches: int = PRECISE_BATCHES) -> dict:
    """Precise statistics on the live main network (Ioffe & Szegedy, Algorithm 2), measured
    and then undone: the live run goes on with its own running averages, so its recorded
    statistics and the update formula stay consistent."""
    try:
        result = precise_and_restore(trainer, batches)
    except (ValueError, RuntimeError) as e:
        return {"error": str(e), "step": trainer.steps_done}
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
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(PRECISE_ACTION,),
)
