"""From per-image points to curves (a codec's mean over images at each setting) and to the issue's comparisons:
the bits a classical codec needs to reach our MS-SSIM, and who has the better realism at our bytes and at twice them.

Comparisons are per image, against that image's own sweep of the classical codec, interpolated linearly in log bpp
between the two settings around the wanted rate (or quality); a codec whose lowest setting already spends more than
the wanted rate is compared at that lowest setting and counted as unable to go that low. A codec made at our bytes
(downscaled AVIF) has no sweep: each of its points is compared with our point of the same rate point and image.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from bench.codecs import AT_OUR_BYTES, OURS
from bench.metrics import HIGHER_IS_BETTER

Point = dict[str, Any]
CURVE_KEYS = (
    "bpp",
    "psnr",
    "ms_ssim",
    "psnr_4",
    "ms_ssim_4",
    "delta_e_16",
    "swd",
    "spectrum_error_db",
    "spectrum_bias_db",
    "lpips",
    "encode_seconds",
    "decode_seconds",
)
FIDELITY = ("psnr", "ms_ssim", "psnr_4", "ms_ssim_4", "delta_e_16")
REALISM = ("swd", "spectrum_error_db", "lpips")


def _mean(values: Iterable[Any]) -> float | None:
    """Mean of the values that were measured (None where none was: e.g. MS-SSIM of small images)."""
    kept = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(kept)) if kept else None


def curves(points: list[Point]) -> dict[str, list[dict[str, Any]]]:
    """codec -> one entry per setting (in the order first seen; ours and the codecs made at our bytes, whose
    settings are our rate points, sorted by bpp): means over images."""
    groups: dict[str, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    for point in points:
        groups[point["codec"]][str(point["setting"])].append(point)
    result = {}
    for codec, settings in groups.items():
        entries = []
        for members in settings.values():
            entry: dict[str, Any] = {"setting": members[0]["setting"], "images": len(members)}
            for key in CURVE_KEYS:
                value = _mean(p.get(key) for p in members)
                if value is not None:
                    entry[key] = value
            entries.append(entry)
        if codec == OURS or codec in AT_OUR_BYTES:
            entries.sort(key=lambda e: e["bpp"])
        result[codec] = entries
    return result


def _by_image(points: list[Point]) -> dict[str, dict[str, list[Point]]]:
    """image -> codec -> that image's points, sorted by bpp: comparisons are made per image, never on means."""
    table: dict[str, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    for point in points:
        table[point["image"]][point["codec"]].append(point)
    for codecs in table.values():
        for members in codecs.values():
            members.sort(key=lambda p: p["bpp"])
    return table


def value_at_bpp(sweep: list[Point], key: str, bpp: float) -> tuple[float | None, bool]:
    """(the sweep's `key` at `bpp`, interpolated in log bpp; whether the sweep could not go that low).

    Below the lowest setting: the lowest setting's value, flagged. Above the highest: None.
    """
    rates = [p["bpp"] for p in sweep if p.get(key) is not None]
    values = [p[key] for p in sweep if p.get(key) is not None]
    if not rates:
        return None, False
    if bpp < rates[0]:
        return values[0], True
    if bpp > rates[-1]:
        return None, False
    return float(np.interp(math.log(bpp), np.log(rates), values)), False


def bpp_to_reach(sweep: list[Point], key: str, target: float) -> float | None:
    """The fewest bits per pixel at which the sweep reaches `target` in `key` (interpolated in log bpp between the
    settings around the crossing); its lowest rate if even that reaches it; None if no setting does."""
    higher = HIGHER_IS_BETTER[key]
    previous: Point | None = None
    for point in sweep:
        value = point.get(key)
        if value is None:
            continue
        if (value >= target) if higher else (value <= target):
            if previous is None:
                return point["bpp"]
            low, high = previous[key], value
            fraction = 1.0 if high == low else (target - low) / (high - low)
            return math.exp(math.log(previous["bpp"]) + fraction * (math.log(point["bpp"]) - math.log(previous["bpp"])))
        previous = point
    return None


def _tallies(pairs: list[tuple[Point, list[Point]]], multiple: float) -> dict[str, dict[str, int]]:
    """measure -> on how many images ours is better (`wins`) than the codec at `multiple` times our bytes, out of
    how many could be compared (`images`)."""
    tallies: dict[str, dict[str, int]] = {}
    for key in (*FIDELITY, *REALISM):
        wins = images = 0
        for ours, sweep in pairs:
            theirs = value_at_bpp(sweep, key, multiple * ours["bpp"])[0] if ours.get(key) is not None else None
            if theirs is not None:
                images += 1
                wins += ours[key] > theirs if HIGHER_IS_BETTER[key] else ours[key] < theirs
        if images:
            tallies[key] = {"wins": wins, "images": images}
    return tallies


def _compare_codec(pairs: list[tuple[Point, list[Point]]], multiples: tuple[float, ...]) -> dict[str, Any]:
    """One comparison entry from (our point, the codec's sweep sorted by bpp) on each image."""
    never, needed, ours_bpp = 0, [], []
    for ours, sweep in pairs:
        if ours.get("ms_ssim") is None:
            continue
        bpp = bpp_to_reach(sweep, "ms_ssim", ours["ms_ssim"])
        if bpp is None:
            never += 1
        else:
            needed.append(bpp)
            ours_bpp.append(ours["bpp"])
    entry: dict[str, Any] = {
        "images": len(pairs),
        "cannot_reach": {f"{m:g}x": sum(sweep[0]["bpp"] > m * ours["bpp"] for ours, sweep in pairs) for m in multiples},
        "never_reaches_our_ms_ssim": never,
        "bpp_for_our_ms_ssim": _mean(needed),
        "our_bpp": _mean(ours_bpp),
    }
    entry["ratio"] = entry["bpp_for_our_ms_ssim"] / entry["our_bpp"] if needed else None
    for multiple in multiples:
        entry[f"at_{multiple:g}x"] = _tallies(pairs, multiple)
    return entry


def compare(points: list[Point], multiples: tuple[float, ...] = (1.0, 2.0)) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> classical codec -> the issue's comparisons over this set's images (those with both our point and a
    sweep).

    - `cannot_reach`: {"1x": n, "2x": n}, images where the codec's lowest setting spends more than 1x (2x) our bits;
      there it is compared at that lowest setting, with more bits than the comparison allows it;
    - `bpp_for_our_ms_ssim`: mean over images of the fewest bits the codec needs to reach our MS-SSIM (images where
      no setting reaches it are counted in `never_reaches_our_ms_ssim` and left out), and `ratio` = that / our mean
      bpp over the same images;
    - `at_Nx`: at N times our bytes, for each fidelity and realism measure, on how many images ours is better
      (`wins`) out of how many could be compared (`images`); the codec's value is interpolated along its sweep.
    """
    table = _by_image(points)
    models = sorted({p["setting"] for p in points if p["codec"] == OURS})
    codecs = [c for c in dict.fromkeys(p["codec"] for p in points) if c != OURS and c not in AT_OUR_BYTES]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        results[model] = {}
        for codec in codecs:
            pairs = []
            for per_codec in table.values():
                ours = next((p for p in per_codec.get(OURS, []) if p["setting"] == model), None)
                if ours is not None and per_codec.get(codec):
                    pairs.append((ours, per_codec[codec]))
            results[model][codec] = _compare_codec(pairs, multiples)
    return results


def _not_worse(key: str, ours: float, theirs: float) -> bool:
    return ours >= theirs if HIGHER_IS_BETTER[key] else ours <= theirs


def at_our_bytes(points: list[Point]) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> codec made at our bytes -> ours against it, image by image at that rate point:

    - `images`, and `over_budget`: images where even its smallest file was larger than ours (compared anyway);
    - `bytes_ratio`: the mean of its file's bytes over ours (at most 1 where it fits);
    - `measures`: per fidelity and realism measure, the means over the images where both were measured (`ours`,
      `theirs`, and whether ours is at least as good: `mean_not_worse`), and on how many of them (`images`) ours is
      at least as good (`not_worse`).
    """
    table = _by_image(points)
    results: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for codec in dict.fromkeys(p["codec"] for p in points if p["codec"] in AT_OUR_BYTES):
        pairs: dict[str, list[tuple[Point, Point]]] = defaultdict(list)
        for per_codec in table.values():
            ours = {p["setting"]: p for p in per_codec.get(OURS, [])}
            for theirs in per_codec.get(codec, []):
                if theirs["setting"] in ours:
                    pairs[theirs["setting"]].append((ours[theirs["setting"]], theirs))
        for model, matched in sorted(pairs.items()):
            measures = {}
            for key in (*FIDELITY, *REALISM):
                both = [(o[key], t[key]) for o, t in matched if o.get(key) is not None and t.get(key) is not None]
                if both:
                    ours, theirs = _mean(o for o, _ in both), _mean(t for _, t in both)
                    measures[key] = {
                        "ours": ours,
                        "theirs": theirs,
                        "mean_not_worse": _not_worse(key, ours, theirs),
                        "not_worse": sum(_not_worse(key, o, t) for o, t in both),
                        "images": len(both),
                    }
            results[model][codec] = {
                "images": len(matched),
                "over_budget": sum(bool(t.get("over_budget")) for _, t in matched),
                "bytes_ratio": _mean(t["bytes"] / o["bytes"] for o, t in matched),
                "measures": measures,
            }
    return dict(results)
