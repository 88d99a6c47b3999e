"""Image input: only PNG/JPEG/WebP by magic bytes, the pixel cap before decoding, every pixel layout to RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.codec import (
    ImageInfo,
    ImageTooLarge,
    InvalidImage,
    UnsupportedFormat,
    decode_image,
    encode_png,
    imageio,
    probe_image,
)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(height: int = 20, width: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG structure whose IHDR claims a size, with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(100))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_png_round_trip_is_lossless():
    pixels = _rgb()
    decoded = decode_image(encode_png(pixels))
    assert decoded.format == "PNG" and decoded.notes == ()
    np.testing.assert_array_equal(decoded.pixels, pixels)


def test_jpeg_and_webp_are_accepted():
    image = Image.fromarray(_rgb())
    for fmt in ("JPEG", "WEBP"):
        decoded = decode_image(_save(image, fmt))
        assert decoded.format == fmt
        assert decoded.pixels.shape == (20, 30, 3) and decoded.pixels.dtype == np.uint8


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + bytes(40), b"BM" + bytes(60), b"RIFF\x00\x00\x00\x00WAVEfmt ", b"hello world", b"\x89PN"],
)
def test_other_formats_are_unsupported(data):
    with pytest.raises(UnsupportedFormat, match="PNG, JPEG and WebP"):
        decode_image(data)


def test_gif_is_refused_even_though_pillow_reads_it():
    with pytest.raises(UnsupportedFormat):
        decode_image(_save(Image.fromarray(_rgb()), "GIF"))


def test_empty_input_is_invalid():
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"")


def test_signature_without_a_header_is_invalid():
    with pytest.raises(InvalidImage, match="not a valid PNG"):
        decode_image(b"\x89PNG\r\n\x1a\n" + bytes(10))


def test_pixel_data_missing_behind_a_small_header_is_invalid():
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode_image(_png_claiming(64, 64))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_invalid(fmt):
    data = _save(Image.fromarray(_rgb(64, 64)), fmt)
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_pixel_cap_is_checked_from_the_header_before_decoding():
    # Only the header exists, so these must fail on the size alone (5000x5000 is over our default cap;
    # 100000x100000, 30 GB of RGB, already trips Pillow's own decompression-bomb guard inside Image.open).
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        decode_image(_png_claiming(5000, 5000))
    with pytest.raises(ImageTooLarge):
        decode_image(_png_claiming(100_000, 100_000))
    with pytest.raises(ImageTooLarge):
        decode_image(encode_png(_rgb(20, 30)), max_pixels=599)
    assert decode_image(encode_png(_rgb(20, 30)), max_pixels=600).pixels.shape == (20, 30, 3)


def test_probe_reads_format_and_size_from_the_header_alone():
    # Only the header exists behind this PNG, so the probe cannot have decoded pixels.
    assert probe_image(_png_claiming(300, 200)) == ImageInfo("PNG", 300, 200)
    assert probe_image(_save(Image.fromarray(_rgb(20, 30)), "WEBP")) == ImageInfo("WEBP", 30, 20)
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        probe_image(_png_claiming(5000, 5000))
    with pytest.raises(UnsupportedFormat):
        probe_image(b"GIF89a" + bytes(20))
    with pytest.raises(InvalidImage):
        probe_image(b"\x89PNG\r\n\x1a\n" + bytes(8))


def test_grey_palette_and_bilevel_images_become_rgb():
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    decoded = decode_image(_save(Image.fromarray(grey, "L"), "PNG"))
    np.testing.assert_array_equal(decoded.pixels, np.repeat(grey[:, :, None], 3, axis=2))
    palette = Image.fromarray(_rgb()).quantize(16)
    np.testing.assert_array_equal(decode_image(_save(palette, "PNG")).pixels, np.asarray(palette.convert("RGB")))
    bilevel = decode_image(_save(Image.fromarray(grey > 100), "PNG")).pixels
    assert set(np.unique(bilevel)) <= {0, 255}


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    decoded = decode_image(_save(Image.fromarray(grey), "PNG"))
    np.testing.assert_array_equal(decoded.pixels[0, :, 0], [0, 1, 128, 255])


def test_alpha_is_dropped_with_a_note():
    rgba = np.concatenate([_rgb(), np.full((20, 30, 1), 7, dtype=np.uint8)], axis=2)
    decoded = decode_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded.pixels, rgba[:, :, :3])
    assert any("transparency" in note for note in decoded.notes)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.fromarray(_rgb()).convert("CMYK")
    assert decode_image(_save(cmyk, "JPEG")).pixels.shape == (20, 30, 3)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    data = _save(Image.fromarray(_rgb(20, 30)), "JPEG", exif=exif)
    assert decode_image(data).pixels.shape == (30, 20, 3)


def test_one_pixel_image_is_accepted():
    assert decode_image(encode_png(_rgb(1, 1))).pixels.shape == (1, 1, 3)


def test_png_encoding_is_byte_identical():
    pixels = _rgb()
    assert encode_png(pixels) == encode_png(pixels.copy())


def test_encode_png_refuses_non_rgb_arrays():
    with pytest.raises(InvalidImage):
        encode_png(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(InvalidImage):
        encode_png(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(InvalidImage):
        encode_png(np.zeros((0, 4, 3), dtype=np.uint8))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (700, 1), (256, 5), (257, 33), (600, 301)])
def test_png_output_is_lossless_across_row_bands_and_edges(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_png_rows_go_out_in_several_idat_chunks(monkeypatch):
    monkeypatch.setattr(imageio, "_PNG_BAND_ROWS", 16)
    pixels = np.random.default_rng(1).integers(0, 256, (600, 301, 3), dtype=np.uint8)
    data = encode_png(pixels)
    assert data.count(b"IDAT") >= 3
    np.testing.assert_array_equal(decode_image(data).pixels, pixels)
