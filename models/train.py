"""Training loop: a distortion-and-rate warm-up, then the GAN stage with a multi-scale discriminator.

Runs unchanged on CPU and CUDA, resumes from its own checkpoint after an interruption, and scales out
with `torchrun --nproc-per-node N -m models.train ...` (DistributedDataParallel).

SC configurations (`sc-small`) train on CamVid frames with their label maps and random preservation masks:
the distortion counts only in the preserved region, the GAN and feature matching shape the rest, and the
discriminator sees the label map.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models.checkpoint import load_checkpoint, save_checkpoint, warm_start
from models.codec import GenerativeCodec
from models.config import CONFIGS, SHIPPED, ExperimentConfig, TrainConfig
from models.data import CropSampler, Sample, labelled_files, training_sources, validation_samples
from models.networks import MultiScaleDiscriminator

LOG_FIELDS = [
    "step", "hours", "stage", "lr", "mse", "train_psnr", "bpp_model", "bpp_soft", "range",
    "gan", "feature_matching", "discriminator", "val_psnr", "val_bpp", "lowpass_mse",
]  # fmt: skip


def learning_rate(step: int, run_start: int, cfg: TrainConfig) -> float:
    """Linear warm-up (repeated after every start, since optimiser moments are not carried in git),
    constant (the GAN stage's own peak from its first step, if it has one), then cosine decay to a fraction of
    the peak."""
    warm = min(1.0, (step - run_start + 1) / cfg.warmup_steps)
    progress = min(1.0, max(0, step - cfg.decay_start) / cfg.decay_steps)
    decay = cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    gan_stage = step >= cfg.distortion_only_steps and cfg.gan_learning_rate is not None
    peak = cfg.gan_learning_rate if gan_stage else cfg.learning_rate
    return peak * warm * decay


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def distortion(reconstruction: Tensor, images: Tensor, preserved: Tensor | None) -> Tensor:
    """MSE over the preserved pixels (SC; `preserved` is (B, 1, H, W) in {0, 1}), or over all of them (GC)."""
    if preserved is None:
        return F.mse_loss(reconstruction, images)
    squared = (reconstruction - images).pow(2) * preserved
    return squared.sum() / (preserved.sum() * images.shape[1]).clamp(min=1)


def lowpass_distortion(reconstruction: Tensor, images: Tensor, preserved: Tensor | None, factor: int) -> Tensor:
    """distortion() between factor x factor block means; SC: over the blocks preserved whole."""
    kept = None if preserved is None else (F.avg_pool2d(preserved, factor) == 1).float()
    return distortion(F.avg_pool2d(reconstruction, factor), F.avg_pool2d(images, factor), kept)


def lsgan_loss(outputs: list[list[Tensor]], target: float) -> Tensor:
    return sum(F.mse_loss(scale[-1], torch.full_like(scale[-1], target)) for scale in outputs)


def feature_matching_loss(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    pairs = [(f, r.detach()) for fs, rs in zip(fake, real, strict=True) for f, r in zip(fs[:-1], rs[:-1], strict=True)]
    return sum(F.l1_loss(f, r) for f, r in pairs) / len(fake)


def draw_rate_points(config: ExperimentConfig, batch: int, device: torch.device | None = None) -> Tensor | None:
    """Channel counts for a batch's crops, drawn by the rate weights; None for a single-rate model."""
    points = config.model.rate_channels
    if not points:
        return None
    weights = torch.tensor(config.train.rate_weights or [1.0] * len(points))
    drawn = torch.multinomial(weights, batch, replacement=True)
    return torch.tensor(points, device=device)[drawn.to(device)]


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """Exponential moving average of the weights; the decay ramps up so early averages are not stale."""
    decay = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


def pad_to(x: Tensor, factor: int) -> Tensor:
    """Reflect-pad the bottom and right to multiples of `factor`, as the runtime pads images."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % factor, 0, -h % factor), mode="reflect")


@torch.no_grad()
def validate(codec: GenerativeCodec, samples: list[Sample]) -> tuple[float, float]:
    """Mean PSNR (dB) and modelled bits per pixel over whole images, padded to the down-sampling.

    SC: PSNR over the preserved region only, and the bits of the kept symbols only (mask and labels not counted).
    Nested rate points: at the model's default.
    """
    codec.eval()
    factor = codec.config.downsampling
    default = codec.config.default_channels
    channels = torch.tensor([default], device=samples[0].images.device) if default else None
    psnrs, bpps = [], []
    for sample in samples:
        h, w = sample.images.shape[-2:]
        labels = None if sample.labels is None else pad_to(sample.labels[:, None].float(), factor)[:, 0].long()
        keep = None if sample.keep is None else pad_to(sample.keep, factor)
        out = codec(pad_to(sample.images, factor), keep, labels, channels)
        reconstruction = out.reconstruction[..., :h, :w].clamp(0, 1).mul(255).round().div(255)
        preserved = None if out.preserved is None else out.preserved[..., :h, :w]
        psnrs.append(psnr(distortion(reconstruction, sample.images, preserved).item()))
        bpps.append(out.symbol_bits.item() / (h * w))
    codec.train()
    return float(np.mean(psnrs)), float(np.mean(bpps))


def upgrade_log_header(path: Path) -> None:
    """A log begun before a column was added gets the current header (columns are only ever appended)."""
    lines = path.read_text().splitlines(keepends=True)
    header = ",".join(LOG_FIELDS) + "\n"
    if lines and lines[0].rstrip("\r\n") != header.rstrip("\n"):
        path.write_text(header + "".join(lines[1:]))


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def setup(cls, device: str) -> Distributed:
        if "WORLD_SIZE" not in os.environ:
            return cls(device=torch.device(device))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        local = int(os.environ.get("LOCAL_RANK", 0))
        if device == "cuda":
            torch.cuda.set_device(local)
        target = torch.device(f"cuda:{local}") if device == "cuda" else torch.device("cpu")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=target)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        return DistributedDataParallel(module) if self.world > 1 else module


class Trainer:
    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: Path,
        sampler: CropSampler,
        validation: list[Sample],
        env: Distributed | None = None,
    ) -> None:
        self.config, self.cfg, self.run_dir = config, config.train, run_dir
        self.env = env = env or Distributed()
        self.sampler = sampler
        self.validation = [sample.to(env.device) for sample in validation]
        torch.manual_seed(self.cfg.seed + env.rank)
        self.codec = GenerativeCodec(config.model, self.cfg.soft_assignment_sigma).to(env.device)
        self.ema = copy.deepcopy(self.codec).requires_grad_(False)
        self.discriminator = MultiScaleDiscriminator(config.model).to(env.device)
        self.opt_g = torch.optim.Adam(self.codec.parameters(), lr=self.cfg.learning_rate, betas=(0.9, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.learning_rate, betas=(0.5, 0.999))
        self.step = 0
        self.run_start = 0
        self.hours = 0.0
        self.origin: dict[str, Any] | None = None
        """Where a warm-started run took its first weights from (recorded in checkpoints and the manifest)."""

    # -- state --------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def state(self) -> dict[str, Any]:
        origin = {} if self.origin is None else {"warm_start": self.origin}
        return origin | {
            "config": self.config.to_dict(),
            "step": self.step,
            "hours": self.hours,
            "data": self.sampler.summary(),
            "codec": self.codec.state_dict(),
            "ema": self.ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": self.sampler.rng.bit_generator.state,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Full checkpoints resume exactly; weights-only seeds (committed to git) restart the optimiser."""
        self.step = self.run_start = state["step"]
        self.hours = state["hours"]
        self.origin = state.get("warm_start")
        self.ema.load_state_dict(state["ema"])
        self.codec.load_state_dict(state.get("codec", state["ema"]))
        self.discriminator.load_state_dict(state["discriminator"])
        if "opt_g" in state:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            torch.set_rng_state(state["torch_rng"])
            self.sampler.rng.bit_generator.state = state["sampler_rng"]
            self.run_start = -self.cfg.warmup_steps

    def warm_start(self, state: dict[str, Any], source: str) -> dict[str, dict[str, list[str]]]:
        """Start this (fresh) run from another configuration's checkpoint, e.g. SC from GC: its averaged weights
        go into the codec and its average, its discriminator into ours (models/checkpoint.py: warm_start).
        The step count, schedule and optimisers start afresh."""
        report = {"codec": warm_start(self.codec, state["ema"])}
        self.ema.load_state_dict(self.codec.state_dict())
        report["discriminator"] = warm_start(self.discriminator, state["discriminator"])
        self.origin = {"checkpoint": source, "config": state["config"]["name"], "step": state["step"]}
        return report

    def save(self, path: Path | None = None) -> None:
        if self.env.main:
            save_checkpoint(self.state(), path or self.checkpoint_path)

    # -- steps --------------------------------------------------------------------------------------------
    def draw_rate_points(self, batch: int) -> Tensor | None:
        return draw_rate_points(self.config, batch, self.env.device)

    def train_step(self, codec: nn.Module, discriminator: nn.Module, sample: Sample) -> dict[str, float]:
        cfg = self.cfg
        batch = sample.images
        gan_stage = self.step >= cfg.distortion_only_steps
        lr = learning_rate(self.step, self.run_start, cfg)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]
        with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            out = codec(batch, sample.keep, sample.labels, self.draw_rate_points(batch.shape[0]))
            reconstruction = out.reconstruction.float()
        mse = distortion(reconstruction, batch, out.preserved)
        lowpass = lowpass_distortion(reconstruction, batch, out.preserved, cfg.lowpass_factor)
        loss = (
            cfg.mse_weight * mse
            + cfg.lowpass_weight * lowpass
            + cfg.rate_weight * out.soft_bits / pixels
            + out.symbol_bits / pixels
            + cfg.range_weight * out.range_penalty
        )
        logs = {
            "mse": mse.item(),
            "lowpass_mse": lowpass.item(),
            "bpp_model": out.symbol_bits.item() / pixels,
            "bpp_soft": out.soft_bits.item() / pixels,
            "range": out.range_penalty.item(),
        }
        if gan_stage:
            with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                real = discriminator(batch, out.labels)
                fake_d = discriminator(reconstruction.detach(), out.labels)
                loss_d = lsgan_loss(real, 1.0) + lsgan_loss(fake_d, 0.0)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.float().backward()
            self.opt_d.step()
            with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                fake = discriminator(reconstruction, out.labels)
                gan = lsgan_loss(fake, 1.0)
                fm = feature_matching_loss(fake, real)
            loss = loss + cfg.gan_weight * gan.float() + cfg.feature_matching_weight * fm.float()
            logs.update(gan=gan.item(), feature_matching=fm.item(), discriminator=loss_d.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        update_ema(self.ema, self.codec, self.step - self.run_start, cfg.ema_decay)
        logs.update(lr=lr, stage="gan" if gan_stage else "distortion", train_psnr=psnr(logs["mse"]))
        return logs

    def run(self, total_steps: int, max_minutes: float | None) -> None:
        codec, discriminator = self.env.wrap(self.codec), self.env.wrap(self.discriminator)
        stop = {"signal": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(signal=True))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists()
        if not new_log and self.env.main:
            upgrade_log_header(log_path)
        started = last_save = time.monotonic()
        clock = time.monotonic()
        with open(log_path, "a", newline="") as log_file:
            log = csv.DictWriter(log_file, LOG_FIELDS)
            if new_log and self.env.main:
                log.writeheader()
            bar = tqdm(total=total_steps, initial=self.step, disable=not self.env.main, dynamic_ncols=True)
            running: dict[str, float] = {}
            while self.step < total_steps and not stop["signal"]:
                logs = self.train_step(codec, discriminator, self.sampler.batch(self.cfg.batch).to(self.env.device))
                self.step += 1
                now = time.monotonic()
                self.hours += (now - clock) / 3600
                clock = now
                for key, value in logs.items():
                    if isinstance(value, float):
                        running[key] = 0.9 * running.get(key, value) + 0.1 * value
                bar.update(1)
                bar.set_postfix(
                    psnr=f"{running['train_psnr']:.2f}", bpp=f"{running['bpp_model']:.4f}", stage=logs["stage"]
                )
                row = {"step": self.step, "hours": f"{self.hours:.4f}", "stage": logs["stage"]}
                if self.step % self.cfg.validate_every == 0 and self.env.main:
                    row["val_psnr"], row["val_bpp"] = validate(self.ema, self.validation)
                    bar.write(f"step {self.step}: validation {row['val_psnr']:.2f} dB at {row['val_bpp']:.4f} bpp")
                if (self.step % 50 == 0 or "val_psnr" in row) and self.env.main:
                    log.writerow(row | {k: f"{v:.6g}" for k, v in running.items()})
                    log_file.flush()
                keep = bool(self.cfg.keep_every) and self.step % self.cfg.keep_every == 0
                if keep or now - last_save > self.cfg.checkpoint_minutes * 60:
                    self.save()
                    last_save = now
                if keep and self.env.main:
                    # checkpoint.pt is always replaced by a new file (save_checkpoint), never rewritten in
                    # place, so a hard link keeps this step's state under its own name for one write.
                    kept = self.run_dir / f"checkpoint-{self.step}.pt"
                    kept.unlink(missing_ok=True)  # left by an earlier pass over this step, before a resume
                    os.link(self.checkpoint_path, kept)
                if max_minutes is not None and now - started > max_minutes * 60:
                    break
            bar.close()
        self.save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=SHIPPED, choices=sorted(CONFIGS))
    parser.add_argument("--run-dir", type=Path, help="where checkpoints and the log go (default runs/CONFIG)")
    parser.add_argument("--init", type=Path, help="start from this checkpoint when the run has none")
    parser.add_argument(
        "--init-from",
        type=Path,
        metavar="CHECKPOINT",
        help="when the run has no checkpoint, start --config from the weights of another configuration's "
        "checkpoint (e.g. sc-small from a trained small): same-shape tensors are copied, widened inputs zeroed",
    )
    parser.add_argument("--extra-data", type=Path, action="append", default=[], help="another folder of photos")
    parser.add_argument("--steps", type=int, default=100_000, help="stop at this total step count")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of this run")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = args.run_dir or Path("runs") / args.config
    env = Distributed.setup(args.device)
    checkpoint = run_dir / "checkpoint.pt"
    if args.init and args.init_from:
        parser.error("--init resumes a checkpoint of the same configuration, --init-from starts from another: not both")
    state = load_checkpoint(checkpoint) if checkpoint.exists() else load_checkpoint(args.init) if args.init else None
    config = ExperimentConfig.from_dict(state["config"]) if state else CONFIGS[args.config]
    if args.bf16 is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, bf16=args.bf16))
    cfg, seed = config.train, config.train.seed + env.rank
    if config.model.selective:
        if args.extra_data:
            parser.error("SC configurations train on labelled CamVid frames only: --extra-data does not apply")
        sampler = CropSampler.load_labelled(
            labelled_files("train"), cfg.crop, seed, cfg.preservation_masks, cfg.label_dropout
        )
    else:
        sampler = CropSampler.load(training_sources(extra=args.extra_data), cfg.crop, seed)
    validation = validation_samples(config.model.classes, cfg.validation_synthesize)
    trainer = Trainer(config, run_dir, sampler, validation, env)
    if state:
        trainer.restore(state)
    elif args.init_from:
        report = trainer.warm_start(load_checkpoint(args.init_from), str(args.init_from))
        if env.main:
            counts = {part: {k: len(v) for k, v in done.items()} for part, done in report.items()}
            widened = [name for done in report.values() for name in done["widened"]]
            print(f"warm start from {args.init_from}: {counts}; widened (new inputs zero): {widened}")
    trainer.run(args.steps, args.minutes)
    if env.world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
