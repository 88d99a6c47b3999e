"""Detail restoration (service/codec/detail.py) and its place in the file and the pipeline."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from PIL import Image, ImageFilter

from service.codec import detail
from service.codec.container import Header, pack, unpack
from service.codec.errors import CorruptBitstream
from service.codec.pipeline import compress, decompress
from service.codec.registry import Registry

BINOMIAL = np.array([1, 4, 6, 4, 1]) / 16


def _textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Noise blurred a little: detail at every scale, as a photo has."""
    noise = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.5)))


def _blurred(image: np.ndarray, radius: float = 1.0) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def _pyr_down_reference(image: np.ndarray) -> np.ndarray:
    """cv2.pyrDown by its definition: the 2-D binomial filter over reflect-101 borders, then every other pixel."""
    padded = np.pad(image.astype(np.float64), 2, mode="reflect")
    kernel = np.outer(BINOMIAL, BINOMIAL)
    height, width = image.shape
    blurred = sum(kernel[i, j] * padded[i : i + height, j : j + width] for i in range(5) for j in range(5))
    return blurred[::2, ::2]


def _pyr_up_reference(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """cv2.pyrUp by its definition: zeros between the pixels, 4 times the binomial filter, reflect-101 borders."""
    spread = np.zeros((2 * image.shape[0], 2 * image.shape[1]))
    spread[::2, ::2] = image
    padded = np.pad(spread, 2, mode="reflect")
    kernel = 4 * np.outer(BINOMIAL, BINOMIAL)
    height, width = spread.shape
    return sum(kernel[i, j] * padded[i : i + height, j : j + width] for i in range(5) for j in range(5))[
        : shape[0], : shape[1]
    ]


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (101, 40)])
def test_the_pyramid_is_burt_and_adelsons_with_the_binomial_filter(shape):
    image = (np.random.default_rng(1).random(shape) * 255).astype(np.float32)
    bands = detail.band_count(*shape)
    pyramid = detail.laplacian_pyramid(image, bands)
    gaussian = [image.astype(np.float64)]
    for _ in range(bands):
        gaussian.append(_pyr_down_reference(gaussian[-1]))
    expected = [fine - _pyr_up_reference(coarse, fine.shape) for fine, coarse in pairwise(gaussian)]
    for band, reference in zip(pyramid, [*expected, gaussian[-1]], strict=True):
        np.testing.assert_allclose(band, reference, atol=1e-3)
    np.testing.assert_allclose(detail.collapse(pyramid), image, atol=1e-3)


@pytest.mark.parametrize(
    ("height", "width", "bands"), [(1, 1, 0), (14, 300, 0), (15, 15, 1), (28, 64, 1), (31, 31, 2), (1080, 1920, 4)]
)
def test_band_count_leaves_a_coarsest_level_of_eight_pixels_and_at_most_four_bands(height, width, bands):
    assert detail.band_count(height, width) == bands


def test_rms_codes_are_logarithmic_bytes_within_half_a_step():
    rms = np.array([0.0, 0.05, 1.0, 7.3, 42.0, 1e6])
    decoded = detail.rms_from_codes(detail.rms_codes(rms))
    assert decoded[0] == decoded[1] == detail.CODE_FLOOR and decoded[-1] == detail.rms_from_codes(b"\xff")[0]
    np.testing.assert_allclose(decoded[2:5], rms[2:5], rtol=2 ** (1 / 32) - 1)


def test_restore_brings_each_band_to_the_rms_of_the_original():
    original = _textured(240, 320)
    smooth = _blurred(original)
    codes = detail.measure(original, 4)
    assert all(s < o for s, o in zip(detail.measure(smooth, 4)[:2], codes[:2], strict=True))
    restored = detail.restore(smooth.copy(), codes)
    # within two code steps (9%): rounding to whole grey levels and clipping move the bands a little
    assert all(abs(r - o) <= 2 for r, o in zip(detail.measure(restored, 4), codes, strict=True))


def test_restore_scales_a_band_at_most_twice():
    flat = _blurred(_textured(128, 128), radius=4)
    before = detail.rms_from_codes(detail.measure(flat, 2))
    after = detail.rms_from_codes(detail.measure(detail.restore(flat.copy(), bytes([255, 255])), 2))
    assert np.all(after <= 2 * before * 2 ** (1 / 16) + 0.5)


def test_restoring_to_the_images_own_energy_changes_almost_nothing():
    image = _textured(200, 300)
    restored = detail.restore(image.copy(), detail.measure(image, 4))
    assert np.abs(restored.astype(int) - image).max() <= 2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_strips_and_threads_give_the_whole_images_result(monkeypatch, threads):
    image, codes = _blurred(_textured(700, 300)), bytes([180, 150, 120, 100])
    whole = detail.restore(image.copy(), codes)
    monkeypatch.setattr(detail, "STRIP_PIXELS", 300 * 64)
    assert len(detail.strips(700, 300)) == 3
    np.testing.assert_array_equal(detail.restore(image.copy(), codes, threads), whole)
    # Large images build each strip's pyramid again, restoring in place run by run, from the rows as they were.
    monkeypatch.setattr(detail, "KEEP_PIXELS", 0)
    np.testing.assert_array_equal(detail.restore(image.copy(), codes, threads), whole)
    assert detail.measure(image, 4, threads) == detail.measure(image, 4)


def test_gc_files_carry_the_detail_section_and_decode_with_it(model, make_image):
    pixels = make_image(96, 128)
    data = compress(pixels, model)
    header = unpack(data, 96 * 128).header
    assert data[3] == 3 and header.detail == detail.measure(pixels, 3)
    plain = compress(pixels, model, restore_detail=False)
    assert plain[3] == 1 and unpack(plain, 96 * 128).header.detail is None and len(data) == len(plain) + 4
    registry = Registry([model])
    generated = decompress(plain, registry)
    np.testing.assert_array_equal(decompress(data, registry), detail.restore(generated, header.detail))


def test_images_too_small_for_a_band_carry_no_detail_section(model, make_image):
    data = compress(make_image(12, 40), model)
    assert data[3] == 1 and unpack(data, 480).header.detail is None


def test_a_detail_section_with_more_bands_than_the_image_has_is_corrupt(model, make_image):
    pixels = make_image(40, 40)  # two bands
    bitstream = unpack(compress(pixels, model), 1600)
    forged = pack(Header(**{**bitstream.header.__dict__, "detail": bytes(3)}), bitstream.payload)
    with pytest.raises(CorruptBitstream, match="has 3 bands; a 40x40 image has 2"):
        decompress(forged, Registry([model]))
