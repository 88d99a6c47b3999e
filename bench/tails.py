"""Where the time of the network's full-resolution ends goes: `small`'s against `small-fast`'s shuffled ones.

    nice -n 19 python -m bench.tails --out docs/performance.md        # about a minute

The small model does most of its multiply-adds at 1/16 resolution, where many channels make wide matrix
products, but much of its time at 1/2 and full resolution, where few channels make thin ones. This times, at
one image size and with the runtime's session settings (random weights: speed does not depend on them), the
layers between the full-resolution image and the 1/4-resolution features (60 channels) on both sides, as the
`small` configuration builds them and as `small-fast` does (a pixel unshuffle or shuffle by 4 and convolutions
at 1/4 resolution, `ModelConfig.end_scale`), with their multiply-adds and the rate they reach against the
measured matrix-multiply rate.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.reporting import describe_machine, timestamp
from bench.speed import best_time, graph_multiply_adds, matmul_rate
from models.config import CONFIGS
from models.networks import Encoder, Generator
from service.codec.model import RuntimeOptions, create_session


@dataclass(frozen=True)
class Variant:
    name: str
    network: nn.Module
    input_channels: int
    input_scale: int
    """The input's resolution as a divisor of the image's (1: the image, 4: the 1/4-resolution features)."""


def ends(config_name: str) -> tuple[Variant, Variant]:
    """A configuration's encoder head (image -> 1/4-resolution features) and generator tail (the last
    1/4-resolution features -> image), cut from its real networks."""
    model = CONFIGS[config_name].model
    encoder, generator = Encoder(model).net, Generator(model).net
    # The generator's stem and residual blocks, then its up-samplings down to the 1/4-resolution features.
    tail_start = 1 + model.residual_blocks + len(model.generator_widths) - 3
    return (
        Variant(f"encoder head of `{config_name}`", encoder[:3], 3, 1),
        Variant(f"generator tail of `{config_name}`", generator[tail_start:], model.generator_widths[2], 4),
    )


def variants() -> list[Variant]:
    """`small`'s full-resolution ends, then `small-fast`'s shuffled ones (models/distill.py), head before tail."""
    (head, tail), (fast_head, fast_tail) = ends("small"), ends("small-fast")
    return [head, fast_head, tail, fast_tail]


def to_onnx(network: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network.eval(), (example,), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    return buffer.getvalue()


def measure(variant: Variant, width: int, height: int, options: RuntimeOptions, repeats: int) -> tuple[float, float]:
    """(seconds, multiply-adds) of one run at an image of width x height."""
    scale = variant.input_scale
    shape = (1, variant.input_channels, height // scale, width // scale)
    feeds = {"x": np.random.default_rng(0).random(shape, dtype=np.float32)}
    graph = to_onnx(variant.network, torch.from_numpy(feeds["x"]))
    session = create_session(graph, options)
    return best_time(lambda: session.run(None, feeds), repeats), graph_multiply_adds(graph, feeds)


def report(width: int, height: int, threads: int, repeats: int) -> str:
    torch.manual_seed(0)
    options = RuntimeOptions(intra_op_threads=threads, providers=("CPUExecutionProvider",))
    rate = max(matmul_rate(threads).values())
    pixels = width * height
    rows = []
    for variant in variants():
        seconds, macs = measure(variant, width, height, options, repeats)
        rows.append(
            f"| {variant.name} | {macs / pixels:,.0f} | {seconds * 1000:.0f} | {macs / seconds / 1e9:.1f} "
            f"| {macs / rate / seconds:.0%} |"
        )
    command = "python -m bench.tails " + " ".join(sys.argv[1:])
    return "\n".join(
        [
            f"## The full-resolution ends\n\n`{command}` ({timestamp()}).\n",
            f"Machine: {describe_machine()}\n",
            f"At {width}x{height}, {threads or 'one per core'} threads, best of {repeats} runs after a warm-up; "
            f"matrix-multiply rate {rate / 1e9:.1f} G multiply-adds/s (2048x2048 float32, the faster of "
            "onnxruntime and numpy).\n",
            "| layers | multiply-adds per pixel | ms | G multiply-adds/s | of the matrix-multiply rate |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1920x1080", help="image size WxH (multiples of 4)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (best)")
    parser.add_argument("--out", type=Path, help="Markdown page whose `tails` section gets the results")
    args = parser.parse_args(argv)
    width, height = (int(side) for side in args.size.lower().split("x"))
    if width % 4 or height % 4:
        parser.error("--size: both sides must be multiples of 4")
    text = report(width, height, args.threads, args.repeat)
    print(text)
    if args.out:
        from bench.reporting import update_section

        update_section(args.out, "tails", text, "Performance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
