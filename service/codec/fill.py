"""What a hybrid model's base image holds where selective compression (SC) synthesises: each class's own colours,
smoothed, so that AVIF spends almost nothing there and its bytes go to the kept regions.

The upscaler then paints the full image from that base like any other: kept regions come back as in GC, synthesised
ones keep their class's colour layout (a sky's gradient, a road's shade) with the label map's boundaries, and lose
their detail. The smoothing is a normalised convolution: per class, a box blur (repeated, close to a Gaussian) of
the synthesised pixels of that class divided by the blur of their indicator, so no colour crosses from a kept
region or from another class.
"""

from __future__ import annotations

import numpy as np

SMOOTHING_RADIUS = 6
"""Of each box pass, in base pixels (24 image pixels at factor 4): wide enough that AVIF codes the fill in a few
bytes, narrow enough to keep a sky's gradient."""
SMOOTHING_PASSES = 3
SYNTHESISED_SHARE = 1 / 3
"""What a synthesised cell counts for in an SC file's budget, against a kept cell's 1. Its fill costs AVIF about half
what the image did at the same quality (on CamVid val), so a third leaves the kept regions a little less than GC's
quality, for under half of GC's bytes (docs/sc.md)."""


def fill_synthesised(
    small: np.ndarray,
    keep: np.ndarray,
    labels: np.ndarray | None = None,
    radius: int = SMOOTHING_RADIUS,
    passes: int = SMOOTHING_PASSES,
) -> np.ndarray:
    """The base image (rows, columns, 3) uint8 with the cells outside `keep` (bool, rows x columns) replaced by
    their class's smoothed colours; `labels` (class ids, rows x columns) separates the classes, None: one class."""
    synthesised = ~keep
    if not synthesised.any():
        return small
    segments = np.zeros(keep.shape, np.uint8) if labels is None else labels
    filled = small.astype(np.float64)
    for class_id in np.unique(segments[synthesised]):
        where = synthesised & (segments == class_id)
        weight = _blur(where.astype(np.float64), radius, passes)
        colour = _blur(small * where[..., None], radius, passes)
        filled[where] = colour[where] / weight[where][:, None]
    return np.rint(filled).clip(0, 255).astype(np.uint8)


def _blur(values: np.ndarray, radius: int, passes: int) -> np.ndarray:
    """`passes` box sums of side 2 * radius + 1 over rows and columns, zero outside the image (the normalisation
    divides the zeros out again)."""
    blurred = values.astype(np.float64)
    for _ in range(passes):
        for axis in (0, 1):
            blurred = _box_sum(blurred, radius, axis)
    return blurred


def _box_sum(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    padding = [(0, 0)] * values.ndim
    padding[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(values, padding), axis=axis)
    length = values.shape[axis]
    upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + length), axis=axis)
    return upper - np.take(sums, np.arange(length), axis=axis)
