"""Measures that need downloaded network weights: LPIPS (per image) and patch FID (per codec setting, over a set).

Nothing here downloads anything. Each measure runs only when its package is installed and its weights are already in
torch's hub cache (`torch.hub.get_dir()/checkpoints`, i.e. ~/.cache/torch/hub/checkpoints unless TORCH_HOME says
otherwise); the check looks at files only, so no network access is attempted. Where they are missing, the status
functions say why and the harness records the measure as not run.

- LPIPS (Zhang et al. 2018), `pip install lpips` (with a torchvision matching the installed torch): its linear
  layers ship inside the package, the AlexNet backbone is torchvision's ImageNet checkpoint (alexnet-owt-7be5be79.pth).
- FID (Heusel et al. 2017) on 256x256 patches as in HiFiC (Mentzer et al. 2020): `pip install pytorch-fid`, with its
  Inception weights (pt_inception-2015-12-05-6726825d.pth). One value per codec setting over all patches of a set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np

LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"
FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FID_PATCH = 256


def checkpoint_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _missing(packages: tuple[str, ...], weights: str) -> str | None:
    for package in packages:
        if importlib.util.find_spec(package) is None:
            return f"package {package!r} is not installed"
    if not (checkpoint_dir() / weights).is_file():
        return f"weights {weights} are not in {checkpoint_dir()} (they are a download)"
    return None


def lpips_status() -> str | None:
    """None when LPIPS can run from local files only, else the reason it cannot."""
    return _missing(("lpips", "torchvision"), LPIPS_BACKBONE)


def fid_status() -> str | None:
    """None when patch FID can run from local files only, else the reason it cannot."""
    return _missing(("pytorch_fid", "torchvision"), FID_WEIGHTS)


def _tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


class Lpips:
    """LPIPS (AlexNet, v0.1) between an original and its reconstruction: 0 = identical, larger = less alike."""

    def __init__(self) -> None:
        reason = lpips_status()
        if reason:
            raise RuntimeError(f"LPIPS cannot run: {reason}")
        import lpips

        with contextlib.redirect_stdout(io.StringIO()):
            self.model = lpips.LPIPS(net="alex", verbose=False).eval()

    def __call__(self, original: np.ndarray, decoded: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            return float(self.model(_tensor(original), _tensor(decoded), normalize=True).item())


def fid_patches(image: np.ndarray, size: int = FID_PATCH) -> np.ndarray:
    """HiFiC's patches: a grid of size x size tiles, and the same grid shifted by half a tile; (n, size, size, 3)."""
    tiles = []
    for offset in (0, size // 2):
        for top in range(offset, image.shape[0] - size + 1, size):
            for left in range(offset, image.shape[1] - size + 1, size):
                tiles.append(image[top : top + size, left : left + size])
    return np.stack(tiles) if tiles else np.empty((0, size, size, 3), np.uint8)


class FidFeatures:
    """Inception-v3 pool features (2048 per patch) of an image's patches, for frechet_distance over a set."""

    def __init__(self) -> None:
        reason = fid_status()
        if reason:
            raise RuntimeError(f"FID cannot run: {reason}")
        from pytorch_fid.inception import InceptionV3

        self.model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        patches = fid_patches(image)
        if not len(patches):
            return np.empty((0, 2048), np.float32)
        batch = torch.from_numpy(patches.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        with torch.no_grad():
            features = self.model(batch)[0]
        return features.reshape(len(patches), -1).numpy().astype(np.float32)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d): |mu_a - mu_b|^2 + tr(S_a + S_b -
    2 (S_a S_b)^1/2), the square root's trace taken as that of the symmetric S_a^1/2 S_b S_a^1/2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None))))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
