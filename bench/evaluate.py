"""Evaluate a folder of images: our codec at every installed rate point against JPEG, WebP, AVIF, HEVC (HEIF),
JPEG 2000 and JPEG XL, each swept down to its lowest quality, and against downscaled AVIF made at no more than our
file's bytes at each rate point, every rate measured from the bytes written.

    python -m bench.evaluate ../shared/data/photos --held-out 030-039 --out docs/evaluation   # the report
    python -m bench.evaluate DIR --limit 2 --out /tmp/eval                                   # a quick look

With no folder: ../shared/data/photos, photos 030-039 (held out from training). Writes to --out: results.json
(every point: bytes, bpp, PSNR, MS-SSIM, the same at 1/4 scale, colour error at 1/16, SWD, spectrum error, LPIPS
where its weights are local, encode and decode seconds, the machine; the curves, the comparisons and the issues'
criteria), summary.md, rd-<set>.png, coarse-<set>.png, realism-<set>.png and sheet-<set>-<image>.png. Points are
cached under <out>/cache by image hash and everything that decides them: a re-run after a new model measures only
that model (and downscaled AVIF where that model's file size differs). How to read it: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import analysis, codecs, criteria, images, plots, reporting, results, sheet, summary
from bench.cache import PointCache
from bench.runner import Evaluator, Learned, at_our_bytes_subjects, classical_subjects, ours_subjects
from service.codec import Registry, RuntimeOptions, UnknownModel
from service.codec.manifest import MANIFEST_NAME, manifest_text

DEFAULT_OUT = Path("docs/evaluation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what is evaluated")
    what.add_argument("folders", type=Path, nargs="*", help=f"folders of png/jpg/webp (default: {images.DEFAULT_FOLDER}"
                      f" with --held-out {images.DEFAULT_HELD_OUT}); each is one set")  # fmt: skip
    what.add_argument("--held-out", help="only the images numbered so, e.g. 030-039 or 030-034,037 (by file stem)")
    what.add_argument("--limit", type=int, help="at most this many images per set, spread over it")
    what.add_argument("--max-side", type=int, help="downscale images whose longer side is larger (default: never)")
    what.add_argument("--model", action="append", help="model id (repeatable; default: every installed rate point)")
    what.add_argument("--model-dir", type=Path, action="append", default=[], help="more model directories")
    what.add_argument("--no-zoo", action="store_true", help="only the --model-dir models, not the shipped ones")
    what.add_argument("--codec", choices=[*codecs.AT_OUR_BYTES, *codecs.CODECS], action="append",
                      help="default: every available one")  # fmt: skip
    what.add_argument("--slow-at", action="append", metavar="MODEL",
                      help="rate points at which codecs enlarged by a network (avif-down-sr: about 40 s a photo on a "
                      "CPU) are made (repeatable; default: the default rate point)")  # fmt: skip
    what.add_argument("--no-learned", action="store_true", help="skip LPIPS and FID even where weights are local")
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    out.add_argument("--cache", type=Path, help="point cache (default: <out>/cache)")
    out.add_argument("--no-cache", action="store_true", help="measure everything again and keep nothing")
    out.add_argument("--sheets", type=int, default=1, help="comparison sheets per set (default 1; 0: none)")
    out.add_argument("--sheet-model", help="rate point shown on the sheets (default: the default one)")
    out.add_argument("--crop", default=sheet.DEFAULT_CROP, help=f"sheet crop WxH, centred ({sheet.DEFAULT_CROP})")
    out.add_argument(
        "--record-in-manifests",
        action="store_true",
        help="write each evaluated rate point's means into its model's manifest.json (metrics: not fingerprinted)",
    )
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime and torch threads (0: their default)")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def chosen_sets(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Set name -> its images (at most --limit of them)."""
    if args.folders:
        named = dict(images.folder_set(folder, args.held_out) for folder in args.folders)
    else:
        named = dict([images.folder_set(images.DEFAULT_FOLDER, args.held_out or images.DEFAULT_HELD_OUT)])
    return {name: images.select(files, args.limit) for name, files in named.items()}


def default_model(registry: Registry, model_ids: list[str]) -> str | None:
    """The registry's default rate point if it was evaluated, else the only one evaluated, else none."""
    try:
        default = registry.default_id
    except UnknownModel:  # several models installed and none preferred
        default = None
    if default in model_ids:
        return default
    return model_ids[0] if len(model_ids) == 1 else None


def evaluate_set(
    set_name: str, files: list[Path], evaluator: Evaluator, args: argparse.Namespace, log: Callable[[str], None]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(what the set's record holds besides its points, the points): every subject on every image."""
    evaluator.reset_fid()
    points, described = [], []
    for number, path in enumerate(files, 1):
        start, before = time.perf_counter(), evaluator.measured
        image = images.load(path, args.max_side)
        points += evaluator.evaluate(image)
        described.append(image.describe())
        log(
            f"[{number}/{len(files)}] {set_name} {image.name}: {evaluator.measured - before} points measured, "
            f"{time.perf_counter() - start:.1f} s"
        )
    return {
        "images": described,
        "curves": analysis.curves(points),
        "comparisons": analysis.compare(points),
        "at_our_bytes": analysis.at_our_bytes(points),
        "fid": evaluator.fid(),
    }, points


def make_sheets(
    set_name: str, files: list[Path], registry: Registry, model: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """--sheets comparison sheets of the set, from its middle image on."""
    crop_size = sheet.parse_size(args.crop)
    shown = [*codecs.available_at_our_bytes(args.codec).values(), *codecs.available(args.codec).values()]
    made = []
    for path in images.select(files[len(files) // 2 :] + files[: len(files) // 2], args.sheets):
        image = images.load(path, args.max_side)
        crop = sheet.centre_crop(*image.size, *crop_size)
        picture, panels = sheet.comparison_sheet(image, registry, model, shown, crop)
        target = sheet.save_png(picture, args.out / f"sheet-{set_name}-{path.stem}.png")
        made.append({"path": str(target), "image": image.name, "model": model, "crop": crop, "panels": panels})
    return made


def record_in_manifests(record: dict[str, Any], registry: Registry) -> list[Path]:
    """Write every evaluated rate point's means per set into its model's manifest (a rate point's `metrics`, or
    the manifest's own for a single-rate model), with the command that measured them; returns the files."""
    keys = ("images", "bpp", "psnr", "ms_ssim", "swd", "spectrum_error_db")
    written = []
    for model_id in record["models"]:
        manifest = registry.get(model_id).manifest
        path = manifest.directory / MANIFEST_NAME
        data = json.loads(path.read_text())
        entry = next((p for p in data.get("rate_points", []) if p["id"] == model_id), data)
        metrics = entry.setdefault("metrics", {})
        for set_name, measured in record["sets"].items():
            curve = next(c for c in measured["curves"]["ours"] if c["setting"] == model_id)
            metrics[set_name.replace("-", "_")] = {key: curve[key] for key in keys}
        metrics["source"] = f"docs/evaluation/results.json ({record['command']})"
        path.write_text(manifest_text(data))
        written.append(path)
    return sorted(set(written))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    log = (lambda _: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    if args.threads:
        torch.set_num_threads(args.threads)
    options = RuntimeOptions(intra_op_threads=args.threads)
    registry = Registry.discover(args.model_dir, include_zoo=not args.no_zoo, options=options)
    model_ids = args.model or sorted({m.id for m in registry}, key=lambda i: (registry.get(i).channels, i))
    if not model_ids:
        log("no models installed (service/zoo or --model-dir): evaluating the classical codecs only")
    default = default_model(registry, model_ids)
    chosen, at_our_bytes = codecs.available(args.codec), codecs.available_at_our_bytes(args.codec)
    learned = Learned.detect(not args.no_learned)
    machine = reporting.machine_name()
    evaluator = Evaluator(
        ours_subjects(registry, model_ids)
        + at_our_bytes_subjects(at_our_bytes.values(), model_ids, args.slow_at or [default])
        + classical_subjects(chosen.values()),
        PointCache(None if args.no_cache else (args.cache or args.out / "cache")),
        learned,
        machine,
    )
    record: dict[str, Any] = {
        "command": "python -m bench.evaluate " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "load_average": reporting.load_average(),
        "started": reporting.timestamp(),
        "models": {
            m: {"fingerprint": registry.get(m).fingerprint.hex(), "channels": registry.get(m).channels}
            for m in model_ids
        },
        "default_model": default,
        "codecs": {
            **{name: codec.describe() for name, codec in at_our_bytes.items()},
            **{name: {**codec.describe(), "settings": list(codec.settings)} for name, codec in chosen.items()},
        },
        "codecs_missing": codecs.missing(args.codec),
        "learned": learned.status,
        "sets": {},
    }
    for set_name, files in chosen_sets(args).items():
        data, points = evaluate_set(set_name, files, evaluator, args, log)
        data["plots"] = [str(p) for p in plots.set_plots(set_name, data["curves"], args.out, len(files), default)]
        shown = args.sheet_model or default
        data["sheets"] = make_sheets(set_name, files, registry, shown, args) if shown and args.sheets else []
        data["points"] = points
        record["sets"][set_name] = data
    record["finished"] = reporting.timestamp()
    record["machine_details"] = reporting.describe_machine()
    record["points_measured"], record["points_from_cache"] = evaluator.measured, evaluator.reused
    found = criteria.checks(record)
    record["criteria"] = criteria.as_records(found)
    results.write_json(record, args.out / "results.json")
    (args.out / "summary.md").write_text(summary.summary_markdown(record))
    log("\n".join(criteria.as_text(found, default)))
    if args.record_in_manifests:
        log(f"metrics written into {', '.join(map(str, record_in_manifests(record, registry)))}")
    log(f"{evaluator.measured} points measured, {evaluator.reused} from the cache; results in {args.out}")
    return record


if __name__ == "__main__":
    main()
