"""Selective compression (SC) against global compression (GC) on CamVid frames with their label maps: file sizes
(label map included), PSNR over the preserved region, and a comparison sheet (original, GC, SC, label map).

The done-when of SC (docs/sc.md): with road, sky, tree and building synthesised, SC files are on average at most
half the size of GC files of the same images at the same C, and the preserved region's PSNR is within 1 dB of
GC's there. Run on camvid/val, which no model trains on:

    python -m bench.selective --sc-model sc-small-c8 --gc-model gc-small-c8 --out docs/sc

It writes OUT/results.csv (one row per frame), OUT/results.md (the table, the criteria and this command) and
OUT/sheet.png. The preserved region is the pixels of the classes not synthesised, as the user asked to keep them;
bytes are whole files (header, mask, label map and checksum included).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.data import SHARED_DATA, load_labels, load_rgb
from service.codec import Model, Registry, RuntimeOptions, Selection, compress, decompress, select, unpack
from service.codec.pipeline import latent_size

DEFAULT_SYNTHESIZE = ("road", "sky", "tree", "building")
MAX_SIZE_RATIO = 0.5
MAX_PSNR_LOSS_DB = 1.0
CAMVID_COLOURS = np.array(
    [
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 0),
    ],
    dtype=np.uint8,
)  # fmt: skip
"""The colours CamVid's classes are usually drawn in (../shared/data/README.md), by id."""


@dataclass(frozen=True)
class Frame:
    """What one frame measured."""

    name: str
    pixels: int
    preserved_fraction: float
    """Of the pixels: those of classes not synthesised."""
    kept_cells: float
    """Of the latent cells: those whose symbols the SC file codes."""
    gc_bytes: int
    sc_bytes: int
    sc_label_bytes: int
    sc_as_gc_bytes: int
    """The SC model's own GC file (no mask, no labels): what an all-white mask costs, within a few bytes."""
    gc_psnr_preserved: float
    sc_psnr_preserved: float
    gc_psnr: float
    sc_psnr: float

    @property
    def size_ratio(self) -> float:
        return self.sc_bytes / self.gc_bytes

    @property
    def psnr_loss(self) -> float:
        return self.gc_psnr_preserved - self.sc_psnr_preserved


def psnr(original: np.ndarray, decoded: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) over all pixels, or over those where `where` (height, width) is True."""
    error = (original.astype(np.float64) - decoded.astype(np.float64)) ** 2
    mse = error.mean() if where is None else error[where].mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def camvid_frames(split: str = "val", data_root: Path = SHARED_DATA) -> list[tuple[Path, Path]]:
    folder = data_root / "camvid" / split
    return [(image, folder / "labels" / f"{image.stem}.png") for image in sorted((folder / "images").glob("*.webp"))]


def measure_frame(
    image_path: Path, label_path: Path, gc: Model, sc: Model, synthesize: list[str], registry: Registry
) -> tuple[Frame, dict[str, np.ndarray]]:
    """Compress one frame with GC and with SC, decode both; the frame's numbers and the panels for the sheet."""
    pixels = load_rgb(image_path)
    labels_png = label_path.read_bytes()
    ids = load_labels(label_path)
    height, width = ids.shape
    synthesized = [sc.manifest.classes.index(name) for name in synthesize]
    preserved = ~np.isin(ids, synthesized)
    # SC files carry no detail section (pipeline.compress): GC is compared without one too, like with like.
    gc_file = compress(pixels, gc, restore_detail=False)
    sc_file = compress(pixels, sc, labels=labels_png, synthesize=synthesize)
    sc_as_gc = compress(pixels, sc, restore_detail=False)
    gc_image, sc_image = decompress(gc_file, registry), decompress(sc_file, registry)
    selection = select(
        sc.manifest, (height, width), latent_size(width, height, sc.manifest.downsampling), None, labels_png, synthesize
    )
    frame = Frame(
        name=image_path.stem,
        pixels=height * width,
        preserved_fraction=float(preserved.mean()),
        kept_cells=float(selection.keep.mean()),
        gc_bytes=len(gc_file),
        sc_bytes=len(sc_file),
        sc_label_bytes=unpack(sc_file, height * width).label_bytes,
        sc_as_gc_bytes=len(sc_as_gc),
        gc_psnr_preserved=psnr(pixels, gc_image, preserved),
        sc_psnr_preserved=psnr(pixels, sc_image, preserved),
        gc_psnr=psnr(pixels, gc_image),
        sc_psnr=psnr(pixels, sc_image),
    )
    panels = {"original": pixels, "gc": gc_image, "sc": sc_image, "labels": label_panel(selection, sc, height, width)}
    return frame, panels


def label_panel(selection: Selection, model: Model, height: int, width: int) -> np.ndarray:
    """The label map as the SC file carries it (service/codec/selection.py: block_labels), in CamVid's colours, with the
    preserved latent cells darkened: bright regions are the ones the generator paints from the labels alone."""
    manifest = model.manifest
    ratio = manifest.label_downsampling
    colours = CAMVID_COLOURS[np.minimum(selection.labels, len(CAMVID_COLOURS) - 1)]
    panel = colours.repeat(ratio, axis=0).repeat(ratio, axis=1).astype(np.float32)
    kept = selection.keep.repeat(manifest.downsampling, axis=0).repeat(manifest.downsampling, axis=1)
    panel[kept] *= 0.35
    return panel[:height, :width].astype(np.uint8)


def caption(panel: np.ndarray, text: str, scale: float) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(panel))
    if scale != 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((5, 5), text)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((5, 5), text, fill=(255, 255, 255))
    return image


def sheet(rows: list[tuple[Frame, dict[str, np.ndarray]]], scale: float) -> Image.Image:
    """One row per frame: original | GC | SC | label map, each captioned with its bytes and PSNR."""
    tiles = []
    for frame, panels in rows:
        tiles.append(
            [
                caption(panels["original"], f"{frame.name} original", scale),
                caption(panels["gc"], f"GC {frame.gc_bytes} B, {frame.gc_psnr_preserved:.2f} dB kept", scale),
                caption(
                    panels["sc"],
                    f"SC {frame.sc_bytes} B (labels {frame.sc_label_bytes}), {frame.sc_psnr_preserved:.2f} dB kept",
                    scale,
                ),
                caption(panels["labels"], f"label map as coded; dark = kept ({frame.kept_cells:.0%})", scale),
            ]
        )
    width, height = tiles[0][0].size
    out = Image.new("RGB", (4 * width, len(tiles) * height), (255, 255, 255))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            out.paste(tile, (c * width, r * height))
    return out


def summary(frames: list[Frame]) -> dict[str, float]:
    mean = {key: float(np.mean([getattr(f, key) for f in frames])) for key in asdict(frames[0]) if key != "name"}
    mean["size_ratio_of_means"] = mean["sc_bytes"] / mean["gc_bytes"]
    mean["mean_size_ratio"] = float(np.mean([f.size_ratio for f in frames]))
    mean["psnr_loss"] = mean["gc_psnr_preserved"] - mean["sc_psnr_preserved"]
    mean["worst_psnr_loss"] = float(max(f.psnr_loss for f in frames))
    return mean


def report(frames: list[Frame], gc: Model, sc: Model, synthesize: list[str], command: str, seconds: float) -> str:
    s = summary(frames)
    size_ok = s["size_ratio_of_means"] <= MAX_SIZE_RATIO
    psnr_ok = s["psnr_loss"] <= MAX_PSNR_LOSS_DB
    verdict = "met" if size_ok and psnr_ok else "not met"
    bpp = 8 / s["pixels"]
    return "\n".join(
        [
            "# SC against GC on CamVid",
            "",
            f"{len(frames)} frames; GC: `{gc.id}` ({gc.channels} channels coded), SC: `{sc.id}` ({sc.channels} "
            f"channels coded), synthesising {', '.join(synthesize)}. Measured in {seconds:.0f} s by",
            "",
            "```",
            command,
            "```",
            "",
            "| | GC | SC |",
            "|---|---|---|",
            f"| mean file bytes (header, mask, labels included) | {s['gc_bytes']:.0f} | {s['sc_bytes']:.0f} |",
            f"| mean bits per pixel | {s['gc_bytes'] * bpp:.4f} | {s['sc_bytes'] * bpp:.4f} |",
            f"| of which the label map, bytes | - | {s['sc_label_bytes']:.1f} |",
            f"| PSNR of the preserved region, dB (mean over frames) | {s['gc_psnr_preserved']:.2f} | "
            f"{s['sc_psnr_preserved']:.2f} |",
            f"| PSNR of the whole frame, dB | {s['gc_psnr']:.2f} | {s['sc_psnr']:.2f} |",
            "",
            f"- Preserved pixels (classes kept): {s['preserved_fraction']:.1%}; latent cells coded: "
            f"{s['kept_cells']:.1%}. The SC model's own GC file is {s['sc_as_gc_bytes']:.0f} bytes.",
            f"- Size: SC / GC = {s['size_ratio_of_means']:.3f} (mean of per-frame ratios {s['mean_size_ratio']:.3f}); "
            f"target at most {MAX_SIZE_RATIO}: {'met' if size_ok else 'not met'}.",
            f"- Preserved PSNR: SC loses {s['psnr_loss']:.2f} dB against GC (negative: SC is better; worst frame "
            f"{s['worst_psnr_loss']:.2f} dB); target at most {MAX_PSNR_LOSS_DB} dB: {'met' if psnr_ok else 'not met'}.",
            f"- Both criteria: **{verdict}**.",
            "",
            "Per frame: results.csv. Sheet: sheet.png (original, GC, SC, the label map as coded).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sc-model", required=True, help="an sc model id at the rate point to compare")
    parser.add_argument("--gc-model", required=True, help="the GC model id at the same C")
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="more model directories")
    parser.add_argument("--split", default="val", help="camvid split (never one the models trained on)")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--synthesize", default=",".join(DEFAULT_SYNTHESIZE), help="comma-separated class names")
    parser.add_argument("--limit", type=int, help="only the first N frames")
    parser.add_argument("--sheet-frames", type=int, default=4, help="frames on the sheet, evenly spaced")
    parser.add_argument("--sheet-scale", type=float, default=0.5, help="panel size relative to the frame")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads per graph (0: its choice)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for results.md, results.csv, sheet.png")
    args = parser.parse_args(argv)
    options = RuntimeOptions(intra_op_threads=args.threads, inter_op_threads=1 if args.threads else 0)
    registry = Registry.discover(args.model_dir, options=options)
    gc, sc = registry.get(args.gc_model), registry.get(args.sc_model)
    if not sc.manifest.selective:
        parser.error(f"{sc.id} is not an sc model (modes {', '.join(sc.manifest.modes)})")
    if gc.channels != sc.channels:
        print(f"warning: GC codes {gc.channels} channels, SC {sc.channels}: not the same C", file=sys.stderr)
    synthesize = [name.strip() for name in args.synthesize.split(",") if name.strip()]
    unknown = [name for name in synthesize if name not in sc.manifest.classes]
    if unknown:
        parser.error(f"unknown classes {unknown}: {sc.id} knows {', '.join(sc.manifest.classes)}")
    pairs = camvid_frames(args.split, args.data_root)[: args.limit]
    if not pairs:
        parser.error(f"no frames in {args.data_root / 'camvid' / args.split}")
    on_sheet = set(np.linspace(0, len(pairs) - 1, min(args.sheet_frames, len(pairs))).round().astype(int).tolist())
    started = time.monotonic()
    frames, rows = [], []
    for index, (image, labels) in enumerate(pairs):
        frame, panels = measure_frame(image, labels, gc, sc, synthesize, registry)
        frames.append(frame)
        if index in on_sheet:
            rows.append((frame, panels))
        print(
            f"{frame.name}: GC {frame.gc_bytes} B {frame.gc_psnr_preserved:.2f} dB, SC {frame.sc_bytes} B "
            f"{frame.sc_psnr_preserved:.2f} dB ({frame.size_ratio:.2f})",
            file=sys.stderr,
        )
    seconds = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, [*asdict(frames[0]), "size_ratio", "psnr_loss"])
        writer.writeheader()
        for frame in frames:
            writer.writerow(asdict(frame) | {"size_ratio": frame.size_ratio, "psnr_loss": frame.psnr_loss})
    command = "python -m bench.selective " + shlex.join(argv if argv is not None else sys.argv[1:])
    (args.out / "results.md").write_text(report(frames, gc, sc, synthesize, command, seconds))
    sheet(rows, args.sheet_scale).save(args.out / "sheet.png", optimize=True)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
