"""summary.md: what a reader needs from results.json, as tables next to the plots and the sheet: our rate points
against each codec's lowest setting and against downscaled AVIF at our bytes, timings with the machine named, the
per-image comparisons and the issues' criteria, passed or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import criteria
from bench.codecs import AT_OUR_BYTES, OURS, label
from bench.criteria import fmt
from bench.metrics import COARSE_FACTOR, MS_SSIM_MIN_SIDE

Curves = dict[str, list[dict[str, Any]]]
MEASURES = {
    "psnr": ("PSNR (dB)", 2),
    "ms_ssim": ("MS-SSIM", 4),
    "psnr_4": ("PSNR at 1/4 (dB)", 2),
    "ms_ssim_4": ("MS-SSIM at 1/4", 4),
    "delta_e_16": ("colour error at 1/16 (Delta E)", 2),
    "swd": ("SWD", 1),
    "spectrum_error_db": ("spectrum error (dB)", 2),
    "spectrum_bias_db": ("HF bias (dB)", 2),
    "lpips": ("LPIPS", 3),
}
"""The measures in the summary's tables, in order: a column's heading and its digits."""


def _ms(seconds: float | None) -> str:
    return fmt(None if seconds is None else 1000 * seconds, 0)


def _setting(codec: str, setting: str, default: str | None) -> str:
    if codec in AT_OUR_BYTES:
        return f"at most {setting}'s bytes"
    return f"**{setting}** (default)" if codec == OURS and setting == default else str(setting)


def overview_table(curves: Curves, default: str | None) -> list[str]:
    """Our rate points (the default in bold), each codec made at our bytes at each of them, then each classical
    codec at its lowest setting (its fewest bytes)."""
    lines = [
        "| codec | setting | mean bpp | " + " | ".join(heading for heading, _ in MEASURES.values())
        + " | encode ms | decode ms |",
        "|---|---|" + "---:|" * (len(MEASURES) + 3),
    ]  # fmt: skip
    for codec, entries in curves.items():
        shown = entries if codec == OURS or codec in AT_OUR_BYTES else [min(entries, key=lambda e: e["bpp"])]
        for entry in shown:
            values = " | ".join(fmt(entry.get(key), digits) for key, (_, digits) in MEASURES.items())
            lines.append(
                f"| {label(codec)} | {_setting(codec, entry['setting'], default)} | {fmt(entry.get('bpp'), 4)} "
                f"| {values} | {_ms(entry.get('encode_seconds'))} | {_ms(entry.get('decode_seconds'))} |"
            )
    return lines


def timing_table(curves: Curves, megapixels: float) -> list[str]:
    """Mean seconds of the real encode and decode paths per image, over every setting of each codec."""
    lines = [
        f"Timing of the real encode and decode paths, means over images and settings (images average "
        f"{megapixels:.2f} megapixels):",
        "",
        "| codec | encode ms | decode ms | encode ms per megapixel | decode ms per megapixel |",
        "|---|---:|---:|---:|---:|",
    ]
    for codec, entries in curves.items():
        encode = [e["encode_seconds"] for e in entries if "encode_seconds" in e]
        decode = [e["decode_seconds"] for e in entries if "decode_seconds" in e]
        if not encode or not decode:
            continue
        mean_encode, mean_decode = 1000 * sum(encode) / len(encode), 1000 * sum(decode) / len(decode)
        lines.append(
            f"| {label(codec)} | {mean_encode:.0f} | {mean_decode:.0f} | {mean_encode / megapixels:.0f} "
            f"| {mean_decode / megapixels:.0f} |"
        )
    return lines


def _wins(entry: dict[str, Any], at: str, key: str) -> str:
    tally = entry.get(at, {}).get(key)
    return "-" if not tally or not tally["images"] else f"{tally['wins']}/{tally['images']}"


def comparison_table(model: str, comparisons: dict[str, dict[str, Any]]) -> list[str]:
    """One row per classical codec: rates it needs against ours, and per-image wins at 1x and 2x our bytes."""
    lines = [
        f"Model **{model}** against each codec, per image (wins = images where ours is better):",
        "",
        "| codec | images | can't go as low as 1x (2x) us | bpp it needs for our MS-SSIM (ours) | x ours "
        "| never reaches it "
        "| PSNR wins at 1x | SWD wins at 1x | spectrum wins at 1x | SWD wins at 2x | spectrum wins at 2x "
        "| LPIPS wins at 2x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for codec, entry in comparisons.items():
        lines.append(
            f"| {label(codec)} | {entry['images']} | {entry['cannot_reach']['1x']} ({entry['cannot_reach']['2x']}) "
            f"| {fmt(entry['bpp_for_our_ms_ssim'], 4)} ({fmt(entry['our_bpp'], 4)}) | {fmt(entry['ratio'], 2)} "
            f"| {entry['never_reaches_our_ms_ssim']} | {_wins(entry, 'at_1x', 'psnr')} "
            f"| {_wins(entry, 'at_1x', 'swd')} | {_wins(entry, 'at_1x', 'spectrum_error_db')} "
            f"| {_wins(entry, 'at_2x', 'swd')} | {_wins(entry, 'at_2x', 'spectrum_error_db')} "
            f"| {_wins(entry, 'at_2x', 'lpips')} |"
        )
    return lines


def at_our_bytes_table(model: str, codec: str, entry: dict[str, Any]) -> list[str]:
    """Ours against a codec made at no more than our bytes, per image: both means and where ours is not worse."""
    over = f"; it could not fit in our bytes on {entry['over_budget']}" if entry["over_budget"] else ""
    lines = [
        f"Model **{model}** against {label(codec)}, made on each of {entry['images']} images at no more than our "
        f"file's bytes (its files: {fmt(entry['bytes_ratio'], 3)}x ours on average{over}):",
        "",
        f"| measure | ours | {label(codec)} | ours at least as good on |",
        "|---|---:|---:|---:|",
    ]
    for key, (heading, digits) in MEASURES.items():
        measured = entry["measures"].get(key)
        if measured:
            lines.append(
                f"| {heading} | {fmt(measured['ours'], digits)} | {fmt(measured['theirs'], digits)} "
                f"| {measured['not_worse']}/{measured['images']} |"
            )
    return lines


def too_small_for_coarse_ms_ssim(images: list[dict[str, Any]]) -> list[str]:
    """A sentence naming the images whose 1/4 image is too small for MS-SSIM (none: no sentence)."""
    small = [i["image"] for i in images if min(i["width"], i["height"]) // COARSE_FACTOR < MS_SSIM_MIN_SIDE]
    if not small:
        return []
    return [
        f"MS-SSIM at 1/4 is not measured on {len(small)} of {len(images)} images ({', '.join(small[:5])}"
        f"{', ...' if len(small) > 5 else ''}): their 1/4 image is under {MS_SSIM_MIN_SIDE} pixels on its shorter "
        f"side (the image under {COARSE_FACTOR * MS_SSIM_MIN_SIDE}).",
    ]


def _set_section(set_name: str, data: dict[str, Any], default: str | None) -> list[str]:
    """Plots, tables and sheets of one set; the per-codec comparison for the default rate point only where there is
    one (results.json has it for every rate point)."""
    lines = ["", f"## {set_name} ({len(data['images'])} images: {', '.join(i['image'] for i in data['images'])})", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in data.get("plots", [])]
    lines += ["", "Our rate points, each codec made at our bytes, and each classical codec at its lowest setting "
              "(means over images):", ""]  # fmt: skip
    lines += overview_table(data["curves"], default)
    small = too_small_for_coarse_ms_ssim(data["images"])
    lines += ["", *small] if small else []
    megapixels = sum(i["width"] * i["height"] for i in data["images"]) / max(len(data["images"]), 1) / 1e6
    lines += ["", *timing_table(data["curves"], megapixels)]
    shown = [default] if default in data["comparisons"] else list(data["comparisons"])
    for model in shown:
        for codec, entry in data.get("at_our_bytes", {}).get(model, {}).items():
            lines += ["", *at_our_bytes_table(model, codec, entry)]
        lines += ["", *comparison_table(model, data["comparisons"][model])]
    if data.get("fid"):
        lines += ["", "Patch FID (256x256 patches, over the whole set):", ""]
        for codec, settings in data["fid"].items():
            lines.append(f"- {label(codec)}: " + ", ".join(f"{s}: {v:.1f}" for s, v in settings.items()))
    for sheet in data.get("sheets", []):
        lines += ["", f"Crops of {sheet['image']} (original, {sheet['model']}, then each codec at about our bytes "
                  "and about twice them, downscaled AVIF at no more than them; labels give each file's real rate):",
                  ""]  # fmt: skip
        lines.append(f"![comparison sheet]({Path(sheet['path']).name})")
    return lines


def summary_markdown(record: dict[str, Any]) -> str:
    """The whole page, from the record that results.json holds."""
    default = record.get("default_model")
    lines = [
        "# Evaluation summary",
        "",
        f"Written by `{record['command']}` ({record['started']} to {record['finished']}). "
        "How to read it: [docs/evaluation.md](../evaluation.md).",
        "",
        f"Machine: {record['machine_details']} Load average when the run started: {record['load_average']}. "
        "Timings on a loaded machine are upper bounds.",
        "",
        f"Rate points evaluated: {', '.join(record['models']) or 'none'}; default: {default}. "
        f"Codecs: {', '.join(label(c) for c in record['codecs'])}"
        + (f" (not installed here: {', '.join(record['codecs_missing'])})" if record["codecs_missing"] else "")
        + ".",
        "",
        "Learned measures: " + "; ".join(f"{name} {status}" for name, status in record["learned"].items()) + ".",
        "",
        "## The issues' criteria, at the default rate point",
        "",
        "Issue 16's first (against downscaled AVIF at our bytes), then the earlier ones. SWD and spectrum error are "
        "not evidence of realism on their own (docs/evaluation.md); blind paired comparisons (`python -m bench.blind`)"
        " are.",
        "",
        *(criteria.as_text(criteria.checks(record), default) or ["- nothing to check: no images were evaluated"]),
    ]
    for set_name, data in record["sets"].items():
        lines += _set_section(set_name, data, default)
    return "\n".join(lines) + "\n"
