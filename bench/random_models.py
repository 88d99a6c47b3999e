"""Random-weight exports of a named config, through the real export path (needs torch; the service does not).

Robustness and speed do not depend on the weights: a random export has the shipped model's graphs, shapes and
manifest layout, so the scripts can run before (or without) a trained model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


def export_random_model(out_dir: Path, config: str, model_id: str, seed: int = 0, **changes: object) -> Path:
    """Export `models.config.CONFIGS[config]`'s model, with `changes` to its fields (noise_channels=2,
    rate_channels=(2, 4, 8), ...), with random weights to `out_dir`; returns `out_dir`."""
    import torch

    from models.codec import GenerativeCodec
    from models.config import CONFIGS
    from models.export import export_model

    torch.manual_seed(seed)
    model_config = dataclasses.replace(CONFIGS[config].model, **changes)
    export_model(GenerativeCodec(model_config), out_dir, model_id, metrics={"random_weights_seed": seed})
    return out_dir
