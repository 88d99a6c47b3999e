"""The hybrid codec's base layer: the image made `factor` times smaller on each side, coded by AVIF.

At 0.03-0.1 bits per pixel a small image coded well keeps more of a photo's structure and colour than any code
our own networks could learn on CPUs (docs/training.md, "v7"), so the hybrid codec spends its bytes there, with
the best-kept coder for the job (libavif through Pillow), and leaves the learned upscaler (service/codec/model.py)
to paint the full-resolution image. Down-scaling is Pillow's Lanczos filter, the same in training and here.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import AvifImagePlugin, Image

from service.codec.avif import check_base
from service.codec.compact_avif import expand, shrink
from service.codec.errors import CorruptBitstream

AVIF_QUALITIES = (0, 100)
"""Pillow's AVIF quality range; the encoder takes the highest quality whose file fits the budget."""


def highest_within(encode: Callable[[int], bytes], low: int, high: int, target: int) -> int | None:
    """The highest setting in [low, high] whose file is at most `target` bytes (files grow with the setting); None
    if even `low`'s is larger. The benchmarks search the classical codecs' settings with it too.

    Each probe is aimed where the log of the file size, a straight line through the two nearest settings tried
    (AVIF's files grow about exponentially with quality), meets the target; bisection instead for the first probe
    and after two probes that moved the same end. About two thirds of bisection's encodes, the same answer."""
    sizes: dict[int, float] = {}

    def fits(setting: int) -> bool:
        size = len(encode(setting))
        sizes[setting] = math.log(max(size, 1))
        return size <= target

    if not fits(low):
        return None
    goal = math.log(max(target, 1))
    above: int | None = None  # the lowest setting known to be too large
    below: int | None = None  # the fitting setting tried before `low`
    moved: list[bool] = []  # which end each probe moved: True for `low`
    while (top := high if above is None else above - 1) > low:
        probe = (low + top + 1) // 2
        near = below if above is None else above
        if near is not None and moved[-2:] not in ([True, True], [False, False]):
            slope = (sizes[near] - sizes[low]) / (near - low)
            if slope > 0:
                probe = min(max(low + math.floor((goal - sizes[low]) / slope), low + 1), top)
        moved.append(fits(probe))
        if moved[-1]:
            below, low = low, probe
        else:
            above = probe
    return low


@dataclass(frozen=True)
class BaseLayer:
    """How the base image is made: the reduction on each side and libavif's settings."""

    factor: int = 4
    speed: int = 6
    """libavif's speed (0 slowest and smallest ... 10): 6 is its default trade-off."""
    subsampling: str = "4:2:0"

    def downscale(self, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Edge-pad to `shape` times `factor`, then Lanczos down to `shape` (rows, columns): the image the base layer
        codes."""
        rows, columns = shape
        height, width = image.shape[:2]
        padded = np.pad(image, ((0, rows * self.factor - height), (0, columns * self.factor - width), (0, 0)), "edge")
        return np.asarray(Image.fromarray(padded).resize((columns, rows), Image.Resampling.LANCZOS))

    def encode(self, small: np.ndarray, quality: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(small).save(
            buffer, format="AVIF", quality=quality, speed=self.speed, subsampling=self.subsampling
        )
        return buffer.getvalue()

    def payload(self, small: np.ndarray, quality: int) -> bytes:
        """The base as a file stores it: its AVIF in compact form where it can be (compact_avif.py)."""
        rows, columns = small.shape[:2]
        return shrink(self.encode(small, quality), columns, rows)

    def encode_within(self, small: np.ndarray, max_bytes: int) -> tuple[int, bytes]:
        """(quality, payload): the highest quality whose payload has at most `max_bytes`, by bisection; the lowest
        quality when none fits (its payload is then larger than asked)."""
        encode = functools.cache(lambda quality: self.payload(small, quality))
        quality = highest_within(encode, *AVIF_QUALITIES, max_bytes)
        quality = AVIF_QUALITIES[0] if quality is None else quality
        return quality, encode(quality)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        """The base image from its payload (an AVIF file or its compact form, compact_avif.py); one that is not one
        AVIF image of the expected size, or whose AV1 frames could be larger (avif.py), is corrupt.

        Pillow's AVIF reader is called directly: Image.open would add Pillow's decompression-bomb check, whose
        error is not ours (a declared 16384x16384 was a 500). libavif's own failures reach Python as RuntimeError.
        """
        rows, columns = shape
        data = expand(data, columns, rows)
        check_base(data, rows, columns)
        try:
            with AvifImagePlugin.AvifImageFile(io.BytesIO(data)) as decoded:
                if decoded.size != (columns, rows):
                    raise CorruptBitstream(
                        f"base layer is {decoded.size[0]}x{decoded.size[1]}, the header says {columns}x{rows}"
                    )
                return np.asarray(decoded.convert("RGB"))
        except (OSError, ValueError, SyntaxError, RuntimeError) as error:
            raise CorruptBitstream("base layer is not a readable AVIF image") from error
