"""The built-in 'shapes' data set: 28x28 grayscale line drawings in 10 classes, generated
from a seed (no download). Position, size, rotation, stroke, contrast, brightness and noise
vary per image, so raw pixel statistics differ from image to image: what BatchNorm is for."""

from __future__ import annotations

import functools

import numpy as np

CLASSES = (
    "circle", "disk", "square", "triangle", "plus", "cross", "h-bars", "v-bars", "rings", "dots",
)  # fmt: skip
SIZE = 28
N_TRAIN = 12_000
N_TEST = 2_000
CONTRAST = (0.5, 1.0)  # ink brightness above the background
NOISE = (0.02, 0.1)  # standard deviation of the pixel noise
DATA_SEED = 20150211  # fixed, so every run and every seed sees the same images


def _ink(distance, stroke):
    """Anti-aliased ink for pixels whose distance to a stroke's centre line is `distance`."""
    return np.clip(stroke / 2 + 0.5 - distance, 0.0, 1.0)


def _bars(u, v, size, offsets):
    return np.min([np.maximum(np.abs(v - o * size), np.abs(u) - size) for o in offsets], axis=0)


def _triangle(u, v, size):
    normals = [(np.cos(a), np.sin(a)) for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, -np.pi / 6)]
    return np.max([nx * u + ny * v for nx, ny in normals], axis=0) - size / 2


def _distance(label, u, v, size):
    """Distance from each pixel to the outline of class `label` (rotated frame u, v)."""
    r = np.hypot(u, v)
    if label == 0:  # circle
        return np.abs(r - size)
    if label == 1:  # disk: distance is 0 everywhere inside
        return np.maximum(r - size, 0)
    if label == 2:  # square
        return np.abs(np.maximum(np.abs(u), np.abs(v)) - size * 0.85)
    if label == 3:  # triangle
        return np.abs(_triangle(u, v, size * 1.6))
    if label in (4, 5):  # plus; cross is a plus turned by 45 degrees
        if label == 5:
            u, v = (u + v) / np.sqrt(2), (v - u) / np.sqrt(2)
        return np.minimum(_bars(u, v, size, [0]), _bars(v, u, size, [0]))
    if label == 6:  # horizontal bars
        return _bars(u, v, size, [-0.7, 0, 0.7])
    if label == 7:  # vertical bars
        return _bars(v, u, size, [-0.7, 0, 0.7])
    if label == 8:  # rings
        return np.minimum(np.abs(r - size), np.abs(r - size * 0.45))
    # dots: four small disks on a square
    centres = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    k = size * 0.55
    return np.min([np.maximum(np.hypot(u - a * k, v - b * k) - 2.0, 0) for a, b in centres], 0)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8, shape n x 1 x 28 x 28) and their labels (int64), balanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    images = np.empty((n, SIZE, SIZE), dtype=np.float32)
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2
    y, x = np.meshgrid(grid, grid, indexing="ij")
    for label in range(len(CLASSES)):
        idx = np.flatnonzero(labels == label)
        m = len(idx)
        cx, cy = rng.uniform(-4, 4, (2, m, 1, 1))
        size = rng.uniform(5.5, 9.5, (m, 1, 1))
        # bars, plus and cross only turn a little, so they stay distinct from each other
        max_turn = np.pi / 8 if label in (4, 5, 6, 7) else np.pi
        angle = rng.uniform(-max_turn, max_turn, (m, 1, 1))
        stroke = rng.uniform(1.0, 2.6, (m, 1, 1))
        cos, sin = np.cos(angle), np.sin(angle)
        u = cos * (x - cx) + sin * (y - cy)
        v = -sin * (x - cx) + cos * (y - cy)
        ink = _ink(_distance(label, u, v, size), stroke)
        contrast = rng.uniform(*CONTRAST, (m, 1, 1))
        background = rng.uniform(0.0, 0.45, (m, 1, 1))
        noise = rng.normal(0, 1, (m, SIZE, SIZE)) * rng.uniform(*NOISE, (m, 1, 1))
        images[idx] = background + contrast * ink + noise
    pixels = np.clip(images * 255, 0, 255).round().astype(np.uint8)
    return pixels[:, None], labels


@functools.lru_cache(maxsize=1)
def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), generated once per process and read-only."""
    x, y = generate(N_TRAIN + N_TEST, DATA_SEED)
    arrays = (x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])
    for a in arrays:
        a.flags.writeable = False
    return arrays
