"""Preservation masks drawn for SC training crops: everything, nothing, random boxes, random whole classes, and
random instances (connected components of one class), so the model meets every way a user marks what to keep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.config import MaskKind


def random_mask(labels: np.ndarray, mix: Sequence[tuple[MaskKind, float]], rng: np.random.Generator) -> np.ndarray:
    """A mask (H, W), True = keep, of a kind drawn with the weights of `mix`, for a crop's class ids (H, W)."""
    kinds = [kind for kind, _ in mix]
    weights = np.asarray([weight for _, weight in mix], dtype=np.float64)
    return draw_mask(labels, kinds[rng.choice(len(kinds), p=weights / weights.sum())], rng)


def draw_mask(labels: np.ndarray, kind: MaskKind, rng: np.random.Generator) -> np.ndarray:
    height, width = labels.shape
    if kind == "all":
        return np.ones((height, width), dtype=bool)
    if kind == "none":
        return np.zeros((height, width), dtype=bool)
    if kind == "boxes":
        mask = np.zeros((height, width), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            box_h = rng.integers(height // 8 + 1, height * 3 // 4 + 1)
            box_w = rng.integers(width // 8 + 1, width * 3 // 4 + 1)
            top, left = rng.integers(height - box_h + 1), rng.integers(width - box_w + 1)
            mask[top : top + box_h, left : left + box_w] = True
        return mask
    present = np.unique(labels)
    if kind == "classes":
        return np.isin(labels, present[rng.random(len(present)) < 0.5])
    if kind == "instances":
        components = connected_components(labels == rng.choice(present))
        count = int(components.max())
        chosen = 1 + rng.permutation(count)[: rng.integers(1, count + 1)]
        return np.isin(components, chosen)
    raise ValueError(f"unknown preservation mask kind {kind!r}")


def connected_components(region: np.ndarray) -> np.ndarray:
    """4-connected components of a boolean image: 0 outside `region`, 1..n inside.

    Each pixel starts with its own number and repeatedly takes the smallest among its neighbours in the region,
    jumping to the number its number points at, until nothing changes (numpy only, no scipy).
    """
    outside = region.size + 1
    numbers = np.where(region, np.arange(1, region.size + 1).reshape(region.shape), outside)
    while True:
        padded = np.pad(numbers, 1, constant_values=outside)
        around = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        smallest = np.minimum.reduce([numbers, *around])
        jumped = smallest.ravel()[np.minimum(smallest, region.size) - 1].reshape(region.shape)
        smallest = np.where(region, jumped, outside)
        if np.array_equal(smallest, numbers):
            break
        numbers = smallest
    components = np.zeros(region.shape, dtype=np.int32)
    components[region] = np.unique(numbers[region], return_inverse=True)[1] + 1
    return components
