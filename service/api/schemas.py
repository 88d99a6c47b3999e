"""JSON bodies of the non-codec endpoints (the codec endpoints answer with bytes)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.codec import Model


class Health(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    models: int = Field(description="Models loaded and warmed up.")
    jobs_running: int
    jobs_queued: int


class ModelInfo(BaseModel):
    id: str
    version: str
    fingerprint: str = Field(description="16 hex digits; every bitstream names the model by id and fingerprint.")
    default: bool = Field(description="Used by POST /compress when the request names no model.")
    modes: list[str] = Field(description="gc (global); sc (selective, with a mask) where the model supports it.")
    classes: list[str] = Field(
        description="sc models: the label map's class names by id, for labels and synthesize; empty otherwise."
    )
    kind: Literal["latent", "hybrid"] = Field(
        description="latent: a generator paints the image from a quantised latent; hybrid: an upscaler paints it "
        "from an AVIF-coded image downsampling times smaller on each side."
    )
    latent_channels: int
    levels: int = Field(description="Quantisation centres per latent value (0 for hybrid models).")
    downsampling: int
    noise_channels: int
    max_bits_per_pixel: float = Field(
        description="Latent models: bound on the entropy-coded rate, latent_channels * log2(levels) / "
        "downsampling^2 (no header). Hybrid models: the file size the encoder aims at, header included."
    )
    graph_bytes: dict[str, int] = Field(description="Size of each ONNX graph file.")
    metrics: dict[str, Any] = Field(description="Measured quality and rate, as the manifest records them.")
    training: dict[str, Any] = Field(description="How the model was trained, as the manifest records it.")

    @classmethod
    def of(cls, model: Model, default: bool) -> ModelInfo:
        manifest = model.manifest
        levels = len(manifest.centres)
        return cls(
            id=model.id,
            version=manifest.version,
            fingerprint=model.fingerprint.hex(),
            default=default,
            modes=list(manifest.modes),
            classes=list(manifest.classes),
            kind="hybrid" if manifest.hybrid else "latent",
            latent_channels=model.channels,
            levels=levels,
            downsampling=manifest.downsampling,
            noise_channels=manifest.noise_channels,
            max_bits_per_pixel=model.point.bits_per_pixel
            if manifest.hybrid
            else model.channels * math.log2(levels) / manifest.downsampling**2,
            graph_bytes={name: path.stat().st_size for name, path in manifest.graph_files.items()},
            metrics=model.point.metrics,
            training=manifest.training,
        )
