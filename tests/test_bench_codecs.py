"""Each classical codec wrapper writes a real file, reads it back, and can be aimed at a byte budget."""

from __future__ import annotations

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
