"""The int8 graphs (models/quantize.py): what they quantise, that the CPU runs them, and how faithfully."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.codec import GenerativeCodec
from models.config import CONFIGS
from models.export import export_model
from models.quantize import quantize
from service.cli import main
from service.codec import (
    MIN_TILE_PIXELS,
    InvalidModel,
    Model,
    Registry,
    RuntimeOptions,
    compress,
    decode_image,
    decompress,
    encode_png,
    load_manifest,
)
from service.codec.manifest import GRAPHS, INT8_SUFFIX

SMALL_TILES = RuntimeOptions(intra_op_threads=1, tile_pixels=MIN_TILE_PIXELS)


@pytest.fixture(scope="module")
def quantised_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory, make_image: Callable) -> Path:
    copy = shutil.copytree(model_dir, tmp_path_factory.mktemp("int8") / "gc-tiny")
    quantize(copy, [make_image(96, 128, seed) for seed in range(3)], max_loss_db=100.0)
    return copy


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-12)))


@pytest.mark.parametrize("graph", ["encoder", "generator"])
def test_only_the_inner_convolutions_become_int8(quantised_dir: Path, graph: str) -> None:
    nodes = onnx.load(str(quantised_dir / f"{graph}.int8.onnx")).graph.node
    producers = {output: node for node in nodes for output in node.output}
    convs = [node for node in nodes if node.op_type == "Conv"]  # in topological order
    int8 = [conv.name for conv in convs if getattr(producers.get(conv.input[0]), "op_type", "") == "DequantizeLinear"]
    assert convs[0].name not in int8, "the convolution that reads the graph's input stays float"
    assert convs[-1].name not in int8, "the one that writes its output too"
    assert 2 * len(int8) >= len(convs)
    entry = json.loads((quantised_dir / "manifest.json").read_text())["graphs"][graph + INT8_SUFFIX]
    assert (entry["int8_convolutions"], entry["convolutions"]) == (len(int8), len(convs))


def test_the_cpu_runs_the_int8_graphs_and_decodes_close_to_the_float_ones(
    quantised_dir: Path, make_image: Callable[..., np.ndarray]
) -> None:
    manifest = load_manifest(quantised_dir)
    int8 = Model(manifest, RuntimeOptions(intra_op_threads=1, providers=("CPUExecutionProvider",)))
    exact = Model(manifest, RuntimeOptions(intra_op_threads=1, int8=False))
    assert [int8.runs(graph) for graph in GRAPHS] == ["encoder_int8", "generator_int8"]
    assert [exact.runs(graph) for graph in GRAPHS] == list(GRAPHS)
    image = make_image(80, 112, 7)
    data = compress(image, int8)
    quantised, reference = decompress(data, Registry([int8])), decompress(data, Registry([exact]))
    assert not np.array_equal(quantised, reference)
    assert _psnr(quantised, reference) > 35, "the same file decodes within a few grey levels"


def test_gpu_sessions_run_the_float_graphs(quantised_dir: Path) -> None:
    options = RuntimeOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert [Model(load_manifest(quantised_dir), options).runs(graph) for graph in GRAPHS] == list(GRAPHS)


def test_the_int8_graphs_are_part_of_the_fingerprint(quantised_dir: Path, model_dir: Path) -> None:
    assert load_manifest(quantised_dir).fingerprint() != load_manifest(model_dir).fingerprint()


def test_tiled_int8_decoding_equals_the_whole_run(quantised_dir: Path, make_image: Callable[..., np.ndarray]) -> None:
    manifest = load_manifest(quantised_dir)
    whole, tiled = Model(manifest, RuntimeOptions(intra_op_threads=1)), Model(manifest, SMALL_TILES)
    data = compress(make_image(300, 410), whole)
    np.testing.assert_array_equal(decompress(data, Registry([tiled])), decompress(data, Registry([whole])))


@pytest.mark.parametrize("graph", ["encoder", "generator"])
def test_a_changed_int8_graph_is_refused(quantised_dir: Path, tmp_path: Path, graph: str) -> None:
    copy = shutil.copytree(quantised_dir, tmp_path / "gc-tiny")
    graph = copy / f"{graph}.int8.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(InvalidModel, match="sha256"):
        load_manifest(copy)


def test_unfaithful_int8_graphs_are_refused_and_nothing_is_written(
    model_dir: Path, tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "gc-tiny")
    before = {path.name: path.read_bytes() for path in copy.iterdir()}
    with pytest.raises(ValueError, match=r"lose .* dB of PSNR"):
        quantize(copy, [make_image(64, 64)], max_loss_db=-100.0)
    assert {path.name: path.read_bytes() for path in copy.iterdir()} == before


def test_selective_models_are_not_quantised(sc_model_dir: Path, tmp_path: Path, make_image: Callable) -> None:
    copy = shutil.copytree(sc_model_dir, tmp_path / "sc-tiny")
    with pytest.raises(ValueError, match="SC model"):
        quantize(copy, [make_image(64, 64)])


def test_the_cli_runs_the_float_graphs_when_told(
    quantised_dir: Path, tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    source = tmp_path / "a.png"
    source.write_bytes(encode_png(make_image(80, 112, 3)))
    common = ["--model-dir", str(quantised_dir), "--threads", "1", "--no-int8"]
    assert main(["compress", *common, "--model", "gc-tiny", str(source), "-o", str(tmp_path / "a.gcx")]) == 0
    assert main(["decompress", *common, str(tmp_path / "a.gcx"), "-o", str(tmp_path / "a-out.png")]) == 0
    exact = Model(load_manifest(quantised_dir), RuntimeOptions(intra_op_threads=1, int8=False))
    data = compress(make_image(80, 112, 3), exact)
    assert (tmp_path / "a.gcx").read_bytes() == data
    decoded = decode_image((tmp_path / "a-out.png").read_bytes()).pixels
    np.testing.assert_array_equal(decoded, decompress(data, Registry([exact])))


def test_int8_decoding_in_parallel_equals_decoding_one_at_a_time(
    quantised_dir: Path, make_image: Callable[..., np.ndarray]
) -> None:
    model = Model(load_manifest(quantised_dir), RuntimeOptions(intra_op_threads=2))
    registry = Registry([model])
    files = [compress(make_image(96, 128, seed), model) for seed in range(4)]
    alone = [decompress(data, registry) for data in files]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda data: decompress(data, registry), files * 3))
    for index, pixels in enumerate(together):
        np.testing.assert_array_equal(pixels, alone[index % len(files)])


def test_a_new_export_drops_the_int8_graphs_of_the_old_one(quantised_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(quantised_dir, tmp_path / "gc-tiny")
    torch.manual_seed(9)
    export_model(GenerativeCodec(CONFIGS["tiny"].model), copy, "gc-tiny")
    assert not list(copy.glob("*.int8.onnx"))
    assert set(load_manifest(copy).graph_files) == set(GRAPHS)


def test_quantising_again_replaces_the_int8_graphs(quantised_dir: Path, tmp_path: Path, make_image: Callable) -> None:
    copy = shutil.copytree(quantised_dir, tmp_path / "gc-tiny")
    quantize(copy, [make_image(96, 128, 11)], max_loss_db=100.0)
    manifest = load_manifest(copy)
    assert set(manifest.graph_files) == {*GRAPHS, *(graph + INT8_SUFFIX for graph in GRAPHS)}
