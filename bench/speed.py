"""Speed and memory: the real compress and decompress paths per image size, against the hardware's floor and the
codecs users would otherwise pick.

    nice -n 19 python -m bench.speed --out docs/performance.md                       # the table (~10 minutes)
    nice -n 19 python -m bench.speed --large 8000x6000 --out docs/performance.md     # tiling: memory and seams

For each size (512x512, 768x512, 1920x1080, 3840x2160 by default) one photograph is resized to cover it and cropped,
saved as PNG, and then timed, median of --repeat runs after one warm-up run at that size:

- ours: `compress(PNG bytes)` -> .gcx and `decompress_png(.gcx)` -> PNG bytes, the paths the CLI and the service
  run, and within them the time of each stage (StageClock): the encoder and generator graphs of a latent model;
  the reduction, the AVIF encodes of the quality search (and how many), the AVIF decode and the upscaler (the
  `generator` graph) of a hybrid model;
- the floor: the model's graphs' multiply-adds (counted from the ONNX graphs' convolutions at that size: for a
  hybrid model the upscaler's, at the base image's resolution) over the machine's matrix-multiply rate, measured
  here (onnxruntime's MatMul and numpy's BLAS on 2048x2048 float32 matrices with the same threads, the faster);
- references, on the same PNG files: `avifenc` at its default speed and quality with as many jobs as our threads,
  and `avifdec` (Debian's libavif-bin; process start and PNG reading and writing included, as in ours), and
  HEVC intra in HEIF through pillow-heif (libheif + x265) at its default quality, in process;
- with a CUDA onnxruntime and a GPU, ours again on the GPU.

`--large WxH` compresses and decompresses one image of that size in a child process and reports its peak resident
memory against --budget-mib, then shows that the tiles leave no seams: the generator is run whole on a window
around a corner where four tiles meet, the result is compared with the tiled decode, and a crop is saved
(docs/images/tiling-crop.png: original left, decoded right, ticks where the tiles meet).

The model is the installed default (gc-hybrid-0.04 since it ships) unless --model-dir names one (`--model-dir
service/zoo/gc-small` for gc-small-c8); with --random it is a random-weight export of gc-small's configuration
(`models.config.SHIPPED`: same graphs and shapes; needs torch), for trying the script before training ends.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFilter

from bench.reporting import describe_machine, timestamp
from service.codec import (
    Bitstream,
    Manifest,
    Model,
    Registry,
    RuntimeOptions,
    compress,
    decode_image,
    decompress_png,
    detail,
    encode_png,
    load_manifest,
    unpack,
)
from service.codec.base import BaseLayer
from service.codec.container import pack
from service.codec.manifest import INT8_SUFFIX
from service.codec.pipeline import latent_size, plan_tiles
from service.codec.tiling import Tile

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SIZES = ((512, 512), (768, 512), (1920, 1080), (3840, 2160))
"""(width, height)."""
SOURCES = (
    ROOT / "data" / "fhd" / "lomiri-wallpapers-20.04-Kleiber_by_Lukas_Baubkus.jpg",  # 6028x3391, if fetched
    SHARED_DATA / "photos" / "035.webp",  # held-out photo, about 1.2 Mpixel (upscaled for the larger sizes)
)
"""The first that exists is the default source photograph."""
TARGET_SIZE = (1920, 1080)
TARGET_EFFICIENCY = 0.6


# --- inputs --------------------------------------------------------------------------------------------------------


def default_source() -> Path:
    for path in SOURCES:
        if path.is_file():
            return path
    raise SystemExit(f"no source photo found (looked for {', '.join(map(str, SOURCES))}); give --image")


def photo(source: Path, width: int, height: int) -> np.ndarray:
    """The photo resized (Lanczos) to cover width x height, centre-cropped to it: RGB uint8."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        scale = max(width / image.width, height / image.height)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        return np.asarray(image.crop((left, top, left + width, top + height)))


def load_model(model_dir: Path | None, random: bool, workdir: Path, options: RuntimeOptions) -> Model:
    if random:
        from bench.random_models import export_random_model
        from models.config import SHIPPED

        model_dir = export_random_model(workdir / "gc-small", SHIPPED, "gc-small")
    if model_dir is not None:
        return Model(load_manifest(model_dir), options)
    registry = Registry.discover(options=options)
    return registry.get(None)


# --- the floor -------------------------------------------------------------------------------------------------------


def multiply_adds(model: Model, graph: str) -> float:
    """Multiply-adds of `graph` per latent cell (for a hybrid model's upscaler, per pixel of the base image): every
    convolution's output elements times its kernel volume, counted by running the graph on a 16x16-cell input with
    each convolution's output (and any kernel the graph computes, such as the generator's folded sub-pixel kernels)
    exposed (needs `onnx`). Convolutions keep their stride, so the count grows with the number of cells: exactly
    for latent models; the upscaler's back-projection also filters a padded border, a few hundredths of a percent
    of its count at this size and less at any larger one."""
    import onnx

    cells, manifest = 16, model.manifest
    factor = manifest.downsampling
    data = manifest.graph_files[graph].read_bytes()
    feeds: dict[str, np.ndarray] = {}
    for spec in onnx.load_from_string(data).graph.input:
        channels = spec.type.tensor_type.shape.dim[1].dim_value
        if spec.name in {"image", "latent", "mask"}:
            scale = factor if spec.name == "image" else 1
        else:  # the label map
            scale = factor // manifest.label_downsampling
        feeds[spec.name] = np.zeros((1, channels, cells * scale, cells * scale), np.float32)
    return graph_multiply_adds(data, feeds) / cells**2


def graph_multiply_adds(graph: bytes, feeds: dict[str, np.ndarray]) -> int:
    """Multiply-adds of one run of a serialised ONNX graph on `feeds`: every convolution's output elements times
    its kernel volume, read from the graph run with those outputs (and computed kernels) exposed."""
    import onnx

    proto = onnx.load_from_string(graph)
    weights = {tensor.name: tuple(tensor.dims) for tensor in proto.graph.initializer}
    convolutions = [node for node in proto.graph.node if node.op_type in {"Conv", "ConvTranspose"}]
    known = {output.name for output in proto.graph.output}
    computed = {node.input[1] for node in convolutions} - weights.keys()
    for name in [node.output[0] for node in convolutions] + sorted(computed):
        if name not in known:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    total = 0
    for node in convolutions:
        kernel = weights.get(node.input[1]) or outputs[node.input[1]].shape
        volume = int(np.prod(kernel[1:]))  # ConvTranspose: (in, out/group, kh, kw); counted per input element
        elements = outputs[node.output[0]].size if node.op_type == "Conv" else feeds_size(node, outputs, feeds)
        total += elements * volume
    return total


def feeds_size(node: object, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> int:
    name = node.input[0]  # type: ignore[attr-defined]
    if name in outputs:
        return outputs[name].size
    if name in feeds:
        return feeds[name].size
    raise RuntimeError(f"cannot size the input of {node.name}")  # type: ignore[attr-defined]


def matmul_rate(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Multiply-adds per second of a size^3 float32 matrix product: onnxruntime (MLAS) and numpy (its BLAS)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del onnx
    rates = {
        "onnxruntime": size**3 / best_time(lambda: session.run(None, {"a": a, "b": b}), repeats),
        "numpy": size**3 / best_time(lambda: a @ b, repeats),
    }
    return rates


def best_time(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


# --- ours ----------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds of each timed run: the whole paths ("compress", "decompress") and the stages within them."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    avif_encodes: list[int] = field(default_factory=list)
    """Hybrid models: the AVIF encodes each compression's quality search made."""
    file_bytes: int = 0
    tiles: dict[str, int] = field(default_factory=dict)
    """Tiles per graph."""

    def median(self, name: str) -> float:
        values = self.seconds.get(name)
        return statistics.median(values) if values else float("nan")


class StageClock:
    """Adds up, within the real compress and decompress runs, the seconds of each stage of a model's paths: its
    graphs ("encoder", "generator") and, for hybrid models, the base layer's "reduction", "AVIF encode" (also
    counted: the quality search makes several) and "AVIF decode". It wraps the model's own methods and gives it a
    timed copy of its base layer, so what is timed is what the CLI and the service run."""

    def __init__(self, model: Model) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        for method, graph in (("encode", "encoder"), ("generate", "generator")):
            setattr(model, method, self._timed(getattr(model, method), graph))
        layer = model.manifest.base_layer
        if layer is not None:
            settings = {setting.name: getattr(layer, setting.name) for setting in fields(BaseLayer)}
            model.manifest = replace(model.manifest, base_layer=TimedLayer(**settings, clock=self))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.calls[name] = self.calls.get(name, 0) + 1

    def _timed(self, run: Callable[..., np.ndarray], name: str) -> Callable[..., np.ndarray]:
        def timed(*args: object, **kwargs: object) -> np.ndarray:
            with self.stage(name):
                return run(*args, **kwargs)

        return timed

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        """Seconds and calls per stage since the last take; starts again from zero."""
        taken = self.seconds, self.calls
        self.seconds, self.calls = {}, {}
        return taken


@dataclass(frozen=True)
class TimedLayer(BaseLayer):
    """A hybrid model's base layer that reports its reduction, each AVIF encode and its AVIF decode to a clock
    (encode_within calls `encode` once per quality it tries, so the search is counted encode by encode)."""

    clock: StageClock = field(kw_only=True, compare=False, repr=False)

    def downscale(self, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        with self.clock.stage("reduction"):
            return super().downscale(image, shape)

    def encode(self, small: np.ndarray, quality: int) -> bytes:
        with self.clock.stage("AVIF encode"):
            return super().encode(small, quality)

    def decode(self, data: bytes, shape: tuple[int, int]) -> np.ndarray:
        with self.clock.stage("AVIF decode"):
            return super().decode(data, shape)


def time_ours(model: Model, clock: StageClock, image: bytes, repeats: int, max_pixels: int) -> Timing:
    registry = Registry([model])
    timing = Timing()
    for attempt in range(repeats + 1):  # the first run at a new size allocates: a warm-up, not counted
        started = time.perf_counter()
        data = compress(image, model, max_pixels=max_pixels)
        compressed = time.perf_counter()
        decompress_png(data, registry, max_pixels=max_pixels)
        finished = time.perf_counter()
        stages, calls = clock.take()
        if attempt:
            paths = {"compress": compressed - started, "decompress": finished - compressed}
            for name, seconds in (paths | stages).items():
                timing.seconds.setdefault(name, []).append(seconds)
            timing.avif_encodes.append(calls.get("AVIF encode", 0))
        timing.file_bytes = len(data)
    header = unpack(data, max_pixels).header
    rows, columns = latent_size(header.width, header.height, model.manifest.downsampling)
    timing.tiles = {graph: len(plan_tiles(model, graph, rows, columns)) for graph in model.manifest.graphs}
    return timing


def time_detail(pixels: np.ndarray, threads: int, repeats: int) -> tuple[float, float]:
    """Seconds of detail restoration's two steps (part of compress and decompress): measuring an image's bands,
    and restoring them (here to a blurred copy's, as a decoder restores its generator's image)."""
    bands = detail.band_count(*pixels.shape[:2])
    if not bands:
        return 0.0, 0.0
    codes = detail.measure(pixels, bands, threads)
    blurred = np.array(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1)))  # restored in place, again
    return (
        best_time(lambda: detail.measure(pixels, bands, threads), repeats),
        best_time(lambda: detail.restore(blurred, codes, threads), repeats),
    )


# --- references ----------------------------------------------------------------------------------------------------


def time_avif(png_path: Path, threads: int, repeats: int) -> tuple[float, float, int] | None:
    """avifenc at its default speed and quality, and avifdec, as processes; None without libavif-bin."""
    if not (shutil.which("avifenc") and shutil.which("avifdec")):
        return None
    avif, decoded = png_path.with_suffix(".avif"), png_path.with_suffix(".avif.png")
    jobs = str(threads or os.cpu_count() or 1)
    encode = ["avifenc", "--jobs", jobs, str(png_path), str(avif)]
    decode = ["avifdec", "--jobs", jobs, str(avif), str(decoded)]
    encode_times, decode_times = [], []
    for attempt in range(repeats + 1):
        for command, times in ((encode, encode_times), (decode, decode_times)):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            if attempt:
                times.append(time.perf_counter() - started)
    return statistics.median(encode_times), statistics.median(decode_times), avif.stat().st_size


def time_hevc(pixels: np.ndarray, repeats: int) -> tuple[float, float, int] | None:
    """HEVC intra in HEIF (libheif + x265) through pillow-heif at its default quality; None without it."""
    try:
        import pillow_heif
    except ImportError:
        return None
    encode_times, decode_times = [], []
    data = b""
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        buffer = io.BytesIO()
        pillow_heif.from_bytes("RGB", (pixels.shape[1], pixels.shape[0]), pixels.tobytes()).save(buffer)
        data = buffer.getvalue()
        encoded = time.perf_counter()
        np.asarray(pillow_heif.open_heif(data, convert_hdr_to_8bit=True))
        if attempt:
            encode_times.append(encoded - started)
            decode_times.append(time.perf_counter() - encoded)
    return statistics.median(encode_times), statistics.median(decode_times), len(data)


# --- the table -----------------------------------------------------------------------------------------------------


def run_table(args: argparse.Namespace, model: Model, workdir: Path) -> str:
    threads = args.threads or os.cpu_count() or 1
    print(f"measuring the matrix-multiply rate with {threads} threads", file=sys.stderr)
    rates = matmul_rate(threads)
    rate = max(rates.values())
    manifest = model.manifest
    graphs = manifest.graphs
    per_cell = {graph: multiply_adds(model, graph) for graph in graphs}
    gpu = gpu_model(model) if args.gpu else None
    clock, gpu_clock = StageClock(model), StageClock(gpu) if gpu else None
    rows_out = []
    verdicts = []
    source = args.image or default_source()
    for width, height in args.sizes:
        print(f"{width}x{height}", file=sys.stderr)
        pixels = photo(source, width, height)
        png_path = workdir / f"photo-{width}x{height}.png"
        image = encode_png(pixels)
        png_path.write_bytes(image)
        max_pixels = max(width * height, 1)
        ours = time_ours(model, clock, image, args.repeat, max_pixels)
        rows, columns = latent_size(width, height, manifest.downsampling)
        floor = {graph: per_cell[graph] * rows * columns / rate for graph in graphs}
        avif = time_avif(png_path, args.threads, args.repeat) if args.references else None
        hevc = time_hevc(pixels, args.repeat) if args.references else None
        on_gpu = time_ours(gpu, gpu_clock, image, args.repeat, max_pixels) if gpu and gpu_clock else None
        whole = ours.median("compress") + ours.median("decompress")
        floor_total = sum(floor.values())
        efficiency = floor_total / whole
        row = [
            f"{width}x{height}",
            *(hybrid_cells(ours) if manifest.hybrid else latent_cells(ours, pixels, threads, args.repeat)),
            " + ".join(f"{floor[graph]:.3f}" for graph in graphs),
            f"{efficiency:.0%} ({floor_total / sum(ours.median(graph) for graph in graphs):.0%})",
            ", ".join(str(ours.tiles[graph]) for graph in graphs),
            f"{8 * ours.file_bytes / (width * height):.3f}",
            _pair(avif, width * height),
            _pair(hevc, width * height),
        ]
        if gpu:
            row.append(f"{on_gpu.median('compress'):.3f} / {on_gpu.median('decompress'):.3f}" if on_gpu else "n/a")
        rows_out.append("| " + " | ".join(row) + " |")
        if (width, height) == TARGET_SIZE:
            verdicts.append(
                f"- {width}x{height}: compress + decompress take {whole:.2f} s, {efficiency:.0%} of the floor's speed "
                f"({floor_total:.2f} s; target at least {TARGET_EFFICIENCY:.0%}: "
                f"{'met' if efficiency >= TARGET_EFFICIENCY else 'NOT met'})."
            )
            if avif:
                verdicts.append(
                    f"- {width}x{height}: compress + decompress ({whole:.2f} s) against avifenc's encode alone "
                    f"({avif[0]:.2f} s): {'faster' if whole < avif[0] else 'NOT faster'}."
                )
    names = [graph_name(manifest, graph) for graph in graphs]
    if manifest.hybrid:
        paths = [
            "compress (reduction + AVIF encodes, how many) (s)",
            "decompress (AVIF decode + upscaler + PNG and the rest) (s)",
        ]
    else:
        paths = ["compress (encoder) (s)", "decompress (generator) (s)", "detail: measure / restore (s)"]
    columns_out = [
        "size",
        *paths,
        f"floor: {' + '.join(names)} (s)",
        f"floor / ours: whole path ({'graphs' if len(graphs) > 1 else names[0]})",
        f"tiles: {', '.join(names)}",
        "our bpp",
        "avifenc / avifdec (s, bpp)",
        "HEVC encode / decode (s, bpp)",
        *(["GPU compress / decompress (s)"] if gpu else []),
    ]
    header = "| " + " | ".join(columns_out) + " |\n|" + "---|" * len(columns_out)
    providers = ", ".join(model._session("generator").get_providers())
    return f"""## Speed

`{_command()}` ({timestamp()}).

Machine: {describe_machine()}

{describe_model(model, per_cell, args.random)}, onnxruntime {ort.__version__} ({providers}),
{threads} threads, median of {args.repeat} runs after a warm-up. Matrix-multiply rate with {threads} threads on
2048x2048 float32: onnxruntime {rates["onnxruntime"] / 1e9:.1f}, numpy {rates["numpy"] / 1e9:.1f} G multiply-adds/s;
the floor uses the faster. Source photo `{source.name}`, resized to cover each size and cropped; every codec reads
and writes the same PNG files (ours and HEVC in process, avifenc/avifdec as processes with {threads} jobs).

{header}
{chr(10).join(rows_out)}

{chr(10).join(verdicts)}
"""


def latent_cells(ours: Timing, pixels: np.ndarray, threads: int, repeats: int) -> list[str]:
    """A latent model's compress (encoder), decompress (generator) and detail restoration cells."""
    measure_seconds, restore_seconds = time_detail(pixels, threads, repeats)
    return [
        f"{ours.median('compress'):.3f} ({ours.median('encoder'):.3f})",
        f"{ours.median('decompress'):.3f} ({ours.median('generator'):.3f})",
        f"{measure_seconds:.3f} / {restore_seconds:.3f}",
    ]


def hybrid_cells(ours: Timing) -> list[str]:
    """A hybrid model's compress (reduction + AVIF encodes, how many) and decompress (AVIF decode + upscaler + the
    rest: PNG encoding, mostly) cells."""
    whole, decode, upscale = (ours.median(name) for name in ("decompress", "AVIF decode", "generator"))
    encodes = statistics.median(ours.avif_encodes)
    return [
        f"{ours.median('compress'):.3f} ({ours.median('reduction'):.3f} + {ours.median('AVIF encode'):.3f}, "
        f"{encodes:g} encodes)",
        f"{whole:.3f} ({decode:.3f} + {upscale:.3f} + {whole - decode - upscale:.3f})",
    ]


def graph_name(manifest: Manifest, graph: str) -> str:
    """What a graph is called in the reports: a hybrid model's `generator` is its upscaler."""
    return "upscaler" if manifest.hybrid and graph == "generator" else graph


def describe_model(model: Model, per_cell: dict[str, float], random: bool) -> str:
    """The model and its graphs' multiply-adds, per pixel of the image (and, for a hybrid, per base pixel)."""
    manifest, weights = model.manifest, "random weights, " if random else ""
    pixels = manifest.downsampling**2
    layer = manifest.base_layer
    if layer is None:
        return (
            f"Model `{model.id}` ({weights}{per_cell['encoder'] / pixels:,.0f} multiply-adds per pixel in the encoder, "
            f"{per_cell['generator'] / pixels:,.0f} in the generator)"
        )
    return (
        f"Model `{model.id}` ({weights}hybrid: the image reduced {layer.factor}x by Lanczos and coded by AVIF at "
        f"speed {layer.speed}, {layer.subsampling}, at the highest quality that fits "
        f"{model.point.bits_per_pixel:g} bits per pixel; the upscaler graph, {per_cell['generator']:,.0f} "
        f"multiply-adds per base pixel, {per_cell['generator'] / pixels:,.0f} per pixel of the image)"
    )


def _pair(result: tuple[float, float, int] | None, pixels: int) -> str:
    return "n/a" if result is None else f"{result[0]:.3f} / {result[1]:.3f} ({result[2] * 8 / pixels:.3f})"


def gpu_model(model: Model) -> Model | None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    options = RuntimeOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    return Model(model.manifest, options).at_rate(model.point)


# --- session options -------------------------------------------------------------------------------------------------


def option_variants(manifest: Manifest) -> dict[str, dict[str, object]]:
    """Session-option variants to time, by name (the float32 one only where the model has int8 graphs)."""
    int8 = any(graph + INT8_SUFFIX in manifest.graph_files for graph in manifest.graphs)
    return {
        f"default: {'int8 graphs, ' if int8 else ''}memory arena shrunk after each run": {},
        **({"float32 graphs (`--no-int8`)": {"int8": False}} if int8 else {}),
        "no memory arena (the system allocator)": {"memory_arena": False},
        "1 thread": {"intra_op_threads": 1},
    }


def compare_options(model: Model, repeats: int, threads: int) -> str:
    """1920x1080 graph times and memory under session-option variants, each in a fresh process."""
    graphs = model.manifest.graphs
    names = "".join(f" {graph_name(model.manifest, graph)} (s) |" for graph in graphs)
    lines = [
        f"| session options |{names} peak memory (MiB) | resident after the runs (MiB) |",
        "|---|" + "---|" * (len(graphs) + 2),
    ]
    for name, changes in option_variants(model.manifest).items():
        options = {"intra_op_threads": threads, **changes}
        command = [sys.executable, "-m", "bench.speed", "--options-child", str(model.manifest.directory)]
        command += [json.dumps(options), str(repeats)]
        result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        times = "".join(f" {measured[graph]:.3f} |" for graph in graphs)
        lines.append(f"| {name} |{times} {measured['peak_mib']:.0f} | {measured['resident_mib']:.0f} |")
    return "\n".join(lines)


def options_child(model_dir: str, options_json: str, repeats: str) -> None:
    """In a fresh process: median times of each graph at 1920x1080 (padded), peak and final memory."""
    model = Model(load_manifest(Path(model_dir)), RuntimeOptions(**json.loads(options_json)))
    manifest = model.manifest
    factor = manifest.downsampling
    rows, columns = latent_size(*TARGET_SIZE, factor)
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    if manifest.hybrid:  # the upscaler reads a decoded base image in [0, 1]
        feeds["generator"] = rng.random((1, 3, rows, columns), dtype=np.float32)
    else:
        feeds["encoder"] = rng.random((1, 3, rows * factor, columns * factor), dtype=np.float32)
        inputs = manifest.latent_channels + manifest.noise_channels
        feeds["generator"] = rng.integers(-2, 3, (1, inputs, rows, columns)).astype(np.float32)
    run = {"encoder": model.encode, "generator": model.generate}
    times: dict[str, list[float]] = {graph: [] for graph in feeds}
    for attempt in range(int(repeats) + 1):
        for graph, feed in feeds.items():
            started = time.perf_counter()
            run[graph](feed)
            if attempt:
                times[graph].append(time.perf_counter() - started)
    report = {graph: statistics.median(values) for graph, values in times.items()}
    print(json.dumps({**report, "peak_mib": _peak_mib(), "resident_mib": _resident_mib()}))


# --- tiling: a very large image --------------------------------------------------------------------------------------


def large_child(model_dir: str, source: str, gcx: str, png: str, options_json: str) -> None:
    """In a fresh process: read the image, compress, decompress to PNG; print phase times and peak memory as JSON.
    Then, untimed, write the generator's own output (`png` with the suffix .plain.png), which the seam check compares
    with whole runs: a file with a detail section is decoded once more without it (restoration's gains are the
    whole image's, so a window cannot reproduce them); any other file's output is the generator's already."""
    options = RuntimeOptions(**json.loads(options_json))
    model = Model(load_manifest(Path(model_dir)), options)
    registry = Registry([model])
    report: dict[str, float] = {}
    started = time.perf_counter()
    data = Path(source).read_bytes()
    decoded = decode_image(data, max_pixels=sys.maxsize)
    del data
    report["read_seconds"] = time.perf_counter() - started
    report["after_read_mib"] = _peak_mib()
    started = time.perf_counter()
    bitstream = compress(decoded, model, max_pixels=sys.maxsize)
    report["compress_seconds"] = time.perf_counter() - started
    report["after_compress_mib"] = _peak_mib()
    del decoded
    Path(gcx).write_bytes(bitstream)
    started = time.perf_counter()
    output = decompress_png(bitstream, registry, max_pixels=sys.maxsize)
    Path(png).write_bytes(output)
    report["decompress_seconds"] = time.perf_counter() - started
    report["peak_mib"] = _peak_mib()
    parsed = unpack(bitstream, sys.maxsize)
    if parsed.header.detail is not None:
        plain = pack(replace(parsed.header, detail=None), parsed.payload)
        output = decompress_png(plain, registry, max_pixels=sys.maxsize)
    Path(png).with_suffix(".plain.png").write_bytes(output)
    print(json.dumps(report))


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent at fork)."""
    return _status_mib("VmHWM:")


def _resident_mib() -> float:
    return _status_mib("VmRSS:")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the closest there is


def run_large(args: argparse.Namespace, model: Model, workdir: Path) -> str:
    width, height = args.large
    source = args.image or default_source()
    print(f"making a {width}x{height} JPEG from {source.name}", file=sys.stderr)
    pixels = photo(source, width, height)
    jpeg = workdir / "large.jpg"
    Image.fromarray(pixels).save(jpeg, quality=92)
    gcx, png = workdir / "large.gcx", workdir / "large.png"
    options = {"intra_op_threads": args.threads, "tile_pixels": model.options.tile_pixels}
    command = [sys.executable, "-m", "bench.speed", "--large-child", str(model.manifest.directory), str(jpeg)]
    command += [str(gcx), str(png), json.dumps(options)]
    if model.point != model.manifest.default_point:
        raise SystemExit("--large measures the model's default rate point (speed is the same at every point)")
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    generated = np.asarray(Image.open(png.with_suffix(".plain.png")).convert("RGB"))
    # The crop goes beside the report (docs/images/ for docs/performance.md), else to the temporary folder.
    crop_path = (args.out.parent if args.out else Path(tempfile.gettempdir())) / "images" / "tiling-crop.png"
    seam = seam_check(model, gcx.read_bytes(), generated, pixels, args.crop, crop_path)
    link = crop_path.relative_to(args.out.parent) if args.out else crop_path
    within = report["peak_mib"] <= args.budget_mib
    if model.manifest.hybrid:
        rest = "the reduction's copies of it, one tile's upscaler run, the model and the output"
        generator, cell, before = "upscaler", "base pixel", ""
        encoder_seams = "Compression has no tiles: the reduction and the AVIF encodes take the whole image."
    else:
        rest = "one tile's graph run, the models, detail restoration's strips and the output"
        generator, cell = "generator", "cell"
        before = " (before detail restoration, whose gains come from the whole image)"
        encoder_seams = (
            "The encoder's tiles, checked the same way where they meet, give latents within "
            f"{seam['latent_difference']:.2e} of a whole run."
        )
    return f"""## Tiling: a {width}x{height} image

`{_command()}` ({timestamp()}).

Machine: {describe_machine()}

Model `{model.id}`{" (random weights)" if args.random else ""}, tiles of at most {model.options.tile_pixels:,} pixels
(halo included); {seam["tiles"]}. A {width}x{height} JPEG ({jpeg.stat().st_size / 2**20:.1f} MiB, made from
`{source.name}`) was read, compressed to {gcx.stat().st_size:,} bytes and decompressed to PNG in one fresh process:

| phase | seconds | peak resident memory after it (MiB) |
|---|---|---|
| read and decode the JPEG | {report["read_seconds"]:.1f} | {report["after_read_mib"]:.0f} |
| compress | {report["compress_seconds"]:.1f} | {report["after_compress_mib"]:.0f} |
| decompress to PNG | {report["decompress_seconds"]:.1f} | {report["peak_mib"]:.0f} |

Peak resident memory {report["peak_mib"]:.0f} MiB: {"within" if within else "OVER"} the budget of {args.budget_mib} MiB
(the image itself takes {width * height * 3 / 2**20:.0f} MiB as RGB; the rest is {rest}).

Seams: around a point where {generator} tiles meet, pixel ({seam["x"]}, {seam["y"]}), the {generator} was also run
whole on the {seam["window"]} window holding every {cell} the {args.crop}x{args.crop} crop there depends on: the tiled
decode{before} differs from it by at most {seam["max_difference"]} grey levels
({seam["differing"]:.4%} of the crop's values differ). {encoder_seams}

![{args.crop}x{args.crop} crop where tiles meet (ticks in the margin): original left, decoded right]({link})
"""


def seam_check(
    model: Model, data: bytes, decoded: np.ndarray, original: np.ndarray, crop: int, image_path: Path
) -> dict[str, object]:
    """Compare the tiled results, around corners where tiles meet, with each graph run whole on that region."""
    from service.codec.pipeline import generate_tiled

    bitstream = unpack(data, sys.maxsize)
    header, manifest = bitstream.header, model.manifest
    factor = manifest.downsampling
    rows, columns = latent_size(header.width, header.height, factor)
    # The generator: the decoded pixels around a corner of four tiles, against a whole run on a window that holds
    # every cell they depend on (the crop plus the halo; where the window meets the image's edge, so does the image).
    tiles = plan_tiles(model, "generator", rows, columns)
    corner_row, corner_column = _meeting_point(tiles, rows, columns)
    halo = model.halo("generator")
    y, x = corner_row * factor, corner_column * factor
    top, left = max(0, y - crop // 2), max(0, x - crop // 2)
    bottom, right = min(header.height, top + crop), min(header.width, left + crop)
    r0, c0 = max(0, top // factor - halo), max(0, left // factor - halo)
    r1, c1 = min(rows, -(-bottom // factor) + halo), min(columns, -(-right // factor) + halo)
    latent = generator_input(model, bitstream, rows, columns)
    whole = Model(manifest, RuntimeOptions(tile_pixels=max(2**30, model.options.tile_pixels))).at_rate(model.point)
    window = np.ascontiguousarray(latent[:, :, r0:r1, c0:c1])
    reference = generate_tiled(whole, window, (r1 - r0) * factor, (c1 - c0) * factor)
    reference = reference[top - r0 * factor : bottom - r0 * factor, left - c0 * factor : right - c0 * factor]
    tiled = decoded[top:bottom, left:right]
    difference = np.abs(tiled.astype(np.int16) - reference.astype(np.int16))
    save_crop(original[top:bottom, left:right], tiled, (y - top, x - left), image_path)
    result: dict[str, object] = {
        "x": x,
        "y": y,
        "window": f"{(c1 - c0) * factor}x{(r1 - r0) * factor}",
        "max_difference": int(difference.max()),
        "differing": float((difference > 0).mean()),
    }
    if manifest.hybrid:
        result["tiles"] = f"{len(tiles)} upscaler tiles (halo {halo} base pixels)"
        return result
    encoder_tiles = plan_tiles(model, "encoder", rows, columns)
    result["latent_difference"] = encoder_seam(model, whole, original, encoder_tiles, rows, columns)
    result["tiles"] = (
        f"{len(encoder_tiles)} encoder tiles (halo {model.halo('encoder')} cells) and {len(tiles)} generator tiles "
        f"(halo {halo} cells)"
    )
    return result


def generator_input(model: Model, bitstream: Bitstream, rows: int, columns: int) -> np.ndarray:
    """What the generator runs on for this file, as the pipeline gives it (1, channels, rows, columns): a hybrid
    model's decoded base image in [0, 1], else the symbols' centres and the seeded noise."""
    manifest, header = model.manifest, bitstream.header
    if manifest.base_layer is not None:
        base = manifest.base_layer.decode(bitstream.payload, (rows, columns))
        return (base.transpose(2, 0, 1)[None] / np.float32(255.0)).astype(np.float32)
    symbols = model.entropy.decode(bitstream.payload, rows, columns)
    latent = np.zeros((1, manifest.latent_channels + manifest.noise_channels, rows, columns), np.float32)
    latent[0, : model.channels] = model.centres[symbols]
    if header.seed is not None:
        noise = np.random.default_rng(header.seed).standard_normal((manifest.noise_channels, rows, columns), np.float32)
        latent[0, manifest.latent_channels :] = noise
    return latent


def encoder_seam(model: Model, whole: Model, original: np.ndarray, tiles: list[Tile], rows: int, columns: int) -> float:
    """The largest difference between the tiled encoder's latent and a whole run's, around a corner of its tiles."""
    from service.codec.pipeline import encode_tiled

    factor = model.manifest.downsampling
    height, width = original.shape[:2]
    e_row, e_column = _meeting_point(tiles, rows, columns)
    e_halo, reach = model.halo("encoder"), 4
    er0, ec0 = max(0, e_row - reach - e_halo), max(0, e_column - reach - e_halo)
    er1, ec1 = min(rows, e_row + reach + e_halo), min(columns, e_column + reach + e_halo)
    tiled_latent = encode_tiled(original, model, rows, columns)[:, er0:er1, ec0:ec1]
    row_index = np.pad(np.arange(height), (0, rows * factor - height), mode="reflect")
    column_index = np.pad(np.arange(width), (0, columns * factor - width), mode="reflect")
    region = original[np.ix_(row_index[er0 * factor : er1 * factor], column_index[ec0 * factor : ec1 * factor])]
    whole_latent = encode_tiled(region, whole, er1 - er0, ec1 - ec0)
    inner = (
        slice(None),
        slice(max(0, e_row - reach) - er0, min(rows, e_row + reach) - er0),
        slice(max(0, e_column - reach) - ec0, min(columns, e_column + reach) - ec0),
    )
    return float(np.abs(tiled_latent[inner] - whole_latent[inner]).max())


def _meeting_point(tiles: list[Tile], rows: int, columns: int) -> tuple[int, int]:
    """A cell where tiles meet: the middle row and column boundaries (the grid's middle along an axis without)."""
    row_bounds = sorted({t.row0 for t in tiles if t.row0 > 0}) or [rows // 2]
    column_bounds = sorted({t.column0 for t in tiles if t.column0 > 0}) or [columns // 2]
    return row_bounds[len(row_bounds) // 2], column_bounds[len(column_bounds) // 2]


def save_crop(original: np.ndarray, decoded: np.ndarray, corner: tuple[int, int], path: Path) -> None:
    """Original and decoded side by side on a white margin, with grey ticks in the margin where the tiles meet."""
    height, width = decoded.shape[:2]
    margin, gap = 12, 8
    canvas = np.full((height + margin, 2 * width + gap + margin, 3), 255, np.uint8)
    for offset, part in ((margin, original[:height, :width]), (margin + width + gap, decoded)):
        canvas[margin : margin + part.shape[0], offset : offset + part.shape[1]] = part
        canvas[: margin - 2, offset + corner[1]] = 96  # tick above: the tiles' vertical border
    canvas[margin + corner[0], : margin - 2] = 96  # tick on the left: their horizontal border
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, optimize=True)


# --- main ------------------------------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def _command() -> str:
    return "python -m bench.speed " + " ".join(sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--large-child"]:
        large_child(*argv[1:])
        return 0
    if argv[:1] == ["--options-child"]:
        options_child(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model directory (default: the installed default model)")
    parser.add_argument("--random", action="store_true", help="a random-weight export of the shipped configuration")
    parser.add_argument("--sizes", type=lambda t: [_size(s) for s in t.split(",")], default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size, after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: one per core)")
    parser.add_argument("--image", type=Path, help="source photo (default: data/fhd's Kleiber, else photo 035)")
    parser.add_argument("--no-references", dest="references", action="store_false", help="skip AVIF and HEVC")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false", help="skip the GPU column")
    parser.add_argument("--compare-options", action="store_true", help="also time session-option variants")
    parser.add_argument("--large", type=_size, help="tiling check on one image of this size, e.g. 8000x6000")
    parser.add_argument("--budget-mib", type=int, default=2048, help="memory budget of the --large run")
    parser.add_argument("--crop", type=int, default=512, help="side of the --large run's crop")
    parser.add_argument("--out", type=Path, help="Markdown page whose `speed` (or `tiling`) section gets the results")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="gancodec-speed-"))
    try:
        model = load_model(args.model_dir, args.random, workdir, RuntimeOptions(intra_op_threads=args.threads))
        if args.large:
            report, section = run_large(args, model, workdir), "tiling"
        else:
            report, section = run_table(args, model, workdir), "speed"
            if args.compare_options:
                report += "\nSession options at 1920x1080 (median graph times, each variant in a fresh process):\n\n"
                report += compare_options(model, args.repeat, args.threads) + "\n"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report)
    if args.out:
        from bench.reporting import update_section

        update_section(args.out, section, report, "Performance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
