"""Add int8 variants of an exported model's graphs, for the CPU.

    python -m models.quantize service/zoo/gc-small                       # CamVid train, photos 000-029
    python -m models.quantize service/zoo/gc-small --extra-data data/fhd  # and another folder of photos

Most of the multiply-adds sit in the graphs' inner convolutions (the generator's residual body and up-sampling,
the encoder's strided layers), and a CPU with int8 dot-product instructions (VNNI) runs those much faster in
int8 than in float32 (docs/performance.md). They are quantised statically, in onnxruntime's QDQ format:
per-channel weights of 7 bits (`reduce_range`, so that CPUs without VNNI, whose 8-bit multiply-add pairs saturate
at 16 bits, compute the same), and uint8 activations whose ranges are calibrated on the inputs the codec's own
pipeline gives each graph for training images (up to --per-source of each source), at every rate point. The
convolutions that read a graph's input or write its output stay float: the image's 256 levels and the latent's
few are where quantisation steps would show.

The int8 graphs are written beside the float ones and named in the manifest (graphs.encoder_int8,
graphs.generator_int8; `int8` records the PSNR of a round trip through them and through the float graphs), which
changes the model's fingerprint. The float graphs stay: GPUs run them, the CPU does with `--no-int8`, and
training resumes from their weights (models/checkpoint.py). Only training images are used; GC models only (an SC
generator is also fed masks and label maps). Hybrid models (service/codec/base.py) have one graph, the upscaler,
calibrated on the decoded AVIF bases of the same images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from models.data import load_rgb_within, training_sources
from service.codec.container import unpack
from service.codec.imageio import DEFAULT_MAX_PIXELS
from service.codec.manifest import INT8_SUFFIX, MANIFEST_NAME, load_manifest, manifest_text, sha256_file
from service.codec.model import Model, RuntimeOptions
from service.codec.pipeline import compress, decompress, reconstruct
from service.codec.registry import Registry

MAX_LOSS_DB = 0.25
"""The int8 graphs are refused when they compress and decompress with more than this less PSNR than the float ones."""
FIDELITY_IMAGES = 8
"""Calibration images (evenly spread) on which that is measured, at the default rate point."""
CALIBRATION_BATCH = 16
"""Graph runs whose activations the calibrator holds before folding them into its ranges (bounds memory)."""


class FeedRecorder(Model):
    """The float model, keeping every input its graphs are given: the pipeline's own, as calibration data. Only
    the generator's inputs are wanted, so it is not run: the pipeline gets a blank image of the right size."""

    def __init__(self, model_dir: Path) -> None:
        options = RuntimeOptions(providers=("CPUExecutionProvider",), int8=False, tile_pixels=2**31 - 1)
        super().__init__(load_manifest(model_dir), options)
        self.feeds: dict[str, list[dict[str, np.ndarray]]] = {graph: [] for graph in self.manifest.graphs}
        self.recording = set(self.manifest.graphs)
        """The graphs whose inputs are kept; shared, like `feeds`, with this model's rate points."""

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if graph in self.recording:
            self.feeds[graph].append(feeds)
        if graph == "generator":
            rows, columns = feeds["latent"].shape[2:]
            factor = self.manifest.downsampling
            return np.zeros((1, 3, rows * factor, columns * factor), np.float32)
        return super()._run(graph, feeds)


def graph_feeds(model_dir: Path, images: list[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each graph's inputs when each image is compressed and decompressed at each of the model's rate points."""
    recorder = FeedRecorder(model_dir)
    if recorder.manifest.conditioned:
        raise ValueError(f"{model_dir}: an SC model; only GC models are quantised")
    for point in recorder.rate_points():
        for pixels in images:
            reconstruct(unpack(compress(pixels, point), DEFAULT_MAX_PIXELS), point)
        recorder.recording.discard("encoder")  # its inputs are the same at every rate point
    return recorder.feeds


def inner_convolutions(graph: onnx.GraphProto) -> list[str]:
    """Conv nodes that neither read a graph input nor write the output without another Conv in between."""
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initialisers = {tensor.name for tensor in graph.initializer}
    inputs = {value.name for value in graph.input} - initialisers
    outputs = {value.name for value in graph.output}

    def reaches(start: list[str], ends: set[str], step: Callable[[str], list[str]]) -> bool:
        seen, todo = set(), list(start)
        while todo:
            name = todo.pop()
            if name in ends:
                return True
            if name in seen:
                continue
            seen.add(name)
            todo += step(name)
        return False

    def upstream(name: str) -> list[str]:
        node = producers.get(name)
        return [] if node is None or node.op_type == "Conv" else [i for i in node.input if i not in initialisers]

    def downstream(name: str) -> list[str]:
        return [out for node in consumers.get(name, []) if node.op_type != "Conv" for out in node.output]

    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv"
        and not reaches([node.input[0]], inputs, upstream)
        and not reaches(list(node.output), outputs, downstream)
    ]


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def float32_graph(path: Path, out: Path) -> None:
    """The graph with its float16-stored weights folded to float32 constants, as the quantiser needs them."""
    settings = ort.SessionOptions()
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    settings.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])


def round_trip_psnr(model_dir: Path, images: list[np.ndarray], int8: bool) -> float:
    """PSNR of `images` compressed and decompressed at the default rate point, over them together."""
    model = Model(load_manifest(model_dir), RuntimeOptions(providers=("CPUExecutionProvider",), int8=int8))
    squared = sum(
        float(np.sum((decompress(compress(pixels, model), Registry([model])).astype(np.float64) - pixels) ** 2))
        for pixels in images
    )
    return float(10 * np.log10(255**2 / max(squared / sum(pixels.size for pixels in images), 1e-12)))


def quantize(model_dir: Path, images: list[np.ndarray], max_loss_db: float = MAX_LOSS_DB) -> dict[str, object]:
    """Write int8 variants of `model_dir`'s graphs calibrated on `images` and name them in the manifest; returns
    the manifest's int8 record. Nothing in `model_dir` changes if they lose more than `max_loss_db` of PSNR."""
    feeds = graph_feeds(model_dir, images)
    with tempfile.TemporaryDirectory() as work:
        trial = shutil.copytree(model_dir, Path(work) / model_dir.name)
        data = json.loads((trial / MANIFEST_NAME).read_text())
        graphs = load_manifest(model_dir).graphs
        for graph in graphs:
            source = trial / data["graphs"][graph]["file"]
            data["graphs"][graph + INT8_SUFFIX] = _quantise_graph(source, trial, feeds[graph], Path(work))
        (trial / MANIFEST_NAME).write_text(manifest_text(data))
        measured = images[:: max(1, len(images) // FIDELITY_IMAGES)]
        psnr = {int8: round_trip_psnr(trial, measured, int8) for int8 in (False, True)}
        if psnr[False] - psnr[True] > max_loss_db:
            raise ValueError(
                f"the int8 graphs lose {psnr[False] - psnr[True]:.2f} dB of PSNR (float {psnr[False]:.2f} dB, "
                f"int8 {psnr[True]:.2f} dB; at most {max_loss_db} allowed)"
            )
        data["int8"] = {
            "calibration_images": len(images),
            "psnr_db": {"images": len(measured), "float": round(psnr[False], 3), "int8": round(psnr[True], 3)},
        }
        for graph in graphs:
            name = data["graphs"][graph + INT8_SUFFIX]["file"]
            shutil.copyfile(trial / name, model_dir / name)
    (model_dir / MANIFEST_NAME).write_text(manifest_text(data))
    load_manifest(model_dir)
    return data["int8"]


def _quantise_graph(source: Path, model_dir: Path, feeds: list[dict[str, np.ndarray]], work: Path) -> dict[str, object]:
    """Write the int8 variant of the graph file `source` into `model_dir`; returns its manifest entry."""
    graph = source.stem
    folded, name = work / f"{graph}.float32.onnx", f"{graph}.int8.onnx"
    float32_graph(source, folded)
    folded_graph = onnx.load(str(folded)).graph
    nodes = inner_convolutions(folded_graph)
    quantize_static(
        str(folded),
        str(model_dir / name),
        _Feeds(feeds),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        nodes_to_quantize=nodes,
        extra_options={"CalibMaxIntermediateOutputs": CALIBRATION_BATCH},
    )
    return {
        "file": name,
        "sha256": sha256_file(model_dir / name),
        "int8_convolutions": len(nodes),
        "convolutions": sum(node.op_type == "Conv" for node in folded_graph.node),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--extra-data", type=Path, action="append", default=[], help="another folder of photos")
    parser.add_argument("--per-source", type=int, default=32, help="images from each source, evenly spread")
    parser.add_argument("--max-pixels", type=int, default=250_000, help="downscale larger images to this")
    parser.add_argument("--max-loss", type=float, default=MAX_LOSS_DB, help="refuse int8 graphs losing more dB")
    args = parser.parse_args(argv)
    sources = training_sources(extra=args.extra_data).values()
    files = [path for paths in sources for path in paths[:: max(1, len(paths) // args.per_source)]]
    try:
        record = quantize(args.model_dir, [load_rgb_within(path, args.max_pixels) for path in files], args.max_loss)
    except ValueError as error:
        parser.exit(1, f"models.quantize: {error}\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
