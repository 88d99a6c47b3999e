"""Checkpoint files: full ones for resuming a run exactly, and small weights-only seeds for git."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

SEED_KEYS = ("config", "step", "hours", "data", "ema", "discriminator")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically, so an interruption mid-write never leaves a broken checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("ema", "codec", "discriminator"):
        if key in state:
            state[key] = {k: v.float() if v.is_floating_point() else v for k, v in state[key].items()}
    return state


def make_seed(state: dict[str, Any]) -> dict[str, Any]:
    """The averaged weights and the discriminator in half precision, without optimiser moments:
    about a quarter of a full checkpoint, enough to continue training in the next session."""
    seed = {key: state[key] for key in SEED_KEYS}
    for key in ("ema", "discriminator"):
        seed[key] = {k: v.half() if v.is_floating_point() else v for k, v in state[key].items()}
    return seed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the weights-only seed checkpoint that goes into git.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    save_checkpoint(make_seed(load_checkpoint(args.checkpoint)), args.output)


if __name__ == "__main__":
    main()
