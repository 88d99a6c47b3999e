"""Named configurations: every width, weight and schedule of a model and its training as data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Norm = Literal["instance", "channel", "none"]
Upsample = Literal["transposed", "nearest"]
MaskKind = Literal["all", "none", "boxes", "classes", "instances"]

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign/symbol", "fence", "car", "pedestrian", "bicyclist", "unlabelled",
)  # fmt: skip
"""CamVid's class names by id (../shared/data/README.md): the label PNGs hold these ids."""


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
    end_scale: int = 1
    """Where the encoder's first and the generator's last convolution run, as a divisor of the image's
    resolution. Above 1, a pixel unshuffle (encoder) and a pixel shuffle (generator) by this factor join them to
    the image in place of the full-resolution layers: the generator's thin full-resolution convolutions ran at
    a sixth of the machine's matrix-multiply rate (docs/performance.md). A power of two, at most the down-sampling."""
    linear_bypass: bool = False
    """A linear path beside the deep ones: block means -> latent in E, latent -> bilinear colour in G.
    It hands the networks a thumbnail codec from the first step, so they learn the residual detail."""
    discriminator_widths: tuple[int, ...] = (64, 128, 256, 512)
    discriminator_scales: int = 3
    classes: tuple[str, ...] = ()
    """Names of the semantic label map's classes by id. Empty: a GC model; otherwise the generator also
    takes a preservation mask and the label map (selective compression, SC), and D sees the label map."""
    label_downsampling: int = 16
    """The label map reaches the generator (and the bitstream) at 1/this of the image's resolution."""
    label_widths: tuple[int, ...] = (32, 64)
    """Widths of the label-feature network F; it halves the resolution while it is finer than the latent's."""
    rate_channels: tuple[int, ...] = ()
    """Nested rate points: each codes only the first k latent channels and the generator reads the others as
    zero (a centre), so one model serves several rates. Empty: the one rate of all channels."""
    default_channels: int = 0
    """The rate point validation measures and the runtime picks unless told (0: all channels)."""

    def __post_init__(self) -> None:
        scale = self.end_scale
        if scale < 1 or scale & (scale - 1) or scale > self.downsampling:
            raise ValueError(f"end_scale {scale}: a power of two from 1 to the down-sampling, {self.downsampling}")

    @property
    def levels(self) -> int:
        return len(self.centres)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.encoder_widths) - 1)

    @property
    def end_depth(self) -> int:
        """How many of the full-resolution-side layers (stem and stride-2 steps) the shuffled ends replace."""
        return self.end_scale.bit_length() - 1

    @property
    def selective(self) -> bool:
        return bool(self.classes)

    @property
    def rate_points(self) -> tuple[int, ...]:
        return self.rate_channels or (self.latent_channels,)


@dataclass(frozen=True)
class TrainConfig:
    """Loss weights and schedules; step counts are optimiser steps."""

    crop: int = 256
    batch: int = 8
    learning_rate: float = 2e-4
    gan_learning_rate: float | None = None
    """Peak learning rate from the GAN stage on (None: `learning_rate`): generator and discriminator playing
    against each other tolerate less than distortion training does (docs/training.md)."""
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
    lowpass_weight: float = 0.0
    """Weight of a second MSE, between the lowpass_factor x lowpass_factor block means of image and
    reconstruction: it anchors colour and coarse structure, which the GAN stage otherwise lets drift while it
    sharpens the fine scales (docs/training.md)."""
    lowpass_factor: int = 8
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
    keep_every: int = 0
    """Also keep the checkpoint of every this many steps (checkpoint-STEP.pt), so a run that degrades can be
    rolled back to its last good state (0: only the latest)."""
    validate_every: int = 500
    preservation_masks: tuple[tuple[MaskKind, float], ...] = ()
    """SC: (kind, weight) pairs, how often each kind of preservation mask is drawn for a training crop."""
    label_dropout: float = 0.0
    """SC: fraction of crops whose label map is withheld, so the model also decodes without one (GC, mask alone)."""
    validation_synthesize: tuple[str, ...] = ()
    """SC: classes synthesised in validation; val_psnr is then measured over the preserved region only."""
    rate_weights: tuple[float, ...] = ()
    """How often each of the model's `rate_channels` is drawn for a training crop (empty: equally often)."""


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
        """Fields added since a checkpoint was written take their defaults, so old checkpoints still load."""
        model = {k: _tuples(v) for k, v in data["model"].items()}
        train = {k: _tuples(v) for k, v in data["train"].items()}
        return cls(name=data["name"], model=ModelConfig(**model), train=TrainConfig(**train))


def _tuples(value: Any) -> Any:
    """Lists (as JSON gives them) back to the tuples the frozen configurations hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


CONFIGS: dict[str, ExperimentConfig] = {
    # The paper's GC model (Agustsson et al. 2019): GPU training.
    "paper": ExperimentConfig(
        name="paper",
        model=ModelConfig(),
        train=TrainConfig(crop=256, batch=8, learning_rate=2e-4, distortion_only_steps=50_000),
    ),
    # Quarter widths, six residual blocks: about 6.6 M generator parameters, trainable on 2 CPU cores.
    # Sixteen nested latent channels give five rate points (about 0.01 to 0.05 bpp on photos) from one model; the
    # default codes eight.
    # No normalisation (instance norm removes each channel's mean, i.e. colour) and a linear bypass, which
    # measured fastest here (docs/training.md); nearest up-sampling + conv leaves no checkerboard. The GAN joins
    # at step 10,500, once the distortion-only validation PSNR had stopped rising (22.84-22.85 dB from 9,000).
    # The low-pass term joined the first run at step 18,960, when the GAN stage had sharpened the fine scales but
    # let colour drift (photos 030-039: 1/16 low-pass error up from 6.8 to 11.2 on 0-255, docs/training.md);
    # weight 600 destabilised the running optimiser, 150 did not.
    # At 3.5e-4 the GAN stage broke at step 27,350 (discriminator took over); resumed from step 19,919 at 1.5e-4
    # with its cosine decay from 20,000 to 40,000, it trained smoothly, keeping a checkpoint every 2,000 steps.
    # Shipped as gc-small to step 44,078; now the teacher of `small-fast`, which replaced it.
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
            latent_channels=16,
            rate_channels=(2, 4, 8, 12, 16),
            default_channels=8,
        ),
        train=TrainConfig(
            crop=128,
            batch=8,
            learning_rate=4e-4,
            gan_learning_rate=1.5e-4,
            warmup_steps=300,
            rate_weight=0.25,
            decay_start=20_000,
            decay_steps=20_000,
            distortion_only_steps=10_500,
            checkpoint_minutes=5.0,
            keep_every=2_000,
            rate_weights=(1.0, 2.0, 3.0, 2.0, 2.0),
            lowpass_weight=150.0,
        ),
    ),
}
# `small` with its full-resolution ends replaced by pixel (un)shuffles at 1/4 resolution (the shipped gc-small):
# compress plus decompress of a 1920x1080 photo in 0.76 s against 1.32 s (bench.speed, docs/performance.md).
# It starts from a trained `small`: models.distill copies the body and trains the new ends to match the old
# (6,000 steps), then the GAN stage tunes the whole network from the first step, at a third of the peak rate
# that trained `small` (the body is trained already). The GAN loss weighs twice `small`'s: switched at step
# 10,008 of the first run, when the per-level SWD had levelled off at `small`'s, it lowered the fine levels'
# SWD from 197 / 172 to 174 / 153 by step 20,000 (photos 030-039, docs/training.md, "v4").
CONFIGS["small-fast"] = ExperimentConfig(
    name="small-fast",
    model=dataclasses.replace(CONFIGS["small"].model, end_scale=4),
    train=dataclasses.replace(
        CONFIGS["small"].train,
        distortion_only_steps=0,
        gan_weight=2.0,
        gan_learning_rate=5e-5,
        decay_start=2_000,
        decay_steps=10_000,
        final_lr_fraction=0.3,
    ),
)
SHIPPED = "small-fast"
"""The configuration of the shipped default model, `gc-small`: what training, the seed and the benchmarks'
random-weight exports start from unless told otherwise."""
# A GPU-scale quick check of the pipeline end to end, and the tests' random-weight export.
CONFIGS["tiny"] = ExperimentConfig(
    name="tiny",
    model=dataclasses.replace(
        CONFIGS["small"].model,
        encoder_widths=(4, 4, 8, 8, 8),
        residual_blocks=1,
        generator_widths=(8, 8, 8, 4, 4),
        discriminator_widths=(4, 4, 8, 8),
        latent_channels=8,
        rate_channels=(),
        default_channels=0,
    ),
    train=dataclasses.replace(CONFIGS["small"].train, crop=32, batch=2, validate_every=2, rate_weights=()),
)
# Selective compression (SC) on CamVid: the small networks plus the label-feature network F and a
# discriminator that sees the label map. The same sixteen nested latent channels and rate points as `small`, so
# an SC run starts from a trained GC checkpoint (`--init-from`, models/checkpoint.py: warm_start) and SC files
# compare with GC files at the same C. Labels reach the generator at the latent's resolution (1/16), which costs
# about 55 bytes per 480x360 frame (1/8 costs about 120; docs/sc.md). The synthesised regions learn from the GAN
# and feature matching alone, so the GAN joins after a short distortion-only stage (enough for a warm start to
# adapt to masked latents), and the schedule is sized for a warm-started run of about 12k steps.
# SC exists to shrink files: its rate weight is three times GC's (from step 1,889 of the first run, when the
# kept region's PSNR was 0.07 dB from GC's and the files 0.51 of GC's, docs/sc.md).
CONFIGS["sc-small"] = ExperimentConfig(
    name="sc-small",
    model=dataclasses.replace(CONFIGS["small"].model, classes=CAMVID_CLASSES),
    train=dataclasses.replace(
        CONFIGS["small"].train,
        distortion_only_steps=1_000,
        gan_learning_rate=None,  # its 12k-step run trained smoothly at the full 4e-4
        rate_weight=0.75,
        decay_start=6_000,
        decay_steps=6_000,
        preservation_masks=(("all", 1.0), ("none", 0.5), ("boxes", 1.0), ("classes", 2.0), ("instances", 1.5)),
        label_dropout=0.1,
        validation_synthesize=("road", "sky", "tree", "building"),
    ),
)
# The tests' random-weight SC export and a quick check of the SC pipeline; like `tiny`, a single rate (tests
# that need nested rates replace rate_channels).
CONFIGS["sc-tiny"] = ExperimentConfig(
    name="sc-tiny",
    model=dataclasses.replace(CONFIGS["tiny"].model, classes=CAMVID_CLASSES, label_widths=(4, 4)),
    train=dataclasses.replace(CONFIGS["sc-small"].train, crop=32, batch=2, validate_every=2, rate_weights=()),
)
