"""Checkpoint files: full ones for resuming a run exactly, and small seeds for git.

A seed holds what the shipped model does not: the discriminator (half precision), the entropy model's
logits, the step count and the configuration. The encoder's and generator's averaged weights are read back
from the shipped ONNX graphs, whose initialisers are named after PyTorch's parameters (stored in float16, as
the shipped model computes with them), so the weights live in git once, and a seed only resumes from the very
graphs it was written beside (their sha256 is checked).

`warm_start` starts a run of one configuration from another's weights, e.g. a selective (SC) model from a trained
GC model of the same widths: every tensor of matching shape is copied, and layers whose inputs grew (the
generator's first and bypass convolutions take the mask and label features too, the discriminator's first
convolutions the label map) get the GC weights for the old inputs and zeros for the new ones, so the SC model
starts out computing exactly what the GC model computes on the masked latent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import nn

HALF_SUFFIX = ".float16"
"""Graph files store each float32 weight as a float16 initialiser of the parameter's name plus this suffix."""
SEED_KEYS = ("config", "step", "hours", "data")
OPTIONAL_SEED_KEYS = ("warm_start",)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically, so an interruption mid-write never leaves a broken checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _float(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}


def _graph_hashes(model_dir: Path) -> dict[str, str]:
    return {g: hashlib.sha256((model_dir / f"{g}.onnx").read_bytes()).hexdigest() for g in ("encoder", "generator")}


def onnx_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The encoder's and generator's parameters, named as in GenerativeCodec's state dict."""
    weights = {}
    for graph in ("encoder", "generator"):
        for tensor in onnx.load(str(model_dir / f"{graph}.onnx")).graph.initializer:
            weight = torch.from_numpy(numpy_helper.to_array(tensor).copy())
            if tensor.name.endswith(HALF_SUFFIX):
                weight = weight.float()
            weights[f"{graph}.{tensor.name.removesuffix(HALF_SUFFIX)}"] = weight
    return weights


def make_seed(state: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """A seed for a full checkpoint whose averaged weights were exported to `model_dir`."""
    seed = {key: state[key] for key in SEED_KEYS}
    seed |= {key: state[key] for key in OPTIONAL_SEED_KEYS if key in state}
    seed["discriminator"] = {k: v.half() if v.is_floating_point() else v for k, v in state["discriminator"].items()}
    seed["codec_extras"] = {k: v for k, v in state["ema"].items() if not k.startswith(("encoder.", "generator."))}
    seed["graphs"] = {"dir": str(model_dir), "sha256": _graph_hashes(model_dir)}
    return seed


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A full checkpoint, or a seed completed with the weights of the graphs it names."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "graphs" in state:
        model_dir = Path(state["graphs"]["dir"])
        if _graph_hashes(model_dir) != state["graphs"]["sha256"]:
            raise ValueError(f"{path}: the graphs in {model_dir} are not the ones this seed was written with")
        state["ema"] = onnx_weights(model_dir) | state.pop("codec_extras")
    for key in ("ema", "codec", "discriminator"):
        if key in state:
            state[key] = _float(state[key])
    return state


def warm_start(module: nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load `weights` (a state dict of another configuration) into `module`, in place.

    Tensors of the same shape are copied. A tensor that only has more input channels (dimension 1) than its
    source takes the source's weights for the leading channels and zeros for the rest. Tensors the source lacks
    keep their initialisation. Anything else (a source tensor with no place in `module`, or shapes that differ
    otherwise) is an error, since it means the two configurations are not the same network.
    Returns the names by what happened to them: copied, widened, kept.
    """
    target = module.state_dict()
    unused = sorted(set(weights) - set(target))
    if unused:
        raise ValueError(f"the source has weights this model lacks: {', '.join(unused[:8])}")
    report: dict[str, list[str]] = {"copied": [], "widened": [], "kept": []}
    mismatched = []
    for name, tensor in target.items():
        source = weights.get(name)
        if source is None:
            report["kept"].append(name)
        elif source.shape == tensor.shape:
            report["copied"].append(name)
        elif (
            source.dim() == tensor.dim() >= 2
            and source.shape[1] < tensor.shape[1]
            and source.shape[:1] + source.shape[2:] == tensor.shape[:1] + tensor.shape[2:]
        ):
            report["widened"].append(name)
        else:
            mismatched.append(f"{name} {tuple(source.shape)} -> {tuple(tensor.shape)}")
    if mismatched:
        raise ValueError(f"weights of other shapes: {'; '.join(mismatched[:8])}")
    with torch.no_grad():
        for name in report["copied"]:
            target[name].copy_(weights[name])
        for name in report["widened"]:
            source = weights[name]
            target[name].zero_()
            target[name][:, : source.shape[1]] = source
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the seed checkpoint that goes into git.")
    parser.add_argument("checkpoint", type=Path, help="a full checkpoint (runs/CONFIG/checkpoint.pt)")
    parser.add_argument("--model-dir", type=Path, required=True, help="where its averaged weights were exported")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    save_checkpoint(make_seed(load_checkpoint(args.checkpoint), args.model_dir), args.output)


if __name__ == "__main__":
    main()
