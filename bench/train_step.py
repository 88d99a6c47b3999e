"""Time one training step of a config's codec in float32 and under bf16 autocast, on this machine's CPU.

Decides `TrainConfig.bf16` for CPU configurations: bf16 pays only where the CPU has native bf16 arithmetic.
Usage: python -m bench.train_step [--config small-fast] [--threads 1] [--repeats 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from models.codec import GenerativeCodec
from models.config import CONFIGS, SHIPPED


def step_seconds(codec: GenerativeCodec, batch: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Median wall time of forward, distortion + rate loss, backward and an Adam step."""
    optimiser = torch.optim.Adam(codec.parameters(), lr=1e-4)
    pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]
    times = []
    for _ in range(repeats + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = codec(batch)
        loss = (out.reconstruction.float() - batch).pow(2).mean() + out.soft_bits / pixels
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=SHIPPED, choices=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = CONFIGS[args.config].train
    codec = GenerativeCodec(CONFIGS[args.config].model)
    batch = torch.rand(train.batch, 3, train.crop, train.crop, generator=torch.Generator().manual_seed(0))
    fp32 = step_seconds(codec, batch, bf16=False, repeats=args.repeats)
    bf16 = step_seconds(codec, batch, bf16=True, repeats=args.repeats)
    print(f"{args.config}, batch {train.batch} of {train.crop}x{train.crop}, {args.threads} thread(s):")
    print(f"  float32 {fp32:.2f} s/step, bf16 autocast {bf16:.2f} s/step, bf16/float32 = {bf16 / fp32:.1f}")


if __name__ == "__main__":
    main()
