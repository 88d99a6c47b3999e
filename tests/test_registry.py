"""Model directories: manifest validation, fingerprints, discovery and the default model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.codec import Header, InvalidModel, ModelMismatch, Registry, UnknownModel, load_manifest


def _copy(model_dir: Path, destination: Path, **changes) -> Path:
    """A copy of a model directory with top-level manifest fields replaced."""
    shutil.copytree(model_dir, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest.update(changes)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_manifest_is_read(model_dir):
    manifest = load_manifest(model_dir)
    assert manifest.id == "gc-tiny"
    assert manifest.latent_channels == 8 and len(manifest.centres) == 5 and manifest.downsampling == 16
    assert len(manifest.fingerprint()) == 8


def test_fingerprint_ignores_free_form_fields_but_not_tables(model_dir, tmp_path):
    original = load_manifest(model_dir).fingerprint()
    assert load_manifest(_copy(model_dir, tmp_path / "a", metrics={"psnr": 1}, version="2")).fingerprint() == original
    tables = load_manifest(model_dir).frequencies
    skewed = [[row[0] + 1000, row[1] - 1000, *row[2:]] for row in tables]
    changed = _copy(model_dir, tmp_path / "b", entropy={"precision": 16, "frequencies": skewed})
    assert load_manifest(changed).fingerprint() != original


def test_fingerprint_differs_between_weights(model_dir, other_model_dir):
    assert load_manifest(model_dir).fingerprint() != load_manifest(other_model_dir).fingerprint()


def test_tampered_graph_is_refused(model_dir, tmp_path):
    copy = _copy(model_dir, tmp_path / "m")
    with (copy / "generator.onnx").open("ab") as file:
        file.write(b"\x00")
    with pytest.raises(InvalidModel, match="sha256"):
        load_manifest(copy)


def test_missing_graph_is_refused(model_dir, tmp_path):
    copy = _copy(model_dir, tmp_path / "m")
    (copy / "encoder.onnx").unlink()
    with pytest.raises(InvalidModel, match=r"encoder\.onnx"):
        load_manifest(copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "other"}, "format"),
        ({"id": "bad id"}, "id"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"latent_channels": True}, "latent_channels"),
        ({"centres": [1.0, 0.0, 2.0, 3.0, 4.0]}, "increasing"),
        ({"modes": ["xx"]}, "modes"),
        ({"entropy": {"precision": 16, "frequencies": [[1, 1, 1, 1, 65532]]}}, "one table per latent channel"),
        ({"graphs": {"encoder": {"file": "../encoder.onnx", "sha256": "0" * 64}}}, "inside the model directory"),
    ],
)
def test_invalid_manifest_is_refused(model_dir, tmp_path, changes, message):
    with pytest.raises(InvalidModel, match=message):
        load_manifest(_copy(model_dir, tmp_path / "m", **changes))


def test_missing_field_is_named(model_dir, tmp_path):
    copy = _copy(model_dir, tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["centres"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidModel, match="missing field 'centres'"):
        load_manifest(copy)


def test_discovery_takes_a_model_directory_or_a_folder_of_them(model_dir):
    for root in (model_dir, model_dir.parent):
        registry = Registry.discover([root], include_zoo=False)
        assert [model.id for model in registry] == ["gc-tiny"]


def test_default_is_the_only_model_or_the_configured_one(model_dir, noisy_model_dir):
    assert Registry.discover([model_dir], include_zoo=False).get().id == "gc-tiny"
    both = Registry.discover([model_dir, noisy_model_dir], include_zoo=False)
    with pytest.raises(UnknownModel, match="several models"):
        both.get()
    assert both.get("gc-tiny-noise").id == "gc-tiny-noise"
    configured = Registry.discover([model_dir, noisy_model_dir], include_zoo=False, default_id="gc-tiny-noise")
    assert configured.get().id == "gc-tiny-noise"


def test_unknown_model_lists_the_installed_ones(registry):
    with pytest.raises(UnknownModel, match="'gc-nope' is not installed; installed: gc-tiny"):
        registry.get("gc-nope")
    with pytest.raises(UnknownModel, match="no models are installed"):
        Registry([]).get()


def test_header_finds_its_model_by_fingerprint(model_dir, other_model_dir):
    registry = Registry.discover([model_dir, other_model_dir], include_zoo=False)
    other = load_manifest(other_model_dir)
    header = Header("gc-tiny", other.fingerprint(), 16, 16)
    assert registry.get().manifest.directory == model_dir.resolve()  # the first directory wins for compression
    assert registry.for_header(header).manifest.directory == other_model_dir.resolve()
    with pytest.raises(ModelMismatch, match="different model"):
        registry.for_header(Header("gc-tiny", bytes(8), 16, 16))
