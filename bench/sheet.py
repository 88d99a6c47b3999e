"""A comparison sheet of crops: the original and ours on top, then downscaled AVIF at no more than our bytes (left)
and twice them (right), then each classical codec at about our bytes (left) and at about twice our bytes (right),
each labelled with its setting, its real rate (and ratio to ours) and PSNR.

Every codec compresses the whole image (so its file size is real); the sheet shows the same crop of each.

    python -m bench.sheet ../shared/data/photos/035.webp -o /tmp/sheet-035.png --crop 400,300,256,192
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench.codecs import AT_OUR_BYTES, CODECS, OURS, AnyCodec, available, available_at_our_bytes, label
from bench.images import TestImage, load
from bench.metrics import psnr
from service.codec import Registry, compress, decompress

Crop = tuple[int, int, int, int]
"""left, top, width, height."""
DEFAULT_CROP = "192x144"
"""Fourteen panels of this size keep the sheet's PNG to a few hundred KB (it is lossless: the crops are evidence)."""


def parse_size(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192)."""
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def centre_crop(width: int, height: int, crop_width: int, crop_height: int) -> Crop:
    """The centred crop of that size (smaller where the image is)."""
    crop_width, crop_height = min(crop_width, width), min(crop_height, height)
    return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height


def labelled(panel: np.ndarray, text: str) -> Image.Image:
    """The panel with its label in white on a black box in the top-left corner, readable over any content."""
    image = Image.fromarray(np.ascontiguousarray(panel))
    draw = ImageDraw.Draw(image)
    box = draw.multiline_textbbox((5, 5), text)
    draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
    draw.multiline_text((5, 5), text, fill=(255, 255, 255))
    return image


def comparison_sheet(
    image: TestImage,
    registry: Registry,
    model_id: str | None,
    codecs: Iterable[AnyCodec],
    crop: Crop,
    multiples: tuple[float, float] = (1.0, 2.0),
) -> tuple[Image.Image, list[dict[str, Any]]]:
    """(the sheet, one record per panel: codec, setting, bytes, bpp, psnr)."""
    original = image.pixels
    width, height = image.size
    pixels = width * height
    model = registry.get(model_id)
    ours = compress(original, model)
    left, top, crop_width, crop_height = crop

    def cut(array: np.ndarray) -> np.ndarray:
        return array[top : top + crop_height, left : left + crop_width]

    def panel(codec: str, setting: Any, data: bytes, decoded: np.ndarray) -> tuple[np.ndarray, str, dict[str, Any]]:
        bpp = 8 * len(data) / pixels
        quality = psnr(original, decoded)
        text = f"{label(codec)} {setting}\n{bpp:.3f} bpp ({len(data) / len(ours):.2f}x ours), {quality:.1f} dB"
        record = {"codec": codec, "setting": setting, "bytes": len(data), "bpp": bpp, "psnr": quality}
        return cut(decoded), text, record

    panels = [
        (cut(original), f"original {image.name}\n{width}x{height}, crop at {left},{top}", {"codec": "original"}),
        panel(OURS, model.id, ours, decompress(ours, registry)),
    ]
    for codec in codecs:
        for multiple in multiples:
            made = codec.near_bytes(original, round(multiple * len(ours)))
            panels.append(panel(codec.name, made.name, made.data, made.decoded))
    rows = (len(panels) + 1) // 2
    sheet = Image.new("RGB", (2 * crop_width, rows * crop_height), (255, 255, 255))
    for index, (array, text, _) in enumerate(panels):
        sheet.paste(labelled(array, text), ((index % 2) * crop_width, (index // 2) * crop_height))
    return sheet, [record for _, _, record in panels]


def save_png(image: Image.Image, path: Path) -> Path:
    """Optimised lossless PNG: small enough to commit, and no codec of its own between the reader and the crops."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return path


def parse_crop(text: str | None, width: int, height: int) -> Crop:
    """'left,top,width,height' (clipped to the image), or None for the centred DEFAULT_CROP."""
    if not text:
        return centre_crop(width, height, *parse_size(DEFAULT_CROP))
    left, top, crop_width, crop_height = (int(v) for v in text.split(","))
    return left, top, min(crop_width, width - left), min(crop_height, height - top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", help="model id (default: the default model)")
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="more model directories")
    parser.add_argument("--crop", help=f"left,top,width,height of the region shown (default: a centred {DEFAULT_CROP})")
    parser.add_argument("--codec", action="append", choices=[*AT_OUR_BYTES, *CODECS], help="default: all available")
    args = parser.parse_args(argv)
    image = load(args.image)
    registry = Registry.discover(args.model_dir)
    crop = parse_crop(args.crop, *image.size)
    codecs = [*available_at_our_bytes(args.codec).values(), *available(args.codec).values()]
    sheet, _ = comparison_sheet(image, registry, args.model, codecs, crop)
    save_png(sheet, args.output)


if __name__ == "__main__":
    main()
