"""Selective compression (SC) with a hybrid model: the synthesised cells of the base hold their class's smoothed
colours (service/codec/fill.py), the budget shrinks with them, and the file decodes without mask or labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.codec import CorruptBitstream, InvalidModel, Registry, compress, decompress, load_manifest, unpack
from service.codec.base import BaseLayer
from service.codec.container import Header, Mode, pack
from service.codec.fill import fill_synthesised

torch = pytest.importorskip("torch")

from models.config import CAMVID_CLASSES  # noqa: E402
from models.export_hybrid import export_hybrid  # noqa: E402
from models.upscaler import CompactUpscaler, UpscalerConfig  # noqa: E402
from tests.test_hybrid import photo_like  # noqa: E402


@pytest.fixture(scope="module")
def hybrid_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same upscaler exported with CamVid's classes (gc and sc) and without (gc only)."""
    root = tmp_path_factory.mktemp("hybrid-sc")
    dirs = {}
    for name, classes in (("sc", CAMVID_CLASSES), ("gc", ())):
        torch.manual_seed(0)
        upscaler = CompactUpscaler(UpscalerConfig(features=8, convolutions=2))
        dirs[name] = root / f"hybrid-{name}"
        export_hybrid(upscaler, dirs[name], "hybrid", BaseLayer(), classes=classes)
    return dirs


@pytest.fixture(scope="module")
def registry(hybrid_dirs: dict[str, Path]) -> Registry:
    return Registry.discover([hybrid_dirs["sc"]], include_zoo=False)


def coarse_error(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute error of the 4x reductions over the 4x4 blocks where `where` (at 1/4) is True."""
    small = [np.asarray(Image.fromarray(x).reduce(4), np.float32) for x in (a, b)]
    return float(np.abs(small[0] - small[1])[where].mean())


def test_an_sc_file_keeps_the_masked_half_as_gc_does_in_fewer_bytes(registry: Registry) -> None:
    image = photo_like(192, 256, seed=5)
    mask = np.zeros((192, 256), bool)
    mask[:, :128] = True
    model = registry.get()
    gc_file, sc_file = compress(image, model), compress(image, model, mask=mask)
    assert unpack(sc_file, image.size).header.mode is Mode.SC
    assert len(sc_file) < 0.8 * len(gc_file)
    gc, sc = decompress(gc_file, registry), decompress(sc_file, registry)
    kept = np.zeros((48, 64), bool)
    kept[:, 4:28] = True  # away from the boundary, where the fill's AVIF blocks meet the kept ones
    assert coarse_error(image, sc, kept) < coarse_error(image, gc, kept) + 3
    detail = [np.abs(np.diff(x[:, 150:].astype(np.float32), axis=1)).mean() for x in (sc, gc)]
    assert detail[0] < detail[1]  # the synthesised half is smooth


def test_labels_with_classes_to_synthesise_decode_without_the_label_map(registry: Registry) -> None:
    image = photo_like(96, 128, seed=6)
    labels = np.zeros((96, 128), np.uint8)
    labels[48:] = CAMVID_CLASSES.index("road")
    data = compress(image, registry.get(), labels=labels, synthesize=["road"])
    bitstream = unpack(data, image.size)
    assert bitstream.labels is None and bitstream.header.mode is Mode.SC
    assert decompress(data, registry).shape == image.shape


def test_keeping_nothing_gives_a_small_file_that_decodes(registry: Registry) -> None:
    image = photo_like(480, 640, seed=7)
    data = compress(image, registry.get(), mask=np.zeros((480, 640), bool))
    assert len(data) < 0.5 * len(compress(image, registry.get()))
    assert decompress(data, registry).shape == image.shape


def test_an_sc_file_is_corrupt_for_a_hybrid_model_without_sc(hybrid_dirs: dict[str, Path]) -> None:
    gc_only = Registry.discover([hybrid_dirs["gc"]], include_zoo=False)
    model = gc_only.get()
    good = unpack(compress(photo_like(64, 64), model), 64 * 64)
    data = pack(Header(model.id, model.fingerprint, 64, 64, Mode.SC), good.payload)
    with pytest.raises(CorruptBitstream, match="mode sc"):
        decompress(data, gc_only)


def test_a_hybrid_file_with_a_label_section_is_corrupt(registry: Registry) -> None:
    model = registry.get()
    good = unpack(compress(photo_like(64, 64), model), 64 * 64)
    data = pack(Header(model.id, model.fingerprint, 64, 64, Mode.SC), good.payload, labels=b"\x00\x01")
    with pytest.raises(CorruptBitstream, match="no noise seed, detail or labels"):
        decompress(data, registry)


def test_classes_leave_a_hybrid_models_fingerprint_as_it_was(hybrid_dirs: dict[str, Path]) -> None:
    """The shipped gc-hybrid gained mode sc: the files it made before must still name it."""
    assert load_manifest(hybrid_dirs["sc"]).fingerprint() == load_manifest(hybrid_dirs["gc"]).fingerprint()


def test_a_hybrid_label_map_finer_than_the_base_is_refused(hybrid_dirs: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in hybrid_dirs["sc"].iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["label_downsampling"] = 2
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidModel, match="label_downsampling = factor"):
        load_manifest(broken)


def test_the_fill_keeps_kept_cells_and_gives_each_class_only_its_own_colours() -> None:
    rng = np.random.default_rng(0)
    small = np.zeros((40, 60, 3), np.uint8)
    small[:, :30] = rng.integers(0, 60, (40, 30, 3))  # class 0: dark
    small[:, 30:] = rng.integers(190, 256, (40, 30, 3))  # class 1: bright
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 1
    keep = np.zeros((40, 60), bool)
    keep[:10] = True
    filled = fill_synthesised(small, keep, labels)
    assert np.array_equal(filled[keep], small[keep])
    assert filled[10:, :30].max() < 60 and filled[10:, 30:].min() >= 190
    assert filled[10:].std(axis=(0, 1)).max() < small[10:].std(axis=(0, 1)).max()
    assert np.abs(filled[10:, 28:30].astype(int) - filled[10:, 30:32]).min() > 100  # the class edge stays sharp


def test_the_fill_of_one_colour_is_that_colour() -> None:
    small = np.full((16, 16, 3), (10, 120, 230), np.uint8)
    keep = np.zeros((16, 16), bool)
    keep[5:9, 5:9] = True
    assert np.array_equal(fill_synthesised(small, keep), small)
