"""The issues' "done when" criteria, decided from an evaluation's results.json, with the numbers behind each.

Issue 16, against what a user would pick instead (downscaled AVIF, made per image at no more than our bytes), at
the default rate point:
1. our PSNR and MS-SSIM at 1/4 scale are at least downscaled AVIF's, on the mean and on at least 7 of 10 images;
2. our colour error at 1/16 scale (mean CIE76 Delta E) is no worse than downscaled AVIF's, on the mean.

The earlier criteria, still printed; their realism half is not evidence of realism on its own (docs/evaluation.md):
3. our mean bpp is at most half the bpp WebP and JPEG need at their best (their fewest bits) to reach our MS-SSIM,
   or they cannot reach our rate at all;
4. against AVIF and HEVC at twice our bytes, our SWD and power-spectrum error are lower on most images.

    python -m bench.criteria docs/evaluation/results.json     # prints each check; exit status 1 if any fails

A check that the data cannot decide (no default model, no image large enough for MS-SSIM, a codec not run) is
reported as undecided, and counts as not passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.codecs import label

COARSE_CODEC = "avif-down"
COARSE_KEYS = {
    "psnr_4": ("PSNR at 1/4 scale", True),
    "ms_ssim_4": ("MS-SSIM at 1/4 scale", True),
    "delta_e_16": ("colour error at 1/16 scale (mean CIE76 Delta E)", False),
}
"""Issue 16's measures: (what a reader calls it, whether ours must also be at least as good on COARSE_SHARE of the
images, besides the mean)."""
COARSE_SHARE = (7, 10)
RATIO = 2.0
RATE_CODECS = ("webp", "jpeg")
REALISM_CODECS = ("avif", "hevc")
REALISM_KEYS = {"swd": "SWD", "spectrum_error_db": "spectrum error"}
REALISM_CAVEAT = (
    "not evidence of realism on its own: detail restoration moved SWD while making pictures worse (docs/evaluation.md)"
)


@dataclass(frozen=True)
class Check:
    """One criterion for one codec (and measure) on one set: passed (None: undecided) and the numbers why."""

    set: str
    criterion: str
    passed: bool | None
    detail: str
    caveat: str = ""
    """Why a pass here proves less than it says."""

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "UNDECIDED"}[self.passed]


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a report line or table cell; '-' where it was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def coarse_check(set_name: str, key: str, entry: dict[str, Any] | None) -> Check:
    """Issue 16, one measure: ours at least as good as downscaled AVIF's at the same bytes on the mean, and where
    COARSE_KEYS asks it, on at least 7 of 10 images too."""
    name, per_image = COARSE_KEYS[key]
    share, of = COARSE_SHARE
    name = f"{name}: ours at least as good as {label(COARSE_CODEC)} at no more than our bytes, on the mean" + (
        f" and on >= {share} of {of} images" if per_image else ""
    )
    if not entry:
        return Check(set_name, name, None, "not measured")
    measured = entry["measures"].get(key)
    if not measured:
        return Check(set_name, name, None, f"measured on none of {entry['images']} images (too small: see the summary)")
    detail = (
        f"ours {fmt(measured['ours'])} against {fmt(measured['theirs'])} (means over {measured['images']} images); "
        f"ours at least as good on {measured['not_worse']}/{measured['images']}"
    )
    if entry["over_budget"]:
        detail += f" ({label(COARSE_CODEC)} could not fit in our bytes on {entry['over_budget']}: compared with more)"
    images_ok = of * measured["not_worse"] >= share * measured["images"]
    return Check(set_name, name, measured["mean_not_worse"] and (images_ok or not per_image), detail)


def rate_check(set_name: str, codec: str, entry: dict[str, Any] | None) -> Check:
    """Criterion 3 for one codec: the bits it needs for our MS-SSIM over our bits, per image, averaged; or it cannot
    go as low as our rate on any image (the issue's escape clause, named as such where it decides)."""
    name = f"{label(codec)} needs >= {RATIO:g}x our bpp for our MS-SSIM, or cannot reach our rate"
    if not entry or not entry["images"]:
        return Check(set_name, name, None, "not measured")
    images, too_high = entry["images"], entry["cannot_reach"]["1x"]
    never, ratio = entry["never_reaches_our_ms_ssim"], entry["ratio"]
    reached = images - never
    facts = (
        f"its lowest setting spends more bits than ours on {too_high}/{images} images; it reaches our MS-SSIM on "
        f"{reached}/{images} images, there at {fmt(entry['bpp_for_our_ms_ssim'])} bpp on average against our "
        f"{fmt(entry['our_bpp'])} (x{fmt(ratio, 2)})"
    )
    if ratio is not None and ratio >= RATIO:
        return Check(set_name, name, True, facts)
    if too_high == images:
        return Check(set_name, name, True, f"only because it cannot go as low as our rate: {facts}")
    if ratio is None and never == images:
        return Check(set_name, name, True, f"it never reaches our MS-SSIM: {facts}")
    if ratio is None:
        return Check(set_name, name, None, f"no image large enough for MS-SSIM: {facts}")
    return Check(set_name, name, False, facts)


def realism_check(set_name: str, codec: str, key: str, entry: dict[str, Any] | None) -> Check:
    """Criterion 4 for one codec and measure: on how many images ours is lower at twice our bytes."""
    name = f"lower {REALISM_KEYS[key]} than {label(codec)} at 2x our bytes on most images"
    tally = (entry or {}).get("at_2x", {}).get(key)
    if not entry or not tally:
        return Check(set_name, name, None, "not measured", REALISM_CAVEAT)
    wins, images, too_high = tally["wins"], tally["images"], entry["cannot_reach"]["2x"]
    detail = f"ours lower on {wins}/{images} images"
    if too_high:
        detail += f" ({label(codec)} cannot go as low as 2x our bytes on {too_high}: compared at its lowest setting)"
    return Check(set_name, name, 2 * wins > images, detail, REALISM_CAVEAT)


def checks(record: dict[str, Any]) -> list[Check]:
    """Every check for the default model on every set of a results.json record: issue 16's first."""
    model = record.get("default_model")
    found: list[Check] = []
    for set_name, data in record["sets"].items():
        comparisons = data.get("comparisons", {}).get(model) if model else None
        if comparisons is None:
            found.append(Check(set_name, "the default rate point was evaluated", None, f"default model: {model}"))
            continue
        coarse = data.get("at_our_bytes", {}).get(model, {}).get(COARSE_CODEC)
        found += [coarse_check(set_name, key, coarse) for key in COARSE_KEYS]
        found += [rate_check(set_name, codec, comparisons.get(codec)) for codec in RATE_CODECS]
        found += [
            realism_check(set_name, codec, key, comparisons.get(codec))
            for codec in REALISM_CODECS
            for key in REALISM_KEYS
        ]
    return found


def as_records(found: list[Check]) -> list[dict[str, Any]]:
    """For results.json."""
    return [{**asdict(check), "verdict": check.verdict} for check in found]


def as_text(found: list[Check], model: str | None) -> list[str]:
    """One line per check, for the terminal and for summary.md."""
    return [
        f"- **{c.verdict}** [{c.set}, {model}] {c.criterion}: {c.detail}" + (f". *{c.caveat}*" if c.caveat else "")
        for c in found
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=Path("docs/evaluation/results.json"))
    args = parser.parse_args(argv)
    record = json.loads(args.results.read_text())
    found = checks(record)
    print("\n".join(as_text(found, record.get("default_model"))))
    return 0 if found and all(c.passed for c in found) else 1


if __name__ == "__main__":
    sys.exit(main())
