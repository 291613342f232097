"""Long per-step series thinned to a few hundred points: what a figure draws of a long run
(bnviz/figures.py), and what some scenario jobs store of one. Stored results depend on it, so
it is part of the precompute fingerprint, unlike the plotting kit (bnviz/plot.py)."""

from __future__ import annotations

import math

import numpy as np


def stride(n: int, cap: int) -> np.ndarray:
    """Indices of at most `cap` evenly strided points out of n, the last one always included."""
    if n <= cap:
        return np.arange(n)
    idx = np.arange(0, n, math.ceil(n / (cap - 1)))
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)
