"""Fit a model's context tables to the symbols its encoder gives on training images.

    python -m models.contexts service/zoo/gc-small                       # CamVid train, photos 000-029
    python -m models.contexts service/zoo/gc-small --extra-data data/fhd  # and another folder of photos
    python -m models.contexts service/zoo/sc-small --camvid               # SC: CamVid's train split

The latent's neighbouring cells are correlated, so coding each symbol under a table chosen by its four coded
neighbours (service/codec/entropy.py) takes fewer bits than one table per channel. The exported graphs
run through the service's own pipeline on each image (downscaled to at most --max-pixels), every channel's
symbols are counted per context, and the counts are smoothed towards the channel's static table (contexts
seldom seen borrow its shape) and written into the manifest (entropy.contexts), which changes the model's
fingerprint. Only training images are counted: the held-out photos and camvid/val stay unseen.

SC codes only the kept cells, and reads the cells it does not code as outside: with --camvid each frame is
counted twice, whole and as SC codes it with --synthesize's classes painted (by default road, sky, tree and
building, the use the SC issue names), so the contexts at a mask's edge have statistics of their own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.data import labelled_files, load_labels, load_rgb, load_rgb_within, training_sources
from service.codec.entropy import context_count, integer_frequencies, symbol_contexts
from service.codec.manifest import CONTEXT_KIND, MANIFEST_NAME, load_manifest, manifest_text
from service.codec.model import Model
from service.codec.pipeline import encode_tiled, latent_size, quantise
from service.codec.selection import select

PRIOR_WEIGHT = 8.0
"""How many symbols' worth of the channel's static table each context starts from."""


def count_contexts(
    model: Model, images: list[np.ndarray], labels: list[np.ndarray] | None, synthesize: list[str]
) -> np.ndarray:
    """Counts (channels, contexts, levels) of every latent channel's symbols by context over `images`; with
    their `labels`, also over the cells SC keeps when `synthesize` is painted."""
    manifest = model.manifest
    levels = len(manifest.centres)
    counts = np.zeros((manifest.latent_channels, context_count(levels), levels))
    for index, pixels in enumerate(images):
        rows, columns = latent_size(pixels.shape[1], pixels.shape[0], manifest.downsampling)
        symbols = quantise(encode_tiled(pixels, model, rows, columns), model.centres)
        keeps = [np.ones((rows, columns), dtype=bool)]
        if labels is not None:
            keeps.append(select(manifest, pixels.shape[:2], (rows, columns), None, labels[index], synthesize).keep)
        for keep in keeps:
            for channel, channel_symbols in zip(counts, symbols, strict=True):
                contexts = symbol_contexts(np.where(keep, channel_symbols, levels), levels)
                np.add.at(channel, (contexts[keep], channel_symbols[keep]), 1)
    return counts


def context_tables(counts: np.ndarray, static: np.ndarray, precision: int) -> np.ndarray:
    """Integer tables from counts (channels, contexts, levels), smoothed towards the static (channels, levels)."""
    prior = static / static.sum(axis=-1, keepdims=True)
    smoothed = counts + PRIOR_WEIGHT * prior[:, None, :]
    return integer_frequencies(smoothed / smoothed.sum(axis=-1, keepdims=True), precision)


def fit(
    model_dir: Path, images: list[np.ndarray], labels: list[np.ndarray] | None = None, synthesize: list[str] = ()
) -> dict[str, float]:
    """Write context tables into `model_dir`'s manifest; returns the modelled bits per pixel before and after
    (over every symbol counted, SC's included)."""
    manifest = load_manifest(model_dir)
    model = Model(manifest)
    counts = count_contexts(model, images, labels, list(synthesize))
    static = np.asarray(manifest.frequencies, dtype=np.float64)
    tables = context_tables(counts, static, manifest.precision)
    pixels = sum(image.shape[0] * image.shape[1] for image in images) * (1 if labels is None else 2)
    k = manifest.default_point.channels
    before = -(counts[:k] * np.log2(static[:k, None, :] / (1 << manifest.precision))).sum() / pixels
    after = -(counts[:k] * np.log2(tables[:k] / (1 << manifest.precision))).sum() / pixels
    path = model_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["entropy"]["contexts"] = {"kind": CONTEXT_KIND, "frequencies": tables.tolist()}
    path.write_text(manifest_text(data))
    load_manifest(model_dir)
    return {"images": len(images), "default_channels": k, "bpp_static": before, "bpp_contexts": after}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--extra-data", type=Path, action="append", default=[], help="another folder of photos")
    parser.add_argument("--camvid", action="store_true", help="count CamVid's train frames instead of the photos")
    parser.add_argument("--synthesize", default="road,sky,tree,building", help="with --camvid: classes SC paints")
    parser.add_argument("--max-pixels", type=int, default=1_500_000, help="downscale larger images to this")
    args = parser.parse_args(argv)
    if args.camvid:
        frames = labelled_files("train")
        images = [load_rgb(image) for image, _ in frames]
        labels = [load_labels(label) for _, label in frames]
        result = fit(args.model_dir, images, labels, args.synthesize.split(","))
    else:
        files = [path for paths in training_sources(extra=args.extra_data).values() for path in paths]
        result = fit(args.model_dir, [load_rgb_within(path, args.max_pixels) for path in files])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
