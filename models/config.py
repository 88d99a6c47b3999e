"""Named configurations: every width, weight and schedule of a model and its training as data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Norm = Literal["instance", "channel", "none"]
Upsample = Literal["transposed", "nearest"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of encoder, quantiser, generator and discriminator."""

    encoder_widths: tuple[int, ...] = (60, 120, 240, 480, 960)
    """Stem width, then the width after each of the four stride-2 down-samplings."""
    latent_channels: int = 8
    centres: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    residual_blocks: int = 9
    generator_widths: tuple[int, ...] = (960, 480, 240, 120, 60)
    """Width at latent resolution, then after each of the four up-samplings."""
    noise_channels: int = 0
    norm: Norm = "instance"
    upsample: Upsample = "transposed"
    linear_bypass: bool = False
    """A linear path beside the deep ones: block means -> latent in E, latent -> bilinear colour in G.
    It hands the networks a thumbnail codec from the first step, so they learn the residual detail."""
    discriminator_widths: tuple[int, ...] = (64, 128, 256, 512)
    discriminator_scales: int = 3

    @property
    def levels(self) -> int:
        return len(self.centres)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.encoder_widths) - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Loss weights and schedules; step counts are optimiser steps."""

    crop: int = 256
    batch: int = 8
    learning_rate: float = 2e-4
    warmup_steps: int = 500
    """Linear learning-rate warm-up from zero."""
    decay_start: int = 200_000
    decay_steps: int = 100_000
    """Cosine decay to `final_lr_fraction` over this many steps after `decay_start`."""
    final_lr_fraction: float = 0.1
    distortion_only_steps: int = 50_000
    """Stage one trains E and G on distortion and rate only; the GAN joins afterwards."""
    mse_weight: float = 150.0
    """Lambda in L_GAN + lambda*MSE, MSE on images in [0, 1] (150 makes it about 1 at 22 dB)."""
    feature_matching_weight: float = 10.0
    gan_weight: float = 1.0
    rate_weight: float = 1.0
    """Beta: weight of the latent's cross-entropy in bits per pixel."""
    range_weight: float = 1.0
    """Penalty on encoder outputs that leave the centres' range, keeping them where rounding has meaning."""
    soft_assignment_sigma: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = False
    seed: int = 0
    checkpoint_minutes: float = 10.0
    validate_every: int = 500


@dataclass(frozen=True)
class ExperimentConfig:
    """A model architecture with the training that produces it."""

    name: str
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in data["model"].items()}
        return cls(name=data["name"], model=ModelConfig(**model), train=TrainConfig(**data["train"]))


CONFIGS: dict[str, ExperimentConfig] = {
    # The paper's GC model (Agustsson et al. 2019): GPU training.
    "paper": ExperimentConfig(
        name="paper",
        model=ModelConfig(),
        train=TrainConfig(crop=256, batch=8, learning_rate=2e-4, distortion_only_steps=50_000),
    ),
    # Quarter widths, six residual blocks: about 6.6 M generator parameters, trainable on 2 CPU cores.
    # No normalisation (instance norm removes each channel's mean, i.e. colour) and a linear bypass, which
    # measured fastest here (docs/training.md); nearest up-sampling + conv leaves no checkerboard.
    "small": ExperimentConfig(
        name="small",
        model=ModelConfig(
            encoder_widths=(15, 30, 60, 120, 240),
            residual_blocks=6,
            generator_widths=(240, 120, 60, 30, 15),
            norm="none",
            upsample="nearest",
            linear_bypass=True,
            discriminator_widths=(16, 32, 64, 128),
        ),
        train=TrainConfig(
            crop=128,
            batch=8,
            learning_rate=4e-4,
            warmup_steps=300,
            rate_weight=0.25,
            decay_start=20_000,
            decay_steps=30_000,
            distortion_only_steps=15_000,
            checkpoint_minutes=5.0,
        ),
    ),
}
# A GPU-scale quick check of the pipeline end to end, and the tests' random-weight export.
CONFIGS["tiny"] = ExperimentConfig(
    name="tiny",
    model=dataclasses.replace(
        CONFIGS["small"].model,
        encoder_widths=(4, 4, 8, 8, 8),
        residual_blocks=1,
        generator_widths=(8, 8, 8, 4, 4),
        discriminator_widths=(4, 4, 8, 8),
    ),
    train=dataclasses.replace(CONFIGS["small"].train, crop=32, batch=2, validate_every=2),
)
