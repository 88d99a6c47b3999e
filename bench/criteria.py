"""The issue's two "done when" criteria, decided from an evaluation's results.json, with the numbers behind each.

1. At the default rate point, our mean bpp is at most half the bpp WebP and JPEG need at their best (their fewest
   bits) to reach our MS-SSIM, or they cannot reach our rate at all.
2. Against AVIF and HEVC at twice our bytes, our SWD and power-spectrum error are lower on most images.

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

RATIO = 2.0
RATE_CODECS = ("webp", "jpeg")
REALISM_CODECS = ("avif", "hevc")
REALISM_KEYS = {"swd": "SWD", "spectrum_error_db": "spectrum error"}


@dataclass(frozen=True)
class Check:
    """One criterion for one codec (and measure) on one set: passed (None: undecided) and the numbers why."""

    set: str
    criterion: str
    passed: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "UNDECIDED"}[self.passed]


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a report line or table cell; '-' where it was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def rate_check(set_name: str, codec: str, entry: dict[str, Any] | None) -> Check:
    """Criterion 1 for one codec: the bits it needs for our MS-SSIM over our bits, per image, averaged; or it cannot
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
    """Criterion 2 for one codec and measure: on how many images ours is lower at twice our bytes."""
    name = f"lower {REALISM_KEYS[key]} than {label(codec)} at 2x our bytes on most images"
    tally = (entry or {}).get("at_2x", {}).get(key)
    if not entry or not tally:
        return Check(set_name, name, None, "not measured")
    wins, images, too_high = tally["wins"], tally["images"], entry["cannot_reach"]["2x"]
    detail = f"ours lower on {wins}/{images} images"
    if too_high:
        detail += f" ({label(codec)} cannot go as low as 2x our bytes on {too_high}: compared at its lowest setting)"
    return Check(set_name, name, 2 * wins > images, detail)


def checks(record: dict[str, Any]) -> list[Check]:
    """Every check for the default model on every set of a results.json record."""
    model = record.get("default_model")
    found: list[Check] = []
    for set_name, data in record["sets"].items():
        comparisons = data.get("comparisons", {}).get(model) if model else None
        if comparisons is None:
            found.append(Check(set_name, "the default rate point was evaluated", None, f"default model: {model}"))
            continue
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
    return [f"- **{c.verdict}** [{c.set}, {model}] {c.criterion}: {c.detail}" for c in found]


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
