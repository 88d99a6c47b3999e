"""Fuzz the .gcx parser, the entropy decoder and hybrid models' AVIF base layer with mutated, truncated and
spliced real bitstreams; and send hostile requests to a real server.

    nice -n 19 python -m bench.fuzz --out docs/robustness.md          # 100,000 + 20,000 + 20,000 inputs at once

    for seed in 0 1 2 3 4 5 6 7 8 9; do                              # or in chunks, resumable
        nice -n 19 python -m bench.fuzz --examples 10000 --payload-examples 2000 --seed $seed --chunk-dir runs/fuzz
    done
    python -m bench.fuzz --report runs/fuzz --out docs/robustness.md # merges the chunks

    nice -n 19 python -m bench.fuzz --serve --out docs/robustness.md  # hostile requests, a real server (minutes)

Hypothesis drives the mutations (generation only: a failure is recorded and the run goes on, so one run
reports every kind of failure it meets). The seeds are real files compressed by tiny random-weight models
(exported here with torch, or given with --model-dir), one of them with noise channels so the seed field is
exercised, and one hybrid. Every input goes through what `gancodec info` runs (the container parser, no pixel
cap) and what `gancodec decompress` and POST /decompress run (parser with the pixel cap, model lookup by id and
fingerprint, entropy decoder or AVIF base layer, generator); a second stream feeds random payloads straight to
the entropy decoder. With a hybrid model, every seed of it is also re-packed around each of `hostile_bases`
(each must be refused), and a third stream mutates the AVIF payloads alone and re-packs them with a valid
checksum, so that they reach the base layer's checks, libavif and dav1d.

The defined answers are a decoded image of the header's size or a `CodecError` subclass; anything else is a
failure. Each input runs under a watchdog (faulthandler kills the process and prints the stack if one input
takes longer than --timeout), under an address-space limit (--memory-limit-mb: an unbounded allocation
becomes a MemoryError, reported as a failure), with tracemalloc measuring its peak Python/NumPy allocation and
the process's peak resident memory reset before it, so that what libavif and dav1d allocate is seen too. The
figures go to the `fuzz` section of --out. With --chunk-dir, a run is saved as one chunk (chunk-SEED.json; a
chunk already saved is skipped, so an interrupted series resumes where it stopped) and --report merges the
chunks into one report.

--serve starts `gancodec serve` with the shipped zoo and its default settings on 127.0.0.1 and sends, one at a
time, the corpus of tests/test_bad_inputs.py, the cases of issue 17, hybrid files with each hostile base and
requests that misbehave, each followed by a normal request; the figures go to the `hostile` section of --out.

`mutated_bitstreams`, `repayloaded_bitstreams`, `hostile_bases` and `judge` are also what tests/test_fuzz.py and
tests/test_bad_inputs.py run, with fewer examples, in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import functools
import io
import json
import os
import re
import resource
import select
import socket
import struct
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from PIL import Image

from bench.reporting import describe_machine, timestamp
from service.codec import (
    DEFAULT_MAX_PIXELS,
    Bitstream,
    CodecError,
    Header,
    Model,
    Registry,
    RuntimeOptions,
    compress,
    decompress,
    load_manifest,
    unpack,
)
from service.codec.avif import FRAME_HEADERS, SEQUENCE_HEADER, item_data, obus
from service.codec.base import BaseLayer
from service.codec.compact_avif import AV1C_BYTES
from service.codec.container import leb128, pack
from service.codec.entropy import EntropyCoder, context_count, integer_frequencies
from service.codec.imageio import MAX_JPEG_SCANS, jpeg_scans
from service.codec.pipeline import latent_size

ROOT = Path(__file__).resolve().parent.parent
OCTET = {"content-type": "application/octet-stream"}
SEED_SIZES = ((1, 1), (2, 31), (16, 16), (17, 33), (48, 64), (5, 200), (96, 128))
"""(height, width) of the images whose bitstreams seed the mutations."""
HYBRID_SEED_SIZES = ((15, 17), (1, 65535), (65535, 1))
"""Hybrid models seed these too: odd sides, and the longest side accepted, whose base (2x16384) is the widest AVIF
the base layer writes."""
INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x0F, 0x10, 0x1F, 0x20, 0x40, 0x7F, 0x80, 0x81, 0xE0, 0xFE, 0xFF)
INTERESTING_SIZES = (0, 1, 2, 15, 16, 17, 255, 4096, 4097, 65535, 65536, 2**20, 2**24, 2**28, 2**35 - 1)
"""Widths and heights for header edits: edges of the varint, of the latent grid, of the side limit and of the
pixel cap."""


# --- inputs ------------------------------------------------------------------------------------------------


def seed_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradient plus noise, so the latent's symbols vary."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width, 1), y * 255 / max(height, 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def seed_bitstreams(models: Sequence[Model], sizes: Sequence[tuple[int, int]] = SEED_SIZES) -> list[bytes]:
    """Each model's files of each size (hybrid models' of HYBRID_SEED_SIZES too): GC where the model codes it; for
    SC models also a file keeping nothing (an all-black mask: valid, and coded with no symbols at all), one keeping
    the left half (a mask, no label map) and one with a label map of stripes whose first class is synthesised."""
    seeds = []
    for model in models:
        manifest = model.manifest
        extra = HYBRID_SEED_SIZES if manifest.hybrid else ()
        for i, (h, w) in enumerate((*sizes, *extra)):
            image = seed_image(h, w, i)
            if "gc" in manifest.modes:
                seeds.append(compress(image, model))
            if manifest.selective:
                mask = np.zeros((h, w), bool)
                mask[:, : (w + 1) // 2] = True
                labels = (np.arange(w)[None, :] * len(manifest.classes) // max(w, 1)).repeat(h, axis=0)
                seeds.append(compress(image, model, mask=np.zeros((h, w), bool)))
                seeds.append(compress(image, model, mask=mask))
                seeds.append(compress(image, model, labels=labels, synthesize=[manifest.classes[0]]))
    return seeds


def _position() -> st.SearchStrategy[int]:
    return st.integers(0, 2**16)


def _in_place(position: st.SearchStrategy[int]) -> list[st.SearchStrategy[tuple]]:
    """Bit flips and byte sets: mutations that keep the length."""
    byte = st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255)
    return [st.tuples(st.just("flip"), position, st.integers(0, 7)), st.tuples(st.just("set"), position, byte)]


@functools.cache
def _in_place_operations() -> st.SearchStrategy[list[tuple]]:
    """1-4 mutations that keep the length, so that an AVIF's box sizes still hold, anywhere in it: hypothesis
    favours small numbers, which would put most of them in the first box, so positions are scattered (a
    bijection of 0-65536, modulo the prime 65537)."""
    return st.lists(st.one_of(*_in_place(_position().map(lambda at: at * 40503 % 65537))), min_size=1, max_size=4)


@functools.cache
def _operations(seed_count: int) -> st.SearchStrategy[list[tuple]]:
    """1-4 mutations (built once per seed count: building and validating strategies costs more than a decode)."""
    operation = st.one_of(
        *_in_place(_position()),
        st.tuples(st.just("insert"), _position(), st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), _position(), st.integers(1, 64)),
        st.tuples(st.just("truncate"), _position()),
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=32)),
        st.tuples(st.just("splice"), _position(), st.integers(0, seed_count - 1), _position()),
        st.tuples(st.just("duplicate"), _position(), st.integers(1, 64)),
        st.tuples(st.just("varint"), _position(), st.sampled_from(INTERESTING_SIZES) | st.integers(0, 2**35)),
    )
    return st.lists(operation, min_size=1, max_size=4)


def apply(data: bytes, operation: tuple, seeds: Sequence[bytes]) -> bytes:
    """One mutation; positions wrap around the current length, so every drawn operation applies."""
    kind, *args = operation
    out = bytearray(data)
    at = args[0] % (len(out) + 1) if args and isinstance(args[0], int) and kind != "append" else 0
    if kind == "flip" and out:
        out[at % len(out)] ^= 1 << args[1]
    elif kind == "set" and out:
        out[at % len(out)] = args[1]
    elif kind == "insert":
        out[at:at] = args[1]
    elif kind == "delete":
        del out[at : at + args[1]]
    elif kind == "truncate":
        del out[at:]
    elif kind == "append":
        out += args[0]
    elif kind == "splice":
        other = seeds[args[1]]
        out = out[:at] + other[args[2] % (len(other) + 1) :]
    elif kind == "duplicate":
        out[at:at] = out[at : at + args[1]]
    elif kind == "varint":
        encoded = leb128(args[1])  # unchecked: over-long varints (2**35 and up) too
        out[at : at + len(encoded)] = encoded
    return bytes(out)


def resized(data: bytes, width: int, height: int) -> bytes:
    """The same payload under a header claiming another size (a forged file that passes the checksum)."""
    bitstream = unpack(data, sys.maxsize)
    return pack(dataclasses.replace(bitstream.header, width=width, height=height), bitstream.payload, bitstream.labels)


def fix_crc(data: bytes) -> bytes:
    """Recompute the trailing CRC-32, so that a mutation reaches the checks behind the checksum."""
    if len(data) < 4:
        return data
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


_SEED_INDEX = st.integers(0, 2**16)
_TENTH = st.integers(0, 9)
_SIZES = st.sampled_from(INTERESTING_SIZES[1:]) | st.integers(1, 5000)
_BOOLEANS = st.booleans()
_THIRD = st.integers(0, 2)


@st.composite
def mutated_bitstreams(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """A seed bitstream, optionally re-headed with another size, then 1-4 mutations, then maybe a fixed CRC."""
    data = seeds[draw(_SEED_INDEX) % len(seeds)]
    if draw(_TENTH) == 0:
        data = resized(data, draw(_SIZES), draw(_SIZES))
    for operation in draw(_operations(len(seeds))):
        data = apply(data, operation, seeds)
    if draw(_BOOLEANS):
        data = fix_crc(data)
    return data


# --- hybrid models' AVIF bases --------------------------------------------------------------------------------


def export_random_hybrid(out_dir: Path, model_id: str = "gc-hybrid-tiny", seed: int = 4) -> Path:
    """A hybrid model with a small random-weight upscaler, through the real export path (needs torch); its rate
    points are installed as MODEL_ID-0.02 ... MODEL_ID-0.08."""
    import torch

    from models.export_hybrid import export_hybrid
    from models.upscaler import CompactUpscaler, UpscalerConfig

    torch.manual_seed(seed)
    export_hybrid(CompactUpscaler(UpscalerConfig(features=8, convolutions=2)), out_dir, model_id, BaseLayer())
    return out_dir


def avif_declaring(avif: bytes, width: int, height: int) -> bytes:
    """The AVIF with the size it declares (its ispe property) rewritten and its AV1 frame unchanged."""
    at = avif.index(b"ispe") + 8  # after the type, version and flags
    return avif[:at] + struct.pack(">II", width, height) + avif[at + 8 :]


def with_item(avif: bytes, item: bytes) -> bytes:
    """The AVIF with its AV1 item's bytes replaced, in the layout Pillow's encoder writes (the item is one extent,
    the whole of the last box, mdat), whose lengths are rewritten."""
    layout = _encoder_layout(avif)
    assert layout is not None, "not the encoder's layout"
    iloc, start = layout
    head = avif[: iloc + 18] + struct.pack(">I", len(item)) + avif[iloc + 22 : start - 8]
    return head + struct.pack(">I", 8 + len(item)) + b"mdat" + item


def _encoder_layout(avif: bytes) -> tuple[int, int] | None:
    """(where the item location box's body starts, where the item starts) if the AVIF has the encoder's layout."""
    iloc = avif.find(b"iloc") + 4
    if iloc < 4 or avif[iloc : iloc + 14] != bytes.fromhex("0000000044000001000100000001"):
        return None
    start, length = struct.unpack_from(">II", avif, iloc + 14) if len(avif) >= iloc + 22 else (0, 0)
    return (iloc, start) if avif[start - 4 : start] == b"mdat" and start + length == len(avif) else None


def with_sequence_header(avif: bytes, header: bytes) -> bytes:
    """The AVIF with its AV1 sequence header OBU replaced by `header`."""
    item = item_data(avif)
    units = [header if kind == SEQUENCE_HEADER else item[start:end] for kind, start, _, end in _units(item)]
    return with_item(avif, b"".join(units))


def sequence_header(width_bits: int, height_bits: int, reduced: bool = True) -> bytes:
    """An AV1 sequence header OBU (8-bit 4:2:0) whose maximum frame size is 2**width_bits x 2**height_bits: a
    reduced still-picture one, or a full one with timing, decoder-model and display-delay fields (every branch
    dav1d reads before the frame size)."""
    fields = [(0, 3), (1, 1), (int(reduced), 1)]  # seq_profile, still_picture, reduced_still_picture_header
    if reduced:
        fields += [(0, 5)]  # seq_level_idx
    else:
        fields += [(1, 1), (1, 32), (1, 32), (1, 1), (1, 1)]  # timing: tick, scale, equal intervals, uvlc 0
        fields += [(1, 1), (4, 5), (1, 32), (4, 5), (4, 5)]  # decoder model: delay length 5 ...
        fields += [(1, 1), (0, 5), (0, 12), (8, 5), (0, 1)]  # display model; one operating point, level 8, tier
        fields += [(1, 1), (0, 5), (0, 5), (0, 1), (1, 1), (3, 4)]  # its buffer delays; its display delay
    fields += [(width_bits - 1, 4), (height_bits - 1, 4), (2**width_bits - 1, width_bits)]
    fields += [(2**height_bits - 1, height_bits)]
    if not reduced:
        fields += [(0, 1)]  # frame_id_numbers_present_flag
    fields += [(0, 3)]  # 128x128 superblocks, filter intra, intra edge filter
    if not reduced:
        fields += [(0, 5), (1, 1), (1, 1)]  # inter tools and order hints off; screen content and integer mv chosen
    fields += [(0, 3), (0, 4), (0, 2), (0, 2), (1, 1)]  # superres, cdef, restoration; colour; film grain; trailing
    value, count = 0, 0
    for field_value, bits in fields:
        value, count = value << bits | field_value, count + bits
    payload = (value << -count % 8).to_bytes((count + 7) // 8, "big")
    return bytes([SEQUENCE_HEADER << 3 | 2]) + leb128(len(payload)) + payload


@functools.cache
def _flat_avif(side: int) -> bytes:
    """A side x side AVIF of one colour: a large AV1 frame in a few hundred bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buffer, format="AVIF", quality=0, speed=10)
    return buffer.getvalue()


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def hostile_bases(rows: int, columns: int) -> dict[str, bytes]:
    """Payloads that a hybrid file whose base is rows x columns must refuse as corrupt, by name: AVIFs of another
    size, declaring a size that Pillow's bomb check or libavif's limits refuse, hiding a larger AV1 frame, holding
    two frames, two images or a sequence; other image formats of the base's size (at most 4096 a side); and
    garbage."""
    layer, image = BaseLayer(), Image.fromarray(seed_image(rows, columns))
    foreign = image.crop((0, 0, min(columns, 4096), min(rows, 4096)))  # WebP and HEVC take no more
    good = layer.encode(np.asarray(image), 50)
    item = item_data(good)
    frame = next(item[start:end] for kind, start, _, end in _units(item) if kind in FRAME_HEADERS)
    cases = {
        "an AVIF one row taller": layer.encode(seed_image(rows + 1, columns), 50),
        "an AVIF one column wider": layer.encode(seed_image(rows, columns + 1), 50),
        "an AVIF declaring 16384x16384 (over Pillow's bomb limit)": avif_declaring(good, 16384, 16384),
        "an AVIF declaring 65535x65535 (over libavif's limit)": avif_declaring(good, 65535, 65535),
        "an AVIF declaring 0x0": avif_declaring(good, 0, 0),
        "a 1024x1024 AV1 frame declared as the base": avif_declaring(_flat_avif(1024), columns, rows),
        "a full sequence header allowing 65536x65536 frames": with_sequence_header(
            good, sequence_header(16, 16, reduced=False)
        ),
        "two frames": with_item(good, item + frame),
        "the AV1 data cut inside its frame": with_item(good, item[:-3]),
        "an AVIF with alpha (two AV1 items)": _encoded(_translucent(image), "AVIF"),
        "an animated AVIF (two frames, a track)": _encoded(image, "AVIF", save_all=True, append_images=[image]),
        "the AVIF cut in half": good[: len(good) // 2],
        "the AVIF without its last byte": good[:-1],
        "a PNG": _encoded(foreign, "PNG"),
        "a JPEG": _encoded(foreign, "JPEG"),
        "a WebP": _encoded(foreign, "WEBP"),
        "empty": b"",
        "an ftyp box alone": good[:32],
        "300 zero bytes": bytes(300),
        "300 random bytes": np.random.default_rng(rows * 65536 + columns).bytes(300),
    }
    record = good[good.find(b"av1C") + 4 :][:AV1C_BYTES]
    large_sequence = "a full sequence header allowing 65536x65536 frames"
    compact = {  # the same AV1 data in the compact form (compact_avif.py), whose boxes the decoder writes itself
        "a 1024x1024 AV1 frame": item_data(_flat_avif(1024)),
        large_sequence: item_data(cases[large_sequence]),
        "two frames": item + frame,
        "the AV1 data cut inside its frame": item[:-3],
        "nothing after the av1C record": b"",
        "300 random bytes after the av1C record": np.random.default_rng(rows + columns).bytes(300),
    }
    cases |= {f"compact: {name}": record + units for name, units in compact.items()}
    with contextlib.suppress(ImportError):
        import pillow_heif

        heif = io.BytesIO()
        pillow_heif.from_pillow(foreign).save(heif, quality=50)
        cases["a HEIF (HEVC)"] = heif.getvalue()
        cases["a HEIF with the major brand mif1, as AVIFs have"] = heif.getvalue().replace(b"heic", b"mif1", 1)
    return cases


def _translucent(image: Image.Image) -> Image.Image:
    """The image with half its opacity (libavif writes no alpha item for an opaque one)."""
    translucent = image.convert("RGBA")
    translucent.putalpha(128)
    return translucent


def base_shape(header: Header, registry: Registry) -> tuple[int, int]:
    """(rows, columns) of the base a hybrid file's header calls for."""
    layer = registry.for_header(header).manifest.base_layer
    assert layer is not None, f"{header.model_id} is not a hybrid model"
    return latent_size(header.width, header.height, layer.factor)


def _units(item: bytes) -> list[tuple[int, int, int, int]]:
    """(type, header start, payload start, end) of each OBU."""
    units, start = [], 0
    for kind, payload, end in obus(item):
        units.append((kind, start, payload, end))
        start = end
    return units


@st.composite
def repayloaded_bitstreams(draw: st.DrawFn, seeds: Sequence[Bitstream], hostile: Sequence[Bitstream]) -> bytes:
    """A hybrid seed file or one with a hostile base (half the time each), its payload mutated by 1-4 of the
    operations above (splicing among all the payloads), re-packed with a valid checksum under its own header (one
    in ten under another seed's), so that every input reaches the base layer's checks. A third of the time the
    operations apply to the whole payload; a third of the time only those that keep its length (the box sizes
    still hold: these reach libavif's parser); and a third of the time, where the payload has the encoder's
    layout, to its AV1 data alone, whose box lengths are then rewritten (these reach dav1d)."""
    files = seeds if draw(_BOOLEANS) else hostile
    chosen = files[draw(_SEED_INDEX) % len(files)]
    header = seeds[draw(_SEED_INDEX) % len(seeds)].header if draw(_TENTH) == 0 else chosen.header
    payloads = [bitstream.payload for bitstream in (*seeds, *hostile)]
    mode = draw(_THIRD)
    operations = draw(_in_place_operations() if mode == 1 else _operations(len(payloads)))
    if mode == 2 and (layout := _encoder_layout(chosen.payload)) is not None:
        item = chosen.payload[layout[1] :]
        for operation in operations:
            item = apply(item, operation, payloads)
        return pack(header, with_item(chosen.payload, item))
    payload = chosen.payload
    for operation in operations:
        payload = apply(payload, operation, payloads)
    return pack(header, payload)


# --- the oracle ----------------------------------------------------------------------------------------------


def judge(data: bytes, registry: Registry, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The input's defined answer: 'decoded' or the CodecError's class name. Anything else propagates."""
    header = None
    with contextlib.suppress(CodecError):
        header = unpack(data, sys.maxsize).header  # what `gancodec info` reads: no pixel cap, no allocation
    try:
        pixels = decompress(data, registry, max_pixels=max_pixels)
    except CodecError as error:
        return type(error).__name__
    assert header is not None, "decoded a file that the parser refuses"
    assert pixels.dtype == np.uint8 and pixels.shape == (header.height, header.width, 3), pixels.shape
    return "decoded"


def judge_hostile(data: bytes, registry: Registry, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """A hybrid file with a hostile base (hostile_bases): it must be refused, as corrupt or too large."""
    outcome = judge(data, registry, max_pixels)
    assert outcome in ("CorruptBitstream", "ImageTooLarge"), f"a hostile base layer was answered {outcome}"
    return outcome


def judge_payload(coder: EntropyCoder, payload: bytes, height: int, width: int) -> str:
    """Entropy decoder alone: the right shape with symbols below L, or CorruptBitstream."""
    try:
        symbols = coder.decode(payload, height, width)
    except CodecError as error:
        return type(error).__name__
    assert symbols.shape == (coder.channels, height, width) and symbols.dtype == np.uint8
    assert int(symbols.max()) < coder.levels
    return "decoded"


def message_kind(error: BaseException) -> str:
    """An error's message with its numbers and quoted names masked, to count the distinct checks reached."""
    text = re.sub(r"'[^']*'|\b[0-9a-f]{16}\b", "…", str(error))
    return re.sub(r"(?<!AV)\d+", "N", text)[:110]


# --- the long run ------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[bytes, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    peak_input: int = 0
    rss_rise_kib: int = 0
    """The most the process's resident memory rose above its level before one input, at its peak: what
    tracemalloc cannot see (libavif's and dav1d's allocations)."""
    rss_rise_input: int = 0
    peak_rss_kib: int = 0

    def summary(self) -> dict[str, Any]:
        """What a report needs, as JSON (times rounded to microseconds)."""
        return {
            "outcomes": dict(self.outcomes),
            "seconds": [round(value, 6) for value in self.seconds],
            "peak_bytes": self.peak_bytes,
            "peak_input": self.peak_input,
            "rss_rise_kib": self.rss_rise_kib,
            "rss_rise_input": self.rss_rise_input,
            "peak_rss_kib": self.peak_rss_kib,
        }

    def record(self, data: bytes, run: Callable[[], str], timeout: float) -> None:
        # Traced only while the input runs: tracing hypothesis's own allocations would triple the run time.
        tracemalloc.start()
        faulthandler.dump_traceback_later(timeout, exit=True)
        Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory (VmHWM) starts again from here
        resident = _status_kib("VmRSS")
        started = time.perf_counter()
        try:
            outcome = run()
        except CodecError as error:  # never reached through judge, kept for clarity
            outcome = type(error).__name__
        except Exception as error:
            outcome = f"FAILURE {type(error).__name__}"
            self.failures.append((data, f"{type(error).__name__}: {error}"))
        finally:
            faulthandler.cancel_dump_traceback_later()
        self.seconds.append(time.perf_counter() - started)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if peak > self.peak_bytes:
            self.peak_bytes, self.peak_input = peak, len(data)
        peak_rss = _status_kib("VmHWM")
        self.peak_rss_kib = max(self.peak_rss_kib, peak_rss)
        if peak_rss - resident > self.rss_rise_kib:
            self.rss_rise_kib, self.rss_rise_input = peak_rss - resident, len(data)
        self.outcomes[outcome] += 1


def _messages_of(data: bytes, registry: Registry, max_pixels: int) -> str | None:
    try:
        decompress(data, registry, max_pixels=max_pixels)
    except CodecError as error:
        return f"{type(error).__name__}: {message_kind(error)}"
    return None


def _status_kib(field: str) -> int:
    """A memory figure of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def _load_models(model_dirs: list[Path], workdir: Path, threads: int) -> list[Model]:
    if not model_dirs:
        from bench.random_models import export_random_model

        model_dirs = [
            export_random_model(workdir / "gc-tiny", "tiny", "gc-tiny", seed=0),
            export_random_model(workdir / "gc-tiny-noise", "tiny", "gc-tiny-noise", seed=2, noise_channels=2),
            export_random_model(workdir / "sc-tiny", "sc-tiny", "sc-tiny", seed=3),
            export_random_hybrid(workdir / "gc-hybrid-tiny"),
        ]
    return [Model(load_manifest(directory), RuntimeOptions(intra_op_threads=threads)) for directory in model_dirs]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000, help="mutated bitstreams (default 100000)")
    parser.add_argument("--payload-examples", type=int, default=20_000, help="random payloads for the decoder")
    parser.add_argument("--base-examples", type=int, default=20_000, help="hybrid files with mutated AVIF bases")
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="models to seed (default: tiny)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decoder's pixel cap")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take before abort")
    parser.add_argument("--memory-limit-mb", type=int, default=4096, help="address-space limit (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed, for a reproducible run")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1; 0: one per core)")
    parser.add_argument("--chunk-dir", type=Path, help="save this run as chunk-SEED.json there; skip it if saved")
    parser.add_argument("--report", type=Path, metavar="CHUNK_DIR", help="only merge the saved chunks and report")
    parser.add_argument("--out", type=Path, help="Markdown page whose `fuzz` section gets the results")
    parser.add_argument("--failures", type=Path, default=ROOT / "runs" / "fuzz-failures", help="failing inputs")
    parser.add_argument("--section", default="fuzz", help="the section of --out to write (default fuzz)")
    parser.add_argument("--serve", action="store_true", help="send hostile requests to a real server instead")
    args = parser.parse_args(argv)
    if args.serve:
        return serve_main(args)

    if args.report:
        chunks = [json.loads(path.read_text()) for path in sorted(args.report.glob("chunk-*.json"))]
        if not chunks:
            raise SystemExit(f"no chunk-*.json in {args.report}")
    else:
        chunk_file = args.chunk_dir / f"chunk-{args.seed}.json" if args.chunk_dir else None
        if chunk_file is not None and chunk_file.exists():
            print(f"{chunk_file} exists: chunk {args.seed} is done", file=sys.stderr)
            return 0
        chunks = [run_chunk(args)]
        if chunk_file is not None:
            chunk_file.parent.mkdir(parents=True, exist_ok=True)
            chunk_file.write_text(json.dumps(chunks[0]))
    report = _report(chunks, args)
    print(report)
    if args.out:
        from bench.reporting import update_section

        update_section(args.out, args.section, report, "Robustness")
    return 1 if any(chunk["failures"] for chunk in chunks) else 0


def _generate_only(seed: int, examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings of both fuzz loops: `examples` generated from `seed`, no shrinking, database or deadline."""
    configure = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    return lambda test: hypothesis_seed(seed)(configure(test))


def _skewed_context_tables(channels: int = 2, levels: int = 5) -> np.ndarray:
    """Context tables (entropy.py), each context's table drawn skewed, so the row-by-row decoder is fuzzed too."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(levels, 0.3), size=(channels, context_count(levels)))
    return integer_frequencies(probabilities, 16)


def run_chunk(args: argparse.Namespace) -> dict[str, Any]:
    """One run of --examples bitstreams, --payload-examples payloads and (with a hybrid model) the hostile bases
    and --base-examples mutated ones, from hypothesis seed --seed, summarised."""
    workdir = Path(tempfile.mkdtemp(prefix="gancodec-fuzz-"))
    models = _load_models(args.model_dir, workdir, args.threads)
    registry = Registry(models)
    seeds = seed_bitstreams(models)
    for data in seeds:  # the seeds themselves must decode
        assert judge(data, registry, args.max_pixels) == "decoded"
    hybrid_ids = {model.id for model in models if model.manifest.hybrid}
    parsed = [unpack(data, sys.maxsize) for data in seeds]
    hybrid_seeds = [seed for seed in parsed if seed.header.model_id in hybrid_ids]
    hostile = {
        f"{seed.header.width}x{seed.header.height}, {name}": unpack(pack(seed.header, payload), sys.maxsize)
        for seed in hybrid_seeds
        for name, payload in hostile_bases(*base_shape(seed.header, registry)).items()
    }
    coders = [model.entropy for model in models if model.entropy is not None][:1]
    coders += [EntropyCoder([[60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1]], 16)]
    coders.append(EntropyCoder(_skewed_context_tables(), 16))
    if args.memory_limit_mb:
        limit = args.memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rss_start, peak_start = _status_kib("VmRSS") / 1024, _status_kib("VmHWM") / 1024
    started = time.perf_counter()

    stats = Stats()
    messages: Counter[str] = Counter()

    def sample(data: bytes, count: int, into: Counter[str]) -> None:
        """Every tenth input's check (its message): which checks the inputs reached, cheaply."""
        if count % 10 == 0 and (kind := _messages_of(data, registry, args.max_pixels)):
            into[kind] += 1

    @_generate_only(args.seed, args.examples)
    @given(data=mutated_bitstreams(seeds))
    def bitstreams(data: bytes) -> None:
        stats.record(data, lambda: judge(data, registry, args.max_pixels), args.timeout)
        sample(data, len(stats.seconds), messages)
        if len(stats.seconds) % 10_000 == 0:
            print(f"{len(stats.seconds)} bitstreams, {dict(stats.outcomes)}", file=sys.stderr, flush=True)

    payload_stats = Stats()

    # A seed of its own, far from the bitstreams' seeds of the other chunks (seed, seed + 1, ...).
    @_generate_only(args.seed + 1_000_003, args.payload_examples)
    @given(
        coder=st.sampled_from(coders),
        payload=st.binary(max_size=512),
        height=st.integers(1, 64),
        width=st.integers(1, 64),
    )
    def payloads(coder: EntropyCoder, payload: bytes, height: int, width: int) -> None:
        payload_stats.record(payload, lambda: judge_payload(coder, payload, height, width), args.timeout)

    hostile_stats, base_stats = Stats(), Stats()
    base_messages: Counter[str] = Counter()

    @_generate_only(args.seed + 2_000_003, args.base_examples)
    @given(data=repayloaded_bitstreams(hybrid_seeds, list(hostile.values())))
    def bases(data: bytes) -> None:
        base_stats.record(data, lambda: judge(data, registry, args.max_pixels), args.timeout)
        sample(data, len(base_stats.seconds), base_messages)

    bitstreams()
    bitstream_seconds = time.perf_counter() - started
    payloads()
    for bitstream in hostile.values():
        data = pack(bitstream.header, bitstream.payload)
        hostile_stats.record(data, functools.partial(judge_hostile, data, registry, args.max_pixels), args.timeout)
    if hybrid_seeds:
        bases()
    total_seconds = time.perf_counter() - started

    all_stats = (stats, payload_stats, hostile_stats, base_stats)
    failures = [failure for part in all_stats for failure in part.failures]
    if failures:
        args.failures.mkdir(parents=True, exist_ok=True)
        for index, (data, reason) in enumerate(failures[:50]):
            (args.failures / f"failure-{args.seed}-{index:03d}.gcx").write_bytes(data)
            print(f"FAILURE {index}: {reason}", file=sys.stderr)
    return {
        "seed": args.seed,
        "examples": args.examples,
        "payload_examples": args.payload_examples,
        "base_examples": args.base_examples if hybrid_seeds else 0,
        "models": [model.id for model in models],
        "model_dirs": [str(directory) for directory in args.model_dir],
        "nice": os.nice(0),
        "hybrid_models": sorted(hybrid_ids),
        "seed_files": len(seeds),
        "max_pixels": args.max_pixels,
        "timeout": args.timeout,
        "memory_limit_mb": args.memory_limit_mb,
        "bitstreams": stats.summary(),
        "payloads": payload_stats.summary(),
        "hostile": hostile_stats.summary(),
        "bases": base_stats.summary(),
        "messages": dict(messages),
        "base_messages": dict(base_messages),
        "failures": [reason for _, reason in failures],
        "bitstream_seconds": bitstream_seconds,
        "total_seconds": total_seconds,
        "rss_start_mib": rss_start,
        "rss_end_mib": _status_kib("VmRSS") / 1024,
        "max_rss_mib": max(peak_start, *(part.peak_rss_kib / 1024 for part in all_stats)),
        "machine": describe_machine(),
        "finished": timestamp(),
    }


# --- hostile requests to a real server ----------------------------------------------------------------------------

NORMAL_SIZE = 256
"""Side of the photo each normal request (POST /compress, default model) sends after a hostile one."""
TRICKLING = 20
"""Connections that send a header line every half second and never finish their headers."""


@dataclass(frozen=True)
class Hostile:
    """One hostile request and its defined outcome: "ok" (200), a problem type's slug, "no answer" (the client
    leaves mid-body) or "closed" (the server closes connections that never finish their headers). `request`
    holds httpx's arguments; `send` sends what httpx cannot, and returns the outcome."""

    group: str
    name: str
    defined: str
    request: dict[str, Any] = field(default_factory=dict)
    send: Callable[[str], str] | None = None


@dataclass
class Exchange:
    hostile: Hostile
    answer: str
    """The status and problem type, or what happened to the connection."""
    outcome: str
    seconds: float
    normal_status: int
    normal_seconds: float
    """The normal request's answer and how long it took, from the end of the hostile one."""


def _corpus() -> Any:
    """tests/test_bad_inputs.py, whose corpus of images, masks and classes (with their defined answers) the run
    sends: one definition for CI and for the server."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_bad_inputs

    return test_bad_inputs


def hostile_requests(registry: Registry) -> list[Hostile]:
    """The corpus of tests/test_bad_inputs.py, the cases of issue 17 (docs/robustness.md), hybrid files with each
    hostile base, and requests and connections that misbehave. Files are made here, with the zoo the server
    loads."""
    corpus = _corpus()
    from image_support import png_claiming, with_extra_scans

    default, selective = registry.get(), next(model for model in registry if model.manifest.selective)
    usual = _encoded(Image.fromarray(corpus.PIXELS), "PNG")
    cases = [
        Hostile("corpus: images", name, answer, _compress(make())) for name, (make, answer, _) in corpus.IMAGES.items()
    ]
    cases += [
        Hostile("corpus: masks", name, answer, _compress(usual, mask=make(), model=selective.id))
        for name, (make, answer) in corpus.MASKS.items()
    ]
    classes = corpus.classes_to_synthesise(selective.manifest.classes)
    cases += [
        Hostile(
            "corpus: classes",
            name,
            answer,
            _compress(usual, labels=corpus.stripes(), synthesize=synthesize, model=selective.id),
        )
        for name, (synthesize, answer) in classes.items()
    ]

    long_side = _encoded(Image.new("RGB", (1, 65535), (0, 99, 0)), "PNG")
    progressive = _encoded(_gradients(4096), "JPEG", progressive=True)  # small scans, so 2,000 more stay small
    most_scans = with_extra_scans(progressive, MAX_JPEG_SCANS - jpeg_scans(progressive))
    nothing = resized(compress(seed_image(360, 480), selective, mask=np.zeros((360, 480), bool)), 1, 2**24)
    forged = resized(compress(seed_image(48, 64), default), 4096, 4096)
    cases += [
        Hostile("issue 17", "a PNG of 1x65535 (the longest side accepted)", "ok", _compress(long_side)),
        Hostile("issue 17", "its file, decompressed", "ok", _decompress(compress(long_side, default))),
        Hostile(
            "issue 17", f"a {len(nothing)}-byte SC file declaring 1x16777216", "image-too-large", _decompress(nothing)
        ),
        Hostile(
            "issue 17",
            "a progressive JPEG of 4096x4096 with 2,000 more scans",
            "invalid-image",
            _compress(with_extra_scans(progressive, 2000)),
        ),
        Hostile("issue 17", f"the same with {MAX_JPEG_SCANS} scans, the most accepted", "ok", _compress(most_scans)),
        Hostile(
            "issue 17", "a PNG header claiming 20000x20000", "image-too-large", _compress(png_claiming(20000, 20000))
        ),
        Hostile(
            "issue 17",
            f"a {len(forged)}-byte GC file of 64x48 re-headed as 4096x4096",
            "corrupt-bitstream",
            _decompress(forged),
        ),
    ]

    for height, width in ((1, 1), (15, 17), (48, 64)):
        header = unpack(compress(seed_image(height, width), default), sys.maxsize).header
        cases += [
            Hostile(
                f"hybrid bases ({default.id})",
                f"{width}x{height}: {name}",
                "corrupt-bitstream",
                _decompress(pack(header, payload)),
            )
            for name, payload in hostile_bases(*base_shape(header, registry)).items()
        ]

    two_images = {"method": "POST", "url": "/compress", "files": [("image", ("a", usual)), ("image", ("b", usual))]}
    cases += [
        Hostile("requests", "two files in `image`", "invalid-request", two_images),
        Hostile("requests", "HEAD /healthz", "ok", {"method": "HEAD", "url": "/healthz"}),
        Hostile("requests", "HEAD /readyz", "ok", {"method": "HEAD", "url": "/readyz"}),
        Hostile(
            "requests",
            "POST /decompress declaring 100,000 bytes, 1,000 sent, then the socket closed",
            "no answer",
            send=functools.partial(_leave_mid_body, "/decompress", "application/octet-stream"),
        ),
        Hostile(
            "requests",
            "the same to POST /compress (multipart)",
            "no answer",
            send=functools.partial(_leave_mid_body, "/compress", "multipart/form-data; boundary=x"),
        ),
        Hostile("requests", f"{TRICKLING} connections sending a header line every 0.5 s", "closed", send=_trickle),
    ]
    return cases


def _gradients(side: int) -> Image.Image:
    """A side x side image of three smooth gradients, one per channel."""
    ramp = Image.linear_gradient("L").resize((side, side))
    flips = (Image.Transpose.ROTATE_90, Image.Transpose.FLIP_TOP_BOTTOM)
    return Image.merge("RGB", (ramp, *(ramp.transpose(flip) for flip in flips)))


def _compress(image: bytes, mask: bytes | None = None, labels: bytes | None = None, **data: str) -> dict[str, Any]:
    """httpx's arguments for POST /compress of a multipart form."""
    maps = {name: (name, value) for name, value in (("mask", mask), ("labels", labels)) if value is not None}
    return {"method": "POST", "url": "/compress", "files": {"image": ("image", image), **maps}, "data": data}


def _decompress(data: bytes) -> dict[str, Any]:
    """httpx's arguments for POST /decompress of a raw body."""
    return {"method": "POST", "url": "/decompress", "content": data, "headers": OCTET}


def _leave_mid_body(path: str, content_type: str, url: str) -> str:
    """Declare 100,000 bytes, send the first 1,000 (for a multipart form, a well-formed start of an `image` part)
    and close the socket, as a client that gives up does."""
    host, port = url.removeprefix("http://").split(":")
    body = b""
    if content_type.startswith("multipart/"):
        body = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode() + body + bytes(1000 - len(body)))
    time.sleep(0.2)  # the server notices the close
    return "no answer"


def _trickle(url: str) -> str:
    """TRICKLING connections, each sending `GET /healthz` and then a header line every half second, never the blank
    line that ends the headers, for up to 20 s; the outcome says when the server closed them."""
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()

    def one() -> float:
        with socket.create_connection((host, int(port)), timeout=1) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while time.perf_counter() - started < 20:
                time.sleep(0.5)
                try:
                    connection.sendall(b"X-Slow: 1\r\n")
                    if select.select([connection], [], [], 0)[0] and connection.recv(1024) == b"":
                        break  # closed by the server
                except OSError:  # reset by the server
                    break
        return time.perf_counter() - started

    with ThreadPoolExecutor(TRICKLING) as pool:
        closed = sorted(pool.map(lambda _: one(), range(TRICKLING)))
    if closed[-1] >= 20:
        return f"{sum(1 for at in closed if at < 20)} of {TRICKLING} closed in 20 s"
    return f"closed after {closed[0]:.1f}-{closed[-1]:.1f} s"


def _outcome(response: httpx.Response) -> tuple[str, str]:
    """(answer, outcome): the status and problem type; "ok" or the problem type's slug."""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        slug = str(response.json().get("type", "")).rsplit(":", 1)[-1]
        return f"{response.status_code} {slug}", slug
    return str(response.status_code), "ok" if response.status_code == 200 else str(response.status_code)


def run_hostile(url: str, cases: Sequence[Hostile], normal: bytes) -> list[Exchange]:
    """Each hostile request, then a normal one; one request at a time."""
    exchanges = []
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0)) as client:
        for hostile in cases:
            started = time.perf_counter()
            if hostile.send is not None:
                answer = hostile.send(url)
                outcome = "closed" if answer.startswith("closed after") else answer
            else:
                answer, outcome = _outcome(client.request(**hostile.request))
            seconds = time.perf_counter() - started
            response = client.post("/compress", files={"image": ("photo.png", normal, "image/png")})
            exchange = Exchange(
                hostile, answer, outcome, seconds, response.status_code, time.perf_counter() - started - seconds
            )
            exchanges.append(exchange)
            print(
                f"{hostile.group} | {hostile.name} | {answer} (defined: {hostile.defined}) | {seconds:.2f} s | "
                f"next {exchange.normal_status} in {exchange.normal_seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return exchanges


def serve_main(args: argparse.Namespace) -> int:
    """--serve: the hostile requests against a real `gancodec serve` with the shipped zoo and default settings."""
    from bench.load import Server, photos

    registry = Registry.discover()
    cases = hostile_requests(registry)
    normal = photos(NORMAL_SIZE, NORMAL_SIZE, 1)[0]
    log = Path(tempfile.mkdtemp(prefix="gancodec-hostile-")) / "server.log"
    started = time.perf_counter()
    server = Server({}, log)
    try:
        server.wait_ready()
        exchanges = run_hostile(server.url, cases, normal)
        alive = server.process.poll() is None
    finally:
        server.stop()
    report = _serve_report(exchanges, log.read_text(errors="replace"), registry, alive, time.perf_counter() - started)
    print(report)
    if args.out:
        from bench.reporting import update_section

        update_section(args.out, "hostile", report, "Robustness")
    failed = [e for e in exchanges if e.outcome != e.hostile.defined or e.normal_status != 200]
    return 1 if failed or "Traceback" in log.read_text(errors="replace") or not alive else 0


def _serve_report(exchanges: list[Exchange], log: str, registry: Registry, alive: bool, seconds: float) -> str:
    """The `hostile` section: totals, each case of issue 17 and each request that misbehaves, and each group of the
    corpora summed up."""
    server_errors = sum((e.answer[:1] == "5") + (e.normal_status >= 500) for e in exchanges)
    undefined = [e for e in exchanges if e.outcome != e.hostile.defined]
    slowest = max(exchanges, key=lambda e: e.normal_seconds)
    normal = "200" if all(e.normal_status == 200 for e in exchanges) else "NOT always 200"
    tracebacks = log.count("Traceback")
    lines = log.splitlines()
    errors = sum(1 for line in lines if " ERROR " in line or line.startswith("ERROR"))

    def as_defined(e: Exchange) -> str:
        return "yes" if e.outcome == e.hostile.defined else f"**no** (defined: {e.hostile.defined})"

    singles, groups = [], {}
    for e in exchanges:
        if e.hostile.group in ("issue 17", "requests"):
            singles.append(e)
        else:
            groups.setdefault(e.hostile.group, []).append(e)
    rows = "\n".join(
        f"| {e.hostile.name} | {e.answer} | {as_defined(e)} | {e.seconds:.2f} s | "
        f"{e.normal_status} in {e.normal_seconds:.2f} s |"
        for e in singles
    )
    group_rows = "\n".join(
        f"| {group} | {len(members)} | "
        f"{', '.join(f'{n}x {a}' for a, n in Counter(e.answer for e in members).most_common())} | "
        f"{sum(e.outcome == e.hostile.defined for e in members)} of {len(members)} | "
        f"{max(e.seconds for e in members):.2f} s | {max(e.normal_seconds for e in members):.2f} s |"
        for group, members in groups.items()
    )
    problems = "".join(
        f"\n- {e.hostile.group}, {e.hostile.name}: {e.answer}, defined {e.hostile.defined}" for e in undefined
    )
    return f"""## Hostile inputs against a real server

`python -m bench.fuzz --serve --out docs/robustness.md` ({timestamp()}; {seconds / 60:.1f} minutes in all).
Machine: {describe_machine()}

A real `gancodec serve` on 127.0.0.1 with the shipped zoo and its default settings (default model
`{registry.default_id}`, one worker process, a queue of 16, no API key), driven by httpx one request at a time.
Each hostile request was followed by a normal one, POST /compress of a {NORMAL_SIZE}x{NORMAL_SIZE} photo with the
default model; "next" is how long that took, from the end of the hostile request to its answer.

**{len(exchanges)} hostile requests, {len(exchanges) - len(undefined)} answered as defined; {server_errors} 5xx;
every normal request after one answered {normal}, the slowest in {slowest.normal_seconds:.2f} s (after
"{slowest.hostile.name}"); {tracebacks} tracebacks and {errors} ERROR lines in the server log ({len(lines)} lines);
the server {"stayed up" if alive else "DIED"}.**{problems}

| Case (issue 17; requests that misbehave) | Answer | As defined | Time | Next |
|---|---|---|---|---|
{rows}

| Group (tests/test_bad_inputs.py, bench.fuzz.hostile_bases) | Requests | Answers | As defined | Slowest | Next |
|---|---|---|---|---|---|
{group_rows}
"""


def _report(chunks: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The `fuzz` section from one run or several chunks (their counts added, their timings pooled)."""

    def merged(kind: str) -> tuple[Counter[str], list[float], tuple[int, int], tuple[int, int]]:
        """Outcomes, times, (peak traced bytes, its input's length), (peak RSS rise in KiB, its input's length)."""
        outcomes: Counter[str] = Counter()
        seconds: list[float] = []
        traced, rise = (0, 0), (0, 0)
        for chunk in chunks:
            part = chunk.get(kind, {"outcomes": {}, "seconds": [], "peak_bytes": 0, "peak_input": 0})
            outcomes.update(part["outcomes"])
            seconds += part["seconds"]
            traced = max(traced, (part["peak_bytes"], part["peak_input"]))
            rise = max(rise, (part.get("rss_rise_kib", 0), part.get("rss_rise_input", 0)))
        return outcomes, seconds, traced, rise

    def outcome_rows(counter: Counter[str]) -> str:
        total = sum(counter.values())
        return "\n".join(f"| {name} | {count} | {count / total:.1%} |" for name, count in counter.most_common())

    def timing(seconds: list[float], traced: tuple[int, int], rise: tuple[int, int]) -> str:
        return (
            f"median {_percentile(seconds, 50) * 1e3:.2f} ms, p99 {_percentile(seconds, 99) * 1e3:.2f} ms, "
            f"max {max(seconds) * 1e3:.1f} ms; peak traced allocation of one input "
            f"{traced[0] / 2**20:.2f} MiB (an input of {traced[1]} bytes); largest rise of the process's peak "
            f"resident memory during one input {rise[0] / 1024:.1f} MiB (an input of {rise[1]} bytes)"
        )

    def message_rows(key: str) -> str:
        messages: Counter[str] = Counter()
        for chunk in chunks:
            messages.update(chunk.get(key, {}))
        return "\n".join(f"| {count} | {kind} |" for kind, count in messages.most_common(20))

    first = chunks[0]
    bitstreams, bitstream_times, *bitstream_peaks = merged("bitstreams")
    payloads, payload_times, *payload_peaks = merged("payloads")
    hostile, hostile_times, *hostile_peaks = merged("hostile")
    bases, base_times, *base_peaks = merged("bases")
    failures = [reason for chunk in chunks for reason in chunk["failures"]]
    examples, payload_examples = sum(bitstreams.values()), sum(payloads.values())
    inputs = examples + payload_examples + sum(hostile.values()) + sum(bases.values())
    minutes = sum(chunk["total_seconds"] for chunk in chunks) / 60
    seeds = ", ".join(str(chunk["seed"]) for chunk in chunks)
    options = f"--examples {first['examples']} --payload-examples {first['payload_examples']}"
    options += f" --base-examples {first['base_examples']}" if first.get("base_examples") else ""
    options += "".join(f" --model-dir {directory}" for directory in first.get("model_dirs", []))
    section = f" --section {args.section}" if args.section != "fuzz" else ""
    nice = f"nice -n {first.get('nice', 19)} "
    if len(chunks) == 1:
        command = f"{nice}python -m bench.fuzz {options} --seed {first['seed']} --out docs/robustness.md{section}"
    else:
        command = (
            f"for seed in {seeds.replace(',', '')}; do {nice}python -m bench.fuzz {options} --seed $seed "
            f"--chunk-dir {args.report}; done; python -m bench.fuzz --report {args.report} --out docs/robustness.md"
            f"{section}"
        )
    failure_lines = "".join(f"\n- {reason}" for reason in failures[:20])
    models = ", ".join(f"`{name}`" for name in first["models"])
    hybrids = first.get("hybrid_models", [])
    sizes = "images from 1x1 to 96x128" + (", and 15x17, 1x65535 and 65535x1 for hybrid models" if hybrids else "")
    title = (
        f"Fuzzing the files of {models}"
        if first.get("model_dirs")
        else "Fuzzing the bitstream parser and entropy decoder"
    )
    report = f"""## {title}

`{command}` ({len(chunks)} run{"s" if len(chunks) > 1 else ""} of hypothesis seed {seeds}, the last finished
{max(chunk["finished"] for chunk in chunks)}; {minutes:.1f} minutes in all).

Machine: {chunks[-1]["machine"]}

**{inputs} inputs, {len(failures)} failures** (a failure is any answer other than a decoded image of the header's
size or a `CodecError` subclass, a hostile base layer answered other than `CorruptBitstream` or `ImageTooLarge`,
a hang past {first["timeout"]:g} s, or a `MemoryError` under an address-space limit of
{first["memory_limit_mb"] or "unlimited"} MiB).{failure_lines}

{first["seed_files"]} seed files (models {models}; {sizes}; GC files, and SC files with a mask or a label map) were
mutated by hypothesis: bit flips, byte sets, inserts, deletes, truncations, appends, splices of two seeds,
duplicated ranges, varints written over any position, one in ten re-headed with another width and height, and
half of them with the CRC-32 recomputed so that the mutation reaches the checks behind the checksum. Each went
through the container parser with no pixel cap (what `gancodec info` runs) and the whole decoder with the pixel
cap {first["max_pixels"]} (what `gancodec decompress` and POST /decompress run).

| Answer to {examples} mutated bitstreams | count | share |
|---|---|---|
{outcome_rows(bitstreams)}

Time per bitstream (parser + full decode): {timing(bitstream_times, *bitstream_peaks)}.

| Answer to {payload_examples} random payloads fed to the entropy decoder | count | share |
|---|---|---|
{outcome_rows(payloads)}

Time per payload: {timing(payload_times, *payload_peaks)}.

The checks that answered (a sample of every tenth bitstream, numbers masked), which shows how deep the
mutations reached:

| count | error and message |
|---|---|
{message_rows("messages")}
"""
    if hybrids:
        report += f"""
### Hybrid models' AVIF bases

Every hybrid seed file (model{"s" if len(hybrids) > 1 else ""} {", ".join(f"`{name}`" for name in hybrids)}) was
re-packed, with a valid checksum, around each hostile base of `bench.fuzz.hostile_bases` made for its base's size
(AVIFs of another size, declaring 0x0, 16384x16384 or 65535x65535, hiding a 1024x1024 AV1 frame, with a sequence
header allowing 65536x65536 frames, two frames, an alpha item or a track; cut short; PNG, JPEG, WebP and HEIF
files; garbage; and the hidden frame, the large sequence header, two frames, cut data and garbage again in the
compact form, whose boxes the decoder writes itself): each must be refused.

| Answer to {sum(hostile.values())} hybrid files with a hostile base | count | share |
|---|---|---|
{outcome_rows(hostile)}

Time per file: {timing(hostile_times, *hostile_peaks)}.

Then hypothesis mutated the payloads alone, of the seeds and of these files (half each), and re-packed each under
its own header (one in ten under another seed's) with a valid checksum: a third by any of the operations above
(splicing among all the payloads), a third by bit flips and byte sets only (the box sizes still hold: these reach
libavif's parser), a third in the AV1 data alone, whose box lengths are then rewritten (these reach dav1d).

| Answer to {sum(bases.values())} hybrid files with a mutated base | count | share |
|---|---|---|
{outcome_rows(bases)}

Time per file (parser, base checks, libavif, upscaler): {timing(base_times, *base_peaks)}.

| count | error and message (every tenth file) |
|---|---|
{message_rows("base_messages")}
"""
    return (
        report
        + f"""
Process memory (per run): resident {max(c["rss_start_mib"] for c in chunks):.0f} MiB after loading the models,
{max(c["rss_end_mib"] for c in chunks):.0f} MiB at the end (hypothesis's own bookkeeping included),
{max(c["max_rss_mib"] for c in chunks):.0f} MiB at most (before the first input or during one).
"""
    )


if __name__ == "__main__":
    sys.exit(main())
