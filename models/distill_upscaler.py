"""Distil a large pretrained upscaler (the teacher, e.g. Real-ESRGAN's RRDBNet `realesrgan-x4plus`: 18 M
multiply-adds per base pixel) into the compact one the CPU runs (0.6 M), on the AVIF-coded bases the codec makes.

Blind, people preferred the teacher's pictures to the GAN-fine-tuned compact upscaler's on every trial
(docs/training.md, "v7"), but it takes about 41 s for a 1920x1080 image on two cores (issue 16, through ncnn).
Its outputs are a deterministic function of the base, so the student can learn them with a plain L1 loss, with no
GAN and none of the original's ambiguity.

    python -m models.export_hybrid --prior realesrgan-x4plus --graph -o runs/hq/gc-hybrid-hq --id gc-hybrid-hq
    python -m models.distill_upscaler --threads 2 teach --teacher runs/hq/gc-hybrid-hq/generator.onnx --crops 800
    python -m models.distill_upscaler --threads 2 learn --init runs/upscaler/checkpoint.pt --minutes 40

`teach` runs the teacher (an exported hybrid graph, through onnxruntime) on random base crops with a margin of context
and keeps (base with margin, teacher's centre, original's centre) as uint8 in RUN_DIR/teacher.npz; `learn` trains the
student on them (L1 to the teacher, L1 of 4x block means to the original), checkpointing to RUN_DIR/checkpoint.pt
in the format models.train_upscaler and models.export_hybrid read.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torch.nn import functional as F

from models.checkpoint import load_checkpoint
from models.data import to_tensor
from models.train import update_ema
from models.train_upscaler import (
    Pair,
    UpscalerTrainConfig,
    UpscalerTrainer,
    make_pairs,
    training_files,
    validate,
    validation_pairs,
)
from models.upscaler import CompactUpscaler, UpscalerConfig, deepened
from service.codec.base import BaseLayer

MARGIN = 8
"""Base pixels of context around each crop, given to teacher and student alike and cut from their outputs."""


def teach(
    teacher: Path,
    run_dir: Path,
    crops: int,
    crop: int,
    extra: list[Path],
    seed: int = 1,
    factor: int = BaseLayer.factor,
    qualities: tuple[int, int] = UpscalerTrainConfig.qualities,
) -> Path:
    """Label `crops` more crops of the training bases (1/`factor` of each side, AVIF at `qualities`) with the
    teacher (an exported hybrid graph); a teacher that enlarges more than `factor` is reduced to it (Lanczos)."""
    cfg = UpscalerTrainConfig(qualities=qualities)
    layer = BaseLayer(factor=factor)
    pairs = make_pairs(training_files(extra), layer, cfg, run_dir / "base-cache.pkl", np.random.default_rng(cfg.seed))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(teacher), options, providers=["CPUExecutionProvider"])
    return label(session, pairs, run_dir / "teacher.npz", crops, crop, layer.factor, seed)


def label(
    session: ort.InferenceSession, pairs: list[Pair], path: Path, crops: int, crop: int, factor: int, seed: int = 1
) -> Path:
    """Add `crops` crops to the set at `path` (written every 50 crops, so a stopped run keeps what it labelled):
    (base with margin, teacher's centre, original's centre). Each call draws new crops: its random stream is keyed
    by the number of crops already there."""
    labelled = dict(np.load(path)) if path.exists() else {}
    rng = np.random.default_rng([seed, len(labelled.get("bases", ()))])
    side = crop + 2 * MARGIN
    bases, targets, originals = [], [], []
    started = time.monotonic()
    for i in range(1, crops + 1):
        pair = pairs[rng.integers(len(pairs))]
        while min(pair.base.shape[:2]) < side:
            pair = pairs[rng.integers(len(pairs))]
        top, left = rng.integers(pair.base.shape[0] - side + 1), rng.integers(pair.base.shape[1] - side + 1)
        bases.append(pair.base[top : top + side, left : left + side])
        out = session.run(None, {"latent": to_tensor(bases[-1]).numpy()})[0][0]
        out = np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        if out.shape[0] != side * factor:
            out = np.asarray(Image.fromarray(out).resize((side * factor,) * 2, Image.Resampling.LANCZOS))
        inner = slice(MARGIN * factor, (MARGIN + crop) * factor)
        targets.append(out[inner, inner])
        row, column = (top + MARGIN) * factor, (left + MARGIN) * factor
        originals.append(pair.original[row : row + crop * factor, column : column + crop * factor])
        if i % 50 == 0 or i == crops:
            new = {"bases": bases, "targets": targets, "originals": originals}
            arrays = {
                key: np.concatenate([labelled[key], np.stack(value)]) if labelled else np.stack(value)
                for key, value in new.items()
            }
            partial = path.with_suffix(".partial.npz")
            np.savez(partial, **arrays)
            partial.replace(path)
            print(f"{i}/{crops} crops, {len(arrays['bases'])} in all, {time.monotonic() - started:.0f} s", flush=True)
    return path


def learn(
    run_dir: Path,
    init: Path,
    minutes: float,
    batch: int = 8,
    learning_rate: float = 1e-4,
    stop: threading.Event | None = None,
    deepen: int = 0,
) -> None:
    """Train the student on the teacher's crops for `minutes` or until `stop` is set, resuming RUN_DIR's checkpoint
    (else starting from `init`, with `deepen` more convolutions, models.upscaler.deepened), and checkpoint it every
    5 minutes and at the end. The student starts from the averaged weights, which the average also starts from."""
    stop = stop or threading.Event()
    data = np.load(run_dir / "teacher.npz")
    bases, targets, originals = data["bases"], data["targets"], data["originals"]
    checkpoint = run_dir / "checkpoint.pt"
    resuming = checkpoint.exists()
    state = load_checkpoint(checkpoint if resuming else init)
    model = CompactUpscaler(UpscalerConfig(**state["upscaler"]))
    model.load_state_dict(state["ema"])
    if deepen and not resuming:
        model = deepened(model, deepen)
    cfg = UpscalerTrainConfig(learning_rate=learning_rate, batch=batch)
    trainer = UpscalerTrainer(cfg, model, run_dir)
    trainer.discriminator.load_state_dict(state["discriminator"])  # unused here; kept for GAN fine-tuning after
    trainer.step, trainer.hours = state["step"], state["hours"]
    factor, rng = model.config.factor, np.random.default_rng(trainer.step)
    inner = slice(MARGIN * factor, -MARGIN * factor)
    validation = validation_pairs(BaseLayer(factor=factor), run_dir)
    started = clock = last_save = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < minutes * 60:
        chosen = rng.integers(len(bases), size=batch)
        flip = rng.random() < 0.5
        x, teacher, original = (
            to_tensor(a[chosen][:, :, ::-1] if flip else a[chosen]) for a in (bases, targets, originals)
        )
        out = trainer.model(x)[:, :, inner, inner]
        loss = F.l1_loss(out, teacher) + F.l1_loss(F.avg_pool2d(out, factor), F.avg_pool2d(original, factor))
        trainer.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.g_optimizer.step()
        trainer.step += 1
        update_ema(trainer.ema, trainer.model, trainer.step, cfg.ema_decay)
        now = time.monotonic()
        trainer.hours += (now - clock) / 3600
        clock = now
        if trainer.step % 25 == 0:
            print(f"step {trainer.step}: loss {loss.item():.5f}", flush=True)
        if trainer.step % 250 == 0:
            print(f"step {trainer.step}: {validate(trainer.ema, validation)}", flush=True)
        if now - last_save > 300:
            trainer.save()
            last_save = now
    trainer.save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/distill"))
    parser.add_argument("--threads", type=int, default=1)
    commands = parser.add_subparsers(dest="command", required=True)
    teaching = commands.add_parser("teach")
    teaching.add_argument("--teacher", type=Path, required=True, help="an exported hybrid model's generator.onnx")
    teaching.add_argument("--crops", type=int, default=1200)
    teaching.add_argument("--crop", type=int, default=48)
    teaching.add_argument("--extra-data", type=Path, action="append", default=[])
    teaching.add_argument("--factor", type=int, default=BaseLayer.factor, help="the student's (the base's) factor")
    teaching.add_argument("--qualities", type=int, nargs=2, default=UpscalerTrainConfig.qualities,
                          metavar=("LOW", "HIGH"), help="AVIF qualities drawn for the bases")  # fmt: skip
    learning = commands.add_parser("learn")
    learning.add_argument("--init", type=Path, required=True, help="the student's start (a train_upscaler checkpoint)")
    learning.add_argument("--minutes", type=float, default=40)
    learning.add_argument("--deepen", type=int, default=0, help="starting from --init: this many more convolutions")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.command == "teach":
        qualities = tuple(args.qualities)
        print(
            teach(
                args.teacher,
                args.run_dir,
                args.crops,
                args.crop,
                args.extra_data,
                factor=args.factor,
                qualities=qualities,
            )
        )
    else:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a checkpoint, then exit
        learn(args.run_dir, args.init, args.minutes, stop=stop, deepen=args.deepen)


if __name__ == "__main__":
    main()
