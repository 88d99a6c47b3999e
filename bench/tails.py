"""What a faster network would have to change: the small model's full-resolution ends against cheaper ones.

    nice -n 19 python -m bench.tails --out docs/performance.md        # about a minute

The small model does most of its multiply-adds at 1/16 resolution, where many channels make wide matrix
products, but much of its time at 1/2 and full resolution, where few channels make thin ones. This times, at
one image size and with the runtime's session settings (random weights: speed does not depend on them), the
layers between the full-resolution image and the 1/4-resolution features (60 channels) as the `small`
configuration builds them, against variants that move the work to 1/4 resolution with a pixel (un)shuffle, with
their multiply-adds and the rate they reach against the measured matrix-multiply rate.
A variant is a different network: using one means training it (at least its ends).
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
from models.networks import NearestUpsampleBlock, conv_block
from service.codec.model import RuntimeOptions, create_session


@dataclass(frozen=True)
class Variant:
    name: str
    network: nn.Module
    input_channels: int
    input_scale: int
    """The input's resolution as a divisor of the image's (1: the image, 4: the 1/4-resolution features)."""


def generator_tails() -> list[Variant]:
    """1/4-resolution features (60 channels) -> image."""
    widths = CONFIGS["small"].model.generator_widths[2:]  # 60, 30, 15
    shipped = nn.Sequential(
        NearestUpsampleBlock(widths[0], widths[1], "none"),
        NearestUpsampleBlock(widths[1], widths[2], "none"),
        nn.ReflectionPad2d(3),
        nn.Conv2d(widths[2], 3, 7),
    )
    half = nn.Sequential(
        NearestUpsampleBlock(widths[0], widths[1], "none"),
        nn.ReflectionPad2d(1),
        nn.Conv2d(widths[1], 3 * 2 * 2, 3),
        nn.PixelShuffle(2),
    )
    quarter = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(widths[0], 3 * 4 * 4, 3), nn.PixelShuffle(4))
    return [
        Variant("generator, shipped: up 60->30, up 30->15, 7x7 conv 15->3", shipped, widths[0], 4),
        Variant("generator: up 60->30, 3x3 conv 30->12 at 1/2, pixel shuffle 2", half, widths[0], 4),
        Variant("generator: 3x3 conv 60->48 at 1/4, pixel shuffle 4", quarter, widths[0], 4),
    ]


def encoder_heads() -> list[Variant]:
    """Image -> 1/4-resolution features (60 channels)."""
    widths = CONFIGS["small"].model.encoder_widths[:3]  # 15, 30, 60
    shipped = nn.Sequential(
        conv_block(3, widths[0], 7, 1, "none"),
        conv_block(widths[0], widths[1], 3, 2, "none"),
        conv_block(widths[1], widths[2], 3, 2, "none"),
    )
    unshuffled = nn.Sequential(nn.PixelUnshuffle(4), conv_block(3 * 4 * 4, widths[2], 3, 1, "none"))
    return [
        Variant("encoder, shipped: 7x7 conv 3->15, 3x3/2 15->30, 3x3/2 30->60", shipped, 3, 1),
        Variant("encoder: pixel unshuffle 4, 3x3 conv 48->60 at 1/4", unshuffled, 3, 1),
    ]


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
    for variant in encoder_heads() + generator_tails():
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
