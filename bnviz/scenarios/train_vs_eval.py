"""Train mode against eval mode: the classic mistakes. A BatchNorm network in train mode
normalizes with the statistics of whatever batch it is given, so predicting one image in train
mode normalizes the image with its own statistics; batch statistics get noisier as the batch
shrinks; and with one value per channel PyTorch refuses to train at all."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go
import torch

from ..config import TrainConfig
from ..experiments import common as xcommon
from ..model import block_sides, build_model
from ..plot import NEUTRAL, NORM_COLORS
from ..trainer import Trainer, to_tensor
from . import common
from .base import Action, Scenario, job

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 200
SINGLE_IMAGES = 100  # held-out images predicted one at a time
EVAL_BATCHES = (1, 2, 4, 8, 16, 64)  # batch sizes for the batch-statistics evaluation
TRAIN_BATCHES = (2, 4, 8, 16, 64)  # batch sizes trained at, for the gap the app's meter shows
TRAIN_STEPS = 150
DEEP_WIDTHS = (4, 4, 8, 8, 16, 16)  # six blocks: 28 -> 14 -> 7 -> 4 -> 2 -> 1 pixels
SINGLE_LABEL = "one image at a time: train vs eval mode"
EVAL_LABEL = "one network, batch statistics at each batch size"
ERROR_LABEL = "batch of 1, last block 1x1, train mode"


def _config(batch_size: int, steps: int, seed: int, widths: tuple = WIDTHS) -> TrainConfig:
    return TrainConfig(
        widths=tuple(widths),
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )


def _trained(steps: int, seed: int, widths: tuple) -> Trainer:
    trainer = Trainer(_config(BATCH_SIZE, steps, seed, widths))
    trainer.step(steps)
    return trainer


def _batchnorms(model) -> list:
    """The norm layers with running statistics (torch's or bnviz's BatchNorm2d)."""
    return [b.norm for b in model.blocks if getattr(b.norm, "running_mean", None) is not None]


@torch.no_grad()
def predict_modes(trainer: Trainer, images: int = SINGLE_IMAGES, examples: int = 4) -> dict:
    """Predict `images` held-out images one at a time in eval mode (running statistics) and in
    train mode (each image normalized with its own statistics, per channel over H x W), and all
    of them as one batch in train mode. Works on a copy: the trainer's model and its running
    buffers are untouched."""
    model = copy.deepcopy(trainer.model)
    if not _batchnorms(model):
        return {"applicable": False, "norm": trainer.config.norm}
    n = min(images, len(trainer.eval_y))
    x, y = trainer.eval_x[:n], trainer.eval_y[:n]
    model.eval()
    p_eval = torch.cat([model(x[i : i + 1]) for i in range(n)]).softmax(1)
    model.train()
    for norm in _batchnorms(model):
        norm.track_running_stats = False  # batch statistics; buffers neither used nor updated
    p_single = torch.cat([model(x[i : i + 1]) for i in range(n)]).softmax(1)
    p_batch = model(x).softmax(1)
    pred_eval, pred_single, pred_batch = (p.argmax(1) for p in (p_eval, p_single, p_batch))
    classes = list(trainer.data.classes)
    # examples: where the two modes disagree first, then the rest in order
    order = sorted(range(n), key=lambda i: (bool(pred_eval[i] == pred_single[i]), i))[:examples]
    return {
        "applicable": True,
        "images": n,
        "classes": classes,
        "acc_eval": float((pred_eval == y).float().mean()),
        "acc_train_single": float((pred_single == y).float().mean()),
        "acc_train_batch": float((pred_batch == y).float().mean()),
        "agree": float((pred_eval == pred_single).float().mean()),
        "distinct_eval": len(set(pred_eval.tolist())),
        "distinct_single": len(set(pred_single.tolist())),
        "examples": [
            {
                "index": int(i),
                "label": classes[int(y[i])],
                "eval_class": classes[int(pred_eval[i])],
                "eval_prob": float(p_eval[i].max()),
                "train_class": classes[int(pred_single[i])],
                "train_prob": float(p_single[i].max()),
                "p_eval": xcommon.float_list(p_eval[i]),
                "p_train": xcommon.float_list(p_single[i]),
                "pixels": trainer.data.x_test[int(i), 0].astype(int).tolist(),
            }
            for i in order
        ],
    }


def single_images(
    steps: int = STEPS, images: int = SINGLE_IMAGES, seed: int = 0, widths: tuple = WIDTHS
) -> dict:
    """Train briefly, then predict held-out images one at a time in both modes."""
    trainer = _trained(steps, seed, widths)
    return {"steps": steps, "batch_size": BATCH_SIZE, **predict_modes(trainer, images)}


def eval_batch_sweep(
    steps: int = STEPS, batches: tuple = EVAL_BATCHES, seed: int = 0, widths: tuple = WIDTHS
) -> dict:
    """One trained network; test accuracy with running statistics, and with batch statistics
    from batches of b held-out images for each b (trainer.accuracy() at that batch size)."""
    trainer = _trained(steps, seed, widths)
    running, batch = [], []
    for b in batches:
        trainer.set(batch_size=b)
        acc_running, acc_batch = trainer.accuracy()
        running.append(acc_running)
        batch.append(acc_batch)
    return {
        "steps": steps,
        "trained_batch_size": BATCH_SIZE,
        "batch_sizes": [int(b) for b in batches],
        "acc_running": running,
        "acc_batch": batch,
        "gap": [b - r for r, b in zip(running, batch)],
    }


def train_at_batch(
    batch_size: int, steps: int = TRAIN_STEPS, seed: int = 0, widths: tuple = WIDTHS
) -> dict:
    """Train at this batch size; the gap the app's meter shows at the end (batch statistics
    from batches of the training batch size, minus running statistics)."""
    trainer = Trainer(_config(batch_size, steps, seed, widths))
    trainer.step(steps)
    acc_running, acc_batch = trainer.accuracy()
    return {
        "batch_size": batch_size,
        "steps": trainer.run.num_steps,
        "status": trainer.run.status,
        "acc_running": acc_running,
        "acc_batch": acc_batch,
        "gap": acc_batch - acc_running,
    }


@torch.no_grad()
def one_value_error(widths: tuple = DEEP_WIDTHS, seed: int = 0) -> dict:
    """A BatchNorm network whose last block is 1 x 1 pixels, fed one image in train mode:
    PyTorch raises ValueError. Caught; its message returned, with what does work instead."""
    from .. import datasets

    data = datasets.load("shapes")
    config = TrainConfig(widths=tuple(widths), batch_size=1, seed=seed)
    model = build_model(config, data.x_train.shape[1], len(data.classes))
    x = to_tensor(data, data.x_test[:2])
    sides = block_sides(data.x_train.shape[2], len(widths))
    out = {"widths": list(widths), "sides": sides, "values_per_channel": [s * s for s in sides]}

    def attempt(train: bool, images: int) -> str:
        model.train(train)
        try:
            model(x[:images])
        except ValueError as e:
            return str(e)
        return ""

    out["message"] = attempt(True, 1)
    out["raised"] = bool(out["message"])
    out["eval_mode_ok"] = attempt(False, 1) == ""
    out["batch_of_2_ok"] = attempt(True, 2) == ""
    return out


def jobs() -> list:
    out = [
        job(SINGLE_LABEL, single_images),
        job(EVAL_LABEL, eval_batch_sweep),
        job(ERROR_LABEL, one_value_error),
    ]
    out += [job(f"train at batch {b}", train_at_batch, batch_size=b) for b in TRAIN_BATCHES]
    return out


def _trained_rows(results: dict) -> list[dict]:
    rows = [r for r in results.values() if "gap" in r and "batch_size" in r]
    return sorted(rows, key=lambda r: r["batch_size"])


# ---------------------------------------------------------------- figures


def _single_figure(results: dict) -> go.Figure:
    r = results.get(SINGLE_LABEL)
    fig = go.Figure()
    if r and r.get("applicable"):
        labels = ["eval mode", "train, one image", "train, one batch"]
        values = [r["acc_eval"], r["acc_train_single"], r["acc_train_batch"]]
        colors = [NORM_COLORS["batch"], NORM_COLORS["none"], NEUTRAL]
        fig.add_bar(
            x=labels,
            y=[100 * v for v in values],
            marker_color=colors,
            text=[common.pct(v) for v in values],
            textposition="outside",
            showlegend=False,
            hovertemplate="%{x}<br>accuracy %{y:.1f}%<extra></extra>",
        )
        fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
        fig.update_yaxes(range=[0, 105])
        fig.update_layout(bargap=0.3)
    else:
        common.note(fig, size=14)
    title = "Predicting held-out images: accuracy by mode"
    details = None
    if r and r.get("applicable"):
        title = f"{r['images']} held-out images, accuracy by mode"
        details = (
            "eval mode: running statistics; train mode: statistics of one image at a time, or "
            f"of all {r['images']} as one batch; dotted: chance (10%)"
        )
    return common.finish(fig, title, None, "test accuracy (%)", note=details)


def _example_figure(results: dict) -> go.Figure:
    r = results.get(SINGLE_LABEL)
    fig = common.subplots(rows=1, cols=2, column_widths=[0.25, 0.75], horizontal_spacing=0.14)
    if r and r.get("applicable") and r["examples"]:
        ex = r["examples"][0]
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
                x=r["classes"],
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
        title = f"Test image {ex['index']}: predicted probabilities"
        details = f"its class: {ex['label']}"
    else:
        common.note(fig, size=14)
        title = "One test image: predicted probabilities"
        details = None
    fig.update_layout(barmode="group", bargap=0.2)
    return common.finish(fig, title, None, None, note=details)


def _gap_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    sweep = results.get(EVAL_LABEL)
    if sweep:
        fig.add_scatter(
            x=sweep["batch_sizes"],
            y=[100 * g for g in sweep["gap"]],
            mode="lines+markers",
            name=f"one network (trained at batch {sweep['trained_batch_size']}), "
            "evaluated at each batch size",
            line=dict(color=NORM_COLORS["batch"]),
            hovertemplate="batch %{x}<br>gap %{y:+.1f} pp<extra></extra>",
        )
    rows = _trained_rows(results)
    if rows:
        fig.add_scatter(
            x=[r["batch_size"] for r in rows],
            y=[100 * r["gap"] for r in rows],
            mode="lines+markers",
            name=f"trained {rows[0]['steps']} steps at that batch size",
            line=dict(color=NORM_COLORS["none"], dash="dash"),
            hovertemplate="batch %{x}<br>gap %{y:+.1f} pp<extra></extra>",
        )
    if fig.data:
        fig.add_hline(y=0, line=dict(color=NEUTRAL, width=1))
    else:
        common.note(fig, size=14)
    fig.update_xaxes(type="log", tickvals=sorted({*EVAL_BATCHES, *TRAIN_BATCHES}))
    return common.finish(
        fig,
        "Gap: batch statistics − running statistics",
        "batch size (log scale)",
        "gap (percentage points)",
        note="test accuracy with batch statistics minus with running statistics",
    )


def _accuracy_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    sweep = results.get(EVAL_LABEL)
    if sweep:
        for key, name, color, dash in (
            ("acc_running", "running statistics (eval mode)", NORM_COLORS["batch"], "solid"),
            ("acc_batch", "batch statistics (train mode)", NORM_COLORS["none"], "dash"),
        ):
            fig.add_scatter(
                x=sweep["batch_sizes"],
                y=[100 * v for v in sweep[key]],
                mode="lines+markers",
                name=name,
                line=dict(color=color, dash=dash),
                hovertemplate="batch %{x}<br>accuracy %{y:.1f}%<extra>" + name + "</extra>",
            )
        fig.add_hline(y=10, line=dict(color=NEUTRAL, width=1, dash="dot"))
        fig.update_yaxes(range=[0, 100])
    else:
        common.note(fig, size=14)
    fig.update_xaxes(type="log", tickvals=list(EVAL_BATCHES))
    return common.finish(
        fig,
        "Test accuracy by evaluation batch size",
        "batch size of the test batches (log scale)",
        "test accuracy (%)",
        note="one trained network; dotted: chance (10%)",
    )


def figures(results: dict) -> list[go.Figure]:
    return [
        _single_figure(results),
        _example_figure(results),
        _accuracy_figure(results),
        _gap_figure(results),
    ]


# ---------------------------------------------------------------- explanation


def _eval_better(r: dict) -> bool:
    """Whether eval mode got more of the single images right than train mode."""
    return r["acc_eval"] > r["acc_train_single"]


def _single_text(r: dict) -> str:
    text = (
        f"**One image at a time.** A network trained for {r['steps']} steps (batch "
        f"{r['batch_size']}) predicted {r['images']} held-out images one at a time. In eval mode "
        f"(running statistics) {common.pct(r['acc_eval'])} were right; in train mode, where each "
        "image is normalized with its own statistics (per channel over its H × W positions), "
        f"{common.pct(r['acc_train_single'])}. The two modes agreed on "
        f"{common.pct(r['agree'])} of the images; train mode predicted "
        f"{r['distinct_single']} distinct class(es), eval mode {r['distinct_eval']}."
    )
    if r["examples"]:
        ex = r["examples"][0]
        text += (
            f" Test image {ex['index']} (class: {ex['label']}): eval mode says {ex['eval_class']} "
            f"(p = {ex['eval_prob']:.2f}), train mode says {ex['train_class']} "
            f"(p = {ex['train_prob']:.2f})."
        )
    if _eval_better(r):
        text += (
            " Eval mode is the right one for prediction: it normalizes every image with the "
            "same fixed statistics of the training data, so the answer for an image does not "
            "depend on what else is in the batch. With a single image, the last BN subtracts "
            "each channel's mean over the very positions the global average pool then averages, "
            "so much of what tells the images apart is removed."
        )
    else:
        text += (
            " Here train mode did not do worse on these images; eval mode is still the one to "
            "use for prediction, because it gives every image the same fixed normalization."
        )
    text += (
        f" Normalizing all {r['images']} images as one batch in train mode gave "
        f"{common.pct(r['acc_train_batch'])}: batch statistics are only trustworthy from "
        "many images."
    )
    return text


def _sweep_text(sweep: dict, rows: list[dict]) -> str:
    sizes, gaps = sweep["batch_sizes"], sweep["gap"]
    series = ", ".join(f"{b}: {common.signed_points(g)}" for b, g in zip(sizes, gaps))
    text = (
        "**The gap against batch size.** The same network evaluated with batch statistics "
        f"from test batches of each size, minus eval mode ({common.pct(sweep['acc_running'][0])}"
        f"), by batch size: {series}."
    )
    small, large = int(np.argmin(sizes)), int(np.argmax(sizes))
    if abs(gaps[small]) > abs(gaps[large]):
        text += (
            f" The gap's size grew as the batch shrank: {common.signed_points(gaps[large])} at "
            f"batch {sizes[large]}, {common.signed_points(gaps[small])} at batch {sizes[small]}, "
            "because the statistics of a few images scatter far from the statistics of the data."
        )
    if gaps[large] > 0:
        text += (
            f" At batch {sizes[large]} the batch statistics did better than the running "
            f"averages ({common.signed_points(gaps[large])}): a sign that the running averages, "
            "which still mix in statistics of earlier weights, lag behind the network."
        )
    else:
        text += (
            f" Here the gap did not grow as the batch shrank ({common.signed_points(gaps[large])} "
            f"at batch {sizes[large]}, {common.signed_points(gaps[small])} at batch "
            f"{sizes[small]})."
        )
    if rows:
        series = ", ".join(
            f"{r['batch_size']}: {common.signed_points(r['gap'])} "
            f"({common.pct(r['acc_running'])} eval)"
            for r in rows
        )
        text += (
            f" Networks trained {rows[0]['steps']} steps at each batch size (the gap the app's "
            f"meter shows): {series}. Small batches saw fewer images in those steps, so their "
            "accuracies are lower too. Wu & Johnson (2021) report that the train/eval gap grows at "
            "small batch sizes, and that recomputing the statistics after training helps."
        )
    return text


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
        f"In the live run (batch {run.config.batch_size}), at step {run.eval_steps[-1]}: "
        f"{common.pct(running)} in eval mode, {common.pct(batch)} with batch statistics of "
        f"batch {run.config.batch_size}, a gap of {common.signed_points(batch - running)}."
    )


def explain(results: dict, run, twin) -> str:
    parts = [
        "In train mode BatchNorm normalizes with the current batch's mean and variance (and "
        "updates its running averages); in eval mode it uses the running averages. "
        "`model.eval()` before predicting is what makes a prediction independent of the batch."
    ]
    single, sweep, error = (results.get(k) for k in (SINGLE_LABEL, EVAL_LABEL, ERROR_LABEL))
    if not results:
        parts.append(
            "The single-image predictions, the batch-size sweep and the error are being measured…"
        )
    if single and single.get("applicable"):
        parts.append(_single_text(single))
    if sweep:
        parts.append(_sweep_text(sweep, _trained_rows(results)))
    if error:
        parts.append(_error_text(error))
    missing = [k for k in (SINGLE_LABEL, EVAL_LABEL, ERROR_LABEL) if k not in results]
    if results and missing:
        parts.append("Still being measured: " + "; ".join(missing) + "…")
    live = _live_text(run)
    if live:
        parts.append(live)
    return "\n\n".join(parts)


def takeaway(results: dict, run, twin) -> str:
    """The single-image finding in two lines, from the numbers the explanation quotes."""
    single = (results or {}).get(SINGLE_LABEL)
    if not single or not single.get("applicable"):
        return "Measuring predictions one image at a time…"
    eval_acc, train_acc = common.pct(single["acc_eval"]), common.pct(single["acc_train_single"])
    if _eval_better(single):
        return (
            f"Predicting one image at a time: **{eval_acc}** right in eval mode, {train_acc} in "
            "train mode, where each image is normalized with its own statistics."
        )
    return (
        f"Predicting one image at a time, train mode did not do worse here ({train_acc} vs "
        f"**{eval_acc}** in eval mode); eval mode is still the one to predict with."
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
    figures=figures,
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
