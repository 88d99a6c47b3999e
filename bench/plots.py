"""Rate-distortion and rate-realism plots (matplotlib, small PNGs): each codec's mean curve over a set, over its
whole sweep (nothing is clipped, so a codec that cannot go as low as us shows where it stops), ours on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.codecs import OURS, label

LABELS = {
    "psnr": "PSNR (dB, higher is better)",
    "ms_ssim": "MS-SSIM (higher is better)",
    "psnr_4": "PSNR at 1/4 scale (dB, higher is better)",
    "ms_ssim_4": "MS-SSIM at 1/4 scale (higher is better)",
    "delta_e_16": "colour error at 1/16 scale, Delta E (lower is better)",
    "swd": "sliced Wasserstein distance x1e3 (lower is better)",
    "spectrum_error_db": "power-spectrum error (dB, lower is better)",
    "lpips": "LPIPS (lower is better)",
}
STYLE = {
    "jpeg": ("tab:orange", "s"),
    "webp": ("tab:green", "^"),
    "avif": ("tab:blue", "D"),
    "avif-down": ("tab:cyan", "o"),
    "hevc": ("tab:purple", "v"),
    "jpeg2000": ("tab:brown", "P"),
    "jpegxl": ("tab:pink", "X"),
}
LOG_SCALE = {"swd", "spectrum_error_db"}
"""Measures that span orders of magnitude over a sweep: on a linear axis every classical codec's high rates would
collapse onto zero."""
Curves = dict[str, list[dict[str, Any]]]


def _ours(axis: plt.Axes, entries: list[dict[str, Any]], key: str, default: str | None) -> None:
    """Our rate points joined in order of rate, each labelled with its model id (less the prefix they share, so
    the labels stay short: c2, c4, ...); the default one starred."""
    axis.plot([e["bpp"] for e in entries], [e[key] for e in entries], "k-o", lw=2.2, ms=5, label=label(OURS), zorder=5)
    ids = [str(e["setting"]).split("-") for e in entries]
    shared = 0
    while len(ids) > 1 and all(len(i) > shared + 1 and i[shared] == ids[0][shared] for i in ids):
        shared += 1
    for entry, parts in zip(entries, ids, strict=True):
        axis.annotate(
            "-".join(parts[shared:]), (entry["bpp"], entry[key]), fontsize=7, xytext=(3, 5), textcoords="offset points"
        )
        if entry["setting"] == default:
            axis.plot(entry["bpp"], entry[key], "k*", ms=14, zorder=6, label=f"default ({default})")


def rate_plot(curves: Curves, keys: list[str], title: str, path: Path, default: str | None = None) -> Path:
    """One panel per measure in `keys` that any codec has, bpp on a log axis; every codec, every setting."""
    keys = [k for k in keys if any(k in e for entries in curves.values() for e in entries)]
    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys) + 1.6, 3.6), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        for codec, entries in curves.items():
            shown = [e for e in entries if key in e]
            if not shown:
                continue
            if codec == OURS:
                _ours(axis, shown, key, default)
            else:
                colour, marker = STYLE.get(codec, ("tab:gray", "."))
                rates, values = [e["bpp"] for e in shown], [e[key] for e in shown]
                axis.plot(rates, values, marker=marker, color=colour, lw=1.2, ms=3.5, label=label(codec))
        axis.set_xscale("log")
        if key in LOG_SCALE:
            axis.set_yscale("log")
        axis.set_xlabel("bits per pixel (from file bytes)")
        axis.set_ylabel(LABELS.get(key, key), fontsize=8)
        axis.grid(True, which="both", alpha=0.25)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def set_plots(set_name: str, curves: Curves, out: Path, images: int, default: str | None = None) -> list[Path]:
    """rd-<set>.png (PSNR, MS-SSIM), coarse-<set>.png (the same at 1/4 scale, colour error at 1/16) and
    realism-<set>.png (SWD, spectrum error, LPIPS where measured)."""
    suffix = f"{set_name}: mean over {images} images per setting"
    return [
        rate_plot(curves, ["psnr", "ms_ssim"], f"Rate-distortion, {suffix}", out / f"rd-{set_name}.png", default),
        rate_plot(
            curves,
            ["psnr_4", "ms_ssim_4", "delta_e_16"],
            f"Coarse-scale fidelity, {suffix}",
            out / f"coarse-{set_name}.png",
            default,
        ),
        rate_plot(
            curves,
            ["swd", "spectrum_error_db", "lpips"],
            f"Rate-realism, {suffix}",
            out / f"realism-{set_name}.png",
            default,
        ),
    ]
