"""The weight-free measures: zero for an image against itself, growing with blur, and honest about their limits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

pytest.importorskip("pytorch_msssim")

from bench import learned, metrics
from service.codec import detail


def textured(height: int = 192, width: int = 224, seed: int = 0) -> np.ndarray:
    """Edges, stripes and noise: content with energy at every frequency, like a photograph."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 90 * np.sin(x / 3.0), 128 + 80 * np.sign(np.sin(y / 11.0)), (x * y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def blurred(image: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return textured()


def test_identical_images_measure_perfect(image: np.ndarray) -> None:
    result = metrics.measure(image, image.copy())
    assert result["psnr"] == 100.0
    assert result["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert result["swd"] == pytest.approx(0.0, abs=1e-6)
    assert result["spectrum_error_db"] == pytest.approx(0.0, abs=1e-9)
    assert result["spectrum_bias_db"] == pytest.approx(0.0, abs=1e-9)
    assert result["psnr_4"] == 100.0 and result["delta_e_16"] == 0.0


def test_every_measure_worsens_with_blur(image: np.ndarray) -> None:
    reference = metrics.Reference(image)
    results = [reference.measure(blurred(image, radius)) for radius in (0.6, 1.5, 3.0)]
    for key in ("psnr", "ms_ssim"):
        assert results[0][key] > results[1][key] > results[2][key], key
    for key in ("swd", "spectrum_error_db"):
        assert 0 < results[0][key] < results[1][key] < results[2][key], key
    assert results[0]["spectrum_bias_db"] < 0, "blur removes high frequencies"
    assert results[2]["spectrum_bias_db"] < results[0]["spectrum_bias_db"]


def test_swd_is_larger_at_fine_levels_for_blur(image: np.ndarray) -> None:
    levels = metrics.swd_levels(image, blurred(image, 1.5))
    assert len(levels) == metrics.pyramid_levels(*image.shape[:2])
    assert levels[0] > levels[-1], "blur changes the finest band most"


def test_swd_sees_texture_distributions_not_positions(image: np.ndarray) -> None:
    """A shifted copy has the same patch statistics (small SWD) though PSNR calls it very different."""
    shifted = np.roll(image, 5, axis=1)
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 30, image.shape), 0, 255).astype(np.uint8)
    assert metrics.swd(image, shifted) < metrics.swd(image, noisy)
    assert metrics.psnr(image, shifted) < metrics.psnr(image, noisy)


def test_swd_is_deterministic_and_symmetric_in_use(image: np.ndarray) -> None:
    other = blurred(image, 1.0)
    assert metrics.swd(image, other) == metrics.swd(image, other)
    assert metrics.SwdReference(image).to(other) == metrics.swd(image, other)


def test_laplacian_pyramid_reconstructs_the_image(image: np.ndarray) -> None:
    pyramid = metrics.laplacian_pyramid(image, 4)
    assert [band.shape[0] for band in pyramid] == [3] * 4
    rebuilt = detail.collapse([band.transpose(1, 2, 0) for band in pyramid])
    np.testing.assert_allclose(rebuilt, image.astype(np.float32), atol=1e-3)


def test_pyramid_levels_follow_the_image_size() -> None:
    assert metrics.pyramid_levels(360, 480) == 5
    assert metrics.pyramid_levels(40, 40) == 2
    assert metrics.pyramid_levels(12, 12) == 1


def test_radial_spectrum_of_white_noise_is_flat() -> None:
    noise = np.random.default_rng(2).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    frequencies, power = metrics.radial_power_spectrum(noise)
    assert frequencies[0] > 0 and frequencies[-1] < 0.5
    middle = power[4:-4]
    assert middle.max() / middle.min() < 2.0


def test_spectrum_error_sees_added_noise(image: np.ndarray) -> None:
    smooth = blurred(image, 2.0)
    noisy = np.clip(smooth + np.random.default_rng(3).normal(0, 15, smooth.shape), 0, 255).astype(np.uint8)
    assert metrics.spectrum_bias_db(smooth, noisy) > 0, "noise adds high frequencies"


def test_ms_ssim_is_skipped_for_small_images() -> None:
    small = textured(96, 128)
    assert metrics.msssim(small, small) is None
    assert metrics.measure(small, blurred(small, 1.0))["ms_ssim"] is None


def test_coarse_measures_ignore_detail_that_averages_out_within_their_blocks(image: np.ndarray) -> None:
    """A +-10 checkerboard changes every pixel (PSNR 28 dB) but no 4x4 or 16x16 block's mean."""
    base = np.clip(image, 20, 235)
    y, x = np.mgrid[0 : base.shape[0], 0 : base.shape[1]]
    changed = (base + np.where((x + y) % 2, 10, -10)[..., None]).astype(np.uint8)
    result = metrics.Reference(base).measure(changed)
    assert result["psnr"] == pytest.approx(20 * np.log10(25.5), abs=1e-6)
    assert result["psnr_4"] == 100.0 and result["delta_e_16"] == pytest.approx(0.0, abs=1e-9)


def test_coarse_measures_see_a_colour_shift(image: np.ndarray) -> None:
    base = np.clip(image, 0, 240)
    shifted = base + np.array([10, 0, 0], np.uint8)
    result = metrics.Reference(base).measure(shifted)
    assert result["psnr_4"] == pytest.approx(20 * np.log10(255 / (10 / np.sqrt(3))), abs=1e-6)
    assert 2 < result["delta_e_16"] < 10
    assert result["ms_ssim_4"] is None, "192x224 at 1/4 is far under MS-SSIM's 161 pixels"


def test_ms_ssim_at_a_quarter_needs_644_pixels_and_falls_with_blur() -> None:
    large = textured(648, 656)
    reference = metrics.Reference(large)
    assert reference.measure(large)["ms_ssim_4"] == pytest.approx(1.0, abs=1e-5)
    assert reference.measure(blurred(large, 6.0))["ms_ssim_4"] < reference.measure(blurred(large, 2.0))["ms_ssim_4"]
    assert metrics.Reference(textured(640, 656)).measure(textured(640, 656))["ms_ssim_4"] is None


def test_area_downscale_averages_whole_blocks_only() -> None:
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    small = metrics.area_downscale(image, 2)
    assert small.shape == (2, 3, 3), "the odd last row and column are left out"
    assert small[1, 2, 0] == np.mean(image[2:4, 4:6, 0])
    assert metrics.area_downscale(image, 16).shape == (0, 0, 3)


def test_cielab_of_known_colours() -> None:
    """Reference values for sRGB with the D65 white (IEC 61966-2-1 and CIE 15)."""
    lab = metrics.srgb_to_lab(np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255], [128, 128, 128]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.01)
    np.testing.assert_allclose(lab[2], [32.30, 79.19, -107.86], atol=0.01)
    np.testing.assert_allclose(lab[3], [53.59, 0.0, 0.0], atol=0.01)
    assert metrics.delta_e(np.array([[255, 0, 0]]), np.array([[255, 255, 255]])) == pytest.approx(
        np.linalg.norm(lab[1] - lab[0])
    )


def test_shapes_must_match(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="reconstruction"):
        metrics.Reference(image).measure(image[:-16])


def test_learned_measures_never_download(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """With no weights in the hub cache, LPIPS and FID report why they cannot run instead of fetching anything."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert learned.lpips_status() is not None
    assert learned.fid_status() is not None
    with pytest.raises(RuntimeError, match="cannot run"):
        learned.Lpips()


def test_frechet_distance_of_gaussians() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (4000, 3))
    assert learned.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0.0, 0.0])
    assert learned.frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)
    scaled = rng.normal(0, 2, (4000, 3))  # variance 4: per dimension (2 - 1)^2 = 1
    assert learned.frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.1)


def test_fid_patches_follow_hific() -> None:
    patches = learned.fid_patches(np.zeros((512, 768, 3), np.uint8))
    assert patches.shape == (2 * 3 + 1 * 2, 256, 256, 3)
    assert learned.fid_patches(np.zeros((100, 100, 3), np.uint8)).shape[0] == 0


def test_levels_report_a_colour_shift_in_the_low_pass_image_and_blur_in_the_fine_levels(image: np.ndarray) -> None:
    from bench.levels import measure

    same = measure(image, image)
    assert same.lowpass_rms == same.colour_shift == 0 and not any(same.swd)
    tint = np.array([6, 0, 0], dtype=np.int16)
    tinted = measure(image, np.clip(image.astype(np.int16) + tint, 0, 255).astype(np.uint8))
    assert tinted.colour_shift == pytest.approx(2.0, abs=0.3) and tinted.lowpass_rms > 3
    soft = measure(image, blurred(image, 2))
    assert soft.swd[0] > soft.swd[-1] and soft.colour_shift < 1
