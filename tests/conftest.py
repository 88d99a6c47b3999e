"""Shared fixtures: tiny random-weight models exported through the real export path (torch is only needed here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.codec import Model, Registry, load_manifest

MODEL_ID = "gc-tiny"


def _export(out_dir: Path, model_id: str, seed: int, noise_channels: int = 0) -> Path:
    torch = pytest.importorskip("torch")
    from models.codec import GenerativeCodec
    from models.config import CONFIGS
    from models.export import export_model

    torch.manual_seed(seed)
    config = dataclasses.replace(CONFIGS["tiny"].model, noise_channels=noise_channels)
    export_model(GenerativeCodec(config), out_dir, model_id, metrics={"seed": seed})
    return out_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gc-tiny, seed 0: the model most tests compress with."""
    return _export(tmp_path_factory.mktemp("zoo") / MODEL_ID, MODEL_ID, seed=0)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same id and architecture as gc-tiny but other weights: files from one must not decode with the other."""
    return _export(tmp_path_factory.mktemp("other-zoo") / MODEL_ID, MODEL_ID, seed=1)


@pytest.fixture(scope="session")
def noisy_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with two noise channels, to exercise the seeded noise path."""
    return _export(tmp_path_factory.mktemp("noisy-zoo") / "gc-tiny-noise", "gc-tiny-noise", seed=2, noise_channels=2)


@pytest.fixture(scope="session")
def model(model_dir: Path) -> Model:
    return Model(load_manifest(model_dir))


@pytest.fixture(scope="session")
def registry(model: Model) -> Registry:
    return Registry([model])


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A gradient plus noise, so the latent's symbols are not all alike."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_image() -> Callable[..., np.ndarray]:
    """make_image(height, width, seed=0) -> RGB uint8 test content."""
    return _image
