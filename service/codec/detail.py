"""Detail restoration: the decoder gives each scale of its image the contrast the original had there.

The generator draws too little detail, by an amount that varies from image to image (docs/training.md, v6: at
the default rate point the originals' two finest Laplacian bands have about 1.4 times the RMS of its images',
with standard deviations of 0.41 and 0.26 between photos). So the encoder measures the RMS of the original's first
few Laplacian-pyramid bands and stores each in one byte of the file; the decoder measures the same bands of its own
image and scales each by the ratio (within GAIN_LIMITS) before collapsing the pyramid. The pyramid is Burt and
Adelson's: the 5-tap binomial filter of cv2.pyrDown / pyrUp, mirrored (reflect-101) borders.

Images are processed in strips of rows, in parallel, each strip with a margin wide enough that its kept rows
come out as they would from the whole image; band energies are summed over the strips' kept rows. Memory stays
bounded on large images, and the cut depends on the image's size alone, so results do not depend on threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

MAX_BANDS = 4
MIN_COARSE_SIDE = 8
"""The coarsest Gaussian level left under the bands keeps at least this many pixels a side."""
GAIN_LIMITS = (0.5, 2.0)
"""How far a band may be scaled: a flat decoded band is not blown up into noise, nor a busy one flattened."""
CODE_STEPS_PER_OCTAVE = 16
"""RMS codes are logarithmic: one step is 2**(1/16), 4.4%."""
CODE_FLOOR = 1 / 16
"""The RMS of code 0 (in grey levels); code 255 is about 3,800."""
STRIP_PIXELS = 1 << 20
"""Rows per strip are chosen so that a strip holds about this many pixels (not fewer than MIN_STRIP_ROWS): a
Full-HD image is two strips, one per core."""
KEEP_PIXELS = 1 << 23
"""Images up to this size keep every strip's pyramid between measuring and restoring; larger ones build it again."""
MIN_STRIP_ROWS = 256
MARGIN_ROWS = 96
"""Rows above and below a strip that its pyramid reads; enough that every kept row is exact (tested)."""

_ALIGN = 1 << MAX_BANDS
"""Strips start on multiples of the coarsest level's step, so every level's grid matches the whole image's."""


def band_count(height: int, width: int) -> int:
    """How many bands an image of this size has: up to MAX_BANDS, leaving a coarsest level of MIN_COARSE_SIDE."""
    side, bands = min(height, width), 0
    while bands < MAX_BANDS and -(-side // 2) >= MIN_COARSE_SIDE:
        side, bands = -(-side // 2), bands + 1
    return bands


def rms_codes(rms: np.ndarray) -> bytes:
    """Band RMS values (grey levels) -> one byte each."""
    codes = np.round(CODE_STEPS_PER_OCTAVE * np.log2(np.maximum(rms, CODE_FLOOR) / CODE_FLOOR))
    return bytes(np.clip(codes, 0, 255).astype(np.uint8))


def rms_from_codes(codes: bytes) -> np.ndarray:
    return CODE_FLOOR * 2.0 ** (np.frombuffer(codes, np.uint8) / CODE_STEPS_PER_OCTAVE)


def measure(image: np.ndarray, bands: int, threads: int = 1) -> bytes:
    """The coded RMS of each of an RGB uint8 (height, width, 3) image's first `bands` Laplacian bands of luma."""
    return rms_codes(_measure_strips(image, bands, threads)[0])


def restore(image: np.ndarray, codes: bytes, threads: int = 1) -> np.ndarray:
    """Scale each luma band of a decoded RGB uint8 image, in place, to the RMS the codes give (as many bands as
    codes); returns the image.

    Only luma is scaled: the same correction is added to the three channels, whose fine detail is mostly luma's.
    The result does not depend on `threads`: strips are cut by image size, and their sums added in order.
    """
    rms, pyramids = _measure_strips(image, len(codes), threads)
    gains = np.clip(rms_from_codes(codes) / np.maximum(rms, 1e-6), *GAIN_LIMITS).astype(np.float32)
    cut = strips(*image.shape[:2])
    if pyramids is not None:
        # Built before anything changed: each strip now reads and writes only its own rows.
        _map(threads, lambda strip, pyramid: _correct(image, strip, pyramid, gains), cut, pyramids)
        return image
    # Large images: runs of consecutive strips, one per thread, each restored top to bottom; the luma of every
    # run's outer margins is taken before any strip changes.
    size, extra = divmod(len(cut), threads)
    starts = [index * size + min(index, extra) for index in range(threads + 1)]
    runs = [cut[start:stop] for start, stop in pairwise(starts) if stop > start]
    margins = [
        (_luma(image[run[0].window.start : run[0].rows.start]), _luma(image[run[-1].rows.stop : run[-1].window.stop]))
        for run in runs
    ]
    _map(threads, lambda run, margin: _restore_in_order(image, run, gains, *margin), runs, margins)
    return image


def _map(threads: int, function: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
    """map() on `threads` threads of a pool that lives as long as the process: a pool per image would start new
    threads for every request, and each new thread may get a malloc arena of its own (memory creeping up)."""
    if threads == 1:
        return list(map(function, *iterables))
    return list(_pool(threads).map(function, *iterables))


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="gancodec-detail")


def _restore_in_order(
    image: np.ndarray, run: list[_Strip], gains: np.ndarray, above: np.ndarray, below: np.ndarray
) -> None:
    """Restore consecutive strips top to bottom. Each pyramid must see its neighbours' rows as they were: the rows
    above a strip belong to the one restored before it, so their luma is taken before that one changes."""
    for index, strip in enumerate(run):
        last = index == len(run) - 1
        lower = below if last else _luma(image[strip.rows.stop : strip.window.stop])
        pyramid = laplacian_pyramid(np.concatenate([above, _luma(image[strip.rows]), lower]), len(gains))
        if not last:
            above = _luma(image[run[index + 1].window.start : strip.rows.stop])
        _correct(image, strip, pyramid, gains)


def _correct(image: np.ndarray, strip: _Strip, pyramid: list[np.ndarray], gains: np.ndarray) -> None:
    """Add to the strip's rows, in place, the collapse of its luma bands times (gain - 1), rounded and clipped."""
    for band, gain in zip(pyramid[:-1], gains, strict=True):
        band *= gain - 1
    pyramid[-1] = np.zeros_like(pyramid[-1])
    correction = np.rint(collapse(pyramid)[strip.kept]).astype(np.int16)[..., None]
    restored = image[strip.rows] + correction
    np.clip(restored, 0, 255, out=restored)
    image[strip.rows] = restored


def _luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB uint8 (height, width, 3), float32 (height, width)."""
    return image @ np.array([0.299, 0.587, 0.114], np.float32)


def laplacian_pyramid(image: np.ndarray, bands: int) -> list[np.ndarray]:
    """(height, width, ...) -> `bands` float32 band-pass images, finest first, and the low-pass rest."""
    levels = [image.astype(np.float32)]
    for _ in range(bands):
        levels.append(_down(_down(levels[-1], 0), 1))
    band_pass = [fine - _up(_up(coarse, fine.shape[0], 0), fine.shape[1], 1) for fine, coarse in pairwise(levels)]
    return [*band_pass, levels[-1]]


def collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    """The image whose laplacian_pyramid this is (float32)."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = _up(_up(image, band.shape[0], 0), band.shape[1], 1)
        image += band
    return image


def _down(x: np.ndarray, axis: int) -> np.ndarray:
    """Binomial blur and keep every other sample along `axis` (cv2.pyrDown's filter, reflect-101 borders); the
    axis must be at least 3 long, which band_count ensures."""
    x = np.moveaxis(x, axis, 0)
    kept = (x.shape[0] + 1) // 2
    padded = np.concatenate([x[2:0:-1], x, x[-2:-4:-1]])
    taps = [padded[k : k + 2 * kept - 1 : 2] for k in range(5)]
    out = (taps[0] + taps[4]) * np.float32(1 / 16) + (taps[1] + taps[3]) * np.float32(4 / 16)
    out += taps[2] * np.float32(6 / 16)
    return np.moveaxis(out, 0, axis)


def _up(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Insert zeros between samples along `axis`, blur with twice the binomial filter, keep `size` samples: the
    even outputs are (x[i-1] + 6 x[i] + x[i+1]) / 8, the odd ones (x[i] + x[i+1]) / 2, with mirrored borders."""
    x = np.moveaxis(x, axis, 0)
    extended = np.concatenate([x[1:2], x, x[-1:]])
    out = np.empty((2 * len(x), *x.shape[1:]), np.float32)
    out[0::2] = (extended[:-2] + extended[2:]) * np.float32(1 / 8) + extended[1:-1] * np.float32(6 / 8)
    out[1::2] = (extended[1:-1] + extended[2:]) * np.float32(0.5)
    return np.moveaxis(out[:size], 0, axis)


@dataclass(frozen=True)
class _Strip:
    window: slice
    """The rows the pyramid is built from: the strip and its margins."""
    rows: slice
    """The rows kept, in the image."""

    @property
    def kept(self) -> slice:
        """The rows kept, in the window."""
        return slice(self.rows.start - self.window.start, self.rows.stop - self.window.start)


def strips(height: int, width: int) -> list[_Strip]:
    """How an image is cut: by its size alone, so that every machine cuts it (and sums its bands) alike."""
    step = max(MIN_STRIP_ROWS, STRIP_PIXELS // width // _ALIGN * _ALIGN)
    return [
        _Strip(
            slice(max(0, top - MARGIN_ROWS), min(height, top + step + MARGIN_ROWS)), slice(top, min(height, top + step))
        )
        for top in range(0, height, step)
    ]


def _measure_strips(image: np.ndarray, bands: int, threads: int) -> tuple[np.ndarray, list[list[np.ndarray]] | None]:
    """(the RMS of each band over the whole image, each strip's pyramid where the image is small enough to keep
    them all, else None)."""
    keep = image.shape[0] * image.shape[1] <= KEEP_PIXELS

    def measure_strip(strip: _Strip) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
        pyramid = laplacian_pyramid(_luma(image[strip.window]), bands)
        squares, counts = np.zeros(bands), np.zeros(bands)
        for level, band in enumerate(pyramid[:bands]):
            step = 1 << level  # the window starts on a multiple of every level's step
            kept = band[-(-strip.kept.start // step) : -(-strip.kept.stop // step)].ravel()
            squares[level], counts[level] = np.dot(kept, kept), kept.size
        return squares, counts, pyramid if keep else None

    results = _map(threads, measure_strip, strips(*image.shape[:2]))
    squares = np.sum([squares for squares, _, _ in results], axis=0)
    counts = np.sum([counts for _, counts, _ in results], axis=0)
    return np.sqrt(squares / np.maximum(counts, 1)), [pyramid for _, _, pyramid in results] if keep else None
