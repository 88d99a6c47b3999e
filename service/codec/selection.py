"""What selective compression (SC) keeps and what it paints, from the caller's mask, label map and class names.

A mask alone keeps its white region and synthesises the rest; a label map with classes to synthesise keeps
everything else; a label map alone keeps everything (GC conditioned on semantics); a mask with classes keeps
the mask's white region minus those classes. The result is the preservation mask at the latent's resolution
(a cell is kept when more than KEPT_FRACTION of its block's pixels are) and the label map at the model's label
resolution (each block's majority class, among its kept pixels when the block is kept), both over the image
reflect-padded like the image itself; the training code derives them the same way (models/codec.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from service.codec.errors import InvalidSelection, MaskSizeMismatch, SelectiveUnsupported
from service.codec.imageio import DEFAULT_MAX_PIXELS, decode_label_map, decode_mask, orient
from service.codec.manifest import Manifest

KEPT_FRACTION = 1 / 16
"""A block counts as kept when more than this fraction of its pixels are. A kept region's thin slivers inside
painted blocks would cost a whole cell of symbols for a few pixels: on 25 camvid/val frames with road, sky, tree
and building synthesised, this codes 26.5% of the cells instead of 32.0% (docs/sc.md)."""


@dataclass(frozen=True)
class Selection:
    keep: np.ndarray
    """bool (rows, columns) at the latent's resolution: the cells whose symbols are coded."""
    labels: np.ndarray | None
    """uint8 (rows, columns) * downsampling / label_downsampling: class ids, or None when no map was given."""


def class_names(items: Iterable[str]) -> list[str]:
    """The names in `items`, each of which may list several, comma-separated (as the CLI and forms take them)."""
    return [name for item in items for name in (part.strip() for part in item.split(",")) if name]


CLASS_ID = re.compile(r"[0-9]{1,9}")
"""A class given by its id: ASCII digits only. str.isdigit() also takes '²' (which int() refuses) and '٣' (which
int() reads as 3); nine digits are more than any id needs and keep int() far from its length limit."""


def class_ids(manifest: Manifest, items: Iterable[str]) -> list[int]:
    """Class names or decimal ids (comma-separated lists allowed) -> sorted unique ids; unknown ones are errors."""
    ids = set()
    for name in class_names(items):
        if name in manifest.classes:
            ids.add(manifest.classes.index(name))
        elif CLASS_ID.fullmatch(name) and int(name) < len(manifest.classes):
            ids.add(int(name))
        else:
            known = ", ".join(manifest.classes) or "none"
            shown = name if len(name) <= 40 else f"{name[:40]}..."
            raise InvalidSelection(
                f"unknown class {shown!r}: model {manifest.id} knows {known} (or ids 0-{len(manifest.classes) - 1})"
            )
    return sorted(ids)


def check_selective(manifest: Manifest) -> None:
    if not manifest.selective:
        raise SelectiveUnsupported(
            f"model {manifest.id} supports only {', '.join(manifest.modes)}: "
            "mask, labels and synthesize need an sc model"
        )


def select(
    manifest: Manifest,
    shape: tuple[int, int],
    latent_shape: tuple[int, int],
    mask: bytes | np.ndarray | None = None,
    labels: bytes | np.ndarray | None = None,
    synthesize: Iterable[str] | None = None,
    *,
    orientation: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Selection | None:
    """The selection for an image of `shape` (height, width) whose latent is `latent_shape`; None: nothing
    given, so GC. `mask` is a PNG (white keeps) or an array (nonzero keeps), `labels` a PNG or an array of class
    ids, both of the image's size in its stored orientation (turned here by the image's EXIF `orientation`)."""
    names = class_names(synthesize or ())
    if mask is None and labels is None and not names:
        return None
    check_selective(manifest)
    synthesized = class_ids(manifest, names)
    if synthesized and labels is None:
        raise InvalidSelection("synthesize names classes of the label map: give the label map too")
    keep = None if mask is None else _read(mask, decode_mask, "mask", shape, orientation, max_pixels) != 0
    ids = None if labels is None else _read(labels, decode_label_map, "label map", shape, orientation, max_pixels)
    if ids is not None:
        _check_ids(manifest, ids)
    if keep is None:
        keep = np.ones(shape, dtype=bool)
    if synthesized:
        keep &= ~np.isin(ids, synthesized)
    rows, columns = latent_shape
    height, width = rows * manifest.downsampling, columns * manifest.downsampling
    keep = _pad(keep, height, width)
    kept = kept_blocks(keep, manifest.downsampling)
    if ids is None:
        return Selection(kept, None)
    return Selection(kept, block_labels(_pad(ids, height, width), keep, manifest.label_downsampling))


def _check_ids(manifest: Manifest, ids: np.ndarray) -> None:
    if ids.dtype.kind not in "biu":
        raise InvalidSelection(f"the label map must hold integer class ids, not {ids.dtype}")
    unknown = np.unique(ids[(ids < 0) | (ids >= len(manifest.classes))])
    if unknown.size:
        raise InvalidSelection(
            f"the label map holds class id {', '.join(map(str, unknown[:5]))}: model {manifest.id} knows ids "
            f"0-{len(manifest.classes) - 1} ({', '.join(manifest.classes)})"
        )


def kept_blocks(keep: np.ndarray, factor: int) -> np.ndarray:
    """bool (H, W) -> bool (H/factor, W/factor): the blocks more than KEPT_FRACTION of whose pixels are kept."""
    height, width = keep.shape
    counts = keep.reshape(height // factor, factor, width // factor, factor).sum(axis=(1, 3))
    return counts > KEPT_FRACTION * factor * factor


def block_labels(ids: np.ndarray, keep: np.ndarray, factor: int) -> np.ndarray:
    """Each factor x factor block's most frequent class id, ties to the lowest, as uint8; a kept block counts
    only its kept pixels. A kept block's label then names what is kept there, so when the mask comes from the
    label map (classes synthesised) it follows from the labels and costs almost nothing to code (adaptive.py)."""
    height, width = ids.shape
    blocks = ids.reshape(height // factor, factor, width // factor, factor)
    kept_pixels = keep.reshape(blocks.shape)
    present = np.unique(ids)
    counts = np.stack([(blocks == value).sum(axis=(1, 3)) for value in present])
    kept_counts = np.stack([((blocks == value) & kept_pixels).sum(axis=(1, 3)) for value in present])
    chosen = np.where(kept_blocks(keep, factor), kept_counts.argmax(axis=0), counts.argmax(axis=0))
    return present[chosen].astype(np.uint8)


def _read(
    value: bytes | np.ndarray,
    decode: Callable[[bytes, int], np.ndarray],
    name: str,
    shape: tuple[int, int],
    orientation: int,
    max_pixels: int,
) -> np.ndarray:
    """A PNG or an array, checked to be of the image's stored size, turned like the image."""
    array = decode(value, max_pixels) if isinstance(value, bytes) else np.asarray(value)
    stored = shape if orientation < 5 else shape[::-1]  # orientations 5-8 swap rows and columns
    if array.shape != stored:
        found = f"{array.shape[1]}x{array.shape[0]}" if array.ndim == 2 else f"of shape {array.shape}"
        raise MaskSizeMismatch(f"the {name} is {found}, the image {stored[1]}x{stored[0]}")
    return orient(array, orientation)


def _pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad the bottom and right as the image is padded (docs/bitstream.md, the latent grid)."""
    return np.pad(array, ((0, height - array.shape[0]), (0, width - array.shape[1])), mode="reflect")
