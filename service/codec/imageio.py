"""Safe image decoding (allow-listed formats; size, sides and a JPEG's scans checked before any pixel is decoded)
and deterministic PNG output.

Also the SC inputs: preservation masks and label maps, lossless PNGs read in their stored orientation and
turned with the image's EXIF orientation, so they stay aligned with the pixels they describe.
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import numpy as np
from isal import isal_zlib
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

from service.codec.container import MAX_SIDE
from service.codec.errors import ImageTooLarge, InvalidImage, InvalidSelection, UnsupportedFormat

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Largest image (width * height) accepted by default, for both input images and bitstream headers."""
MAX_JPEG_SCANS = 100
"""Most scans a JPEG may hold. libjpeg decodes each scan of a progressive JPEG over the whole image (about 20 ms
each at 4096x4096, and it cannot be interrupted), so a small file of empty scans can cost a minute; real
progressive JPEGs have about 10 (libjpeg's default script: 10 for colour, 6 for grey)."""

_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
}
_READERS: dict[str, Callable[[IO[bytes]], Image.Image]] = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.jpeg_factory,
    "WEBP": WebPImagePlugin.WebPImageFile,
}
"""Each accepted format's Pillow reader, called directly: Image.open would add Pillow's own decompression-bomb
check, whose limit (about 179 Mpixels, whatever the service's cap) and message are not ours."""
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray
    """RGB uint8, shape (height, width, 3), C-contiguous."""
    format: str
    """Pillow's name for the source format: PNG, JPEG or WEBP."""
    notes: tuple[str, ...] = ()
    """What was changed on the way to RGB (alpha dropped, first frame used), for the caller to report."""
    orientation: int = 1
    """The EXIF orientation applied to the pixels (1: none); `orient` turns masks and label maps alike."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    """Pillow's name for the format: PNG, JPEG or WEBP."""
    width: int
    height: int
    """The size stored in the header, before any EXIF rotation."""


def sniff_format(data: bytes) -> str:
    """The format from the magic bytes alone, so no other Pillow plugin ever parses untrusted input."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    for name, signatures in _SIGNATURES.items():
        if data.startswith(signatures):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise UnsupportedFormat("unsupported image format: only PNG, JPEG and WebP are accepted")


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format and size from the magic bytes and header alone, checked against `max_pixels`; no pixel is decoded.

    Cheap enough for a server to reject bad uploads before queueing the real decode.
    """
    with _open(data, max_pixels) as (image, fmt):
        return ImageInfo(fmt, *image.size)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode PNG/JPEG/WebP bytes to RGB uint8, refusing images above `max_pixels` before decoding pixels."""
    with _open(data, max_pixels) as (image, fmt):
        notes = []
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"animated image: only the first of {image.n_frames} frames was used")
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        pixels, more_notes = _to_rgb(ImageOps.exif_transpose(image))
    return DecodedImage(pixels=pixels, format=fmt, notes=(*notes, *more_notes), orientation=orientation)


def decode_mask(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PNG preservation mask -> bool (height, width) as stored: white keeps (grey level at least half), black
    may be synthesised. Colour is read as its grey level, alpha is ignored."""
    with _open_map(data, max_pixels, "mask") as image:
        if image.mode in _SIXTEEN_BIT_MODES:
            return np.asarray(image) >= 1 << 15
        return np.asarray(image.convert("L")) >= 128


def decode_label_map(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PNG label map -> class ids (height, width) as stored: grey levels or palette indices are the ids."""
    with _open_map(data, max_pixels, "label map") as image:
        if image.mode not in {"1", "L", "P", *_SIXTEEN_BIT_MODES}:
            raise InvalidSelection(
                f"the label map must be a single-channel PNG of class ids (grey or palette), not mode {image.mode}"
            )
        return np.asarray(image).astype(np.int32)


@contextmanager
def _open_map(data: bytes, max_pixels: int, name: str) -> Iterator[Image.Image]:
    """Masks and label maps must be PNGs: a lossy format would move edges and change class ids."""
    with _open(data, max_pixels) as (image, fmt):
        if fmt != "PNG":
            raise UnsupportedFormat(f"the {name} must be a PNG, not {fmt}")
        image.load()
        yield image


_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a),
}
"""EXIF orientation -> the same turn as Pillow's exif_transpose, for 2-d arrays of any type."""


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a mask or label map (height, width) as stored by the EXIF orientation its image was turned by."""
    turn = _ORIENTATIONS.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


@contextmanager
def _open(data: bytes, max_pixels: int) -> Iterator[tuple[Image.Image, str]]:
    """Open with the sniffed format's reader only, check the size (and a JPEG's scans), and turn Pillow's errors
    (also those raised while the caller decodes inside the block) into codec errors of our own words."""
    fmt = sniff_format(data)
    if fmt == "JPEG" and jpeg_scans(data) > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"the JPEG has more than {MAX_JPEG_SCANS} scans (each decoded over the whole image); "
            "real photos have about 10"
        )
    if fmt == "WEBP":  # Pillow's WebP reader allocates the canvas as it opens the file: check the size first
        size = _webp_size(data)
        if size is None:
            raise InvalidImage("not a valid WEBP image: its header is truncated or corrupt")
        _check_size(*size, max_pixels)
    try:
        image = _READERS[fmt](io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, EOFError):
        raise InvalidImage(f"not a valid {fmt} image: its header is truncated or corrupt") from None
    with image:
        _check_size(*image.size, max_pixels)
        try:
            yield image, fmt
        except (OSError, SyntaxError, ValueError, EOFError):
            raise InvalidImage(f"cannot decode the {fmt} image: it is truncated or corrupt") from None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from the header of its first chunk (VP8, VP8L or VP8X); None if it has none."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # after a keyframe's start code
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def jpeg_scans(data: bytes, most: int = MAX_JPEG_SCANS) -> int:
    """How many scans (SOS segments) a JPEG holds up to its EOI, counting no further than `most` + 1.

    Walks the segments as libjpeg reads them: bytes before a marker are skipped, as are fill bytes (0xFF) and
    markers without a length (RSTn, TEM); a segment's length field skips its body; a scan's entropy-coded data
    runs to the first 0xFF followed by anything but a stuffed 0x00 or a restart marker. A file cut short is
    counted as far as it goes (the decoder reports it).
    """
    scans, at, end = 0, 2, len(data)  # after SOI
    while scans <= most:
        at = data.find(b"\xff", at)
        while 0 <= at < end - 1 and data[at + 1] == 0xFF:
            at += 1
        if at < 0 or at >= end - 1:
            return scans
        marker, at = data[at + 1], at + 2
        if marker == 0xD9:  # EOI
            return scans
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length: stuffing, TEM, RSTn, SOI
            continue
        at += int.from_bytes(data[at : at + 2], "big")
        if marker == 0xDA:  # SOS: its header, then entropy-coded data
            scans += 1
            at = _scan_end(data, at)
    return scans


def _scan_end(data: bytes, at: int) -> int:
    """Where the entropy-coded data starting at `at` ends: the next 0xFF that starts a marker other than RSTn."""
    while (at := data.find(b"\xff", at)) >= 0:
        following = at + 1
        while following < len(data) and data[following] == 0xFF:
            following += 1
        if following < len(data) and data[following] != 0x00 and not 0xD0 <= data[following] <= 0xD7:
            return at
        at = following + 1
    return len(data)


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Any decoded mode to RGB uint8; 16-bit grey is scaled (Pillow's own convert would clip it)."""
    notes = []
    if image.mode in _ALPHA_MODES or (image.mode in {"P", "L", "RGB"} and "transparency" in image.info):
        notes.append("transparency dropped: the codec stores RGB only")
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image).astype(np.float64).clip(0, 65535) / 257.0
        pixels = np.repeat(np.rint(grey).astype(np.uint8)[:, :, None], 3, axis=2)
    else:
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(pixels), notes


def check_rgb(pixels: np.ndarray, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Validate an in-memory image: RGB uint8 (height, width, 3), at least 1x1, and, unless `max_pixels` is None
    (images being written, not read), within the pixel cap and MAX_SIDE."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidImage(f"expected RGB uint8 pixels of shape (height, width, 3), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    if width == 0 or height == 0:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if max_pixels is not None:
        _check_size(width, height, max_pixels)
    return pixels


def _check_size(width: int, height: int, max_pixels: int) -> None:
    """The side limit (container.MAX_SIDE: what a file may hold, whatever the cap), then the pixel cap."""
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(f"the image is {width}x{height}, a side above the limit of {MAX_SIDE} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} ({width * height} pixels), above the limit of {max_pixels} pixels"
        )


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit RGB PNG, every row under PNG's Sub filter, deflated by ISA-L (isal) at its level 1; equal pixels give
    equal bytes (same isal).

    Why not Pillow's encoder: its adaptive filtering and zlib level 1 took 90-140 ms at 1920x1080, about a quarter
    of a whole compress plus decompress; this takes about 10 ms for files about 7% smaller (docs/performance.md).
    Rows are filtered and deflated a band at a time, each band's output its own IDAT chunk, so the memory beyond
    the PNG itself stays small at any size.
    """
    rgb = check_rgb(pixels, max_pixels=None)
    height, width, _ = rgb.shape
    compressor = isal_zlib.compressobj(1)
    deflated = []
    for top in range(0, height, _PNG_BAND_ROWS):
        rows = np.ascontiguousarray(rgb[top : top + _PNG_BAND_ROWS]).reshape(-1, width * 3)
        filtered = np.empty((rows.shape[0], width * 3 + 1), np.uint8)
        filtered[:, 0] = 1  # Sub: each byte minus the byte of the pixel to its left, modulo 256
        filtered[:, 1:4] = rows[:, :3]
        np.subtract(rows[:, 3:], rows[:, :-3], out=filtered[:, 4:])
        deflated.append(compressor.compress(filtered))
    deflated.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    chunks = [_png_chunk(b"IHDR", header), *(_png_chunk(b"IDAT", data) for data in deflated if data)]
    return b"".join([_SIGNATURES["PNG"][0], *itertools.chain(*chunks), *_png_chunk(b"IEND", b"")])


_PNG_BAND_ROWS = 256


def _png_chunk(kind: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    return struct.pack(">I", len(data)) + kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
