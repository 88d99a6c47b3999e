"""Shared fixtures: tiny random-weight models exported through the real export path (torch is only needed here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.codec import Model, Registry, load_manifest

MODEL_ID = "gc-tiny"
SC_MODEL_ID = "sc-tiny"


def _export(out_dir: Path, model_id: str, seed: int, config_name: str = "tiny", **changes: object) -> Path:
    torch = pytest.importorskip("torch")
    from models.codec import GenerativeCodec
    from models.config import CONFIGS
    from models.export import export_model

    torch.manual_seed(seed)
    config = dataclasses.replace(CONFIGS[config_name].model, **changes)
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
def nested_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gc-nested: four latent channels with nested rate points coding 2 (the default) or 4 of them."""
    out_dir = tmp_path_factory.mktemp("nested-zoo") / "gc-nested"
    return _export(out_dir, "gc-nested", 5, latent_channels=4, rate_channels=(2, 4), default_channels=2)


@pytest.fixture(scope="session")
def sc_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sc-tiny: a selective model (CamVid's 12 classes, label map at 1/16), random weights."""
    return _export(tmp_path_factory.mktemp("sc-zoo") / SC_MODEL_ID, SC_MODEL_ID, seed=3, config_name="sc-tiny")


@pytest.fixture(scope="session")
def nested_sc_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sc-nested: sc-tiny with four latent channels and nested rate points coding 2 (the default) or 4."""
    out_dir = tmp_path_factory.mktemp("nested-sc-zoo") / "sc-nested"
    return _export(out_dir, "sc-nested", 6, "sc-tiny", latent_channels=4, rate_channels=(2, 4), default_channels=2)


@pytest.fixture(scope="session")
def contextual_sc_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sc-tiny-contexts: sc-tiny with context tables fitted to two images, as the shipped sc-small has them, so
    its kept symbols are coded wavefront by wavefront (service/codec/entropy.py)."""
    from models.contexts import fit

    out_dir = _export(
        tmp_path_factory.mktemp("contextual-sc-zoo") / "sc-tiny-contexts", "sc-tiny-contexts", 7, "sc-tiny"
    )
    fit(out_dir, [_image(64, 96, seed) for seed in range(2)])
    return out_dir


@pytest.fixture(scope="session")
def sc_model(sc_model_dir: Path) -> Model:
    return Model(load_manifest(sc_model_dir))


@pytest.fixture(scope="session")
def fine_sc_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """sc-tiny with its label map at 1/8 and two noise channels: the label grid is finer than the latent."""
    out_dir = tmp_path_factory.mktemp("fine-sc-zoo") / "sc-tiny-fine"
    _export(out_dir, "sc-tiny-fine", 4, "sc-tiny", label_downsampling=8, label_widths=(4, 4), noise_channels=2)
    return Model(load_manifest(out_dir))


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
