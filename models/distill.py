"""Give a configuration with shuffled ends (`ModelConfig.end_scale`) a trained model's body, and teach its new
ends to do what the trained model's full-resolution ends do.

    python -m models.distill runs/small/checkpoint.pt --config small-fast -o runs/small-fast/distilled.pt \\
        --extra-data data/fhd --steps 6000 --threads 1
    python -m models.train --config small-fast --run-dir runs/small-fast --init runs/small-fast/distilled.pt \\
        --extra-data data/fhd

The two networks differ only between the image and the features at 1/end_scale resolution, so everything else
is copied and frozen while the new ends learn from the trained ones, each on its own side of the body:

- the encoder's head must give the trained head's features for the same crop;
- the generator's tail must turn the trained body's features (from the trained encoder's quantised latent, at a
  random rate point) into the trained tail's image: its GAN-made texture, not the original's pixels.

The result is a weights-only checkpoint of the new configuration, from which `models.train --init` runs the
GAN stage on the whole network (the discriminator comes along from the trained model).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.checkpoint import load_checkpoint, save_checkpoint, warm_start
from models.codec import GenerativeCodec
from models.config import CONFIGS, ExperimentConfig
from models.data import CropSampler, training_sources
from models.train import draw_rate_points


class EndDistiller:
    """The trained codec (teacher) and the one with shuffled ends (student), sharing all but the ends."""

    def __init__(self, teacher_state: dict, student_config: ExperimentConfig) -> None:
        teacher_config = ExperimentConfig.from_dict(teacher_state["config"])
        student_model = student_config.model
        if dataclasses.replace(student_model, end_scale=teacher_config.model.end_scale) != teacher_config.model:
            raise ValueError(f"{student_config.name} differs from {teacher_config.name} in more than its ends")
        if student_model.end_depth <= teacher_config.model.end_depth:
            raise ValueError(f"{student_config.name} has no coarser ends than {teacher_config.name}")
        self.config = student_config
        self.teacher = GenerativeCodec(teacher_config.model).eval().requires_grad_(False)
        self.teacher.load_state_dict(teacher_state["ema"])
        self.student = GenerativeCodec(student_model)
        self.depth = student_model.end_depth
        self.body_layers = len(self.student.generator.net) - 1
        ends = (
            *(f"encoder.net.{i}." for i in range(self.depth + 1)),
            *(f"generator.net.{i}." for i in range(self.body_layers, len(self.teacher.generator.net))),
        )
        shared = {k: v for k, v in teacher_state["ema"].items() if not k.startswith(ends)}
        report = warm_start(self.student, shared)
        self.student.requires_grad_(False)
        self.head = self.student.encoder.net[0].requires_grad_(True)
        self.tail = self.student.generator.net[-1].requires_grad_(True)
        trained = {n for n, p in self.student.named_parameters() if p.requires_grad}
        if trained != set(report["kept"]):
            odd = sorted(trained ^ set(report["kept"]))
            raise ValueError(f"the new ends are not exactly the weights the teacher lacks: {odd}")

    def checkpoint(self, teacher_state: dict, source: str, steps: int, data: dict[str, int]) -> dict:
        """The student as a weights-only checkpoint at step 0, with the teacher's discriminator: what
        `models.train --init` resumes (the optimisers start afresh, with the warm-up)."""
        origin = {"checkpoint": source, "config": teacher_state["config"]["name"], "step": teacher_state["step"]}
        return {
            "config": self.config.to_dict(),
            "step": 0,
            "hours": 0.0,
            "data": data,
            "ema": self.student.state_dict(),
            "discriminator": teacher_state["discriminator"],
            "warm_start": origin | {"distilled_steps": steps},
        }

    def parameters(self) -> list[nn.Parameter]:
        return [*self.head.parameters(), *self.tail.parameters()]

    def losses(self, images: Tensor, channels: Tensor | None) -> tuple[Tensor, Tensor]:
        """(head, tail) mean squared errors against the teacher, each over its target's variance so that
        both count alike whatever their scale."""
        x = images * 2.0 - 1.0
        with torch.no_grad():
            features = self.teacher.encoder.net[: self.depth + 1](x)
            latent = self.teacher.quantizer(self.teacher.encoder(images)).latent
            if channels is not None:
                latent = latent * self.teacher.channel_mask(channels)
            body = self.teacher.generator.net[: self.body_layers](latent)
            target = self.teacher.generator.net[self.body_layers :](body)
        head = F.mse_loss(self.student.encoder.net[: self.depth + 1](x), features) / features.var()
        tail = F.mse_loss(self.tail(body), target) / target.var()
        return head, tail


def distill(
    distiller: EndDistiller, sampler: CropSampler, steps: int, learning_rate: float, log_every: int = 100
) -> None:
    """Adam with a cosine decay to 1% over `steps`, printing the losses every `log_every` steps."""
    config, batch = distiller.config, distiller.config.train.batch
    optimiser = torch.optim.Adam(distiller.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=learning_rate / 100)
    start, totals = time.monotonic(), torch.zeros(2)
    for step in range(1, steps + 1):
        head, tail = distiller.losses(sampler.batch(batch).images, draw_rate_points(config, batch))
        optimiser.zero_grad(set_to_none=True)
        (head + tail).backward()
        optimiser.step()
        schedule.step()
        totals += torch.stack([head.detach(), tail.detach()])
        if step % log_every == 0:
            head_mean, tail_mean = (totals / log_every).tolist()
            seconds = time.monotonic() - start
            print(f"step {step}: head {head_mean:.4f} tail {tail_mean:.4f} ({seconds:.0f} s)", flush=True)
            totals.zero_()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path, help="the trained model's checkpoint (full or seed)")
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS), help="the configuration with new ends")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the new configuration's checkpoint")
    parser.add_argument("--extra-data", type=Path, action="append", default=[], help="another folder of photos")
    parser.add_argument("--steps", type=int, default=6_000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher_state = load_checkpoint(args.teacher)
    config = CONFIGS[args.config]
    try:
        distiller = EndDistiller(teacher_state, config)
    except ValueError as error:
        parser.error(str(error))
    sampler = CropSampler.load(training_sources(extra=args.extra_data), config.train.crop, config.train.seed)
    distill(distiller, sampler, args.steps, args.learning_rate)
    state = distiller.checkpoint(teacher_state, str(args.teacher), args.steps, sampler.summary())
    save_checkpoint(state, args.output)


if __name__ == "__main__":
    main()
