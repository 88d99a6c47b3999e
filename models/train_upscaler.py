"""Train the hybrid codec's upscaler: photographs down-scaled and coded by AVIF (service/codec/base.py) in, the
originals out. Starts from Real-ESRGAN's pretrained compact network (models/upscaler.py), then L1 + a coarse-scale
anchor + feature matching + a least-squares multi-scale GAN, as in the GC trainer (models/train.py).

    python -m models.train_upscaler --extra-data data/fhd --extra-data data/more --threads 1 &

Resumes from RUN_DIR/checkpoint.pt (or --init) when there is one; writes it every few minutes and at SIGTERM.
Each training image is coded once per drawn quality, and the AVIF files are cached in RUN_DIR/base-cache.pkl.
`--write-seed models/checkpoints/upscaler.pt` writes the run's checkpoint without the optimiser moments, its weights
in float16, for git (about 3 MB); `--init` resumes from it (the learning rate needs no warm-up: Adam's moments
rebuild within a few hundred steps at this small rate).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import pickle
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from models.checkpoint import load_checkpoint, save_checkpoint
from models.data import SHARED_DATA, image_files, load_rgb, to_tensor, training_sources
from models.networks import PatchDiscriminator
from models.train import feature_matching_loss, lsgan_loss, psnr, update_ema
from models.upscaler import CompactUpscaler, UpscalerConfig, load_ncnn
from service.codec.base import BaseLayer

VALIDATION_PHOTOS = range(25, 30)
"""photos/025-029: the upscaler's validation images and the blind comparisons' pictures, never trained on
(030-039 stay held out for reports)."""


@dataclass(frozen=True)
class UpscalerTrainConfig:
    crop: int = 48
    """Side of a base-image crop; the original's crop is `factor` times larger."""
    batch: int = 8
    learning_rate: float = 1e-4
    qualities: tuple[int, int] = (12, 60)
    """AVIF qualities drawn for the training bases: about 0.02-0.12 bits per original pixel on photographs."""
    versions: int = 2
    """Bases coded per training image, each at its own drawn quality."""
    l1_weight: float = 1.0
    lowpass_weight: float = 1.0
    """L1 between `factor`-times block means: the coarse-scale fidelity that the base layer carries."""
    feature_matching_weight: float = 1.0
    gan_weight: float = 0.1
    discriminator_widths: tuple[int, ...] = (32, 64, 128, 128)
    discriminator_scales: int = 2
    ema_decay: float = 0.999
    max_side: int = 1920
    validate_every: int = 250
    checkpoint_minutes: float = 5.0
    seed: int = 0

    @property
    def adversarial(self) -> bool:
        """Whether the GAN terms count: with both weights 0 the upscaler learns from its pixel losses alone."""
        return bool(self.gan_weight or self.feature_matching_weight)


class Discriminator(nn.Module):
    """PatchGANs at full and half scale (models/networks.py's PatchDiscriminator), images in [-1, 1]."""

    def __init__(self, cfg: UpscalerTrainConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(cfg.discriminator_widths, "channel") for _ in range(cfg.discriminator_scales)
        )

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        x = x * 2.0 - 1.0
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


@dataclass
class Pair:
    original: np.ndarray
    """(H, W, 3) uint8, H and W multiples of the factor."""
    base: np.ndarray
    """(H / factor, W / factor, 3) uint8: the decoded AVIF base."""


def make_pairs(
    files: list[Path], layer: BaseLayer, cfg: UpscalerTrainConfig, cache_path: Path, rng: np.random.Generator
) -> list[Pair]:
    """Every image with `cfg.versions` bases at drawn qualities; AVIF files come from the cache when there."""
    cache: dict[str, bytes] = pickle.loads(cache_path.read_bytes()) if cache_path.exists() else {}
    pairs, added = [], 0
    for path in files:
        original = load_rgb(path, cfg.max_side)
        height, width = (side - side % layer.factor for side in original.shape[:2])
        if min(height, width) < cfg.crop * layer.factor:
            continue
        original = original[:height, :width]
        small = layer.downscale(original, (height // layer.factor, width // layer.factor))
        for version in range(cfg.versions):
            key = f"{path}#{version}"
            if key not in cache:
                cache[key] = layer.encode(small, int(rng.integers(cfg.qualities[0], cfg.qualities[1] + 1)))
                added += 1
            pairs.append(Pair(original, layer.decode(cache[key], small.shape[:2])))
    if added:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(pickle.dumps(cache))
    return pairs


def training_files(extra: list[Path]) -> list[Path]:
    """Every training image (models.data's sources and the extra folders) but the validation photos."""
    return [
        path
        for source in training_sources(extra=extra).values()
        for path in source
        if not (path.parent.name == "photos" and int(path.stem) in VALIDATION_PHOTOS)
    ]


def validation_pairs(layer: BaseLayer, run_dir: Path) -> list[Pair]:
    """The validation photos, each with one base at AVIF quality 30."""
    files = [path for path in image_files(SHARED_DATA / "photos") if int(path.stem) in VALIDATION_PHOTOS]
    cfg = UpscalerTrainConfig(versions=1, qualities=(30, 30))
    return make_pairs(files, layer, cfg, run_dir / "validation-cache.pkl", np.random.default_rng(0))


def sample_batch(
    pairs: list[Pair], cfg: UpscalerTrainConfig, factor: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """(bases, originals): aligned random crops with random horizontal flips."""
    bases = np.empty((cfg.batch, cfg.crop, cfg.crop, 3), np.uint8)
    big = cfg.crop * factor
    originals = np.empty((cfg.batch, big, big, 3), np.uint8)
    for i in range(cfg.batch):
        pair = pairs[rng.integers(len(pairs))]
        top = rng.integers(pair.base.shape[0] - cfg.crop + 1)
        left = rng.integers(pair.base.shape[1] - cfg.crop + 1)
        base = pair.base[top : top + cfg.crop, left : left + cfg.crop]
        original = pair.original[top * factor : top * factor + big, left * factor : left * factor + big]
        if rng.random() < 0.5:
            base, original = base[:, ::-1], original[:, ::-1]
        bases[i], originals[i] = base, original
    return to_tensor(bases), to_tensor(originals)


@torch.no_grad()
def validate(model: CompactUpscaler, pairs: list[Pair]) -> dict[str, float]:
    """Mean PSNR at full scale and of `factor`-times block means (coarse fidelity), ours and Lanczos's."""
    factor = model.config.factor
    totals = {"val_psnr": 0.0, "val_coarse_psnr": 0.0, "lanczos_psnr": 0.0, "lanczos_coarse_psnr": 0.0}
    for pair in pairs:
        original = to_tensor(pair.original)
        base = to_tensor(pair.base)
        ours = model(base).clamp(0, 1)
        lanczos = to_tensor(
            np.asarray(Image.fromarray(pair.base).resize(pair.original.shape[1::-1], Image.Resampling.LANCZOS))
        )
        for name, image in (("val", ours), ("lanczos", lanczos)):
            totals[f"{name}_psnr"] += psnr(F.mse_loss(image, original).item())
            coarse = F.mse_loss(F.avg_pool2d(image, factor), F.avg_pool2d(original, factor)).item()
            totals[f"{name}_coarse_psnr"] += psnr(coarse)
    return {key: value / len(pairs) for key, value in totals.items()}


class UpscalerTrainer:
    def __init__(self, cfg: UpscalerTrainConfig, model: CompactUpscaler, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.model = model
        self.ema = CompactUpscaler(model.config)
        self.ema.load_state_dict(model.state_dict())
        self.ema.requires_grad_(False)
        self.discriminator = Discriminator(cfg)
        self.g_optimizer = torch.optim.Adam(model.parameters(), cfg.learning_rate, betas=(0.9, 0.99))
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), cfg.learning_rate, betas=(0.9, 0.99))
        self.step = 0
        self.hours = 0.0

    def state(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.cfg),
            "upscaler": dataclasses.asdict(self.model.config),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "step": self.step,
            "hours": self.hours,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.discriminator.load_state_dict(state["discriminator"])
        if "g_optimizer" in state:
            self.g_optimizer.load_state_dict(state["g_optimizer"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.step, self.hours = state["step"], state["hours"]

    def train_step(self, bases: Tensor, originals: Tensor) -> dict[str, float]:
        """One step; with no adversarial weight (cfg.adversarial) the discriminator is neither run nor trained."""
        cfg, factor = self.cfg, self.model.config.factor
        fake = self.model(bases)
        logs: dict[str, float] = {}
        adversarial = torch.zeros(())
        if cfg.adversarial:
            self.d_optimizer.zero_grad(set_to_none=True)
            real_out = self.discriminator(originals)
            d_loss = lsgan_loss(self.discriminator(fake.detach()), 0.0) + lsgan_loss(real_out, 1.0)
            d_loss.backward()
            self.d_optimizer.step()
            # Feature matching compares with the real images' features from before this step's update (detached):
            # one discriminator pass fewer per step, for features one small update old.
            fake_out = self.discriminator(fake)
            gan, matching = lsgan_loss(fake_out, 1.0), feature_matching_loss(fake_out, real_out)
            adversarial = cfg.gan_weight * gan + cfg.feature_matching_weight * matching
            logs = {"gan": gan.item(), "feature_matching": matching.item(), "discriminator": d_loss.item()}
        self.g_optimizer.zero_grad(set_to_none=True)
        l1 = F.l1_loss(fake, originals)
        lowpass = F.l1_loss(F.avg_pool2d(fake, factor), F.avg_pool2d(originals, factor))
        loss = cfg.l1_weight * l1 + cfg.lowpass_weight * lowpass + adversarial
        loss.backward()
        self.g_optimizer.step()
        update_ema(self.ema, self.model, self.step, cfg.ema_decay)
        mse = F.mse_loss(fake.detach().clamp(0, 1), originals).item()
        return {"train_psnr": psnr(mse), "l1": l1.item(), "lowpass": lowpass.item(), **logs}

    def save(self) -> None:
        save_checkpoint(self.state(), self.run_dir / "checkpoint.pt")


LOG_FIELDS = [
    "step", "hours", "train_psnr", "l1", "lowpass", "gan", "feature_matching", "discriminator",
    "val_psnr", "val_coarse_psnr", "lanczos_psnr", "lanczos_coarse_psnr",
]  # fmt: skip


def run(
    trainer: UpscalerTrainer, pairs: list[Pair], validation: list[Pair], total_steps: int, rng: np.random.Generator
) -> None:
    stop = {"signal": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(signal=True))
    log_path = trainer.run_dir / "log.csv"
    new_log = not log_path.exists()
    clock = last_save = time.monotonic()
    running: dict[str, float] = {}
    with open(log_path, "a", newline="") as log_file:
        log = csv.DictWriter(log_file, LOG_FIELDS)
        if new_log:
            log.writeheader()
        while trainer.step < total_steps and not stop["signal"]:
            logs = trainer.train_step(*sample_batch(pairs, trainer.cfg, trainer.model.config.factor, rng))
            trainer.step += 1
            now = time.monotonic()
            trainer.hours += (now - clock) / 3600
            clock = now
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in logs.items()}
            row: dict[str, Any] = {"step": trainer.step, "hours": f"{trainer.hours:.4f}"}
            if trainer.step % trainer.cfg.validate_every == 0:
                row |= {k: f"{v:.4f}" for k, v in validate(trainer.ema, validation).items()}
                print(f"step {trainer.step}: {row}", flush=True)
            if trainer.step % 25 == 0 or "val_psnr" in row:
                log.writerow(row | {k: f"{v:.6g}" for k, v in running.items()})
                log_file.flush()
            if now - last_save > trainer.cfg.checkpoint_minutes * 60:
                trainer.save()
                last_save = now
    trainer.save()


def write_seed(checkpoint: Path, out: Path) -> None:
    """The checkpoint's weights in float16 and its bookkeeping, without the optimisers' moments."""
    state = load_checkpoint(checkpoint)
    seed = {key: state[key] for key in ("config", "upscaler", "step", "hours")}
    for key in ("model", "ema", "discriminator"):
        seed[key] = {
            name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state[key].items()
        }
    save_checkpoint(seed, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/upscaler"))
    parser.add_argument("--init", type=Path, help="start from this checkpoint when the run has none")
    parser.add_argument("--prior", default="realesr-animevideov3-x4", help="ncnn weights to start from, else none")
    scratch = parser.add_argument_group("a new run with --prior none: the network, from random weights")
    scratch.add_argument("--factor", type=int, default=UpscalerConfig.factor)
    scratch.add_argument("--features", type=int, default=UpscalerConfig.features)
    scratch.add_argument("--convolutions", type=int, default=UpscalerConfig.convolutions)
    new_run = parser.add_argument_group("a new run's training settings (a resumed run keeps its own)")
    new_run.add_argument("--learning-rate", type=float, default=UpscalerTrainConfig.learning_rate)
    new_run.add_argument("--qualities", type=int, nargs=2, default=UpscalerTrainConfig.qualities,
                         metavar=("LOW", "HIGH"), help="AVIF qualities drawn for the training bases")  # fmt: skip
    new_run.add_argument("--pixel-only", action="store_true", help="L1 and the coarse anchor alone: no GAN terms")
    parser.add_argument("--extra-data", type=Path, action="append", default=[], help="another folder of photos")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--write-seed", type=Path, metavar="PATH", help="write the run's seed for git there, and stop")
    args = parser.parse_args(argv)
    checkpoint = args.run_dir / "checkpoint.pt"
    if args.write_seed:
        write_seed(checkpoint, args.write_seed)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    state = load_checkpoint(checkpoint) if checkpoint.exists() else load_checkpoint(args.init) if args.init else None
    if state:
        cfg = UpscalerTrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
    else:
        adversarial = {"gan_weight": 0.0, "feature_matching_weight": 0.0} if args.pixel_only else {}
        cfg = UpscalerTrainConfig(learning_rate=args.learning_rate, qualities=tuple(args.qualities), **adversarial)
    torch.manual_seed(cfg.seed)
    if state:
        model = CompactUpscaler(UpscalerConfig(**state["upscaler"]))
    elif args.prior != "none":
        model = load_ncnn(args.prior)
    else:
        model = CompactUpscaler(UpscalerConfig(args.factor, args.features, args.convolutions))
    layer = BaseLayer(factor=model.factor)
    rng = np.random.default_rng(cfg.seed + (state["step"] if state else 0))
    files = training_files(args.extra_data)
    pairs = make_pairs(files, layer, cfg, args.run_dir / "base-cache.pkl", np.random.default_rng(cfg.seed))
    validation = validation_pairs(layer, args.run_dir)
    print(f"{len(pairs)} training pairs from {len(files)} images; {len(validation)} validation images", flush=True)
    trainer = UpscalerTrainer(cfg, model, args.run_dir)
    if state:
        trainer.restore(state)
    run(trainer, pairs, validation, args.steps, rng)


if __name__ == "__main__":
    main()
