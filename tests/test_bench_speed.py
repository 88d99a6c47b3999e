"""bench.speed on a hybrid model (a tiny random-weight export through the real export path): its floor counts the
upscaler alone, at the base image's resolution; its paths are timed stage by stage without changing what they do;
its session-option and seam checks run on its one graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import speed
from service.codec import Model, Registry, RuntimeOptions, compress, decompress, load_manifest
from service.codec.base import BaseLayer

torch = pytest.importorskip("torch")

from models.export_hybrid import export_hybrid  # noqa: E402
from models.upscaler import CompactUpscaler, UpscalerConfig  # noqa: E402

FEATURES, CONVOLUTIONS = 8, 2


def gradient(height: int, width: int) -> np.ndarray:
    """Colour gradients with some texture: an AVIF file of it grows with the quality, as a photo's does."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = 25 * np.sin(x / 3) * np.cos(y / 5)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], axis=-1)
    return np.clip(base + texture[..., None], 0, 255).astype(np.uint8)


def export(out_dir: Path, back_projection: bool = True) -> Path:
    torch.manual_seed(0)
    config = UpscalerConfig(features=FEATURES, convolutions=CONVOLUTIONS, back_projection=back_projection)
    export_hybrid(CompactUpscaler(config), out_dir, out_dir.name, BaseLayer(factor=4))
    return out_dir


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tmp_path_factory.mktemp("speed-zoo") / "gc-hybrid-tiny")


def test_the_floor_counts_the_upscalers_convolutions_per_base_pixel(tmp_path: Path) -> None:
    model = Model(load_manifest(export(tmp_path / "gc-hybrid-plain", back_projection=False)))
    first, inner, last = 3 * 9 * FEATURES, FEATURES * 9 * FEATURES, FEATURES * 9 * 3 * 4**2
    assert model.manifest.graphs == ("generator",)
    assert speed.multiply_adds(model, "generator") == first + CONVOLUTIONS * inner + last


def test_the_stage_clock_counts_a_hybrid_compressions_avif_encodes_without_changing_its_file(hybrid_dir: Path) -> None:
    image = gradient(480, 640)
    expected = compress(image, Model(load_manifest(hybrid_dir)))
    model = Model(load_manifest(hybrid_dir))
    clock = speed.StageClock(model)
    data = compress(image, model)
    seconds, calls = clock.take()
    assert data == expected
    assert calls["reduction"] == 1 and calls["AVIF encode"] >= 2 and "generator" not in calls
    decompress(data, Registry([model]))
    seconds, calls = clock.take()
    assert calls == {"AVIF decode": 1, "generator": 1}
    assert all(value > 0 for value in seconds.values())


def test_the_table_gives_a_hybrid_models_stages_and_its_upscalers_floor(
    hybrid_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 1e10
    monkeypatch.setattr(speed, "matmul_rate", lambda threads: {"onnxruntime": rate, "numpy": rate / 2})
    source, out = tmp_path / "photo.png", tmp_path / "performance.md"
    Image.fromarray(gradient(480, 640)).save(source)
    arguments = ["--model-dir", str(hybrid_dir), "--image", str(source), "--sizes", "640x480", "--repeat", "1"]
    assert speed.main([*arguments, "--no-references", "--no-gpu", "--threads", "1", "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| 640x480 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    compress_cell, decompress_cell, floor, _, tiles = cells[1:6]
    encodes = int(compress_cell.split(", ")[1].split()[0])
    decompressed, stages = decompress_cell.split(" ", 1)
    assert encodes >= 2
    assert sum(map(float, stages.strip("()").split(" + "))) == pytest.approx(float(decompressed), abs=0.002)
    per_pixel = speed.multiply_adds(Model(load_manifest(hybrid_dir)), "generator")
    assert float(floor) == pytest.approx(per_pixel * 160 * 120 / rate, abs=0.0005)
    assert tiles == "1"


def test_the_options_child_times_a_hybrids_one_graph(hybrid_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speed.options_child(str(hybrid_dir), json.dumps({"intra_op_threads": 1}), "1")
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(measured) == {"generator", "peak_mib", "resident_mib"}
    assert list(speed.option_variants(load_manifest(hybrid_dir))) == [
        "default: memory arena shrunk after each run",
        "no memory arena (the system allocator)",
        "1 thread",
    ]


def test_the_seam_check_finds_no_seams_where_a_hybrids_upscaler_tiles_meet(hybrid_dir: Path, tmp_path: Path) -> None:
    model = Model(load_manifest(hybrid_dir), RuntimeOptions(tile_pixels=256 * 256))
    image = gradient(700, 1000)
    data = compress(image, model)
    seam = speed.seam_check(model, data, decompress(data, Registry([model])), image, 128, tmp_path / "crop.png")
    assert seam["max_difference"] == 0
    tiles, kind = str(seam["tiles"]).split(" ", 1)
    assert int(tiles) > 1 and kind.startswith("upscaler tiles (halo ")
    assert (tmp_path / "crop.png").is_file()
