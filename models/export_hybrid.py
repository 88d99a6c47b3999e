"""Export a hybrid model (service/codec/base.py): the trained upscaler as its `generator` graph, plus a format
version 3 manifest with the base layer's settings and the rate points in bits per pixel.

    python -m models.export_hybrid runs/upscaler/checkpoint.pt -o service/zoo/gc-hybrid --id gc-hybrid

Without a checkpoint (`--prior NAME`), the pretrained ncnn weights are exported as they come: the baseline that
training is measured against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.config import CAMVID_CLASSES
from models.export import _export_graph, _store_half_precision, sha256_file
from models.upscaler import CompactUpscaler, GraphUpscaler, UpscalerConfig, load_ncnn
from service.codec import Registry, compress, decompress
from service.codec.base import BaseLayer
from service.codec.manifest import FORMAT, HYBRID_FORMAT_VERSION, MANIFEST_NAME, manifest_text

RATES = (0.02, 0.03, 0.04, 0.06, 0.08)
"""Bits per pixel of the installed rate points: the product's 0.03-0.1 span and one below it."""
DEFAULT_RATE = 0.04


def rate_point_id(model_id: str, bits_per_pixel: float) -> str:
    return f"{model_id}-{bits_per_pixel:g}"


def export_hybrid(
    upscaler: CompactUpscaler | GraphUpscaler,
    out_dir: Path,
    model_id: str,
    layer: BaseLayer,
    rates: tuple[float, ...] = RATES,
    default_rate: float = DEFAULT_RATE,
    training: dict[str, Any] | None = None,
    classes: tuple[str, ...] = CAMVID_CLASSES,
    version: str = "1",
) -> Path:
    """Write generator.onnx (weights stored in float16, computed in float32) and manifest.json; returns the
    manifest's path. The upscaler's own weights are rounded to float16 first, so it computes what the graph does.

    With `classes` the model also takes mode sc (a mask or a label map, pipeline.compress_hybrid), whose label maps
    name those classes; the upscaler is the same, so one model serves both modes."""
    if upscaler.factor != layer.factor:
        raise ValueError(f"the upscaler enlarges {upscaler.factor}x, the base layer reduces {layer.factor}x")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.onnx"):
        stale.unlink()
    upscaler = upscaler.eval().float()
    with torch.no_grad():
        for parameter in upscaler.parameters():
            parameter.copy_(parameter.half().float())
    graph = out_dir / "generator.onnx"
    _export_graph(upscaler, {"latent": torch.rand(1, 3, 8, 8)}, graph, "image")
    _store_half_precision(graph)
    manifest = {
        "format": FORMAT,
        "format_version": HYBRID_FORMAT_VERSION,
        "id": model_id,
        "version": version,
        "graphs": {"generator": {"file": graph.name, "sha256": sha256_file(graph)}},
        "base_layer": {"codec": "avif", "factor": layer.factor, "speed": layer.speed, "subsampling": layer.subsampling},
        **({"modes": ["gc", "sc"], "classes": list(classes), "label_downsampling": layer.factor} if classes else {}),
        "rate_points": [{"id": rate_point_id(model_id, bpp), "bits_per_pixel": bpp} for bpp in rates],
        "default_rate_point": rate_point_id(model_id, default_rate),
        "training": training or {},
    }
    path = out_dir / MANIFEST_NAME
    path.write_text(manifest_text(manifest), encoding="utf-8")
    check_round_trip(out_dir, model_id, default_rate)
    return path


def check_round_trip(out_dir: Path, model_id: str, rate: float) -> None:
    """Compress and decompress a smooth test image with the runtime, as a user would: the export works end to end
    and its file keeps to the rate point's size."""
    registry = Registry.discover([out_dir], include_zoo=False)
    model = registry.get(rate_point_id(model_id, rate))
    y, x = np.mgrid[0:96, 0:128]
    image = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)
    data = compress(image, model)
    decoded = decompress(data, registry)
    if decoded.shape != image.shape:
        raise RuntimeError(f"exported model decodes {decoded.shape}, expected {image.shape}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="?", help="models.train_upscaler's checkpoint (its EMA)")
    parser.add_argument("--prior", help="export these pretrained ncnn weights instead of a checkpoint")
    parser.add_argument(
        "--graph",
        action="store_true",
        help="--prior is any ncnn upscaler (e.g. realesrgan-x4plus, for GPUs), run as its graph says",
    )
    parser.add_argument(
        "--no-back-projection",
        action="store_true",
        help="with --graph: the network's output as it is (blind, RRDBNet's looked better without it)",
    )
    parser.add_argument("--speed", type=int, default=BaseLayer.speed, help="libavif's speed for the base (0-10)")
    parser.add_argument("--rates", type=float, nargs="+", default=RATES, help="bits per pixel of the rate points")
    parser.add_argument("--default-rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument(
        "--version", default="1", help="the manifest's version: a new version ships beside the old, for old files"
    )
    parser.add_argument("--teacher", help="the checkpoint was distilled from this upscaler (models.distill_upscaler)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.prior is None):
        parser.error("give a checkpoint or --prior, not both")
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        upscaler = CompactUpscaler(UpscalerConfig(**state["upscaler"]))
        upscaler.load_state_dict(state["ema"])
        training = {"steps": state["step"], "hours": round(state["hours"], 2), "config": state["config"]}
        if args.teacher:
            training["distilled_from"] = args.teacher
    elif args.graph:
        upscaler = GraphUpscaler(args.prior, factor=4, back_projection=not args.no_back_projection)
        training = {"prior": args.prior, "steps": 0}
    else:
        upscaler, training = load_ncnn(args.prior), {"prior": args.prior, "steps": 0}
    layer = BaseLayer(factor=upscaler.factor, speed=args.speed)
    if args.default_rate not in args.rates:
        parser.error(f"--default-rate {args.default_rate:g} is not one of --rates")
    path = export_hybrid(
        upscaler, args.out, args.id, layer, tuple(args.rates), args.default_rate, training, version=args.version
    )
    print(json.dumps({"manifest": str(path), "graph_bytes": (args.out / "generator.onnx").stat().st_size}))


if __name__ == "__main__":
    main()
