"""Hostile images for the image-input tests: headers that claim what the bytes behind them do not hold, and
JPEGs whose scans cost the decoder time while adding few bytes."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG structure whose IHDR claims a size, with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(100))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def webp_claiming(width: int, height: int) -> bytes:
    """A real lossless WebP (VP8L) of 4x4 pixels whose 14-bit width and height are rewritten."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buffer, format="WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 8
    bits = int.from_bytes(data[at + 1 : at + 5], "little")
    bits = (bits & ~0xFFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[at + 1 : at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_extra_scans(jpeg: bytes, count: int) -> bytes:
    """The JPEG with its last scan (SOS segment and its entropy-coded data) repeated `count` more times before EOI.
    A scan's data never holds 0xFF 0xDA or 0xFF 0xD9 (every 0xFF in it is stuffed), so the cuts are exact."""
    last, end = jpeg.rindex(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + jpeg[last:end] * count + jpeg[end:]
