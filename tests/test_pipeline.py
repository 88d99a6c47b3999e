"""compress/decompress end to end with a tiny exported model: sizes, determinism and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from service.codec import (
    CorruptBitstream,
    ImageTooLarge,
    Model,
    ModelMismatch,
    Registry,
    UnknownModel,
    bits_per_pixel,
    compress,
    decode_image,
    decompress,
    decompress_png,
    encode_png,
    load_manifest,
    unpack,
)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (5, 200), (16, 16), (17, 33), (360, 480)])
def test_round_trip_keeps_odd_sizes(model, registry, make_image, height, width):
    data = compress(make_image(height, width), model)
    pixels = decompress(data, registry)
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8


def test_round_trip_keeps_full_hd_size(model, registry, make_image):
    data = compress(make_image(1080, 1920), model)
    assert decompress(data, registry).shape == (1080, 1920, 3)
    # A random-weight model spreads symbols evenly: the file stays near the log2(5) bound of 0.073 bpp.
    assert bits_per_pixel(len(data), 1920, 1080) < 0.08


def test_compress_accepts_encoded_images(model, registry, make_image):
    pixels = make_image(40, 50)
    assert compress(encode_png(pixels), model) == compress(pixels, model)


def test_compression_is_deterministic(model, make_image):
    pixels = make_image(64, 48)
    assert compress(pixels, model) == compress(pixels.copy(), model)


def test_repeated_decoding_is_byte_identical(model, registry, make_image):
    data = compress(make_image(100, 70), model)
    first = decompress_png(data, registry)
    assert decompress_png(data, registry) == first
    assert decode_image(first).pixels.shape == (100, 70, 3)


def test_noise_channels_come_from_the_stored_seed(noisy_model_dir, make_image):
    model = Model(load_manifest(noisy_model_dir))
    registry = Registry([model])
    data = compress(make_image(40, 40), model)
    assert unpack(data, 40 * 40).header.seed is not None
    np.testing.assert_array_equal(decompress(data, registry), decompress(data, registry))


def test_file_from_another_model_is_a_mismatch(model, other_model_dir, make_image):
    data = compress(make_image(32, 32), model)
    other = Registry([Model(load_manifest(other_model_dir))])
    with pytest.raises(ModelMismatch, match=r"made by model 'gc-tiny' \(fingerprint [0-9a-f]{16}\)"):
        decompress(data, other)


def test_file_from_a_model_not_installed_is_unknown(model, noisy_model_dir, make_image):
    data = compress(make_image(32, 32), model)
    with pytest.raises(UnknownModel, match="not installed; installed: gc-tiny-noise"):
        decompress(data, Registry([Model(load_manifest(noisy_model_dir))]))


def test_corrupted_byte_is_rejected(model, registry, make_image):
    data = bytearray(compress(make_image(64, 64), model))
    data[len(data) // 2] ^= 0x10
    with pytest.raises(CorruptBitstream, match="checksum"):
        decompress(bytes(data), registry)


def test_truncated_file_is_rejected(model, registry, make_image):
    data = compress(make_image(64, 64), model)
    with pytest.raises(CorruptBitstream, match="truncated"):
        decompress(data[: len(data) - 10], registry)


def test_wrong_magic_is_rejected(registry, make_image):
    with pytest.raises(CorruptBitstream, match="not a gancodec file"):
        decompress(encode_png(make_image(16, 16)), registry)


def test_pixel_cap_applies_to_both_directions(model, registry, make_image):
    pixels = make_image(40, 40)
    with pytest.raises(ImageTooLarge):
        compress(pixels, model, max_pixels=1599)
    data = compress(pixels, model)
    with pytest.raises(ImageTooLarge):
        decompress(data, registry, max_pixels=1599)
