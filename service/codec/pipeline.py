"""compress: image -> pad -> encoder -> nearest centre -> entropy coder -> container; decompress: the way back."""

from __future__ import annotations

import math
import zlib

import numpy as np

from service.codec.container import Bitstream, Header, Mode, pack, unpack
from service.codec.errors import CorruptBitstream, UnknownModel
from service.codec.imageio import DEFAULT_MAX_PIXELS, check_rgb, decode_image, encode_png
from service.codec.model import Model
from service.codec.registry import Registry

MIN_LATENT_SIDE = 2
"""The graphs reflection-pad the latent by one, which needs two rows and columns: smaller images pad further."""


def latent_size(width: int, height: int, downsampling: int) -> tuple[int, int]:
    """(rows, columns) of the latent for an image; part of the format, since the decoder derives it the same way."""
    rows = max(MIN_LATENT_SIDE, math.ceil(height / downsampling))
    columns = max(MIN_LATENT_SIDE, math.ceil(width / downsampling))
    return rows, columns


def compress(image: bytes | np.ndarray, model: Model, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """PNG/JPEG/WebP bytes or an RGB uint8 array (height, width, 3) -> a .gcx file.

    Deterministic: the same image and model give the same bytes (the noise seed is derived from the symbols).
    """
    pixels = decode_image(image, max_pixels).pixels if isinstance(image, bytes) else check_rgb(image, max_pixels)
    if Mode.GC.name.lower() not in model.manifest.modes:
        raise UnknownModel(f"model {model.id} does not support global (gc) compression")
    height, width = pixels.shape[:2]
    factor = model.manifest.downsampling
    rows, columns = latent_size(width, height, factor)
    padded = np.pad(pixels, ((0, rows * factor - height), (0, columns * factor - width), (0, 0)), mode="reflect")
    latent = model.encode(padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0))
    symbols = quantise(latent[0], model.centres)
    seed = zlib.crc32(symbols.tobytes()) if model.manifest.noise_channels else None
    header = Header(model.id, model.fingerprint, width, height, Mode.GC, seed)
    return pack(header, model.entropy.encode(symbols))


def quantise(latent: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (ties and NaN go to the lower / last centre), as uint8."""
    midpoints = (centres[1:] + centres[:-1]) / 2
    return np.searchsorted(midpoints, latent, side="left").astype(np.uint8)


def decompress(data: bytes, registry: Registry, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A .gcx file -> RGB uint8 (height, width, 3), decoded by the exact model that made it."""
    bitstream = unpack(data, max_pixels)
    return reconstruct(bitstream, registry.for_header(bitstream.header))


def reconstruct(bitstream: Bitstream, model: Model) -> np.ndarray:
    """Entropy decode, map symbols to centres, add the seeded noise, run the generator, crop and round."""
    header, manifest = bitstream.header, model.manifest
    if header.mode is not Mode.GC:
        raise CorruptBitstream(f"coding mode {header.mode.name.lower()} is not supported by this gancodec")
    if (header.seed is not None) != (manifest.noise_channels > 0):
        raise CorruptBitstream("the noise seed's presence does not match the model's noise channels")
    rows, columns = latent_size(header.width, header.height, manifest.downsampling)
    symbols = model.entropy.decode(bitstream.payload, rows, columns)
    latent = model.centres[symbols][None]
    if header.seed is not None:
        noise = np.random.default_rng(header.seed).standard_normal(
            (1, manifest.noise_channels, rows, columns), dtype=np.float32
        )
        latent = np.concatenate([latent, noise], axis=1)
    image = model.generate(np.ascontiguousarray(latent))[0, :, : header.height, : header.width]
    pixels = np.rint(np.clip(image, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def decompress_png(data: bytes, registry: Registry, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A .gcx file -> PNG bytes; identical bytes on every decode with the same execution provider."""
    return encode_png(decompress(data, registry, max_pixels=max_pixels))


def bits_per_pixel(file_bytes: int, width: int, height: int) -> float:
    """Rate measured from the whole file (header and checksum included), as the project reports it."""
    return 8.0 * file_bytes / (width * height)
