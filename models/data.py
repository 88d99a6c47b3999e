"""Training images held in memory as uint8 arrays, sampled as random crops; the validation images.

SC models train on CamVid frames with their label maps: the class ids ride along as a fourth channel, so
crops and flips treat image and labels alike, and each crop gets a random preservation mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.config import MaskKind
from models.masks import random_mask

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


def load_rgb_within(path: Path, max_pixels: int) -> np.ndarray:
    """load_rgb, downscaled to at most `max_pixels` (width * height) keeping its aspect."""
    with Image.open(path) as image:
        width, height = image.size
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    return load_rgb(path, max_side=int(max(width, height) * scale))


def load_labels(path: Path) -> np.ndarray:
    """A label PNG's class ids (H, W) uint8; grey or palette PNGs hold the ids themselves."""
    with Image.open(path) as image:
        if image.mode not in {"L", "P"}:
            raise ValueError(f"{path}: a label map must be an 8-bit grey or palette PNG, not {image.mode}")
        return np.asarray(image, dtype=np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1]; a single image gets a batch axis."""
    if images.ndim == 3:
        images = images[None]
    # torch.tensor copies: decoded images may be read-only, which torch.from_numpy warns about.
    return torch.tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


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


def labelled_files(split: str, data_root: Path = SHARED_DATA) -> list[tuple[Path, Path]]:
    """CamVid frames of `split` ("train" or "val") with their label maps."""
    folder = data_root / "camvid" / split
    return [(image, folder / "labels" / f"{image.stem}.png") for image in image_files(folder / "images")]


def validation_files(data_root: Path = SHARED_DATA, per_source: int = 4) -> list[Path]:
    camvid = image_files(data_root / "camvid" / "val" / "images")
    photos = [p for p in image_files(data_root / "photos") if int(p.stem) in HELD_OUT_PHOTOS]
    return camvid[:: len(camvid) // per_source][:per_source] + photos[:per_source]


@dataclass
class Sample:
    """What the codec trains or validates on; SC adds the class ids and the pixels to keep."""

    images: torch.Tensor
    """(B, 3, H, W) in [0, 1]."""
    labels: torch.Tensor | None = None
    """(B, H, W) int64 class ids; -1 where the label map is withheld."""
    keep: torch.Tensor | None = None
    """(B, 1, H, W) in {0, 1}: the pixels to preserve."""

    def to(self, device: torch.device) -> Sample:
        return Sample(*(None if t is None else t.to(device) for t in (self.images, self.labels, self.keep)))


def validation_samples(
    classes: tuple[str, ...] = (), synthesize: Sequence[str] = (), data_root: Path = SHARED_DATA, per_source: int = 4
) -> list[Sample]:
    """GC: camvid/val and held-out photos, whole. SC: the same camvid/val frames with their label maps,
    keeping all but the `synthesize` classes."""
    if not classes:
        return [Sample(to_tensor(load_rgb(path))) for path in validation_files(data_root, per_source)]
    pairs = labelled_files("val", data_root)
    synthesized = [classes.index(name) for name in synthesize]
    samples = []
    for image, label_path in pairs[:: len(pairs) // per_source][:per_source]:
        labels = torch.from_numpy(load_labels(label_path).astype(np.int64))[None]
        keep = ~torch.isin(labels, torch.tensor(synthesized, dtype=torch.long))
        samples.append(Sample(to_tensor(load_rgb(image)), labels, keep[:, None].float()))
    return samples


@dataclass
class CropSampler:
    """Random crops with horizontal flips; each source is drawn equally often, whatever its size.

    Arrays with a fourth channel carry class ids there (SC); their batches get labels and preservation masks.
    """

    images: dict[str, list[np.ndarray]]
    crop: int
    rng: np.random.Generator
    masks: tuple[tuple[MaskKind, float], ...] = ()
    """SC: (kind, weight) of the preservation masks drawn for labelled crops."""
    label_dropout: float = 0.0
    """SC: fraction of crops whose labels are withheld (-1)."""

    @property
    def channels(self) -> int:
        """3 (RGB), or 4 (RGB + class id) for labelled crops."""
        return next(iter(self.images.values()))[0].shape[2]

    @classmethod
    def load(cls, sources: dict[str, list[Path]], crop: int, seed: int, max_side: int = 1920) -> CropSampler:
        images = {name: [load_rgb(p, max_side) for p in files] for name, files in sources.items()}
        images = {name: [a for a in arrays if min(a.shape[:2]) >= crop] for name, arrays in images.items()}
        return cls(images={n: a for n, a in images.items() if a}, crop=crop, rng=np.random.default_rng(seed))

    @classmethod
    def load_labelled(
        cls,
        pairs: list[tuple[Path, Path]],
        crop: int,
        seed: int,
        masks: tuple[tuple[MaskKind, float], ...],
        label_dropout: float,
    ) -> CropSampler:
        """Frames with their label maps (CamVid), stacked as RGB + class id."""
        arrays = [np.dstack([load_rgb(image), load_labels(labels)]) for image, labels in pairs]
        arrays = [a for a in arrays if min(a.shape[:2]) >= crop]
        return cls({"camvid": arrays}, crop, np.random.default_rng(seed), masks, label_dropout)

    def summary(self) -> dict[str, int]:
        """Images per source, recorded with the checkpoint and the exported model."""
        return {name: len(arrays) for name, arrays in self.images.items()}

    def batch(self, size: int) -> Sample:
        names = list(self.images)
        crops = np.empty((size, self.crop, self.crop, self.channels), dtype=np.uint8)
        for i in range(size):
            arrays = self.images[names[self.rng.integers(len(names))]]
            image = arrays[self.rng.integers(len(arrays))]
            top = self.rng.integers(image.shape[0] - self.crop + 1)
            left = self.rng.integers(image.shape[1] - self.crop + 1)
            crop = image[top : top + self.crop, left : left + self.crop]
            crops[i] = crop[:, ::-1] if self.rng.random() < 0.5 else crop
        images = to_tensor(crops[..., :3])
        if self.channels == 3:
            return Sample(images)
        labels = crops[..., 3].astype(np.int64)
        keep = np.stack([random_mask(crop_labels, self.masks, self.rng) for crop_labels in labels])
        labels[self.rng.random(size) < self.label_dropout] = -1
        return Sample(images, torch.from_numpy(labels), torch.from_numpy(keep[:, None]).float())
