"""Export a trained codec to ONNX (encoder and generator, dynamic size) plus the manifest the runtime reads.

An SC codec's generator graph takes three inputs, "latent" (masked), "mask" (1 = kept, at the latent's
resolution) and "labels" (one-hot, at 1/label_downsampling); its manifest (format version 2) lists the modes
gc and sc, the class names and the label map's resolution.
"""

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

from models.checkpoint import HALF_SUFFIX, load_checkpoint
from models.codec import GenerativeCodec, label_map
from models.config import ExperimentConfig
from service.codec.manifest import manifest_text

MANIFEST_FORMAT = "gancodec-model"
MANIFEST_VERSION = 1
SELECTIVE_MANIFEST_VERSION = 2
"""Version 2 adds classes and label_downsampling; GC manifests stay version 1, readable by older runtimes."""
OPSET = 18


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store_half_precision(path: Path) -> None:
    """Rewrite a graph file with its float32 weights stored as float16, each cast back to float32 by a Cast node
    that keeps the parameter's name: half the bytes in git, float32 arithmetic (onnxruntime folds the casts when
    it loads the graph)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    casts = []
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            stored = tensor.name + HALF_SUFFIX
            casts.append(helper.make_node("Cast", [stored], [tensor.name], to=onnx.TensorProto.FLOAT))
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), stored))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _export_graph(module: nn.Module, inputs: dict[str, torch.Tensor], path: Path, output_name: str) -> None:
    """Batch, height and width dynamic; the label map's size has its own names (it is finer than the latent).

    No constant folding at export: every parameter stays an initializer under its own name (a seed checkpoint
    reads them back), even those the graph transforms, such as the sub-pixel kernels folded from a 3x3 kernel;
    onnxruntime folds those once when it loads the graph."""
    dims = {0: "batch", 2: "height", 3: "width"}
    axes = {name: {0: "batch", 2: "label_height", 3: "label_width"} if name == "labels" else dims for name in inputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_axes={**axes, output_name: dims},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=False,
        )


def generator_inputs(
    codec: GenerativeCodec, latent: torch.Tensor, keep: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The generator graph's inputs by name: "latent" alone (GC), or the masked latent, "mask" at the latent's
    resolution and one-hot "labels" (SC), from `keep` (B, 1, h, w) and class ids at the image's resolution."""
    if not codec.config.selective:
        return {"latent": latent}
    onehot = label_map(labels, len(codec.config.classes), codec.config.label_downsampling)
    return {"latent": latent * keep, "mask": keep, "labels": onehot}


def rate_point_id(model_id: str, channels: int) -> str:
    """The id a nested rate point is installed under: the model's id and the channels it codes."""
    return f"{model_id}-c{channels}"


def export_model(
    codec: GenerativeCodec,
    out_dir: Path,
    model_id: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write encoder.onnx, generator.onnx and manifest.json into `out_dir` (dropping int8 variants an earlier
    export's models.quantize left there); returns the manifest's path.

    The graphs store their weights in float16 (_store_half_precision); the codec's own weights are rounded the
    same way first, so that it computes what the graphs compute (measured on the held-out photos: within
    0.01 dB of the float32 weights, docs/training.md).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    config = codec.config
    codec = codec.eval().float()
    with torch.no_grad():
        for parameter in [*codec.encoder.parameters(), *codec.generator.parameters()]:
            parameter.copy_(parameter.half().float())
    side = 4 * config.downsampling
    image = torch.rand(1, 3, side, side)
    latent = torch.zeros(1, config.latent_channels + config.noise_channels, 4, 4)
    example = generator_inputs(codec, latent, torch.ones(1, 1, 4, 4), torch.zeros(1, side, side, dtype=torch.long))
    with torch.no_grad():
        _export_graph(codec.encoder, {"image": image}, out_dir / "encoder.onnx", "latent")
        _export_graph(codec.generator, example, out_dir / "generator.onnx", "image")
    for name in ("encoder", "generator"):
        _store_half_precision(out_dir / f"{name}.onnx")
        # An int8 variant left by models.quantize belongs to the graph just replaced: quantise again.
        (out_dir / f"{name}.int8.onnx").unlink(missing_ok=True)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": SELECTIVE_MANIFEST_VERSION if config.selective else MANIFEST_VERSION,
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
        "modes": ["gc", "sc"] if config.selective else ["gc"],
        "entropy": {"precision": 16, "frequencies": codec.entropy_model.frequency_tables(16)},
        "training": training or {},
        "metrics": metrics or {},
    }
    if config.selective:
        manifest |= {"classes": list(config.classes), "label_downsampling": config.label_downsampling}
    if config.rate_channels:
        manifest |= {
            "rate_points": [{"id": rate_point_id(model_id, k), "channels": k} for k in config.rate_channels],
            "default_rate_point": rate_point_id(model_id, config.default_channels or config.latent_channels),
        }
    path = out_dir / "manifest.json"
    path.write_text(manifest_text(manifest))
    return path


def onnx_parity(
    codec: GenerativeCodec, out_dir: Path, image: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Max absolute difference between onnxruntime and PyTorch on one RGB uint8 image (cropped to /16).

    SC: with the image's class ids `labels` (H, W) (None: no label map) and a checkerboard preservation mask.
    """
    import onnxruntime as ort

    factor = codec.config.downsampling
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = image[:h, :w].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    ids = torch.full((1, h, w), -1) if labels is None else torch.from_numpy(labels[:h, :w].astype(np.int64))[None]
    keep = torch.from_numpy(np.indices((h // factor, w // factor)).sum(axis=0) % 2 == 0).float()[None, None]
    encoder = ort.InferenceSession(str(out_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    generator = ort.InferenceSession(str(out_dir / "generator.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        w_torch = codec.encoder(torch.from_numpy(x))
        inputs = generator_inputs(codec, codec.quantizer(w_torch).latent, keep, ids)
        x_torch = codec.generator(*inputs.values()).numpy()
    w_ort = encoder.run(None, {"image": x})[0]
    x_ort = generator.run(None, {name: value.numpy() for name, value in inputs.items()})[0]
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
    if "warm_start" in state:
        training["warm_start"] = state["warm_start"]
    return codec.eval(), training


def main(argv: list[str] | None = None) -> None:
    from models.data import labelled_files, load_labels, load_rgb, validation_files

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--id", required=True, help="model id; a model with nested rates installs as ID-c2, ID-c4, ...")
    args = parser.parse_args(argv)
    codec, training = codec_from_checkpoint(args.checkpoint)
    export_model(codec, args.out_dir, args.id, training)
    if codec.config.selective:
        image, labels = labelled_files("val")[0]
        parity = onnx_parity(codec, args.out_dir, load_rgb(image), load_labels(labels))
    else:
        parity = onnx_parity(codec, args.out_dir, load_rgb(validation_files()[-1]))
    print(json.dumps({"manifest": str(args.out_dir / "manifest.json"), "parity": parity}, indent=1))


if __name__ == "__main__":
    main()
