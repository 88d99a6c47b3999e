"""Training images held in memory as uint8 arrays, sampled as random crops; the validation images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE_SUFFIXES = {".webp", ".png", ".jpg", ".jpeg"}
HELD_OUT_PHOTOS = range(30, 40)
"""photos/030-039 and camvid/val are reported on, so they are never trained on."""


def load_rgb(path: Path, max_side: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if max_side and max(image.size) > max_side:
            scale = max_side / max(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1]; a single image gets a batch axis."""
    if images.ndim == 3:
        images = images[None]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def training_sources(data_root: Path = SHARED_DATA, extra: list[Path] | None = None) -> dict[str, list[Path]]:
    """CamVid train frames, the photos not held out, and any extra folders (e.g. Full-HD wallpapers)."""
    sources = {
        "camvid": image_files(data_root / "camvid" / "train" / "images"),
        "photos": [p for p in image_files(data_root / "photos") if int(p.stem) not in HELD_OUT_PHOTOS],
    }
    for folder in extra or []:
        sources[folder.name] = image_files(folder)
    return {name: files for name, files in sources.items() if files}


def validation_files(data_root: Path = SHARED_DATA, per_source: int = 4) -> list[Path]:
    camvid = image_files(data_root / "camvid" / "val" / "images")
    photos = [p for p in image_files(data_root / "photos") if int(p.stem) in HELD_OUT_PHOTOS]
    return camvid[:: len(camvid) // per_source][:per_source] + photos[:per_source]


@dataclass
class CropSampler:
    """Random crops with horizontal flips; each source is drawn equally often, whatever its size."""

    images: dict[str, list[np.ndarray]]
    crop: int
    rng: np.random.Generator

    @classmethod
    def load(cls, sources: dict[str, list[Path]], crop: int, seed: int, max_side: int = 1920) -> CropSampler:
        images = {name: [load_rgb(p, max_side) for p in files] for name, files in sources.items()}
        images = {name: [a for a in arrays if min(a.shape[:2]) >= crop] for name, arrays in images.items()}
        return cls(images={n: a for n, a in images.items() if a}, crop=crop, rng=np.random.default_rng(seed))

    def summary(self) -> dict[str, int]:
        """Images per source, recorded with the checkpoint and the exported model."""
        return {name: len(arrays) for name, arrays in self.images.items()}

    def batch(self, size: int) -> torch.Tensor:
        names = list(self.images)
        crops = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(size):
            arrays = self.images[names[self.rng.integers(len(names))]]
            image = arrays[self.rng.integers(len(arrays))]
            top = self.rng.integers(image.shape[0] - self.crop + 1)
            left = self.rng.integers(image.shape[1] - self.crop + 1)
            crop = image[top : top + self.crop, left : left + self.crop]
            crops[i] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        return to_tensor(crops)
