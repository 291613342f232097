"""Train mode against eval mode: the classic mistakes. A BatchNorm network in train mode
normalizes with the statistics of whatever batch it is given, so predicting one image in train
mode normalizes the image with its own statistics; batch statistics get noisier as the batch
shrinks; and with one value per channel PyTorch refuses to train at all. Five seeds of each
measurement (bnviz/experiments/train_vs_eval.py), conclusions as verdicts across them."""

from __future__ import annotations

import plotly.graph_objects as go

from ..experiments import train_vs_eval as x
from ..experiments.train_vs_eval import (
    one_network,
    one_value_error,
    predict_modes,
    train_at_batch,
)
from ..plot import NEUTRAL, NORM_COLORS, rgba
from ..trainer import Trainer
from . import common
from . import evidence as ev
from .base import Action, Chart, Scenario, job

TRAIN_BATCHES = (2, 4, 8, 16, 64)  # batch sizes trained at, for the gap the app's meter shows
NETWORK = "one network"  # trained at batch 32: single images, test batch sizes, precise stats
ERROR_LABEL = "batch of 1, last block 1x1, train mode"
SMALL_TEST, LARGE_TEST = 2, 64  # the test batch sizes the verdicts compare
MODES = (  # (key in predict_modes' result, bar label, colour, pattern)
    ("acc_eval", "eval mode", NORM_COLORS["batch"], ""),
    ("acc_train_single", "train, one image", NORM_COLORS["none"], "/"),
    ("acc_train_batch", "train, one batch", NEUTRAL, "."),
)
ACC_AXIS = "test accuracy (%)"
GAP_AXIS = "gap (percentage points)"
TITLE_SINGLE = "Held-out images: accuracy by mode"
TITLE_EXAMPLE = "One test image: predicted probabilities"
TITLE_ACCURACY = "Test accuracy by test batch size"
TITLE_GAP = "Gap: batch statistics − running statistics"


def trained_label(batch_size: int) -> str:
    return f"trained at batch {batch_size}"


def jobs(seeds=ev.SEEDS) -> list:
    out = ev.sweep(NETWORK, one_network, seeds)
    for b in TRAIN_BATCHES:
        out += ev.sweep(trained_label(b), train_at_batch, seeds, batch_size=b, steps=x.TRAIN_STEPS)
    out.append(job(ERROR_LABEL, one_value_error))
    return out


# ---------------------------------------------------------------- reading results


def _networks(results: dict) -> dict[int, dict]:
    """{seed: one_network result} for the networks whose predictions apply (BatchNorm)."""
    nets = ev.by_seed(results, NETWORK)
    return {s: r for s, r in nets.items() if r["single"].get("applicable")}


def single(results: dict, key: str) -> dict[int, float]:
    """{seed: a number of the single-image predictions}, e.g. acc_eval."""
    return {s: float(r["single"][key]) for s, r in _networks(results).items()}


def at_test_batch(results: dict, batch_size: int) -> dict[int, float]:
    """{seed: test accuracy with batch statistics of test batches of this size}."""
    out = {}
    for s, r in _networks(results).items():
        if batch_size in r["batch_sizes"]:
            out[s] = float(r["acc_batch"][r["batch_sizes"].index(batch_size)])
    return out


def network(results: dict, key: str) -> dict[int, float]:
    """{seed: acc_running or acc_precise of the network trained at batch 32}."""
    return {s: float(r[key]) for s, r in _networks(results).items()}


def trained(results: dict, batch_size: int, key: str) -> dict[int, float]:
    """{seed: acc_running, acc_batch or gap} of the networks trained at this batch size."""
    return ev.across(results, trained_label(batch_size), key)


def _acc(values: dict) -> str:
    return ev.Spread.of(values.values()).text(100, "%")


def _pp(values: dict) -> str:
    s = ev.Spread.of(values.values())
    return ev.plus_minus(100 * s.mean, 100 * s.sd, " pp", sign=True)


def _range(values: dict) -> str:
    """Counts over seeds as their range: '1 to 2' (or '9' when every seed agrees)."""
    low, high = int(min(values.values())), int(max(values.values()))
    return f"{low}" if low == high else f"{low} to {high}"


def _differences(a: dict, b: dict) -> dict[int, float]:
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


# ---------------------------------------------------------------- verdicts


def verdicts(results: dict) -> list[ev.Verdict]:
    results = results or {}
    pts = dict(scale=100, unit=" points")
    running = network(results, "acc_running")
    return [
        ev.compare(
            "eval-beats-single",
            "predicting one image at a time, eval mode got more held-out images right than "
            "train mode",
            "predicting one image at a time, train mode got more held-out images right than "
            "eval mode",
            single(results, "acc_eval"),
            single(results, "acc_train_single"),
            **pts,
        ),
        ev.compare(
            "batch-beats-single",
            "in train mode, the images normalized together as one batch got more right than "
            "one image at a time",
            "in train mode, one image at a time got more right than the images normalized "
            "together as one batch",
            single(results, "acc_train_batch"),
            single(results, "acc_train_single"),
            **pts,
        ),
        ev.compare(
            "small-test-batches-below",
            "the running averages scored above the batch statistics of test batches of "
            f"{SMALL_TEST} images (a negative gap)",
            f"the batch statistics of test batches of {SMALL_TEST} images scored above the "
            "running averages (a positive gap)",
            running,
            at_test_batch(results, SMALL_TEST),
            **pts,
        ),
        ev.compare(
            "large-test-batches-above",
            f"the batch statistics of test batches of {LARGE_TEST} images scored above the "
            "running averages (a positive gap)",
            "the running averages scored above the batch statistics of test batches of "
            f"{LARGE_TEST} images (a negative gap)",
            at_test_batch(results, LARGE_TEST),
            running,
            **pts,
        ),
        ev.compare(
            "precise-above-running",
            "precise statistics, recomputed after training, scored above the running averages",
            "the running averages scored above precise statistics recomputed after training",
            network(results, "acc_precise"),
            running,
            **pts,
        ),
        ev.compare(
            "trained-small-negative",
            f"trained at batch {min(TRAIN_BATCHES)}, the running averages scored above batch "
            "statistics (the meter's gap was negative)",
            f"trained at batch {min(TRAIN_BATCHES)}, batch statistics scored above the running "
            "averages (the meter's gap was positive)",
            trained(results, min(TRAIN_BATCHES), "acc_running"),
            trained(results, min(TRAIN_BATCHES), "acc_batch"),
            **pts,
        ),
        ev.compare(
            "trained-large-positive",
            f"trained at batch {max(TRAIN_BATCHES)}, batch statistics scored above the running "
            "averages (the meter's gap was positive)",
            f"trained at batch {max(TRAIN_BATCHES)}, the running averages scored above batch "
            "statistics (the meter's gap was negative)",
            trained(results, max(TRAIN_BATCHES), "acc_batch"),
            trained(results, max(TRAIN_BATCHES), "acc_running"),
            **pts,
        ),
    ]


def _by_key(results: dict) -> dict[str, ev.Verdict]:
    return {v.key: v for v in verdicts(results)}


# ---------------------------------------------------------------- figures


def _single_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    nets = _networks(results)
    if nets:
        spreads = [ev.Spread.of(single(results, key).values()) for key, *_ in MODES]
        fig.add_bar(
            x=[label for _, label, *_ in MODES],
            y=[100 * s.mean for s in spreads],
            error_y=dict(type="data", array=[100 * s.sd for s in spreads], width=6),
            marker_color=[color for *_, color, _ in MODES],
            marker_pattern_shape=[pattern for *_, pattern in MODES],
            text=[s.text(100, "%") for s in spreads],
            textposition="outside",
            showlegend=False,
            hovertemplate="%{x}<br>mean accuracy %{y:.0f}%<extra></extra>",
        )
        fig.add_scatter(  # each seed
            x=[label for _, label, *_ in MODES for _ in nets],
            y=[100 * single(results, key)[s] for key, *_ in MODES for s in nets],
            mode="markers",
            name="one seed",
            marker=dict(color=NEUTRAL, symbol="circle-open", size=7),
            hovertemplate="%{x}<br>one seed: %{y:.0f}%<extra></extra>",
        )
        fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
        fig.update_yaxes(range=[0, 110])
        fig.update_layout(bargap=0.3)
    images = next(iter(nets.values()))["single"]["images"] if nets else "the"
    v = _by_key(results)["eval-beats-single"]
    return common.finish(
        fig,
        TITLE_SINGLE,
        None,
        ACC_AXIS,
        note=f"{images} held-out images, mean ± sd over seeds, dots: seeds; eval vs one image: "
        f"{v.mark}; dotted: chance (10%)",
    )


def _example_figure(results: dict) -> go.Figure:
    nets = {s: r for s, r in _networks(results).items() if r["single"]["examples"]}
    if not nets:  # no BatchNorm network, so no example: nothing to compare
        return common.placeholder(TITLE_EXAMPLE, None, "probability")
    fig = common.subplots(rows=1, cols=2, column_widths=[0.25, 0.75], horizontal_spacing=0.14)
    seed, r = next(iter(nets.items()))
    ex = r["single"]["examples"][0]
    fig.add_heatmap(
        z=ex["pixels"][::-1],
        colorscale="gray",
        showscale=False,
        hovertemplate="pixel %{z}<extra></extra>",
        row=1,
        col=1,
    )
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(visible=False, scaleanchor="x", row=1, col=1)
    for key, name, color, pattern in (
        ("p_eval", "eval mode", NORM_COLORS["batch"], ""),
        ("p_train", "train mode, this image alone", NORM_COLORS["none"], "/"),
    ):
        fig.add_bar(
            x=r["single"]["classes"],
            y=ex[key],
            name=name,
            marker_color=color,
            marker_pattern_shape=pattern,  # told apart without hue too
            hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            row=1,
            col=2,
        )
    fig.update_yaxes(title_text="probability", range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="class", row=1, col=2)
    fig.update_layout(barmode="group", bargap=0.2)
    return common.finish(
        fig,
        f"Test image {ex['index']}: predicted probabilities",
        None,
        None,
        note=f"its class: {ex['label']}; the network of seed {seed}",
    )


def _horizontal(fig: go.Figure, xs, values: dict, name: str, color: str, dash: str) -> None:
    s = ev.Spread.of(values.values())
    lo, hi = 100 * (s.mean - s.sd), 100 * (s.mean + s.sd)
    fig.add_scatter(x=xs, y=[lo] * len(xs), line=dict(width=0, color=color), legendgroup=name,
                    showlegend=False, hoverinfo="skip")  # fmt: skip
    fig.add_scatter(x=xs, y=[hi] * len(xs), line=dict(width=0, color=color), legendgroup=name,
                    fill="tonexty", fillcolor=rgba(color, 0.15), showlegend=False,
                    hoverinfo="skip")  # fmt: skip
    fig.add_scatter(
        x=xs,
        y=[100 * s.mean] * len(xs),
        name=name,
        legendgroup=name,
        mode="lines",
        line=dict(color=color, dash=dash),
        hovertemplate="%{y:.0f}%<extra>" + name + "</extra>",
    )


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    nets = _networks(results)
    sizes = list(next(iter(nets.values()))["batch_sizes"]) if nets else list(x.EVAL_BATCHES)
    if nets:
        _horizontal(fig, sizes, network(results, "acc_running"), "running statistics (eval "
                    "mode)", NORM_COLORS["batch"], "solid")  # fmt: skip
        _horizontal(fig, sizes, network(results, "acc_precise"), "precise statistics",
                    NORM_COLORS["group"], "dot")  # fmt: skip
        spreads = [ev.Spread.of(at_test_batch(results, b).values()) for b in sizes]
        fig.add_scatter(
            x=sizes,
            y=[100 * s.mean for s in spreads],
            error_y=dict(type="data", array=[100 * s.sd for s in spreads], width=4),
            mode="lines+markers",
            name="batch statistics (train mode)",
            line=dict(color=NORM_COLORS["none"], dash="dash"),
            marker=dict(symbol="square", size=8, color=NORM_COLORS["none"]),
            hovertemplate="test batch %{x}<br>accuracy %{y:.0f}%<extra>batch statistics</extra>",
        )
        fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
        fig.update_yaxes(range=[0, 100])
    fig.update_xaxes(type="log", tickvals=sizes)
    return common.finish(
        fig,
        TITLE_ACCURACY,
        "batch size of the test batches (log scale)",
        ACC_AXIS,
        note="networks trained at batch 32, mean ± sd over seeds; dotted: chance (10%)",
    )


def _gap_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    nets = _networks(results)
    if nets:
        sizes = list(next(iter(nets.values()))["batch_sizes"])
        running = network(results, "acc_running")
        gaps = [ev.Spread.of(_differences(at_test_batch(results, b), running).values())
                for b in sizes]  # fmt: skip
        fig.add_scatter(
            x=sizes,
            y=[100 * g.mean for g in gaps],
            error_y=dict(type="data", array=[100 * g.sd for g in gaps], width=4),
            mode="lines+markers",
            name=f"trained at batch {x.BATCH_SIZE}, tested at each batch size",
            line=dict(color=NORM_COLORS["batch"]),
            marker=dict(symbol="circle", size=8, color=NORM_COLORS["batch"]),
            hovertemplate="test batch %{x}<br>gap %{y:+.0f} pp<extra></extra>",
        )
    rows = [(b, ev.Spread.of(trained(results, b, "gap").values())) for b in TRAIN_BATCHES]
    rows = [(b, s) for b, s in rows if s.n]
    if rows:
        fig.add_scatter(
            x=[b for b, _ in rows],
            y=[100 * s.mean for _, s in rows],
            error_y=dict(type="data", array=[100 * s.sd for _, s in rows], width=4),
            mode="lines+markers",
            name=f"trained {x.TRAIN_STEPS} steps at that batch size (the meter)",
            line=dict(color=NORM_COLORS["none"], dash="dash"),
            marker=dict(symbol="square", size=8, color=NORM_COLORS["none"]),
            hovertemplate="batch %{x}<br>gap %{y:+.1f} pp<extra></extra>",
        )
    fig.add_hline(y=0, line=dict(color=NEUTRAL, width=1))
    fig.update_xaxes(type="log", tickvals=sorted({*x.EVAL_BATCHES, *TRAIN_BATCHES}))
    v = _by_key(results)
    return common.finish(
        fig,
        TITLE_GAP,
        "batch size (log scale)",
        GAP_AXIS,
        note="accuracy with batch statistics minus with running statistics, mean ± sd over "
        f"seeds; test batch {SMALL_TEST}: {v['small-test-batches-below'].mark}; trained at "
        f"{min(TRAIN_BATCHES)}: {v['trained-small-negative'].mark}",
    )


FIGURES = (
    Chart(TITLE_SINGLE, _single_figure, (NETWORK,), None, ACC_AXIS),
    Chart(TITLE_EXAMPLE, _example_figure, (NETWORK,), None, "probability"),
    Chart(TITLE_ACCURACY, _accuracy_figure, (NETWORK,), "test batch size", ACC_AXIS),
    Chart(TITLE_GAP, _gap_figure, (NETWORK, "trained at batch"), "batch size", GAP_AXIS),
)


# ---------------------------------------------------------------- explanation


def _single_text(results: dict, v: dict[str, ev.Verdict]) -> str:
    nets = _networks(results)
    first = next(iter(nets.values()))
    n = first["single"]["images"]
    text = (
        f"**One image at a time.** Networks trained for {first['steps']} steps at batch "
        f"{first['batch_size']} ({len(nets)} seeds) predicted {n} held-out images one at a "
        f"time. In eval mode (running statistics) {_acc(single(results, 'acc_eval'))} were "
        "right; in train mode, where each image is normalized with its own statistics (per "
        f"channel over its H × W positions), {_acc(single(results, 'acc_train_single'))}; "
        f"with all {n} normalized as one batch in train mode, "
        f"{_acc(single(results, 'acc_train_batch'))} (mean ± sd over seeds). One image at a "
        f"time, train mode predicted {_range(single(results, 'distinct_single'))} distinct "
        f"classes per network, eval mode {_range(single(results, 'distinct_eval'))}. "
        f"{v['eval-beats-single'].text} "
        f"{v['batch-beats-single'].text}"
    )
    seed, r = next(iter(nets.items()))
    if r["single"]["examples"]:
        ex = r["single"]["examples"][0]
        text += (
            f" Test image {ex['index']} (class: {ex['label']}, network of seed {seed}): eval "
            f"mode says {ex['eval_class']} (p = {ex['eval_prob']:.2f}), train mode says "
            f"{ex['train_class']} (p = {ex['train_prob']:.2f})."
        )
    if v["eval-beats-single"].holds:
        text += (
            " Eval mode is the right one for prediction: it normalizes every image with the "
            "same fixed statistics of the training data, so the answer for an image does not "
            "depend on what else is in the batch. With a single image, the last BN subtracts "
            "each channel's mean over the very positions the global average pool then averages, "
            "so much of what tells the images apart is removed."
        )
    else:
        text += (
            " Eval mode is still the one to use for prediction, because it gives every image "
            "the same fixed normalization."
        )
    return text


def _sweep_text(results: dict, v: dict[str, ev.Verdict]) -> str:
    nets = _networks(results)
    sizes = next(iter(nets.values()))["batch_sizes"]
    running = network(results, "acc_running")
    series = ", ".join(
        f"{b}: {_pp(_differences(at_test_batch(results, b), running))}" for b in sizes
    )
    text = (
        "**The gap against the test batch size.** The same networks tested with the batch "
        "statistics of test batches of each size, minus eval mode "
        f"({_acc(running)}), by batch size: {series}. "
        f"{v['small-test-batches-below'].text} {v['large-test-batches-above'].text} "
        f"With precise statistics (Ioffe & Szegedy's Algorithm 2: the mean and variance "
        f"recomputed from {x.PRECISE_BATCHES} training batches of {x.BATCH_SIZE} after "
        f"training) eval mode scored {_acc(network(results, 'acc_precise'))}. "
        f"{v['precise-above-running'].text}"
    )
    text += (
        " Two different problems show here, with different remedies. A running average mixes "
        "in statistics of earlier weights and lags behind the network: recomputing precise "
        "statistics after training fixes that, as Wu & Johnson (2021) recommend."
    )
    if v["large-test-batches-above"].holds and v["precise-above-running"].holds:
        text += (
            " Here both the batch statistics of large test batches and the precise statistics "
            "did better than the running averages, the mark of such a lag."
        )
    text += (
        " A small batch is a different problem: its statistics are noisy, so a network "
        "trained on them is normalized one way in training and another in eval mode, however "
        "good the averages. The remedies for that small-batch train/eval gap are different: "
        "batch statistics at inference as well, FrozenBN (the last steps trained with fixed "
        "population statistics) or batch renormalization (Ioffe 2017)."
    )
    return text


def _trained_text(results: dict, v: dict[str, ev.Verdict]) -> str:
    rows = []
    for b in TRAIN_BATCHES:
        gap = trained(results, b, "gap")
        if gap:
            rows.append(f"{b}: {_pp(gap)} ({_acc(trained(results, b, 'acc_running'))} eval)")
    if not rows:
        return ""
    return (
        f"**The meter's gap.** Networks trained {x.TRAIN_STEPS} steps at each batch size, "
        "tested with batch statistics of the training batch size minus eval mode (the gap the "
        f"app's meter shows): {', '.join(rows)}. {v['trained-small-negative'].text} "
        f"{v['trained-large-positive'].text} Small batches saw fewer images in those steps, so "
        "their accuracies are lower too."
    )


def _error_text(r: dict) -> str:
    sides = " → ".join(f"{s}×{s}" for s in r["sides"])
    if not r["raised"]:
        return (
            f"**One value per channel.** A {len(r['sides'])}-block network ({sides}) fed one "
            "image in train mode did not raise an error here."
        )
    fixes = []
    if r["eval_mode_ok"]:
        fixes.append("the same image in eval mode")
    if r["batch_of_2_ok"]:
        fixes.append("two images in train mode")
    return (
        f"**One value per channel.** A {len(r['sides'])}-block network's image sizes are "
        f"{sides}. Fed one image in train mode, its last BN sees "
        f"{r['values_per_channel'][-1]} value per channel, and PyTorch raises:\n\n"
        f"`ValueError: {r['message']}`\n\n"
        "The variance of a single number is 0 (biased) or undefined (unbiased, ÷ 0), so there "
        "is nothing to normalize with. "
        + (f"Both {' and '.join(fixes)} ran without error. " if fixes else "")
        + "The fix is eval mode for prediction, or a batch of more than one for training."
    )


def _live_text(run) -> str:
    if run is None or not run.eval_steps or run.config.norm != "batch":
        return ""
    running, batch = run.acc_running_stats[-1], run.acc_batch_stats[-1]
    return (
        f"In the live run (batch {run.config.batch_size}, one seed), at step "
        f"{run.eval_steps[-1]}: {common.pct(running)} in eval mode, {common.pct(batch)} with "
        f"batch statistics of batch {run.config.batch_size}, a gap of "
        f"{common.signed_points(batch - running)}."
    )


def explain(results: dict, run, twin) -> str:
    results = results or {}
    v = _by_key(results)
    parts = [
        "In train mode BatchNorm normalizes with the current batch's mean and variance (and "
        "updates its running averages); in eval mode it uses the running averages. "
        "`model.eval()` before predicting is what makes a prediction independent of the batch."
    ]
    if _networks(results):
        parts.append(_single_text(results, v))
        parts.append(_sweep_text(results, v))
    trained_text = _trained_text(results, v)
    if trained_text:
        parts.append(trained_text)
    shown = "\n\n".join(parts)
    pending = [v.text for v in v.values() if v.pending and v.text not in shown]
    if pending:
        parts.append("**Still being measured.** " + " ".join(pending))
    if ERROR_LABEL in results:
        parts.append(_error_text(results[ERROR_LABEL]))
    elif results:
        parts.append(f"Still being measured: {ERROR_LABEL}…")
    live = _live_text(run)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """The single-image finding in two lines, from the numbers the explanation quotes."""
    v = _by_key(results or {})["eval-beats-single"]
    if v.pending:
        return "Measuring predictions one image at a time…"
    eval_acc = _acc(single(results, "acc_eval"))
    train_acc = _acc(single(results, "acc_train_single"))
    if v.holds:
        return (
            f"Predicting one image at a time: **{eval_acc}** right in eval mode, {train_acc} in "
            f"train mode ({v.mark}), where each image is normalized by itself."
        )
    return (
        f"Predicting one image at a time: {eval_acc} in eval mode, {train_acc} in train mode "
        f"({v.mark}); eval mode is still the one to predict with."
    )


def _action(trainer: Trainer) -> dict:
    return predict_modes(trainer, images=50, examples=1)


def _render(r: dict) -> str:
    if not r.get("applicable"):
        return (
            f"The live network uses {r.get('norm')} normalization, which has no running "
            "statistics: train and eval mode compute the same thing."
        )
    return (
        f"On the live network, {r['images']} held-out images predicted one at a time: "
        f"{common.pct(r['acc_eval'])} right in eval mode, {common.pct(r['acc_train_single'])} "
        f"in train mode ({r['distinct_single']} distinct class(es) predicted), "
        f"{common.pct(r['acc_train_batch'])} in train mode with all {r['images']} as one batch."
    )


SCENARIO = Scenario(
    id="train-vs-eval",
    title="Train mode vs eval mode",
    summary="Why must a BatchNorm network be switched to eval mode to predict, and what goes "
    "wrong with small batches?",
    view="Train vs eval",
    preset={"dataset": "shapes", "norm": "batch", "batch_size": 4, "twin": "off"},
    jobs=jobs,
    figures=FIGURES,
    verdicts=verdicts,
    explain=explain,
    takeaway=takeaway,
    actions=(
        Action(
            "Predict test images one at a time, train vs eval mode",
            _action,
            _render,
            help="Runs 50 held-out images through a copy of the live network, one at a time, "
            "in both modes. The live network is not changed.",
        ),
    ),
)
