"""Scenario 'tiny-batches': Wu & He (2018, Group Normalization) at classroom scale. A batch-size
sweep of BatchNorm against GroupNorm, each batch size seeing the same number of training images
with the learning rate scaled linearly; BN evaluated with running statistics (the standard) and,
for the train/eval comparison, with batch statistics. The published ResNet-50/ImageNet numbers
are shown beside it, labelled as published."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from ..config import NORM_NAMES, TrainConfig
from ..experiments.common import clean
from ..plot import NORM_COLORS, NORM_SYMBOLS
from ..record import Run
from ..trainer import Trainer
from .base import Scenario, job
from .common import finish, note, num

NORMS = ("batch", "group")
BATCHES = (2, 4, 8, 16, 32, 64)
SWEEP = dict(images=3200, base_lr=0.1, base_batch=32, widths=(8, 16), seed=0)
TITLE_SWEEP = "Measured: test error against batch size"
TITLE_PUBLISHED = "Published (Wu & He 2018), not measured here"
# Wu & He 2018, Figure 1 / Table: ImageNet top-1 error (%) by images per GPU.
PUBLISHED_BATCHES = (32, 16, 8, 4, 2)
PUBLISHED = {
    "batch": (23.6, 23.7, 24.8, 27.3, 34.7),
    "group": (24.1, 24.2, 24.0, 24.2, 24.1),
}
PUBLISHED_AT_32 = {"layer": 25.3, "instance": 28.4}


def _label(norm: str, batch_size: int) -> str:
    return f"{NORM_NAMES[norm]}, batch {batch_size}"


def lr_for(batch_size: int, base_lr: float = SWEEP["base_lr"]) -> float:
    """Linear scaling (Goyal et al. 2017, as Wu & He): base_lr at base_batch, base_lr * N / 32."""
    return base_lr * batch_size / SWEEP["base_batch"]


def batch_run(
    norm: str,
    batch_size: int,
    images: int = SWEEP["images"],
    base_lr: float = SWEEP["base_lr"],
    widths: tuple[int, ...] = SWEEP["widths"],
    seed: int = SWEEP["seed"],
) -> dict:
    """Train on `images` training images in batches of `batch_size` (images // batch_size plain
    SGD steps at lr base_lr * N / 32), then measure test error in eval mode (running statistics)
    and, for BN, with batch statistics of batches of the same size."""
    steps = max(1, images // batch_size)
    lr = lr_for(batch_size, base_lr)
    config = TrainConfig(
        norm=norm,
        widths=widths,
        batch_size=batch_size,
        lr=lr,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )
    trainer = Trainer(config)
    status, done = trainer.plain_steps(steps)
    acc_running, acc_batch = trainer.accuracy()
    return {
        "norm": norm,
        "batch_size": batch_size,
        "images": images,
        "steps": steps,
        "steps_done": done,
        "lr": lr,
        "status": status,
        "error_eval_mode": clean(1 - acc_running),
        "error_batch_stats": clean(1 - acc_batch),
    }


def jobs():
    return [job(_label(n, b), batch_run, norm=n, batch_size=b) for b in BATCHES for n in NORMS]


# ---------------------------------------------------------------- reading results


def points(results: dict, norm: str) -> list[dict]:
    rows = [r for r in results.values() if r.get("norm") == norm and "error_eval_mode" in r]
    return sorted(rows, key=lambda r: r["batch_size"])


def err(value: float) -> str:
    """An error rate (0..1) as a percentage with one decimal."""
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- figures


def _log2_axis(fig: go.Figure, batches) -> None:
    fig.update_xaxes(
        type="log",
        tickvals=list(batches),
        ticktext=[str(b) for b in batches],
    )


def _sweep_figure(results: dict) -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        rows = points(results, norm)
        if not rows:
            continue
        x = [r["batch_size"] for r in rows]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[100 * r["error_eval_mode"] for r in rows],
                name=NORM_NAMES[norm]
                + (" (eval mode: running statistics)" if norm == "batch" else ""),
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash="solid" if norm == "batch" else "dash"),
                hovertemplate="batch %{x}: %{y:.1f}% error<extra>" + NORM_NAMES[norm] + "</extra>",
            )
        )
        if norm == "batch":
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[100 * r["error_batch_stats"] for r in rows],
                    name="BatchNorm (batch statistics at test time)",
                    mode="lines+markers",
                    marker=dict(symbol="circle-open"),
                    line=dict(color=NORM_COLORS[norm], dash="dot", width=1.5),
                    hovertemplate="batch %{x}: %{y:.1f}% error<extra>BN, batch stats</extra>",
                )
            )
    if not fig.data:
        note(fig)
    _log2_axis(fig, BATCHES)
    return finish(
        fig,
        TITLE_SWEEP,
        "batch size (images per batch, log₂ scale)",
        "test error (%)",
        note=f"{SWEEP['images']} training images at every batch size, lr scaled with it",
    )


def published_figure() -> go.Figure:
    fig = go.Figure()
    for norm in NORMS:
        fig.add_trace(
            go.Scatter(
                x=list(PUBLISHED_BATCHES),
                y=list(PUBLISHED[norm]),
                name=f"{NORM_NAMES[norm]} (published)",
                mode="lines+markers",
                line=dict(color=NORM_COLORS[norm], dash="solid" if norm == "batch" else "dash"),
                hovertemplate="%{x} images per GPU: %{y}% top-1 error<extra>"
                + NORM_NAMES[norm]
                + ", Wu & He 2018</extra>",
            )
        )
    for norm, value in PUBLISHED_AT_32.items():
        fig.add_trace(
            go.Scatter(
                x=[32],
                y=[value],
                name=f"{NORM_NAMES[norm]} (published, batch 32 only)",
                mode="markers",
                marker=dict(color=NORM_COLORS[norm], size=10, symbol=NORM_SYMBOLS[norm]),
                hovertemplate="32 images per GPU: %{y}% top-1 error<extra>"
                + NORM_NAMES[norm]
                + ", Wu & He 2018</extra>",
            )
        )
    _log2_axis(fig, sorted(PUBLISHED_BATCHES))
    return finish(
        fig,
        TITLE_PUBLISHED,
        "images per GPU (log₂ scale)",
        "ImageNet top-1 error (%)",
        note="ResNet-50 on ImageNet: published numbers, not measured in this app",
    )


def figures(results: dict) -> list[go.Figure]:
    return [_sweep_figure(results or {}), published_figure()]


# ---------------------------------------------------------------- explanation


def _setup() -> str:
    return (
        f"**How it is measured.** Every batch size sees the same number of training images "
        f"({SWEEP['images']}, so batch 2 takes {SWEEP['images'] // 2} steps and batch 64 only "
        f"{SWEEP['images'] // 64}), as Wu & He kept the number of epochs fixed, and the "
        f"learning rate scales linearly with the batch ({SWEEP['base_lr']:g}·N/"
        f"{SWEEP['base_batch']}, their rule; SGD with momentum 0.9). Small network (widths "
        f"{'-'.join(map(str, SWEEP['widths']))}), so one run takes seconds. Test error is measured "
        "on 500 held-out images in eval mode, with BN's running statistics: the standard."
    )


def _smallest(results: dict) -> tuple[int, float, float] | None:
    """The smallest batch of the sweep and BN's and GN's test errors there (eval mode), once
    both are measured."""
    b = min(BATCHES)
    rows = points(results, "batch") + points(results, "group")
    pair = {r["norm"]: r for r in rows if r["batch_size"] == b}
    if "batch" not in pair or "group" not in pair:
        return None
    return b, pair["batch"]["error_eval_mode"], pair["group"]["error_eval_mode"]


def _explain_sweep(results: dict) -> list[str]:
    bn, gn = points(results, "batch"), points(results, "group")
    if not bn and not gn:
        return ["The batch-size sweep is being measured."]
    lines = []
    by_batch: dict[int, dict] = {}
    for r in bn + gn:
        by_batch.setdefault(r["batch_size"], {})[r["norm"]] = r
    parts = []
    for b in sorted(by_batch):
        pair = by_batch[b]
        a = err(pair["batch"]["error_eval_mode"]) if "batch" in pair else "…"
        g = err(pair["group"]["error_eval_mode"]) if "group" in pair else "…"
        parts.append(f"batch {b}: BN {a}, GN {g}")
    lines.append("**Measured test error**: " + "; ".join(parts) + ".")
    small = by_batch.get(min(BATCHES), {})
    if "batch" in small and "group" in small:
        b, e_bn, e_gn = _smallest(results)
        if e_gn < e_bn:
            lines.append(
                f"At batch size {b} GroupNorm beat BatchNorm by "
                f"{num(100 * (e_bn - e_gn), 2)} points ({err(e_gn)} vs {err(e_bn)})."
            )
        else:
            lines.append(
                f"Here, at this small scale, GroupNorm did **not** beat BatchNorm at batch size "
                f"{b} ({err(e_gn)} vs {err(e_bn)})."
            )
        e_batch = small["batch"]["error_batch_stats"]
        lines.append(
            f"**Train vs eval.** BN trains on the statistics of each batch of {b} images and is "
            f"tested with running averages of them, which it never saw during training. Tested "
            f"with batch statistics instead (batches of {b} test images, as in training), its "
            f"error at batch {b} was {err(e_batch)} (eval mode: {err(e_bn)}). GroupNorm "
            "normalizes each image on its own, so it computes the same thing in both modes."
        )
    if len(bn) + len(gn) < 2 * len(BATCHES):
        lines.append("The rest of the sweep is being measured.")
    return lines


def _explain_live(run: Run | None, twin: Run | None) -> list[str]:
    if run is None or run.num_steps == 0 or not run.eval_steps:
        return []
    name = NORM_NAMES.get(run.config.norm, run.config.norm)
    text = (
        f"**Live run** (batch {run.setting_at('batch_size')}, {run.num_steps} steps): {name} "
        f"{err(1 - run.acc_running_stats[-1])} test error at step {run.eval_steps[-1]} in eval mode"
    )
    if run.config.norm == "batch":
        text += f", {err(1 - run.acc_batch_stats[-1])} with batch statistics"
    if twin is not None and twin.eval_steps:
        twin_name = NORM_NAMES.get(twin.config.norm, twin.config.norm)
        text += (
            f"; twin ({twin_name}) {err(1 - twin.acc_running_stats[-1])} at step "
            f"{twin.eval_steps[-1]}"
        )
    return [text + "."]


def explain(results: dict, run: Run | None, twin: Run | None) -> str:
    results = results or {}
    published = ", ".join(
        f"{b}: BN {bn}% / GN {gn}%"
        for b, bn, gn in zip(PUBLISHED_BATCHES, PUBLISHED["batch"], PUBLISHED["group"])
    )
    lines = [
        "BatchNorm estimates each channel's mean and variance from the batch; with a few images "
        "those estimates are noisy. Wu & He (2018) proposed GroupNorm, which normalizes over "
        "groups of channels within each image and does not depend on the batch. "
        f"**Published** (Wu & He 2018, ResNet-50 on ImageNet, top-1 error by images per GPU; "
        f"not measured here): {published}; at 32 LayerNorm "
        f"{PUBLISHED_AT_32['layer']}%, InstanceNorm {PUBLISHED_AT_32['instance']}%.",
        _setup(),
    ]
    if not results:
        lines.append("The batch-size sweep is being measured.")
    else:
        lines += _explain_sweep(results)
    lines += _explain_live(run, twin)
    return "\n\n".join(lines)


def takeaway(results: dict, run: Run | None, twin: Run | None) -> str:
    """The smallest batch's verdict in two lines, from the numbers the explanation quotes."""
    smallest = _smallest(results or {})
    if smallest is None:
        return "Measuring BatchNorm and GroupNorm at tiny batches…"
    b, e_bn, e_gn = smallest
    if e_gn < e_bn:
        return (
            f"At batch size {b} GroupNorm beat BatchNorm by **{num(100 * (e_bn - e_gn), 2)} "
            f"points** of test error ({err(e_gn)} vs {err(e_bn)})."
        )
    return (
        f"Here, at this small scale, GroupNorm did **not** beat BatchNorm at batch size {b} "
        f"({err(e_gn)} vs {err(e_bn)} test error)."
    )


SCENARIO = Scenario(
    id="tiny-batches",
    title="Tiny batches: BatchNorm against GroupNorm",
    summary="What happens to BatchNorm when a batch holds only a few images, and does GroupNorm "
    "avoid it?",
    view="Training",
    # lr 0.01: the sidebar's step nearest Wu & He's linear rule at batch 2 (0.1 * 2 / 32)
    preset=dict(dataset="shapes", norm="batch", batch_size=2, lr=0.01, steps=500, twin="group"),
    jobs=jobs,
    figures=figures,
    explain=explain,
    takeaway=takeaway,
)
