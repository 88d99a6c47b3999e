"""An installed model: its manifest, entropy coder and onnxruntime sessions (created once, on first use)."""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.codec.entropy import EntropyCoder
from service.codec.errors import InferenceError, InvalidModel
from service.codec.manifest import Manifest, RatePoint


@dataclass(frozen=True)
class RuntimeOptions:
    """How onnxruntime runs the graphs; 0 threads lets onnxruntime choose (one per core)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    providers: tuple[str, ...] | None = None
    """None: CUDA first when this onnxruntime build has it, then CPU."""


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


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
        self._lock = threading.Lock()
        self._select(manifest.default_point)

    def _select(self, point: RatePoint) -> None:
        self.point = point
        tables = [list(row) for row in self.manifest.frequencies[: point.channels]]
        self.entropy = EntropyCoder(tables, self.manifest.precision)
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
        latent = self._run("encoder", {"image": image})
        expected = (1, self.manifest.latent_channels, *(s // self.manifest.downsampling for s in image.shape[2:]))
        return self._checked(latent, expected, "encoder")

    def generate(
        self, latent: np.ndarray, mask: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """latent float32 (1, C + noise channels, h, w) -> image float32 (1, 3, 16h, 16w), roughly in [0, 1].

        SC models also take the preservation mask float32 (1, 1, h, w), 1 = kept (None: everything kept; the
        latent must be zero where it is 0), and the one-hot label map float32 (1, classes, h', w') at the label
        resolution (None: no label map, all zeros).
        """
        feeds = {"latent": latent}
        manifest = self.manifest
        if manifest.selective:
            rows, columns = latent.shape[2:]
            ratio = manifest.downsampling // manifest.label_downsampling
            label_shape = (1, len(manifest.classes), rows * ratio, columns * ratio)
            feeds["mask"] = np.ones((1, 1, rows, columns), np.float32) if mask is None else mask
            feeds["labels"] = np.zeros(label_shape, np.float32) if labels is None else labels
        image = self._run("generator", feeds)
        expected = (1, 3, *(s * manifest.downsampling for s in latent.shape[2:]))
        return self._checked(image, expected, "generator")

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        session = self._session(graph)
        try:
            return session.run(None, feeds)[0]
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise InferenceError(f"model {self.id}: the {graph} failed: {error}") from None

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
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.options.intra_op_threads
        options.inter_op_num_threads = self.options.inter_op_threads
        options.log_severity_level = 3
        providers = list(self.options.providers or default_providers())
        try:
            return ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise InvalidModel(f"model {self.id}: onnxruntime cannot load {path.name}: {error}") from None
