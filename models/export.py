"""Export a trained codec to ONNX (encoder and generator, dynamic size) plus the manifest the runtime reads."""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import load_checkpoint
from models.codec import GenerativeCodec
from models.config import ExperimentConfig

MANIFEST_FORMAT = "gancodec-model"
MANIFEST_VERSION = 1
OPSET = 18


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_graph(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    dims = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: dims, output_name: dims},
            opset_version=OPSET,
            dynamo=False,
        )


def export_model(
    codec: GenerativeCodec,
    out_dir: Path,
    model_id: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write encoder.onnx, generator.onnx and manifest.json into `out_dir`; returns the manifest's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = codec.config
    codec = codec.eval().float()
    side = 4 * config.downsampling
    image = torch.rand(1, 3, side, side)
    latent = torch.zeros(1, config.latent_channels + config.noise_channels, 4, 4)
    with torch.no_grad():
        _export_graph(codec.encoder, image, out_dir / "encoder.onnx", "image", "latent")
        _export_graph(codec.generator, latent, out_dir / "generator.onnx", "latent", "image")
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "id": model_id,
        "version": "1",
        "graphs": {
            name: {"file": f"{name}.onnx", "sha256": sha256_file(out_dir / f"{name}.onnx")}
            for name in ("encoder", "generator")
        },
        "latent_channels": config.latent_channels,
        "centres": list(config.centres),
        "downsampling": config.downsampling,
        "noise_channels": config.noise_channels,
        "modes": ["gc"],
        "entropy": {"precision": 16, "frequencies": codec.entropy_model.frequency_tables(16)},
        "training": training or {},
        "metrics": metrics or {},
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def onnx_parity(codec: GenerativeCodec, out_dir: Path, image: np.ndarray) -> dict[str, float]:
    """Max absolute difference between onnxruntime and PyTorch on one RGB uint8 image (cropped to /16)."""
    import onnxruntime as ort

    factor = codec.config.downsampling
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = image[:h, :w].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    encoder = ort.InferenceSession(str(out_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    generator = ort.InferenceSession(str(out_dir / "generator.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        w_torch = codec.encoder(torch.from_numpy(x))
        w_hat = codec.quantizer(w_torch).latent
        x_torch = codec.generator(w_hat).numpy()
    w_ort = encoder.run(None, {"image": x})[0]
    x_ort = generator.run(None, {"latent": w_hat.numpy()})[0]
    return {
        "encoder_max_abs_diff": float(np.abs(w_ort - w_torch.numpy()).max()),
        "generator_max_abs_diff": float(np.abs(x_ort - x_torch).max()),
    }


def codec_from_checkpoint(path: Path) -> tuple[GenerativeCodec, dict[str, Any]]:
    """The averaged (EMA) weights, which are what ships."""
    state = load_checkpoint(path)
    config = ExperimentConfig.from_dict(state["config"])
    codec = GenerativeCodec(config.model)
    codec.load_state_dict(state["ema"])
    training = {
        "config": state["config"],
        "steps": state["step"],
        "cpu_hours": round(state["hours"], 3),
        "data": state.get("data", {}),
    }
    return codec.eval(), training


def main(argv: list[str] | None = None) -> None:
    from models.data import load_rgb, validation_files

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--id", required=True, help="model id, e.g. gc-small-c8")
    args = parser.parse_args(argv)
    codec, training = codec_from_checkpoint(args.checkpoint)
    export_model(codec, args.out_dir, args.id, training)
    parity = onnx_parity(codec, args.out_dir, load_rgb(validation_files()[-1]))
    print(json.dumps({"manifest": str(args.out_dir / "manifest.json"), "parity": parity}, indent=1))


if __name__ == "__main__":
    main()
