"""The images evaluated: a folder (optionally only its held-out photos, by number), loaded as RGB uint8 and hashed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import HELD_OUT_PHOTOS, SHARED_DATA, image_files, load_rgb

DEFAULT_FOLDER = SHARED_DATA / "photos"
DEFAULT_HELD_OUT = f"{min(HELD_OUT_PHOTOS):03d}-{max(HELD_OUT_PHOTOS):03d}"
"""photos 030-039: never trained on (models.data keeps them out), so they are what the report is about."""


@dataclass(frozen=True)
class TestImage:
    """One image as measured: its pixels, and a hash that keys everything measured on it in the cache."""

    path: Path
    pixels: np.ndarray
    sha256: str
    """Of the file's bytes and the loading options."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def describe(self) -> dict[str, object]:
        return {"image": self.name, "sha256": self.sha256, "width": self.size[0], "height": self.size[1]}


def load(path: Path, max_side: int | None = None) -> TestImage:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(f"max_side={max_side}".encode())
    return TestImage(path, load_rgb(path, max_side), digest.hexdigest())


def parse_numbers(text: str) -> set[int]:
    """'030-039' or '030-034,037' -> the photo numbers named (ranges inclusive)."""
    numbers: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"not a number or a range of numbers: {part!r} (expected e.g. 030-039)")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise ValueError(f"empty range: {part!r}")
        numbers.update(range(first, last + 1))
    return numbers


def folder_set(folder: Path, held_out: str | None = None) -> tuple[str, list[Path]]:
    """(set name, sorted png/jpg/webp files) of a folder; with `held_out`, only the files whose name is one of
    those numbers (030.webp for 30), and the set is named after them: photos-030-039. A folder whose files are not
    numbered is a held-out set as a whole (camvid/val/images), and `held_out` leaves it be. A folder called
    `images` is named after the two above it: camvid-val."""
    files = image_files(folder)
    resolved = folder.resolve()
    name = resolved.name or "images"
    if name == "images" and len(resolved.parents) > 2:
        name = f"{resolved.parent.parent.name}-{resolved.parent.name}"
    if held_out is None or not any(p.stem.isdigit() for p in files):
        return name, files
    numbers = parse_numbers(held_out)
    chosen = [p for p in files if p.stem.isdigit() and int(p.stem) in numbers]
    return f"{name}-{held_out.replace(',', '_')}", chosen


def select(files: list[Path], limit: int | None) -> list[Path]:
    """At most `limit` files spread evenly over the sorted list (all when limit is None): small runs stay varied."""
    if limit is None or limit >= len(files):
        return files
    if limit <= 0:
        return []
    step = len(files) / limit
    return [files[int(i * step)] for i in range(limit)]
