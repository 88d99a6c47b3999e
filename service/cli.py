"""The gancodec command line: compress, decompress, info, models and serve.

Errors are reported as one line, `gancodec: error: <message>`, with exit status 1 (2 for usage errors);
a batch carries on past a failing file and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from service.codec import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_TILE_PIXELS,
    MIN_TILE_PIXELS,
    CodecError,
    Header,
    Model,
    Registry,
    RuntimeOptions,
    bits_per_pixel,
    compress,
    decode_image,
    decompress_png,
    is_tiled,
    unpack,
)

PROG = "gancodec"
MODEL_DIRS_ENV = "GANCODEC_MODEL_DIRS"
DEFAULT_MODEL_ENV = "GANCODEC_MODEL"
SUFFIX = ".gcx"


class CommandError(Exception):
    """A problem with the command's arguments found after parsing (paths, collisions)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (CodecError, CommandError, OSError) as error:
        _error(str(error))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    # Shared options are accepted before or after the sub-command; SUPPRESS keeps one position from
    # overwriting the other with its default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model-dir",
        dest="model_dirs",
        action="append",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"a model directory or a folder of them (repeatable; also ${MODEL_DIRS_ENV}, {os.pathsep}-separated)",
    )
    common.add_argument(
        "--threads",
        type=_positive_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="onnxruntime threads per graph (default: one per core)",
    )
    common.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"largest image accepted, width*height (default {DEFAULT_MAX_PIXELS})",
    )
    common.add_argument(
        "--tile-pixels",
        type=_tile_pixels,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"largest region a network runs on at once; larger images go in overlapping tiles, bounding memory "
        f"(default {DEFAULT_TILE_PIXELS}: an 8000x6000 image peaked at 714 MiB with gc-small)",
    )
    common.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        default=argparse.SUPPRESS,
        help="on the CPU, run the float graphs even where the model has int8 ones (slower; images about 41 dB "
        "PSNR from the int8 ones)",
    )
    parser = argparse.ArgumentParser(prog=PROG, description="Extreme generative image compression.", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("compress", parents=[common], help="images (PNG, JPEG, WebP) to .gcx files")
    sub.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE")
    sub.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="output file, or directory (always one for several inputs)"
    )
    sub.add_argument(
        "--model",
        default=os.environ.get(DEFAULT_MODEL_ENV),
        metavar="ID",
        help=f"model id (default: ${DEFAULT_MODEL_ENV}, else gc-hybrid-0.04 if installed, else the only model)",
    )
    sub.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    sub.add_argument(
        "--no-detail",
        dest="detail",
        action="store_false",
        help="GC: leave out the original's detail energy by scale (5 bytes; the decoder then restores none): a "
        "smoother image, a little higher PSNR",
    )
    selective = sub.add_argument_group(
        "selective compression (sc models; one IMAGE)",
        "A mask alone keeps its white region and synthesises the rest; --labels with --synthesize keeps all but "
        "those classes; --labels alone keeps everything. Maps are PNGs of the image's size.",
    )
    selective.add_argument("--mask", type=Path, metavar="KEEP.png", help="white = keep exactly, black = synthesise")
    selective.add_argument("--labels", type=Path, metavar="LABELS.png", help="class ids (grey or palette PNG)")
    selective.add_argument(
        "--synthesize", metavar="CLASSES", help="comma-separated class names or ids to synthesise, e.g. road,sky,tree"
    )
    sub.set_defaults(run=_compress)

    sub = commands.add_parser("decompress", parents=[common], help=".gcx files to PNG")
    sub.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    sub.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="output file, or directory (always one for several inputs)"
    )
    sub.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    sub.set_defaults(run=_decompress)

    sub = commands.add_parser("info", parents=[common], help="a .gcx file's header as JSON (one line per file)")
    sub.add_argument("inputs", nargs="+", type=Path, metavar="FILE")
    sub.set_defaults(run=_info)

    sub = commands.add_parser("models", parents=[common], help="the installed models as JSON")
    sub.set_defaults(run=_models)

    sub = commands.add_parser(
        "serve", parents=[common], help="run the REST service (other settings: GANCODEC_* variables, docs/service.md)"
    )
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sub.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    sub.set_defaults(run=_serve)
    return parser


def _compress(args: argparse.Namespace) -> int:
    selective = args.mask is not None or args.labels is not None or args.synthesize is not None
    if selective and len(args.inputs) > 1:
        raise CommandError("--mask, --labels and --synthesize describe one image: give a single IMAGE")
    registry = _registry(args)
    model = registry.get(args.model)
    max_pixels = _max_pixels(args)
    mask, labels = (None if path is None else path.read_bytes() for path in (args.mask, args.labels))
    synthesize = None if args.synthesize is None else [args.synthesize]

    def one(source: Path, target: Path) -> str:
        decoded = decode_image(source.read_bytes(), max_pixels)
        for note in decoded.notes:
            tqdm.write(f"{PROG}: note: {source}: {note}", file=sys.stderr)
        data = compress(decoded, model, mask, labels, synthesize, max_pixels=max_pixels, restore_detail=args.detail)
        _write(target, data)
        header = unpack(data, max_pixels).header
        rate = bits_per_pixel(len(data), header.width, header.height)
        return f"{source} -> {target}: {len(data)} bytes, {rate:.4f} bpp ({header.mode.name.lower()})"

    return _batch(args, SUFFIX, one)


def _decompress(args: argparse.Namespace) -> int:
    registry = _registry(args)
    max_pixels = _max_pixels(args)

    def one(source: Path, target: Path) -> str:
        _write(target, decompress_png(source.read_bytes(), registry, max_pixels=max_pixels))
        return f"{source} -> {target}"

    return _batch(args, ".png", one)


def _info(args: argparse.Namespace) -> int:
    failed = False
    try:
        registry = _registry(args)
    except (CodecError, CommandError, OSError):
        registry = None  # the header is still worth showing without the models
    for source in args.inputs:
        try:
            # Reading a header allocates nothing it claims, so no pixel cap applies here.
            bitstream = unpack(source.read_bytes(), max_pixels=sys.maxsize)
        except (CodecError, OSError) as error:
            _error(f"{source}: {error}")
            failed = True
            continue
        header = bitstream.header
        model = _installed(registry, header) if registry is not None else None
        info = {
            "file": str(source),
            "model": header.model_id,
            "fingerprint": header.fingerprint.hex(),
            "width": header.width,
            "height": header.height,
            "bytes": bitstream.size,
            "bpp": round(bits_per_pixel(bitstream.size, header.width, header.height), 6),
            "mode": header.mode.name.lower(),
            "label_bytes": bitstream.label_bytes,
            "detail_bands": 0 if header.detail is None else len(header.detail),
            # Whether decoding runs the generator in overlapping tiles (null: the model is not installed here).
            "tiled": None if model is None else is_tiled(model, header.width, header.height),
        }
        print(json.dumps(info))
    return 1 if failed else 0


def _models(args: argparse.Namespace) -> int:
    listing = [
        {
            "id": model.id,
            "version": model.manifest.version,
            "fingerprint": model.fingerprint.hex(),
            "kind": "hybrid" if model.manifest.hybrid else "latent",
            "modes": list(model.manifest.modes),
            "classes": list(model.manifest.classes),
            "channels": model.channels,
            "bits_per_pixel": model.point.bits_per_pixel or None,
            "noise_channels": model.manifest.noise_channels,
            "directory": str(model.manifest.directory),
            "metrics": model.point.metrics,
        }
        for model in _registry(args)
    ]
    print(json.dumps(listing, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the other commands need neither the web stack nor its start-up time.
    import uvicorn
    from pydantic import ValidationError

    from service.api import Settings, create_app
    from service.api.server import uvicorn_options
    from service.api.settings import ENV_PREFIX

    try:
        settings = Settings()
        names = ("threads", "max_pixels", "tile_pixels", "int8")
        overrides = {name: getattr(args, name) for name in names if hasattr(args, name)}
        if hasattr(args, "model_dirs"):  # before the environment's, as for the other commands
            overrides["model_dirs"] = [*args.model_dirs, *settings.model_dirs]
        if overrides:
            settings = Settings(**overrides)
    except ValidationError as error:
        problems = (f"{ENV_PREFIX}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise CommandError(f"invalid settings: {'; '.join(problems)}") from None
    # uvicorn configures only its own loggers; this shows the service's (models loaded) beside them.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, **uvicorn_options(settings))
    return 0


def _batch(args: argparse.Namespace, suffix: str, one: Callable[[Path, Path], str]) -> int:
    """Run `one(source, target)` over the inputs; report each failure on one line and carry on."""
    pairs = _targets(args.inputs, args.output, suffix)
    failed = False
    for source, target in tqdm(pairs, disable=len(pairs) < 2 or None, unit="file", file=sys.stderr):
        try:
            if target.resolve() == source.resolve():
                raise CommandError("the output would overwrite the input")
            if target.exists() and not args.force:
                raise CommandError(f"output {target} exists (use --force to overwrite)")
            tqdm.write(one(source, target))
        except (CodecError, CommandError, OSError) as error:
            _error(f"{source}: {error}")
            failed = True
    return 1 if failed else 0


def _targets(inputs: list[Path], output: Path | None, suffix: str) -> list[tuple[Path, Path]]:
    """One input: OUTPUT is the file (default: input with `suffix`) or an existing directory; several: a directory."""
    if len(inputs) == 1 and not (output and output.is_dir()):
        return [(inputs[0], output or inputs[0].with_suffix(suffix))]
    if output is not None:
        if output.exists() and not output.is_dir():
            raise CommandError(f"{output} is not a directory (several inputs need -o to name one)")
        output.mkdir(parents=True, exist_ok=True)
    pairs = [(source, (output or source.parent) / (source.stem + suffix)) for source in inputs]
    targets = [target for _, target in pairs]
    duplicates = sorted({str(target) for target in targets if targets.count(target) > 1})
    if duplicates:
        raise CommandError(f"several inputs would be written to {', '.join(duplicates)}")
    return pairs


def _write(target: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failure never leaves half a file behind."""
    partial = target.with_name(target.name + ".tmp")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _registry(args: argparse.Namespace) -> Registry:
    dirs = list(getattr(args, "model_dirs", []))
    for directory in dirs:
        if not directory.is_dir():
            raise CommandError(f"model directory {directory} does not exist")
    dirs += [Path(entry) for entry in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep) if entry]
    options = RuntimeOptions(
        intra_op_threads=getattr(args, "threads", 0),
        tile_pixels=getattr(args, "tile_pixels", DEFAULT_TILE_PIXELS),
        int8=getattr(args, "int8", True),
    )
    return Registry.discover(dirs, options=options)


def _installed(registry: Registry, header: Header) -> Model | None:
    try:
        return registry.for_header(header)
    except CodecError:
        return None


def _max_pixels(args: argparse.Namespace) -> int:
    return getattr(args, "max_pixels", DEFAULT_MAX_PIXELS)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _tile_pixels(text: str) -> int:
    value = int(text)
    if value < MIN_TILE_PIXELS:
        raise argparse.ArgumentTypeError(f"{text} is below the smallest tile, {MIN_TILE_PIXELS} pixels")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


def _error(message: str) -> None:
    tqdm.write(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
