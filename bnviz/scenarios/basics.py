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


def explain(results: Results, run: Run, twin: Run | None) -> str:
    if not run.snapshots or not run.snapshots[0].steps:
        return "Press **Play**: the histograms fill in as the network trains."
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


SCENARIO = Scenario(
    id="bn-basics",
    title="What BatchNorm does to one layer",
    summary="What do a layer's values look like before BatchNorm, after it, and after the "
    "activation?",
    view="Activations",
    preset={"twin": "none"},
    explain=explain,
)
