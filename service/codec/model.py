"""An installed model: its manifest, entropy coder and onnxruntime sessions (created once, on first use)."""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnxruntime as ort

from service.codec.entropy import EntropyCoder
from service.codec.errors import InferenceError, InvalidModel
from service.codec.manifest import INT8_SUFFIX, Manifest, RatePoint

MIN_TILE_PIXELS = 256 * 256
DEFAULT_TILE_PIXELS = 1536 * 1536
"""Largest region a graph runs on at once, halo included (2.4 Mpixel): a 1920x1080 image runs whole, larger ones
in overlapping tiles, so peak memory stays near that of one such region (an 8000x6000 job peaked at 714 MiB with
gc-small)."""

CUDA_OPTIONS = {
    # Every new input shape would otherwise start cuDNN's exhaustive benchmark of convolution algorithms
    # (seconds per shape), and images and tiles come in many shapes: take cuDNN's heuristic choice instead.
    "cudnn_conv_algo_search": "HEURISTIC",
    # Grow the GPU memory arena by what is asked, not by powers of two, so its size follows the largest tile.
    "arena_extend_strategy": "kSameAsRequested",
    "do_copy_in_default_stream": "1",
}
"""onnxruntime's CUDA execution provider options (used when CUDA is among the providers)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs the graphs; 0 threads lets onnxruntime choose (one per core)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    providers: tuple[str, ...] | None = None
    """None: CUDA first when this onnxruntime build has it, then CPU."""
    memory_arena: bool = True
    """onnxruntime's CPU memory arena, which reuses buffers within a run (faster than the system allocator for
    these large tensors); it is shrunk at the end of every run, so a server's resident memory follows the image
    in hand instead of keeping the largest it has ever seen (docs/performance.md)."""
    tile_pixels: int = DEFAULT_TILE_PIXELS
    """Largest region (width * height, halo included) a graph runs on at once; larger images are tiled."""
    int8: bool = True
    """On the CPU, run a graph's int8 variant where the model has one (models/quantize.py): the generator about
    twice as fast, its images about 41 dB (PSNR) from the float graph's (docs/performance.md). GPUs run
    the float graphs."""

    def __post_init__(self) -> None:
        if self.tile_pixels < MIN_TILE_PIXELS:
            raise ValueError(f"tile_pixels must be at least {MIN_TILE_PIXELS}, got {self.tile_pixels}")


@cache
def default_providers() -> tuple[str, ...]:
    """CUDA first where this onnxruntime build has it, then the CPU; asked once (Model.runs asks on every run)."""
    available = ort.get_available_providers()
    return tuple(p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available)


def create_session(graph: bytes, options: RuntimeOptions) -> ort.InferenceSession:
    """An onnxruntime session for a serialised graph, with the settings every graph here runs under
    (docs/performance.md, "Runtime settings, and why")."""
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = options.intra_op_threads
    settings.inter_op_num_threads = options.inter_op_threads
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.enable_cpu_mem_arena = options.memory_arena
    # Memory patterns pay off only when the same shape comes again; here every image has its own.
    settings.enable_mem_pattern = False
    # Idle intra-op threads sleep instead of spinning: the numpy work between runs (detail restoration, PNG)
    # gets the cores back at once. At 1920x1080 a round trip took 0.379 s instead of 0.397 s, graphs no slower.
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.log_severity_level = 3
    providers: list[str | tuple[str, dict[str, str]]] = [
        (name, CUDA_OPTIONS) if name == "CUDAExecutionProvider" else name
        for name in (options.providers or default_providers())
    ]
    return ort.InferenceSession(graph, sess_options=settings, providers=providers)


class Model:
    """Runs one exported codec at one rate point; thread-safe (onnxruntime sessions may be shared between threads).

    A model with nested rates is one Model per rate point, all sharing the same sessions (`at_rate`): each codes
    only its first `channels` latent channels, and the generator reads the others as zero, a centre.
    """

    def __init__(self, manifest: Manifest, options: RuntimeOptions | None = None) -> None:
        self.manifest = manifest
        self.options = options or RuntimeOptions()
        self.centres = np.asarray(manifest.centres, dtype=np.float32)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._halos: dict[str, int] = {}
        """Shared by the rate points (copied by reference), like the sessions."""
        self._lock = threading.Lock()
        self._select(manifest.default_point)

    def _select(self, point: RatePoint) -> None:
        self.point = point
        self.entropy = (
            None
            if self.manifest.hybrid
            else EntropyCoder(self.manifest.entropy_tables(point.channels), self.manifest.precision)
        )
        self.fingerprint = self.manifest.fingerprint(point)

    def at_rate(self, point: RatePoint) -> Model:
        """This model coding at another of its manifest's rate points, sharing the sessions."""
        variant = copy.copy(self)
        variant._select(point)
        return variant

    def rate_points(self) -> list[Model]:
        """One model per rate point of the manifest (just this one for a single-rate model)."""
        return [self if point == self.point else self.at_rate(point) for point in self.manifest.points]

    @property
    def id(self) -> str:
        return self.point.id

    @property
    def channels(self) -> int:
        """How many latent channels files of this model code (the rest decode as zero)."""
        return self.point.channels

    def encode(self, image: np.ndarray) -> np.ndarray:
        """image float32 (1, 3, H, W) in [0, 1], H and W multiples of the down-sampling -> unquantised latent."""
        latent = self._run(self.runs("encoder"), {"image": image})
        expected = (1, self.manifest.latent_channels, *(s // self.manifest.downsampling for s in image.shape[2:]))
        return self._checked(latent, expected, "encoder")

    def generate(
        self, latent: np.ndarray, mask: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """latent float32 (1, C + noise channels, h, w) -> image float32 (1, 3, 16h, 16w), roughly in [0, 1].
        Hybrid models: the decoded base image (1, 3, h, w) in [0, 1] -> the image, `factor` times larger.

        SC models also take the preservation mask float32 (1, 1, h, w), 1 = kept (None: everything kept; the
        latent must be zero where it is 0), and the one-hot label map float32 (1, classes, h', w') at the label
        resolution (None: no label map, all zeros).
        """
        feeds = {"latent": latent}
        manifest = self.manifest
        if manifest.conditioned:
            rows, columns = latent.shape[2:]
            ratio = manifest.downsampling // manifest.label_downsampling
            label_shape = (1, len(manifest.classes), rows * ratio, columns * ratio)
            feeds["mask"] = np.ones((1, 1, rows, columns), np.float32) if mask is None else mask
            feeds["labels"] = np.zeros(label_shape, np.float32) if labels is None else labels
        image = self._run(self.runs("generator"), feeds)
        expected = (1, 3, *(s * manifest.downsampling for s in latent.shape[2:]))
        return self._checked(image, expected, "generator")

    def runs(self, graph: str) -> str:
        """The graph that runs for `graph` ("encoder" or "generator"): its int8 variant on a CPU-only session
        where the model has one, else itself."""
        providers = self.options.providers or default_providers()
        int8 = graph + INT8_SUFFIX
        if self.options.int8 and "CUDAExecutionProvider" not in providers and int8 in self.manifest.graph_files:
            return int8
        return graph

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        session = self._session(graph)
        try:
            return session.run(None, feeds, self._run_options())[0]
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise InferenceError(f"model {self.id}: the {graph} failed: {error}") from None

    def _run_options(self) -> ort.RunOptions | None:
        if not self.options.memory_arena:
            return None
        run_options = ort.RunOptions()
        # Hand the arena's free CPU memory back after the run (a GPU arena keeps its memory: allocating it is slow).
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return run_options

    def _checked(self, array: np.ndarray, expected: tuple[int, ...], graph: str) -> np.ndarray:
        if array.shape != expected or array.dtype != np.float32:
            raise InferenceError(f"model {self.id}: the {graph} returned {array.dtype} {array.shape}, not {expected}")
        return array

    def _session(self, graph: str) -> ort.InferenceSession:
        with self._lock:
            if graph not in self._sessions:
                self._sessions[graph] = self._create_session(graph)
            return self._sessions[graph]

    def _create_session(self, graph: str) -> ort.InferenceSession:
        """Load the graph from the bytes whose sha256 is checked here, so what runs is what the manifest names."""
        path = self.manifest.graph_files[graph]
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InvalidModel(f"model {self.id}: cannot read {path}: {error}") from None
        if hashlib.sha256(data).hexdigest() != self.manifest.graph_sha256[graph]:
            raise InvalidModel(f"model {self.id}: {path} changed since the manifest was written (sha256 differs)")
        try:
            return create_session(data, self.options)
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise InvalidModel(f"model {self.id}: onnxruntime cannot load {path.name}: {error}") from None

    def halo(self, graph: str) -> int:
        """How many latent cells beyond its own an output cell of `graph` depends on (its receptive field).

        A tile that reaches this far past the cells it keeps computes them exactly as the whole image would, so
        tiles leave no seams. Measured once per model by perturbing one column (and one row) of a strip and
        seeing how far the change spreads, plus one cell of margin; the graphs are all the runtime knows. The
        float graphs are measured: int8 variants have the same reach but may round a faint change away.
        """
        with self._lock:
            known = self._halos.get(graph)
        if known is None:
            known = max(self._spread(graph, axis) for axis in (2, 3)) + 1
            with self._lock:
                self._halos[graph] = known
        return known

    def _spread(self, graph: str, axis: int) -> int:
        """Cells along `axis` (2 rows, 3 columns) that one perturbed cell in the middle of a strip reaches."""
        factor = self.manifest.downsampling
        reach = 16
        while True:
            cells = [3, 3]
            cells[axis - 2] = 2 * reach + 1
            rng = np.random.default_rng(0)
            if graph == "encoder":
                image = rng.random((1, 3, cells[0] * factor, cells[1] * factor), dtype=np.float32)
                changed = image.copy()
                window = [slice(None)] * 4
                window[axis] = slice(reach * factor, (reach + 1) * factor)
                changed[tuple(window)] = rng.random(changed[tuple(window)].shape, dtype=np.float32)
                before, after = self._run("encoder", {"image": image}), self._run("encoder", {"image": changed})
                scale = 1
            else:
                manifest = self.manifest
                ratio = manifest.downsampling // manifest.label_downsampling if manifest.conditioned else 1
                shapes = {"latent": (manifest.latent_channels + manifest.noise_channels, 1)}
                if manifest.conditioned:  # the mask and label map reach the same cells: perturb them too
                    shapes |= {"mask": (1, 1), "labels": (len(manifest.classes), ratio)}
                feeds, changed_feeds = {}, {}
                for name, (channels, step) in shapes.items():
                    feeds[name] = rng.standard_normal((1, channels, cells[0] * step, cells[1] * step), np.float32)
                    changed_feeds[name] = feeds[name].copy()
                    window = [slice(None)] * 4
                    window[axis] = slice(reach * step, (reach + 1) * step)
                    part = changed_feeds[name][tuple(window)]
                    changed_feeds[name][tuple(window)] = 2 * rng.standard_normal(part.shape, np.float32)
                before, after = self._run("generator", feeds), self._run("generator", changed_feeds)
                scale = factor
            differs = np.nonzero(np.any(before != after, axis=tuple(a for a in range(4) if a != axis)))[0] // scale
            if not differs.size:
                return 0
            spread = int(max(reach - differs.min(), differs.max() - reach))
            if spread < reach - 1:
                return spread
            if reach >= 256:
                raise InvalidModel(f"model {self.id}: the {graph}'s receptive field exceeds {reach} latent cells")
            reach *= 2
