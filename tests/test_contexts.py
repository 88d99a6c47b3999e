"""Context tables fitted to a model's symbols: installed in the manifest, part of the fingerprint, validated."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from selective_support import street_labels

from models.contexts import fit
from service.codec import InvalidModel, Registry, load_manifest
from service.codec.model import Model
from service.codec.pipeline import compress, decompress


@pytest.fixture(scope="module")
def fitted_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("fitted") / "gc-tiny"
    shutil.copytree(model_dir, copy)
    rng = np.random.default_rng(0)
    smooth = [np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 16, 0), 16, 1) for _ in range(4)]
    fit(copy, smooth)
    return copy


def test_fitted_tables_change_the_fingerprint_and_files_round_trip(
    fitted_dir: Path, model_dir: Path, make_image: Callable[..., np.ndarray]
) -> None:
    manifest = load_manifest(fitted_dir)
    assert len(manifest.context_frequencies) == manifest.latent_channels
    assert manifest.fingerprint() != load_manifest(model_dir).fingerprint()
    model = Model(manifest)
    image = make_image(70, 90, 5)
    data = compress(image, model)
    assert decompress(data, Registry([model])).shape == image.shape
    assert compress(image, model) == data


def test_fitting_never_models_the_counted_symbols_worse_than_the_static_tables(
    model_dir: Path, tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "gc-tiny")
    result = fit(copy, [make_image(96, 128, seed) for seed in range(3)])
    assert result["bpp_contexts"] <= result["bpp_static"] + 1e-3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda contexts: contexts.update(kind="left"), "kind"),
        (lambda contexts: contexts["frequencies"][0].pop(), "tables per latent channel"),
        (lambda contexts: contexts["frequencies"][1][3].__setitem__(0, 0), "integers >= 1"),
    ],
)
def test_invalid_context_tables_are_refused(
    fitted_dir: Path, tmp_path: Path, change: Callable[[dict], object], message: str
) -> None:
    copy = shutil.copytree(fitted_dir, tmp_path / "gc-tiny")
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest["entropy"]["contexts"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidModel, match=message):
        load_manifest(copy)


def test_sc_fit_counts_the_kept_cells_and_sc_files_round_trip(
    sc_model_dir: Path, tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    copy = shutil.copytree(sc_model_dir, tmp_path / "sc-tiny")
    images = [make_image(96, 128, seed) for seed in range(2)]
    result = fit(copy, images, [street_labels(96, 128)] * 2, ["road", "sky"])
    assert result["bpp_contexts"] <= result["bpp_static"] + 1e-3
    model = Model(load_manifest(copy))
    image = make_image(96, 128, 7)
    data = compress(image, model, labels=street_labels(96, 128), synthesize=["road", "sky"])
    assert decompress(data, Registry([model])).shape == image.shape
