"""compress: image -> pad -> encoder -> nearest centre -> entropy coder -> container; decompress: the way back.

GC files store the original's detail energy by scale, and the decoder restores its image's to it (detail.py).

Selective compression (SC) codes only the symbols under a preservation mask, plus the mask and optionally a
label map; the generator paints the rest from the label map (service/codec/selection.py says what is kept).
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from service.codec import detail
from service.codec.base import BaseLayer
from service.codec.container import Bitstream, Header, Mode, pack, unpack
from service.codec.errors import CorruptBitstream, UnknownModel
from service.codec.fill import SYNTHESISED_SHARE, fill_synthesised
from service.codec.imageio import DEFAULT_MAX_PIXELS, DecodedImage, check_rgb, decode_image, encode_png
from service.codec.model import Model
from service.codec.registry import Registry
from service.codec.selection import Selection, select
from service.codec.selective import decode_kept, decode_labels, encode_kept, encode_labels
from service.codec.tiling import Tile, plan

MIN_LATENT_SIDE = 2
"""The graphs reflection-pad the latent by one, which needs two rows and columns: smaller images pad further."""


def latent_size(width: int, height: int, downsampling: int) -> tuple[int, int]:
    """(rows, columns) of the latent for an image; part of the format, since the decoder derives it the same way."""
    rows = max(MIN_LATENT_SIDE, math.ceil(height / downsampling))
    columns = max(MIN_LATENT_SIDE, math.ceil(width / downsampling))
    return rows, columns


def compress(
    image: bytes | np.ndarray | DecodedImage,
    model: Model,
    mask: bytes | np.ndarray | None = None,
    labels: bytes | np.ndarray | None = None,
    synthesize: Iterable[str] | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    restore_detail: bool = True,
) -> bytes:
    """PNG/JPEG/WebP bytes, an RGB uint8 array (height, width, 3) or a decoded image -> a .gcx file.

    SC models (modes gc and sc) also take a preservation `mask` (PNG, white keeps; or an array, nonzero keeps),
    a label map `labels` (PNG or array of class ids) and class names or ids to `synthesize` (needs `labels`):
    a mask alone keeps its white region and synthesises the rest from no labels; labels with `synthesize`
    keep all but those classes; labels alone keep everything. Maps are of the image's size as stored (before
    any EXIF rotation). Nothing of this given: GC.

    GC with `restore_detail` (the default): the file stores the original's detail energy at each scale, a byte
    per band, and the decoder scales its image's detail to match (detail.py): texture with the original's
    contrast, for a little PSNR. SC files do not: what they synthesise must owe nothing to the image.

    Deterministic: the same inputs give the same bytes (the noise seed is derived from the coded symbols).
    """
    if isinstance(image, bytes):
        image = decode_image(image, max_pixels)
    if isinstance(image, DecodedImage):
        pixels, orientation = check_rgb(image.pixels, max_pixels), image.orientation
    else:
        pixels, orientation = check_rgb(image, max_pixels), 1
    manifest = model.manifest
    height, width = pixels.shape[:2]
    factor = manifest.downsampling
    rows, columns = latent_size(width, height, factor)
    selection = select(
        manifest,
        (height, width),
        (rows, columns),
        mask,
        labels,
        synthesize,
        orientation=orientation,
        max_pixels=max_pixels,
    )
    if selection is None and Mode.GC.name.lower() not in manifest.modes:
        raise UnknownModel(f"model {model.id} does not support global (gc) compression")
    if manifest.base_layer is not None:
        return compress_hybrid(pixels, model, manifest.base_layer, rows, columns, selection)
    bands = detail.band_count(height, width) if restore_detail and selection is None else 0
    # The encoder graph leaves the cores partly idle: measuring the detail beside it hides most of its time.
    measuring = _beside().submit(detail.measure, pixels, bands) if bands else None
    latent = encode_tiled(pixels, model, rows, columns)
    symbols = quantise(latent[: model.channels], model.centres)
    if selection is None:
        seed = zlib.crc32(symbols.tobytes()) if manifest.noise_channels else None
        codes = None if measuring is None else measuring.result()
        header = Header(model.id, model.fingerprint, width, height, Mode.GC, seed, detail=codes)
        return pack(header, model.entropy.encode(symbols))
    seed = zlib.crc32(symbols[:, selection.keep].tobytes()) if manifest.noise_channels else None
    label_section = None if selection.labels is None else encode_labels(selection.labels, len(manifest.classes))
    payload, mask_from_labels = encode_kept(model.entropy, symbols, selection.keep, selection.labels)
    header = Header(model.id, model.fingerprint, width, height, Mode.SC, seed, mask_from_labels)
    return pack(header, payload, label_section)


def compress_hybrid(
    pixels: np.ndarray, model: Model, layer: BaseLayer, rows: int, columns: int, selection: Selection | None = None
) -> bytes:
    """Hybrid models: the image down-scaled to rows x columns and coded by AVIF at the highest quality whose file,
    header included, fits the rate point's bits per pixel (base.py).

    SC: the synthesised cells hold their class's smoothed colours (fill.py) and count SYNTHESISED_SHARE of a kept
    cell in the budget. The decoder needs neither mask nor labels: the file is the base alone, in mode sc.
    """
    height, width = pixels.shape[:2]
    small = layer.downscale(pixels, (rows, columns))
    share, mode = 1.0, Mode.GC
    if selection is not None:
        small = fill_synthesised(small, selection.keep, selection.labels)
        kept = float(selection.keep.mean())
        share, mode = kept + (1 - kept) * SYNTHESISED_SHARE, Mode.SC
    header = Header(model.id, model.fingerprint, width, height, mode)
    target = math.floor(share * model.point.bits_per_pixel * width * height / 8)
    overhead = len(pack(header, bytes(target))) - target
    _, payload = layer.encode_within(small, target - overhead)
    return pack(header, payload)


def encode_tiled(pixels: np.ndarray, model: Model, rows: int, columns: int) -> np.ndarray:
    """The unquantised latent (C, rows, columns) of the image reflect-padded to rows x columns cells.

    Small images run whole; larger ones in overlapping tiles (tiling.py), each cut from the image on its own, so
    neither the padded image nor the whole image in float is ever held at once.
    """
    factor = model.manifest.downsampling
    latent = np.empty((model.manifest.latent_channels, rows, columns), np.float32)
    for tile in plan_tiles(model, "encoder", rows, columns):
        window_rows, window_columns = tile.window
        part = _padded_window(pixels, _scaled(window_rows, factor), _scaled(window_columns, factor))
        image = np.empty((1, 3, *part.shape[:2]), np.float32)
        np.divide(part.transpose(2, 0, 1), np.float32(255.0), out=image[0], dtype=np.float32)
        encoded = model.encode(image)
        latent[:, tile.row0 : tile.row1, tile.column0 : tile.column1] = encoded[(0, slice(None), *tile.kept)]
    return latent


def _padded_window(pixels: np.ndarray, rows: slice, columns: slice) -> np.ndarray:
    """pixels reflect-padded on the bottom and right (numpy's mode="reflect"), then cut to rows x columns, without
    padding the whole image: a plain slice inside it, the slice padded where it reaches past the edge."""
    height, width = pixels.shape[:2]
    below, right = max(0, rows.stop - height), max(0, columns.stop - width)
    inside = pixels[rows.start : min(rows.stop, height), columns.start : min(columns.stop, width)]
    if not below and not right:
        return inside
    if below < inside.shape[0] and right < inside.shape[1]:
        # Reflection reads only rows and columns the slice holds, so padding the slice pads like the image.
        return np.pad(inside, ((0, below), (0, right), (0, 0)), mode="reflect")
    # Reflection reaches past the slice (or repeats, for images smaller than the padding): index into the image.
    row_index = np.pad(np.arange(height), (0, max(0, rows.stop - height)), mode="reflect")[rows]
    column_index = np.pad(np.arange(width), (0, max(0, columns.stop - width)), mode="reflect")[columns]
    return pixels[np.ix_(row_index, column_index)]


def plan_tiles(model: Model, graph: str, rows: int, columns: int) -> list[Tile]:
    """How `graph` covers a rows x columns latent: one tile when it fits the model's tile size, else several."""
    max_cells = model.options.tile_pixels // model.manifest.downsampling**2
    if rows * columns <= max_cells:
        return plan(rows, columns, 0, max_cells)
    return plan(rows, columns, model.halo(graph), max_cells)


def is_tiled(model: Model, width: int, height: int) -> bool:
    """Whether a width x height image runs through the graphs in several tiles (the same for both graphs)."""
    rows, columns = latent_size(width, height, model.manifest.downsampling)
    return rows * columns > model.options.tile_pixels // model.manifest.downsampling**2


def _scaled(cells: slice, factor: int) -> slice:
    return slice(cells.start * factor, cells.stop * factor)


def quantise(latent: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (ties and NaN go to the lower / last centre), as uint8."""
    midpoints = (centres[1:] + centres[:-1]) / 2
    return np.searchsorted(midpoints, latent, side="left").astype(np.uint8)


def decompress(data: bytes, registry: Registry, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A .gcx file -> RGB uint8 (height, width, 3), decoded by the exact model that made it."""
    bitstream = unpack(data, max_pixels)
    return reconstruct(bitstream, registry.for_header(bitstream.header))


def reconstruct(bitstream: Bitstream, model: Model) -> np.ndarray:
    """Entropy decode, map symbols to centres, add the seeded noise, run the generator, crop and round; then
    restore the detail energy the file gives.

    SC: symbols outside the preservation mask are zero (with the mask, the generator's input says so), and the
    label map, one-hot, goes beside them (all zeros without one). Channels beyond the model's rate point are
    zero too (a centre, as in training).
    """
    header, manifest = bitstream.header, model.manifest
    if header.mode is Mode.SC and not manifest.selective:
        raise CorruptBitstream(f"the file is in mode sc, which model {model.id} does not support")
    if manifest.base_layer is not None:
        return reconstruct_hybrid(bitstream, model, manifest.base_layer)
    if (header.seed is not None) != (manifest.noise_channels > 0):
        raise CorruptBitstream("the noise seed's presence does not match the model's noise channels")
    if header.detail is not None and len(header.detail) > detail.band_count(header.height, header.width):
        raise CorruptBitstream(
            f"the detail section has {len(header.detail)} bands; a {header.width}x{header.height} image has "
            f"{detail.band_count(header.height, header.width)}"
        )
    rows, columns = latent_size(header.width, header.height, manifest.downsampling)
    if header.mode is Mode.GC:
        symbols, keep, ids = model.entropy.decode(bitstream.payload, rows, columns), None, None
        values = model.centres[symbols]
    else:
        ids = _label_ids(bitstream, model, rows, columns)
        keep, symbols = decode_kept(
            model.entropy, bitstream.payload, rows, columns, ids if header.mask_from_labels else None
        )
        values = model.centres[symbols] * keep
    uncoded = np.zeros((manifest.latent_channels - model.channels, rows, columns), np.float32)
    latent = np.concatenate([values, uncoded])[None]
    if header.seed is not None:
        noise = np.random.default_rng(header.seed).standard_normal(
            (1, manifest.noise_channels, rows, columns), dtype=np.float32
        )
        latent = np.ascontiguousarray(np.concatenate([latent, noise], axis=1))
    mask = None if keep is None else keep[None, None].astype(np.float32)
    labels = None if keep is None else _one_hot(ids, len(manifest.classes))
    pixels = generate_tiled(model, latent, header.height, header.width, mask, labels)
    return pixels if header.detail is None else detail.restore(pixels, header.detail, _threads(model))


def reconstruct_hybrid(bitstream: Bitstream, model: Model, layer: BaseLayer) -> np.ndarray:
    """Hybrid models: decode the AVIF base and let the upscaler (the model's generator) paint the image."""
    header = bitstream.header
    if header.seed is not None or header.detail is not None or header.mask_from_labels or bitstream.labels is not None:
        raise CorruptBitstream(f"model {model.id} makes files of one AVIF base: no noise seed, detail or labels")
    rows, columns = latent_size(header.width, header.height, layer.factor)
    base = layer.decode(bitstream.payload, (rows, columns))
    latent = np.empty((1, 3, rows, columns), np.float32)
    np.divide(base.transpose(2, 0, 1), np.float32(255.0), out=latent[0], dtype=np.float32)
    return generate_tiled(model, latent, header.height, header.width)


@cache
def _beside() -> ThreadPoolExecutor:
    """Threads for work beside a graph, for the life of the process (new threads per image would each be able to
    take a malloc arena of their own: detail._map)."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="gancodec-beside")


def _threads(model: Model) -> int:
    """Threads for the numpy work around the graphs: as many as onnxruntime runs them on."""
    return model.options.intra_op_threads or os.cpu_count() or 1


def generate_tiled(
    model: Model,
    latent: np.ndarray,
    height: int,
    width: int,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Run the generator over the latent (1, channels, rows, columns), whole or in overlapping tiles, and return
    the top-left height x width pixels as RGB uint8 (height, width, 3)."""
    factor = model.manifest.downsampling
    ratio = factor // model.manifest.label_downsampling if labels is not None else 1
    rows, columns = latent.shape[2:]
    pixels = np.empty((height, width, 3), np.uint8)
    for tile in plan_tiles(model, "generator", rows, columns):
        window_rows, window_columns = tile.window
        part = np.ascontiguousarray(latent[:, :, window_rows, window_columns])
        part_mask = None if mask is None else np.ascontiguousarray(mask[:, :, window_rows, window_columns])
        part_labels = None
        if labels is not None:
            label_window = (_scaled(window_rows, ratio), _scaled(window_columns, ratio))
            part_labels = np.ascontiguousarray(labels[(slice(None), slice(None), *label_window)])
        kept_rows, kept_columns = tile.kept
        top, left = tile.row0 * factor, tile.column0 * factor
        bottom, right = min(height, tile.row1 * factor), min(width, tile.column1 * factor)
        if bottom <= top or right <= left:
            continue  # cells wholly in the padding (images under two cells a side)
        kept_top, kept_left = kept_rows.start * factor, kept_columns.start * factor
        image = (model.generate(part) if mask is None else model.generate(part, part_mask, part_labels))[0]
        image = image[:, kept_top : kept_top + bottom - top, kept_left : kept_left + right - left]
        # Clamp, scale and round in place (the generator's output is ours), then cast into the image.
        np.clip(image, 0.0, 1.0, out=image)
        np.multiply(image, np.float32(255.0), out=image)
        np.rint(image, out=image)
        pixels[top:bottom, left:right] = image.transpose(1, 2, 0)
    return pixels


def _label_ids(bitstream: Bitstream, model: Model, rows: int, columns: int) -> np.ndarray | None:
    """The label-map section decoded to class ids at the label resolution; None without one."""
    if bitstream.labels is None:
        return None
    manifest = model.manifest
    ratio = manifest.downsampling // manifest.label_downsampling
    return decode_labels(bitstream.labels, rows * ratio, columns * ratio, len(manifest.classes))


def _one_hot(ids: np.ndarray | None, classes: int) -> np.ndarray | None:
    """Class ids -> the generator's one-hot input (1, classes, h, w); None without a label map."""
    if ids is None:
        return None
    return np.ascontiguousarray(np.eye(classes, dtype=np.float32)[ids].transpose(2, 0, 1)[None])


def decompress_png(data: bytes, registry: Registry, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A .gcx file -> PNG bytes; identical bytes on every decode with the same execution provider."""
    return encode_png(decompress(data, registry, max_pixels=max_pixels))


def bits_per_pixel(file_bytes: int, width: int, height: int) -> float:
    """Rate measured from the whole file (header and checksum included), as the project reports it."""
    return 8.0 * file_bytes / (width * height)
