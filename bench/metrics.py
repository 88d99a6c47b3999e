"""Per-image quality measures of a reconstruction against its original, all on RGB uint8 arrays (height, width, 3).

Distortion: PSNR and MS-SSIM. Coarse-scale fidelity, which a generator must keep however it invents texture: PSNR
and MS-SSIM of 4x area-downscaled images and the mean CIE76 colour difference of 16x area-downscaled ones. Realism,
with no downloaded weights: the sliced Wasserstein distance between Laplacian-pyramid patch distributions (Karras et
al. 2018, "Progressive growing of GANs", section 5) and the error of the radially averaged power spectrum; neither is
evidence of realism on its own (docs/evaluation.md). LPIPS (bench.learned) is added where its weights are local.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_msssim import ms_ssim

from service.codec import detail

METRICS_VERSION = 2
"""Bump when any measure below changes: it is part of every cache key, so old cached points are recomputed."""

MS_SSIM_MIN_SIDE = 161
"""pytorch-msssim's default 11-tap window over 5 scales needs the shorter side above (11 - 1) * 2**4 pixels."""


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio over all RGB values, in dB (capped at 100 dB for identical images)."""
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]


def msssim(original: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM over RGB (pytorch-msssim, data range 255, float32); None for images too small for five scales."""
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    with torch.no_grad():
        return float(ms_ssim(_tensor(original), _tensor(decoded), data_range=255.0))


# --- Coarse-scale fidelity ------------------------------------------------------------------------------------------

COARSE_FACTOR = 4
"""psnr_4 and ms_ssim_4 compare images averaged over 4x4 blocks: structure and tone, whatever the texture."""
COLOUR_FACTOR = 16
"""delta_e_16 compares colours averaged over 16x16 blocks: the scale of the latent, where colour drift shows."""


def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each factor x factor block (of the sRGB values), as float64; a partial last row or column of
    blocks is left out."""
    height, width = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: height * factor, : width * factor].astype(np.float64)
    return blocks.reshape(height, factor, width, factor, image.shape[2]).mean(axis=(1, 3))


D65_WHITE = np.array([0.95047, 1.0, 1.08883])
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
"""IEC 61966-2-1 primaries, D65 white: linear sRGB -> CIE XYZ."""


def srgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB values 0-255 (any float or integer array, channels last) -> CIELAB with the D65 white, in float64.

    Not Pillow's ImageCms: its LAB is the ICC connection space, adapted to a D50 white, and 8 bits a channel."""
    value = np.asarray(image, dtype=np.float64) / 255.0
    linear = np.where(value <= 0.04045, value / 12.92, ((value + 0.055) / 1.055) ** 2.4)
    xyz = linear @ SRGB_TO_XYZ.T / D65_WHITE
    epsilon, kappa = (6 / 29) ** 3, (29 / 6) ** 2 / 3
    f = np.where(xyz > epsilon, np.cbrt(xyz), kappa * xyz + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e(original: np.ndarray, decoded: np.ndarray) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB) between two sRGB images; about 2.3 is a just
    noticeable difference between flat patches side by side."""
    return float(np.mean(np.linalg.norm(srgb_to_lab(original) - srgb_to_lab(decoded), axis=-1)))


class CoarseReference:
    """An original's 4x and 16x area downscales, computed once and compared with many reconstructions."""

    def __init__(self, original: np.ndarray) -> None:
        self.coarse = area_downscale(original, COARSE_FACTOR)
        self.colours = area_downscale(original, COLOUR_FACTOR)

    def measure(self, decoded: np.ndarray) -> dict[str, float | None]:
        """psnr_4, ms_ssim_4 (None where the 1/4 image is under MS_SSIM_MIN_SIDE) and delta_e_16 (None where
        the image is under 16 pixels)."""
        coarse = area_downscale(decoded, COARSE_FACTOR)
        return {
            "psnr_4": psnr(self.coarse, coarse) if coarse.size else None,
            "ms_ssim_4": msssim(self.coarse, coarse),
            "delta_e_16": delta_e(self.colours, area_downscale(decoded, COLOUR_FACTOR)) if self.colours.size else None,
        }


# --- Sliced Wasserstein distance between Laplacian-pyramid patch distributions -------------------------------------


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """(height, width, 3) uint8 -> `levels` float32 (3, h, w) bands, finest first; the last is the low-pass rest.

    The pyramid of cv2.pyrDown / pyrUp as Karras et al.'s sliced_wasserstein.py builds it (5-tap binomial filter,
    reflect-101 borders); the codec's detail restoration uses the same one (service/codec/detail.py).
    """
    return [band.transpose(2, 0, 1) for band in detail.laplacian_pyramid(image, levels - 1)]


@dataclass(frozen=True)
class SwdSettings:
    """Karras et al. use 7x7 neighbourhoods, levels down to 16x16, 4 x 128 random directions; patches are per image
    here (one original against one reconstruction), drawn at the same seeded positions in both."""

    patch: int = 7
    max_levels: int = 5
    min_side: int = 16
    patches_per_level: int = 2048
    repeats: int = 4
    directions: int = 128
    seed: int = 2018


def pyramid_levels(height: int, width: int, settings: SwdSettings = SwdSettings()) -> int:
    """As many levels as keep the coarsest one at least `min_side` pixels (and one patch) high, up to max_levels."""
    side, levels = min(height, width), 1
    while levels < settings.max_levels and (side + 1) // 2 >= max(settings.min_side, settings.patch):
        side, levels = (side + 1) // 2, levels + 1
    return levels


def _positions(rows: int, cols: int, wanted: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every patch position when there are at most `wanted`, else `wanted` drawn at random (with replacement)."""
    if rows * cols <= wanted:
        grid = np.mgrid[0:rows, 0:cols].reshape(2, -1)
        return grid[0], grid[1]
    return rng.integers(0, rows, wanted), rng.integers(0, cols, wanted)


def _patches(band: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """(channels, h, w) -> (n, channels * size * size) descriptors whose top-left corners are (rows, cols)."""
    dy, dx = np.mgrid[0:size, 0:size]
    block = band[:, rows[:, None, None] + dy, cols[:, None, None] + dx]  # (channels, n, size, size)
    return block.transpose(1, 0, 2, 3).reshape(len(rows), -1)


class SwdReference:
    """An original's pyramid patches, normalisation and sorted projections, computed once and compared with many
    reconstructions; the positions and directions are seeded, so every comparison uses the same ones."""

    def __init__(self, original: np.ndarray, settings: SwdSettings = SwdSettings()) -> None:
        self.settings = settings
        self.shape = original.shape
        self.levels = pyramid_levels(*original.shape[:2], settings)
        rng = np.random.default_rng(settings.seed)
        self._positions: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._normalisation: list[tuple[np.ndarray, np.ndarray]] = []
        self._directions: list[np.ndarray] = []
        self._sorted: list[np.ndarray] = []
        for band in laplacian_pyramid(original, self.levels):
            height, width = band.shape[1:]
            size = min(settings.patch, height, width)
            rows, cols = _positions(height - size + 1, width - size + 1, settings.patches_per_level, rng)
            patches = _patches(band, rows, cols, size)
            per_channel = patches.reshape(len(patches), band.shape[0], -1)
            mean = per_channel.mean(axis=(0, 2)).repeat(size * size)
            std = per_channel.std(axis=(0, 2)).repeat(size * size) + 1e-6
            # the repeats' directions side by side: (descriptor, repeats * directions), each column of unit length
            directions = rng.standard_normal((settings.repeats, patches.shape[1], settings.directions))
            directions = np.concatenate(list(directions / np.linalg.norm(directions, axis=1, keepdims=True)), axis=1)
            directions = np.ascontiguousarray(directions, dtype=np.float32)
            self._positions.append((rows, cols, size))
            self._normalisation.append((mean, std))
            self._directions.append(directions)
            self._sorted.append(self._sorted_projections(patches, level=len(self._directions) - 1))

    def _sorted_projections(self, patches: np.ndarray, level: int) -> np.ndarray:
        """(directions, patches): each direction's projections of the normalised patches, sorted."""
        mean, std = self._normalisation[level]
        projected = ((patches - mean) / std) @ self._directions[level]
        return np.sort(np.ascontiguousarray(projected.T), axis=1)

    def levels_to(self, decoded: np.ndarray) -> list[float]:
        """Sliced Wasserstein distance (x 1000, as Karras et al. report it) at each pyramid level, finest first."""
        if decoded.shape != self.shape:
            raise ValueError(f"reconstruction is {decoded.shape}, the original {self.shape}")
        distances = []
        for level, band in enumerate(laplacian_pyramid(decoded, self.levels)):
            rows, cols, size = self._positions[level]
            projections = self._sorted_projections(_patches(band, rows, cols, size), level)
            # Wasserstein-1 per direction = mean gap between sorted projections; averaged over all directions
            distances.append(1000.0 * float(np.mean(np.abs(projections - self._sorted[level]))))
        return distances

    def to(self, decoded: np.ndarray) -> float:
        """The mean over pyramid levels: 0 for identical images, larger the less alike the textures."""
        return float(np.mean(self.levels_to(decoded)))


def swd_levels(original: np.ndarray, decoded: np.ndarray, settings: SwdSettings = SwdSettings()) -> list[float]:
    """Sliced Wasserstein distance (x 1000) per pyramid level, finest first.

    Descriptors at each level are normalised with the original's per-channel mean and standard deviation (Karras et
    al. normalise each set by its own): one scale for both, so lost contrast and blur count against the
    reconstruction instead of being normalised away.
    """
    return SwdReference(original, settings).levels_to(decoded)


def swd(original: np.ndarray, decoded: np.ndarray, settings: SwdSettings = SwdSettings()) -> float:
    """The mean over pyramid levels of swd_levels: 0 for identical images, larger the less alike the textures."""
    return SwdReference(original, settings).to(decoded)


# --- Radially averaged power spectrum ------------------------------------------------------------------------------

SPECTRUM_BINS = 48
HIGH_FREQUENCY = 0.25
"""Cycles per pixel above which spectrum_bias_db averages: the upper half of the band, where blur shows first."""


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def radial_power_spectrum(image: np.ndarray, bins: int = SPECTRUM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in cycles per pixel, mean power per bin) of the Hann-windowed luma, DC left out, up to 0.5."""
    y = luma(image)
    height, width = y.shape
    window = np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.rfft2((y - y.mean()) * window)) ** 2
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    edges = np.linspace(0.0, 0.5, bins + 1)
    index = np.digitize(radius, edges[1:-1])
    keep = (radius > 0) & (radius <= 0.5)
    total = np.bincount(index[keep], weights=power[keep], minlength=bins)
    count = np.bincount(index[keep], minlength=bins)
    return (edges[1:] + edges[:-1]) / 2, total / np.maximum(count, 1)


def _difference_db(reference: np.ndarray, power: np.ndarray) -> np.ndarray:
    floor = 1e-12 * max(float(reference.max()), 1.0)
    return 10 * np.log10((power + floor) / (reference + floor))


def spectrum_difference_db(original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, 10 log10 of the reconstruction's radial power over the original's) per bin."""
    frequencies, reference = radial_power_spectrum(original)
    return frequencies, _difference_db(reference, radial_power_spectrum(decoded)[1])


def spectrum_error_db(original: np.ndarray, decoded: np.ndarray) -> float:
    """Mean absolute log-spectrum difference over frequency bins, in dB: 0 for the same spectrum; blur (missing
    high frequencies) and added noise or blocking (extra high frequencies) both raise it."""
    return float(np.mean(np.abs(spectrum_difference_db(original, decoded)[1])))


def spectrum_bias_db(original: np.ndarray, decoded: np.ndarray) -> float:
    """Signed mean log-spectrum difference above HIGH_FREQUENCY, in dB: negative = high frequencies lost (blur)."""
    frequencies, difference = spectrum_difference_db(original, decoded)
    return float(np.mean(difference[frequencies > HIGH_FREQUENCY]))


# --- All of them ---------------------------------------------------------------------------------------------------

WEIGHT_FREE = ("psnr", "ms_ssim", "psnr_4", "ms_ssim_4", "delta_e_16", "swd", "spectrum_error_db", "spectrum_bias_db")
HIGHER_IS_BETTER = {
    "psnr": True,
    "ms_ssim": True,
    "psnr_4": True,
    "ms_ssim_4": True,
    "delta_e_16": False,
    "swd": False,
    "spectrum_error_db": False,
    "spectrum_bias_db": True,
    "lpips": False,
}


class Reference:
    """One original, with what every comparison needs from it computed once (downscales, pyramid patches,
    spectrum)."""

    def __init__(self, original: np.ndarray, swd_settings: SwdSettings = SwdSettings()) -> None:
        self.original = original
        self.coarse = CoarseReference(original)
        self.swd = SwdReference(original, swd_settings)
        self.frequencies, self.spectrum = radial_power_spectrum(original)

    def measure(self, decoded: np.ndarray) -> dict[str, float | None]:
        """Every weight-free measure of one reconstruction (bench.learned adds LPIPS where it can run)."""
        if decoded.shape != self.original.shape:
            raise ValueError(f"reconstruction is {decoded.shape}, the original {self.original.shape}")
        difference = _difference_db(self.spectrum, radial_power_spectrum(decoded)[1])
        return {
            "psnr": psnr(self.original, decoded),
            "ms_ssim": msssim(self.original, decoded),
            **self.coarse.measure(decoded),
            "swd": self.swd.to(decoded),
            "spectrum_error_db": float(np.mean(np.abs(difference))),
            "spectrum_bias_db": float(np.mean(difference[self.frequencies > HIGH_FREQUENCY])),
        }


def measure(original: np.ndarray, decoded: np.ndarray) -> dict[str, float | None]:
    """Reference(original).measure(decoded), for a single comparison."""
    return Reference(original).measure(decoded)
