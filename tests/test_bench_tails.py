"""bench.tails: the ends it times are drop-in replacements for each other, and multiply-adds are counted exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.speed import graph_multiply_adds
from bench.tails import ends, to_onnx


def test_both_configurations_ends_map_the_same_input_to_the_same_shape() -> None:
    for variants in zip(ends("small"), ends("small-fast"), strict=True):
        shapes = set()
        for variant in variants:
            scale = variant.input_scale
            x = torch.rand(1, variant.input_channels, 64 // scale, 96 // scale)
            with torch.no_grad():
                shapes.add(tuple(variant.network.eval()(x).shape))
        assert len(shapes) == 1, shapes


def test_multiply_adds_are_output_elements_times_kernel_volume() -> None:
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    x = np.zeros((1, 3, 10, 12), np.float32)
    expected = 8 * 10 * 12 * (3 * 3 * 3) + 2 * 10 * 12 * 8
    assert graph_multiply_adds(to_onnx(network, torch.from_numpy(x)), {"x": x}) == expected
