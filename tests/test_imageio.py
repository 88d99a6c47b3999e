"""Image input: only PNG/JPEG/WebP by magic bytes, the pixel cap before decoding, every pixel layout to RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from image_support import png_claiming, webp_claiming, with_extra_scans
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
        decode_image(png_claiming(64, 64))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_image_is_invalid(fmt):
    data = _save(Image.fromarray(_rgb(64, 64)), fmt)
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_pixel_cap_is_checked_from_the_header_before_decoding():
    # Only the header exists, so these must fail on the size alone (5000x5000 is over our default cap;
    # 100000x100000, 30 GB of RGB, already trips Pillow's own decompression-bomb guard inside Image.open).
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        decode_image(png_claiming(5000, 5000))
    with pytest.raises(ImageTooLarge):
        decode_image(png_claiming(100_000, 100_000))
    with pytest.raises(ImageTooLarge):
        decode_image(encode_png(_rgb(20, 30)), max_pixels=599)
    assert decode_image(encode_png(_rgb(20, 30)), max_pixels=600).pixels.shape == (20, 30, 3)


def test_images_over_pillows_own_bomb_limit_are_judged_by_the_services_cap():
    # 20000x20000 is over Pillow's decompression-bomb limit (about 179 Mpixels); the message is the service's own.
    with pytest.raises(ImageTooLarge) as error:
        decode_image(png_claiming(20_000, 20_000))
    assert str(error.value) == "the image is 20000x20000 (400000000 pixels), above the limit of 16777216 pixels"
    # A cap above Pillow's is the one that counts: the claim passes it, and the missing pixels are what fails.
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode_image(png_claiming(20_000, 20_000), max_pixels=20_000 * 20_000)


def test_a_webps_size_is_checked_before_pillow_allocates_its_canvas(monkeypatch):
    def refuse(_):
        raise AssertionError("the WebP reader ran")

    assert probe_image(webp_claiming(300, 200)) == ImageInfo("WEBP", 300, 200)
    monkeypatch.setitem(imageio._READERS, "WEBP", refuse)
    with pytest.raises(ImageTooLarge, match="the image is 10000x10000"):
        decode_image(webp_claiming(10_000, 10_000))  # 400 MB of canvas, under Pillow's own bomb limit
    with pytest.raises(InvalidImage, match="header"):
        decode_image(b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(20))


@pytest.mark.parametrize(("width", "height"), [(1, 1_000_000), (1_000_000, 1), (imageio.MAX_SIDE + 1, 1)])
def test_a_side_over_the_limit_is_refused_from_the_header(width, height):
    message = f"the image is {width}x{height}, a side above the limit of {imageio.MAX_SIDE} pixels"
    for read in (decode_image, probe_image):
        with pytest.raises(ImageTooLarge) as error:
            read(png_claiming(width, height))
        assert str(error.value) == message
    with pytest.raises(ImageTooLarge, match="a side above the limit"):
        imageio.check_rgb(np.zeros((height, width, 3), np.uint8), max_pixels=10**9)
    assert probe_image(png_claiming(imageio.MAX_SIDE, 1)) == ImageInfo("PNG", imageio.MAX_SIDE, 1)


def test_jpeg_scans_are_counted_by_walking_the_segments():
    pixels = _rgb(40, 48)
    assert imageio.jpeg_scans(_save(Image.fromarray(pixels), "JPEG")) == 1
    assert imageio.jpeg_scans(_save(Image.fromarray(pixels), "JPEG", restart_marker_blocks=1)) == 1
    progressive = _save(Image.fromarray(pixels), "JPEG", progressive=True)
    assert imageio.jpeg_scans(progressive) == 10  # libjpeg's default script for colour
    assert imageio.jpeg_scans(_save(Image.fromarray(pixels[:, :, 0]), "JPEG", progressive=True)) == 6
    assert imageio.jpeg_scans(with_extra_scans(progressive, 5)) == 15
    assert imageio.jpeg_scans(progressive[: len(progressive) // 2]) <= 10  # cut short: counted as far as it goes
    assert imageio.jpeg_scans(progressive + with_extra_scans(progressive, 5)) == 10  # nothing after EOI counts


def test_a_jpeg_with_too_many_scans_is_refused_before_decoding():
    progressive = _save(Image.fromarray(_rgb(40, 48)), "JPEG", progressive=True)
    at_the_cap = with_extra_scans(progressive, imageio.MAX_JPEG_SCANS - 10)
    assert probe_image(at_the_cap) == ImageInfo("JPEG", 48, 40)
    over = with_extra_scans(progressive, imageio.MAX_JPEG_SCANS - 9)
    for read in (decode_image, probe_image):
        with pytest.raises(InvalidImage, match=f"more than {imageio.MAX_JPEG_SCANS} scans"):
            read(over)


def test_probe_reads_format_and_size_from_the_header_alone():
    # Only the header exists behind this PNG, so the probe cannot have decoded pixels.
    assert probe_image(png_claiming(300, 200)) == ImageInfo("PNG", 300, 200)
    assert probe_image(_save(Image.fromarray(_rgb(20, 30)), "WEBP")) == ImageInfo("WEBP", 30, 20)
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        probe_image(png_claiming(5000, 5000))
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
