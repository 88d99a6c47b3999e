"""Classical codecs (AVIF, WebP, JPEG, all through Pillow) at about a given byte count, to compare with ours.

For each codec the quality setting is searched (bisection, sizes grow with quality) for the highest quality
whose file is not larger than the target, so the classical codec never gets more bytes than the bitstream it
is compared with. When even its lowest quality is larger, that lowest quality is used and the result says so:
at the rates of a generative codec (a few hundredths of a bit per pixel) JPEG often cannot go that low. The
lowest quality is tried first, so that common case costs one encoding instead of a whole search.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from service.codec import bits_per_pixel

Codec = Literal["avif", "webp", "jpeg"]
CODECS: tuple[Codec, ...] = ("avif", "webp", "jpeg")


@dataclass(frozen=True)
class Encoder:
    pillow_format: str
    media_type: str
    qualities: range
    """The quality settings searched, lowest first."""
    options: dict[str, Any]
    """Further save() options, fixed: Pillow's defaults where they are sensible, written out to be explicit."""
    max_side: int
    """The format's (or its library's) largest width or height: larger images cannot be encoded at all."""


ENCODERS: dict[Codec, Encoder] = {
    # speed 6 is Pillow's default: a slower encoder would make AVIF smaller still, a faster one would be unfair.
    "avif": Encoder("AVIF", "image/avif", range(0, 101), {"speed": 6, "subsampling": "4:2:0"}, 65536),
    "webp": Encoder("WEBP", "image/webp", range(0, 101), {"method": 4}, 16383),
    # JPEG qualities above 95 only grow the file; 4:2:0 is what every JPEG encoder does at low rates.
    "jpeg": Encoder("JPEG", "image/jpeg", range(1, 96), {"subsampling": "4:2:0", "optimize": True}, 65500),
}


@dataclass(frozen=True)
class Encoded:
    codec: Codec
    media_type: str
    quality: int
    data: bytes
    """The encoded file."""
    pixels: np.ndarray
    """What a decoder shows: the file decoded again to RGB uint8."""
    bpp: float
    over_target: bool
    """Even the lowest quality made a file larger than the target."""
    psnr: float
    """PSNR of the decoded pixels against the input, in dB (capped at 100 for identical images)."""


def encode_at(pixels: np.ndarray, codec: Codec, quality: int) -> bytes:
    """One encoding of RGB uint8 pixels with the codec at that quality setting."""
    encoder = ENCODERS[codec]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=encoder.pillow_format, quality=quality, **encoder.options)
    return buffer.getvalue()


def too_large(codecs: Sequence[Codec], width: int, height: int) -> list[Codec]:
    """The codecs among `codecs` that cannot encode an image of that size at all."""
    return [codec for codec in codecs if max(width, height) > ENCODERS[codec].max_side]


def search_quality(encode: Callable[[int], bytes], qualities: Sequence[int], target_bytes: int) -> tuple[int, bytes]:
    """The highest quality whose encoding fits in `target_bytes` (sizes are taken to grow with quality), else the
    lowest quality; with the file it gave. One encoding when even the lowest quality does not fit, else about
    1 + log2(len(qualities))."""
    best = (qualities[0], encode(qualities[0]))
    if len(best[1]) > target_bytes:
        return best
    low, high = 1, len(qualities) - 1
    while low <= high:
        middle = (low + high) // 2
        data = encode(qualities[middle])
        if len(data) <= target_bytes:
            best = (qualities[middle], data)
            low = middle + 1
        else:
            high = middle - 1
    return best


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    error = np.mean((reference.astype(np.float64) - other.astype(np.float64)) ** 2)
    return 100.0 if error == 0 else min(100.0, 10 * math.log10(255.0**2 / error))


def compare(pixels: np.ndarray, target_bytes: int, codecs: Sequence[Codec] = CODECS) -> list[Encoded]:
    """Each codec at about `target_bytes` (see the module's docstring), in the order given."""
    height, width = pixels.shape[:2]
    results = []
    for codec in codecs:
        encoder = ENCODERS[codec]
        quality, data = search_quality(
            lambda q, codec=codec: encode_at(pixels, codec, q), encoder.qualities, target_bytes
        )
        with Image.open(io.BytesIO(data), formats=[encoder.pillow_format]) as image:
            decoded = np.asarray(image.convert("RGB"))
        results.append(
            Encoded(
                codec=codec,
                media_type=encoder.media_type,
                quality=quality,
                data=data,
                pixels=decoded,
                bpp=bits_per_pixel(len(data), width, height),
                over_target=len(data) > target_bytes,
                psnr=psnr(pixels, decoded),
            )
        )
    return results
