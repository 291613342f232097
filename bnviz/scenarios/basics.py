"""bn-basics: what BatchNorm does to one layer, watched on the live run."""

from __future__ import annotations

import numpy as np

from ..record import Run
from .base import Results, Scenario


def _spread(run: Run, layer: int, kind: str, snapshot: int) -> tuple[float, float]:
    """Mean and standard deviation of a recorded histogram (from bin centres)."""
    snaps = run.snapshots[layer]
    edges = np.asarray(snaps.edges[kind], dtype=float)
    counts = np.asarray(snaps.hist[kind][snapshot], dtype=float)
    centres = (edges[1:] + edges[:-1]) / 2
    mean = float((counts * centres).sum() / counts.sum())
    return mean, float(np.sqrt((counts * (centres - mean) ** 2).sum() / counts.sum()))


WAITING = "Press **Play**: the histograms fill in as the network trains."


def _recorded(run: Run | None) -> bool:
    return run is not None and bool(run.snapshots) and bool(run.snapshots[0].steps)


def explain(results: Results, run: Run, twin: Run | None) -> str:
    if not _recorded(run):
        return WAITING
    layer = 0
    step = run.snapshots[layer].steps[-1]
    pre_mean, pre_std = _spread(run, layer, "pre_norm", -1)
    post_mean, post_std = _spread(run, layer, "post_norm", -1)
    dead = run.snapshots[layer].saturated_fraction[-1]
    gamma = run.layer_stat(layer, "gamma")
    text = (
        f"At step {step}, block1's conv outputs (pre-norm) have mean {pre_mean:.3g} and "
        f"standard deviation {pre_std:.3g}. After BatchNorm they have mean {post_mean:.3g} and "
        f"standard deviation {post_std:.3g}: each channel was shifted by its batch mean and "
        f"divided by sqrt(batch variance + eps), then scaled by gamma and shifted by beta, "
        f"which the network learns"
    )
    if gamma is not None and len(gamma):
        text += f" (gamma of block1 now ranges {gamma[-1].min():.3g} to {gamma[-1].max():.3g})"
    text += f". After the activation, {dead:.0%} of block1's values are "
    text += "zero (relu)." if run.layers[layer].saturation == "dead" else "saturated."
    text += (
        " Drag the step scrubber to compare any recorded moment; pick one channel to see "
        "per-channel statistics, the level at which BatchNorm normalizes a conv layer "
        "(over batch, height and width)."
    )
    return text


def takeaway(results: Results, run: Run | None, twin: Run | None) -> str:
    """The live run's block1 before and after BatchNorm in two lines, from the numbers the
    explanation quotes."""
    if not _recorded(run):
        return WAITING
    step = run.snapshots[0].steps[-1]
    _, pre_std = _spread(run, 0, "pre_norm", -1)
    post_mean, post_std = _spread(run, 0, "post_norm", -1)
    return (
        f"At step {step}, BatchNorm turned block1's conv outputs (standard deviation "
        f"{pre_std:.3g}) into values of mean {post_mean:.3g} and standard deviation "
        f"**{post_std:.3g}**."
    )


SCENARIO = Scenario(
    id="bn-basics",
    title="What BatchNorm does to one layer",
    summary="What do a layer's values look like before BatchNorm, after it, and after the "
    "activation?",
    view="Activations",
    preset={"twin": "none"},
    explain=explain,
    takeaway=takeaway,
)
