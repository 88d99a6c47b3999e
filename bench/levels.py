"""Where a model's reconstructions differ from the originals, scale by scale.

    python -m bench.levels ../shared/data/photos --held-out 030-039                      # the zoo's default
    python -m bench.levels ../shared/data/photos --held-out 030-039 --model-dir A --model-dir B

For the zoo, or each model directory in turn (say, exports of several training steps), at one rate point: the
sliced Wasserstein distance at each Laplacian-pyramid level (bench.metrics.swd_levels: level 0 the finest, the
last the low-pass image), and the RMS error and mean colour shift of the low-pass image on the 0-255 scale, each
a mean over the images. A GAN sharpens the fine levels; colour that drifts shows in the last (docs/training.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.images import folder_set, load
from bench.metrics import laplacian_pyramid, pyramid_levels, swd_levels
from service.codec.pipeline import compress, decompress
from service.codec.registry import Registry


@dataclass(frozen=True)
class LevelReport:
    swd: list[float]
    """Per pyramid level, finest first."""
    lowpass_rms: float
    colour_shift: float
    """Mean over channels of |mean of the low-pass image - the original's|."""


def measure(original: np.ndarray, decoded: np.ndarray) -> LevelReport:
    levels = pyramid_levels(*original.shape[:2])
    lowpass = laplacian_pyramid(original, levels)[-1], laplacian_pyramid(decoded, levels)[-1]
    return LevelReport(
        swd=swd_levels(original, decoded),
        lowpass_rms=float(np.sqrt(np.mean((lowpass[0] - lowpass[1]) ** 2))),
        colour_shift=float(np.mean(np.abs(lowpass[0].mean(axis=(1, 2)) - lowpass[1].mean(axis=(1, 2))))),
    )


def mean_report(reports: Sequence[LevelReport]) -> LevelReport:
    depth = min(len(report.swd) for report in reports)
    return LevelReport(
        swd=[float(np.mean([report.swd[level] for report in reports])) for level in range(depth)],
        lowpass_rms=float(np.mean([report.lowpass_rms for report in reports])),
        colour_shift=float(np.mean([report.colour_shift for report in reports])),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images")
    parser.add_argument("--held-out", help="only these numbered files, e.g. 030-039")
    parser.add_argument("--model", help="the rate point (default: the registry's default)")
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="a model directory to measure")
    parser.add_argument(
        "--no-detail", dest="detail", action="store_false", help="the generator's own images: no detail restoration"
    )
    args = parser.parse_args(argv)
    name, files = folder_set(args.folder, args.held_out)
    images = [load(path) for path in files]
    sources = [(str(directory), Registry.discover([directory], include_zoo=False)) for directory in args.model_dir]
    print(f"{name}, {len(images)} images\n")
    print("| model | SWD by level, finest first | low-pass RMS error | mean colour shift |")
    print("|---|---|---:|---:|")
    for label, registry in sources or [("zoo", Registry.discover())]:
        model = registry.get(args.model)
        reports = [
            measure(image.pixels, decompress(compress(image.pixels, model, restore_detail=args.detail), registry))
            for image in images
        ]
        report = mean_report(reports)
        levels = " / ".join(f"{value:.0f}" for value in report.swd)
        print(f"| {label} {model.id} | {levels} | {report.lowpass_rms:.2f} | {report.colour_shift:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
