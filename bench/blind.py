"""Blind paired comparisons: judges see the original and two reconstructions at the same bytes, unnamed, and say
which one looks more like the original. The realism measures can be moved without making pictures better
(docs/evaluation.md); people's choices, blind, cannot.

    python -m bench.blind make --a ours:gc-hybrid-0.04 --b avif-down --out /tmp/blind/pictures
    python -m bench.blind tally /tmp/blind/pictures-key.json judge-1.json judge-2.json --out /tmp/blind/tally.md

`make` compresses each image with both subjects, the one made within bytes (a codec) at no more than the other's
file (ours); writes one PNG per trial (the original on top, "left" and "right" below, nothing else on it: no codec,
no bytes), a judgments.json to fill in and a README.txt for the judges; and the key (which side is which, the bytes,
the settings) to a JSON outside the pictures' folder. `tally` reads the key and judges' files (trial -> "left",
"right" or "same") and prints, per subject and per image, how often each was preferred, as a markdown table.
Default images: photos 025-029 (030-039 are the held-out test set and need --allow-held-out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench import images
from bench.codecs import AT_OUR_BYTES, CODECS, Codec, Made
from bench.enlargers import lanczos
from bench.sheet import save_png
from models.data import HELD_OUT_PHOTOS
from service.codec import Registry, compress, decompress

DEFAULT_IMAGES = "025-029"
"""Shown by default: not the held-out test photos 030-039, which stay unseen, by people too, unless asked. These are
among the photos models.data trains on, so they flatter our codec a little."""
SIDES = ("left", "right")
ANSWERS = (*SIDES, "same")
JUDGMENTS = "judgments.json"
INSTRUCTIONS = """Each picture shows an original on top and two versions of it below, "left" and "right".
For every picture, which of the two looks more like the original? Judge the whole picture at 100% zoom,
on a screen large enough to show it without scaling, and take your time.

Write your answers into judgments.json, one per picture, "left", "right" or "same" (when you cannot tell
them apart or neither is better), and send the file back. Please do not discuss the pictures with other judges.
"""


@dataclass(frozen=True)
class Layout:
    """What the judges are shown, as data: the crops' number and size, the whole image's width, the spacing."""

    crops: int = 3
    crop: int = 384
    whole_width: int = 1536
    """The whole-image trial's picture (two reconstructions side by side) is at most this wide: downscaled to fit."""
    candidates: int = 64
    """Seeded crop positions drawn per image, of which the `crops` with the most detail are kept."""
    gap: int = 16
    caption: int = 28
    """Height of the strip above each panel that holds its word ('original', 'left', 'right')."""


@dataclass(frozen=True)
class Subject:
    """One side of the comparison: `budgeted` subjects are made at no more than the other side's bytes."""

    spec: str
    make: Callable[[np.ndarray, int | None], Made]
    budgeted: bool


def subject(spec: str, registry: Registry) -> Subject:
    """'ours' or 'ours:MODEL_ID' (the service's compress and decompress), or a codec made within the other side's
    bytes: 'avif-down', or a classical codec with a quality scale ('avif', 'webp', ...; not JPEG 2000's rates)."""
    if spec == "ours" or spec.startswith("ours:"):
        model = registry.get(spec.partition(":")[2] or None)

        def ours(image: np.ndarray, _budget: int | None) -> Made:
            data = compress(image, model)
            return Made(model.id, data, decompress(data, registry))

        return Subject(f"ours:{model.id}", ours, budgeted=False)
    codec = AT_OUR_BYTES.get(spec) or CODECS.get(spec)
    if codec is None or not codec.available() or (isinstance(codec, Codec) and codec.search_range is None):
        raise ValueError(
            f"unknown or unavailable subject {spec!r}: ours[:MODEL_ID], {', '.join(AT_OUR_BYTES)} or a codec"
        )
    return Subject(spec, codec.within, budgeted=True)


def make_pair(image: np.ndarray, subjects: tuple[Subject, Subject]) -> tuple[Made, Made]:
    """Both subjects' reconstructions; the budgeted ones at no more than the smallest unbudgeted file's bytes."""
    made = {index: s.make(image, None) for index, s in enumerate(subjects) if not s.budgeted}
    if not made:
        raise ValueError("one side must be ours[:MODEL_ID]: its file's bytes are the other side's budget")
    budget = min(len(m.data) for m in made.values())
    first, second = (made[i] if i in made else s.make(image, budget) for i, s in enumerate(subjects))
    return first, second


Box = tuple[int, int, int, int]
"""left, top, width, height."""


def detail_crops(image: np.ndarray, layout: Layout, rng: np.random.Generator) -> list[Box]:
    """`layout.crops` crops of the original with the most detail (mean absolute luma gradient) among seeded random
    positions, not overlapping each other where the image leaves room, else sharing the fewest pixels with those
    chosen (not a near copy of one); chosen on the original alone."""
    height, width = image.shape[:2]
    side_w, side_h = min(layout.crop, width), min(layout.crop, height)
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gradient = np.zeros_like(luma)
    gradient[:, 1:] += np.abs(np.diff(luma, axis=1))
    gradient[1:, :] += np.abs(np.diff(luma, axis=0))
    table = np.pad(gradient.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table: any box's sum in 4 reads
    tops = rng.integers(0, height - side_h + 1, layout.candidates)
    lefts = rng.integers(0, width - side_w + 1, layout.candidates)
    scores = table[tops + side_h, lefts + side_w] - table[tops, lefts + side_w] - table[tops + side_h, lefts]
    scores += table[tops, lefts]
    ranked = list(
        dict.fromkeys((int(lefts[i]), int(tops[i]), side_w, side_h) for i in np.argsort(-scores, kind="stable"))
    )

    def shared(a: Box, b: Box) -> int:
        """The pixels two crops share."""
        return max(0, side_w - abs(a[0] - b[0])) * max(0, side_h - abs(a[1] - b[1]))

    chosen: list[Box] = []
    while len(chosen) < min(layout.crops, len(ranked)):
        # the most detailed crop that shares least with those chosen: none where the image leaves room
        chosen.append(
            min((b for b in ranked if b not in chosen), key=lambda b: max((shared(b, c) for c in chosen), default=0))
        )
    return chosen


def views(image: np.ndarray, layout: Layout, rng: np.random.Generator) -> dict[str, Box]:
    """View name -> the region shown: 'crop1'... at 100%, then 'whole' (scaled to fit layout.whole_width)."""
    found = {f"crop{n}": box for n, box in enumerate(detail_crops(image, layout, rng), 1)}
    return {**found, "whole": (0, 0, image.shape[1], image.shape[0])}


def _caption(panel: np.ndarray, text: str, layout: Layout) -> Image.Image:
    """The panel under a grey strip holding one neutral word."""
    picture = Image.new("RGB", (panel.shape[1], panel.shape[0] + layout.caption), (96, 96, 96))
    picture.paste(Image.fromarray(np.ascontiguousarray(panel)), (0, layout.caption))
    font = ImageFont.load_default(size=layout.caption - 10)
    ImageDraw.Draw(picture).text((4, 4), text, fill=(255, 255, 255), font=font)
    return picture


def trial_picture(original: np.ndarray, left: np.ndarray, right: np.ndarray, box: Box, layout: Layout) -> Image.Image:
    """The original on top, centred; `left` and `right` below, side by side; one region of each, the whole image
    downscaled (Lanczos) so that the two side by side fit layout.whole_width."""
    x, y, width, height = box
    regions = [array[y : y + height, x : x + width] for array in (original, left, right)]
    fit = (layout.whole_width - layout.gap) // 2
    if width > fit:
        size = (fit, max(1, round(height * fit / width)))
        regions = [lanczos(region, *size) for region in regions]
    panels = [_caption(region, word, layout) for region, word in zip(regions, ("original", *SIDES), strict=True)]
    panel_w, panel_h = panels[0].size
    picture = Image.new("RGB", (2 * panel_w + layout.gap, 2 * panel_h + layout.gap), (96, 96, 96))
    picture.paste(panels[0], ((picture.width - panel_w) // 2, 0))
    picture.paste(panels[1], (0, panel_h + layout.gap))
    picture.paste(panels[2], (panel_w + layout.gap, panel_h + layout.gap))
    return picture


def _seeded(seed: int, name: str) -> np.random.Generator:
    """A generator that depends on the seed and a name only: the same trials whatever else is made."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")])


def make(
    files: list[Path],
    subjects: tuple[Subject, Subject],
    out: Path,
    key_path: Path,
    seed: int = 16,
    layout: Layout = Layout(),
    command: str = "",
) -> dict[str, Any]:
    """Write the trials' pictures, judgments.json and README.txt into `out` (new or empty) and the key to
    `key_path` (outside `out`); returns the key. Sides: half the trials each way, shuffled with the seed."""
    if len({path.stem for path in files}) < len(files):
        raise ValueError("two images share a file name: trials are named after it")
    if key_path.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"the key {key_path} must not be inside the pictures' folder {out}: judges would see it")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give a new folder, so no picture from another run is judged")
    out.mkdir(parents=True, exist_ok=True)
    key: dict[str, Any] = {"command": command, "a": subjects[0].spec, "b": subjects[1].spec, "seed": seed}
    key |= {"layout": asdict(layout), "images": {}, "trials": {}}
    shown: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, Box]] = []
    for path in files:
        image = images.load(path)
        a, b = make_pair(image.pixels, subjects)
        key["images"][path.stem] = {
            "path": str(path),
            "sha256": image.sha256,
            "size": list(image.size),
            "bytes": {"a": len(a.data), "b": len(b.data)},
            "settings": {"a": a.name, "b": b.name},
            "over_budget": {"a": a.over_budget, "b": b.over_budget},
        }
        for view, box in views(image.pixels, layout, _seeded(seed, path.stem)).items():
            shown.append((path.stem, view, image.pixels, a.decoded, b.decoded, box))
    a_left = np.arange(len(shown)) % 2 == 0
    _seeded(seed, "sides").shuffle(a_left)
    for (stem, view, original, a, b, box), left_is_a in zip(shown, a_left, strict=True):
        left, right = (a, b) if left_is_a else (b, a)
        save_png(trial_picture(original, left, right, box, layout), out / f"{stem}-{view}.png")
        sides = dict(zip(SIDES, ("a", "b") if left_is_a else ("b", "a"), strict=True))
        key["trials"][f"{stem}-{view}"] = {"image": stem, "view": view, "box": list(box), **sides}
    (out / JUDGMENTS).write_text(json.dumps(dict.fromkeys(sorted(key["trials"]), ""), indent=1) + "\n")
    (out / "README.txt").write_text(INSTRUCTIONS)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(key, indent=1) + "\n")
    return key


# --- Tally ---------------------------------------------------------------------------------------------------------


def read_judgments(key: dict[str, Any], judgments: dict[str, str]) -> Counter[tuple[str, str]]:
    """(image, 'a' | 'b' | 'same' | 'unanswered') -> count, from one judge's trial -> side answers."""
    unknown = sorted(set(judgments) - set(key["trials"]))
    if unknown:
        raise ValueError(f"trials not in the key: {', '.join(unknown[:5])} (judgments from another run?)")
    counts: Counter[tuple[str, str]] = Counter()
    for trial, entry in key["trials"].items():
        answer = str(judgments.get(trial, "")).strip().lower()
        if answer not in (*ANSWERS, ""):
            raise ValueError(f"{trial}: {answer!r} is not one of {', '.join(ANSWERS)}")
        counts[(entry["image"], entry[answer] if answer in SIDES else answer or "unanswered")] += 1
    return counts


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of wins against losses at even odds (ties left out before)."""
    total = wins + losses
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2**total
    return min(1.0, 2 * tail)


def tally(key: dict[str, Any], judges: list[dict[str, str]]) -> list[str]:
    """Markdown: per image and over all, how often each subject was preferred, ties and unanswered trials."""
    counts: Counter[tuple[str, str]] = Counter()
    for judgments in judges:
        counts += read_judgments(key, judgments)

    def row(name: str, got: dict[str, int]) -> str:
        answered = got["a"] + got["b"] + got["same"]
        share = [f"{got[k]} ({100 * got[k] / answered:.0f}%)" if answered else "0" for k in ("a", "b", "same")]
        return f"| {name} | {answered} | {' | '.join(share)} | {got['unanswered']} |"

    kinds = ("a", "b", "same", "unanswered")
    per_image = {name: {k: counts[(name, k)] for k in kinds} for name in key["images"]}
    total = {k: sum(got[k] for got in per_image.values()) for k in kinds}
    a, b = key["a"], key["b"]
    lines = [
        f"Blind paired comparisons: A = `{a}`, B = `{b}` (made at no more than the other's bytes on each image); "
        f"{len(judges)} judgment files, {len(key['trials'])} trials each ({key['layout']['crops']} crops of "
        f"{key['layout']['crop']} px and the whole image per image, sides shuffled with seed {key['seed']}).",
        "",
        "| image | judgments | A preferred | B preferred | same | unanswered |",
        "|---|---:|---:|---:|---:|---:|",
        *(row(name, got) for name, got in per_image.items()),
        row("**all**", total),
        "",
        f"Sign test, ties left out: p = {sign_test(total['a'], total['b']):.3g} (two-sided). It treats every judgment "
        "as independent; the crops of one image, and one judge's answers, are not, so read it as an upper bound on "
        "the evidence.",
    ]
    return lines


# --- Command line --------------------------------------------------------------------------------------------------


def default_images() -> list[Path]:
    return images.folder_set(images.DEFAULT_FOLDER, DEFAULT_IMAGES)[1]


def held_out(files: list[Path]) -> list[Path]:
    """The files that are held-out test photos (photos/030-039)."""
    folder = images.DEFAULT_FOLDER.resolve()
    return [p for p in files if p.resolve().parent == folder and p.stem.isdigit() and int(p.stem) in HELD_OUT_PHOTOS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="write the trials' pictures and the key")
    making.add_argument("images", type=Path, nargs="*", help=f"image files (default: photos {DEFAULT_IMAGES})")
    making.add_argument("--a", default="ours", help="ours[:MODEL_ID] (default: the default model), or a codec")
    making.add_argument("--b", default="avif-down", help="default: avif-down, made at no more than --a's bytes")
    making.add_argument("--out", type=Path, required=True, help="the pictures' folder (new or empty)")
    making.add_argument("--key", type=Path, help="the key (default: <out>-key.json beside the folder)")
    making.add_argument("--seed", type=int, default=16)
    making.add_argument("--crops", type=int, default=Layout.crops, help=f"crops per image ({Layout.crops})")
    making.add_argument("--crop", type=int, default=Layout.crop, help=f"crop side in pixels ({Layout.crop})")
    making.add_argument("--whole-width", type=int, default=Layout.whole_width, help="whole-image picture width")
    making.add_argument("--model-dir", type=Path, action="append", default=[], help="more model directories")
    making.add_argument("--no-zoo", action="store_true", help="only the --model-dir models")
    making.add_argument("--allow-held-out", action="store_true", help="let photos 030-039 (the test set) be shown")
    counting = commands.add_parser("tally", help="count the judges' answers against the key")
    counting.add_argument("key", type=Path)
    counting.add_argument("judgments", type=Path, nargs="+", help="JSON files: trial -> left | right | same")
    counting.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)

    if args.command == "tally":
        key = json.loads(args.key.read_text())
        lines = tally(key, [json.loads(path.read_text()) for path in args.judgments])
        text = "\n".join(lines) + "\n"
        print(text, end="")
        if args.out:
            args.out.write_text(text)
        return 0
    files = args.images or default_images()
    if held_out(files) and not args.allow_held_out:
        parser.error(f"{', '.join(p.name for p in held_out(files))}: held-out test photos (--allow-held-out)")
    registry = Registry.discover(args.model_dir, include_zoo=not args.no_zoo)
    subjects = (subject(args.a, registry), subject(args.b, registry))
    layout = Layout(crops=args.crops, crop=args.crop, whole_width=args.whole_width)
    key_path = args.key or args.out.with_name(f"{args.out.name}-key.json")
    command = "python -m bench.blind " + shlex.join(argv if argv is not None else sys.argv[1:])
    key = make(files, subjects, args.out, key_path, args.seed, layout, command)
    print(f"{len(key['trials'])} trials in {args.out} (send the judges that folder only); the key: {key_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
