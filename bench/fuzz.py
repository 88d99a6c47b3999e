"""Fuzz the .gcx parser and the entropy decoder with mutated, truncated and spliced real bitstreams.

    nice -n 19 python -m bench.fuzz --out docs/robustness.md                  # 100,000 + 20,000 inputs at once

    for seed in 0 1 2 3 4 5 6 7 8 9; do                                      # or in chunks, resumable
        nice -n 19 python -m bench.fuzz --examples 10000 --payload-examples 2000 --seed $seed --chunk-dir runs/fuzz
    done
    python -m bench.fuzz --report runs/fuzz --out docs/robustness.md         # merges the chunks

Hypothesis drives the mutations (generation only: a failure is recorded and the run goes on, so one run
reports every kind of failure it meets). The seeds are real files compressed by tiny random-weight models
(exported here with torch, or given with --model-dir), one of them with noise channels so the seed field is
exercised. Every input goes through what `gancodec info` runs (the container parser, no pixel cap) and what
`gancodec decompress` and POST /decompress run (parser with the pixel cap, model lookup by id and fingerprint,
entropy decoder, generator); a second stream feeds random payloads straight to the entropy decoder.

The defined answers are a decoded image of the header's size or a `CodecError` subclass; anything else is a
failure. Each input runs under a watchdog (faulthandler kills the process and prints the stack if one input
takes longer than --timeout), under an address-space limit (--memory-limit-mb: an unbounded allocation
becomes a MemoryError, reported as a failure), and with tracemalloc measuring its peak Python/NumPy
allocation. The figures go to the `fuzz` section of --out. With --chunk-dir, a run is saved as one chunk
(chunk-SEED.json; a chunk already saved is skipped, so an interrupted series resumes where it stopped) and
--report merges the chunks into one report.

`mutated_bitstreams` and `judge` are also what tests/test_fuzz.py runs, with fewer examples, in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import functools
import json
import re
import resource
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from bench.reporting import describe_machine, timestamp
from service.codec import (
    DEFAULT_MAX_PIXELS,
    CodecError,
    Model,
    Registry,
    RuntimeOptions,
    compress,
    decompress,
    load_manifest,
    unpack,
)
from service.codec.container import leb128, pack
from service.codec.entropy import EntropyCoder, context_count, integer_frequencies

ROOT = Path(__file__).resolve().parent.parent
SEED_SIZES = ((1, 1), (2, 31), (16, 16), (17, 33), (48, 64), (5, 200), (96, 128))
"""(height, width) of the images whose bitstreams seed the mutations."""
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
    """Each model's files of each size: GC where the model codes it; for SC models also a file keeping nothing (an
    all-black mask: valid, and coded with no symbols at all), one keeping the left half (a mask, no label map) and
    one with a label map of stripes whose first class is synthesised."""
    seeds = []
    for model in models:
        manifest = model.manifest
        for i, (h, w) in enumerate(sizes):
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


@functools.cache
def _operations(seed_count: int) -> st.SearchStrategy[list[tuple]]:
    """1-4 mutations (built once per seed count: building and validating strategies costs more than a decode)."""
    byte = st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255)
    operation = st.one_of(
        st.tuples(st.just("flip"), _position(), st.integers(0, 7)),
        st.tuples(st.just("set"), _position(), byte),
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
    return re.sub(r"\d+", "N", text)[:110]


# --- the long run ------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[bytes, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    peak_input: int = 0

    def summary(self) -> dict[str, Any]:
        """What a report needs, as JSON (times rounded to microseconds)."""
        return {
            "outcomes": dict(self.outcomes),
            "seconds": [round(value, 6) for value in self.seconds],
            "peak_bytes": self.peak_bytes,
            "peak_input": self.peak_input,
        }

    def record(self, data: bytes, run: Callable[[], str], timeout: float) -> None:
        # Traced only while the input runs: tracing hypothesis's own allocations would triple the run time.
        tracemalloc.start()
        faulthandler.dump_traceback_later(timeout, exit=True)
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
        self.outcomes[outcome] += 1


def _messages_of(data: bytes, registry: Registry, max_pixels: int) -> str | None:
    try:
        decompress(data, registry, max_pixels=max_pixels)
    except CodecError as error:
        return f"{type(error).__name__}: {message_kind(error)}"
    return None


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load_models(model_dirs: list[Path], workdir: Path, threads: int) -> list[Model]:
    if not model_dirs:
        from bench.random_models import export_random_model

        model_dirs = [
            export_random_model(workdir / "gc-tiny", "tiny", "gc-tiny", seed=0),
            export_random_model(workdir / "gc-tiny-noise", "tiny", "gc-tiny-noise", seed=2, noise_channels=2),
            export_random_model(workdir / "sc-tiny", "sc-tiny", "sc-tiny", seed=3),
        ]
    return [Model(load_manifest(directory), RuntimeOptions(intra_op_threads=threads)) for directory in model_dirs]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000, help="mutated bitstreams (default 100000)")
    parser.add_argument("--payload-examples", type=int, default=20_000, help="random payloads for the decoder")
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
    args = parser.parse_args(argv)

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

        update_section(args.out, "fuzz", report, "Robustness")
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
    """One run of --examples bitstreams and --payload-examples payloads from hypothesis seed --seed, summarised."""
    workdir = Path(tempfile.mkdtemp(prefix="gancodec-fuzz-"))
    models = _load_models(args.model_dir, workdir, args.threads)
    registry = Registry(models)
    seeds = seed_bitstreams(models)
    for data in seeds:  # the seeds themselves must decode
        assert judge(data, registry, args.max_pixels) == "decoded"
    coders = [models[0].entropy, EntropyCoder([[60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1]], 16)]
    coders.append(EntropyCoder(_skewed_context_tables(), 16))
    if args.memory_limit_mb:
        limit = args.memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rss_start = _rss_mib()
    started = time.perf_counter()

    stats = Stats()
    messages: Counter[str] = Counter()

    @_generate_only(args.seed, args.examples)
    @given(data=mutated_bitstreams(seeds))
    def bitstreams(data: bytes) -> None:
        stats.record(data, lambda: judge(data, registry, args.max_pixels), args.timeout)
        if len(stats.seconds) % 10 == 0:  # sample the checks reached (the messages), cheaply
            kind = _messages_of(data, registry, args.max_pixels)
            if kind:
                messages[kind] += 1
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

    bitstreams()
    bitstream_seconds = time.perf_counter() - started
    payloads()
    total_seconds = time.perf_counter() - started

    failures = stats.failures + payload_stats.failures
    if failures:
        args.failures.mkdir(parents=True, exist_ok=True)
        for index, (data, reason) in enumerate(failures[:50]):
            (args.failures / f"failure-{args.seed}-{index:03d}.gcx").write_bytes(data)
            print(f"FAILURE {index}: {reason}", file=sys.stderr)
    return {
        "seed": args.seed,
        "examples": args.examples,
        "payload_examples": args.payload_examples,
        "models": [model.id for model in models],
        "seed_files": len(seeds),
        "max_pixels": args.max_pixels,
        "timeout": args.timeout,
        "memory_limit_mb": args.memory_limit_mb,
        "bitstreams": stats.summary(),
        "payloads": payload_stats.summary(),
        "messages": dict(messages),
        "failures": [reason for _, reason in failures],
        "bitstream_seconds": bitstream_seconds,
        "total_seconds": total_seconds,
        "rss_start_mib": rss_start,
        "rss_end_mib": _rss_mib(),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": describe_machine(),
        "finished": timestamp(),
    }


def _report(chunks: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The `fuzz` section from one run or several chunks (their counts added, their timings pooled)."""

    def merged(kind: str) -> tuple[Counter[str], list[float], int, int]:
        outcomes: Counter[str] = Counter()
        seconds: list[float] = []
        peak, peak_input = 0, 0
        for chunk in chunks:
            part = chunk[kind]
            outcomes.update(part["outcomes"])
            seconds += part["seconds"]
            if part["peak_bytes"] > peak:
                peak, peak_input = part["peak_bytes"], part["peak_input"]
        return outcomes, seconds, peak, peak_input

    def outcome_rows(counter: Counter[str]) -> str:
        total = sum(counter.values())
        return "\n".join(f"| {name} | {count} | {count / total:.1%} |" for name, count in counter.most_common())

    def timing(seconds: list[float], peak: int, peak_input: int) -> str:
        return (
            f"median {_percentile(seconds, 50) * 1e3:.2f} ms, p99 {_percentile(seconds, 99) * 1e3:.2f} ms, "
            f"max {max(seconds) * 1e3:.1f} ms; peak traced allocation of one input "
            f"{peak / 2**20:.2f} MiB (an input of {peak_input} bytes)"
        )

    first = chunks[0]
    bitstreams, bitstream_times, *bitstream_peak = merged("bitstreams")
    payloads, payload_times, *payload_peak = merged("payloads")
    messages: Counter[str] = Counter()
    for chunk in chunks:
        messages.update(chunk["messages"])
    failures = [reason for chunk in chunks for reason in chunk["failures"]]
    examples = sum(bitstreams.values())
    payload_examples = sum(payloads.values())
    minutes = sum(chunk["total_seconds"] for chunk in chunks) / 60
    seeds = ", ".join(str(chunk["seed"]) for chunk in chunks)
    if len(chunks) == 1:
        command = (
            f"nice -n 19 python -m bench.fuzz --examples {first['examples']} --payload-examples "
            f"{first['payload_examples']} --seed {first['seed']} --out docs/robustness.md"
        )
    else:
        command = (
            f"for seed in {seeds.replace(',', '')}; do nice -n 19 python -m bench.fuzz --examples {first['examples']} "
            f"--payload-examples {first['payload_examples']} --seed $seed --chunk-dir runs/fuzz; done; "
            f"python -m bench.fuzz --report runs/fuzz --out docs/robustness.md"
        )
    message_rows = "\n".join(f"| {count} | {kind} |" for kind, count in messages.most_common(20))
    failure_lines = "".join(f"\n- {reason}" for reason in failures[:20])
    models = ", ".join(f"`{name}`" for name in first["models"])
    return f"""## Fuzzing the bitstream parser and entropy decoder

`{command}` ({len(chunks)} run{"s" if len(chunks) > 1 else ""} of hypothesis seed {seeds}, the last finished
{max(chunk["finished"] for chunk in chunks)}; {minutes:.1f} minutes in all).

Machine: {chunks[-1]["machine"]}

**{examples + payload_examples} inputs, {len(failures)} failures** (a failure is any answer other than a decoded
image of the header's size or a `CodecError` subclass, a hang past {first["timeout"]:g} s, or a `MemoryError`
under an address-space limit of {first["memory_limit_mb"] or "unlimited"} MiB).{failure_lines}

{first["seed_files"]} seed files (models {models}; images from 1x1 to 96x128; GC files, and SC files with a mask
or a label map) were mutated by hypothesis: bit flips, byte sets, inserts, deletes, truncations, appends, splices
of two seeds, duplicated ranges, varints written over any position, one in ten re-headed with another width and
height, and half of them with the CRC-32 recomputed so that the mutation reaches the checks behind the checksum.
Each went through the container parser with no pixel cap (what `gancodec info` runs) and the whole decoder with
the pixel cap {first["max_pixels"]} (what `gancodec decompress` and POST /decompress run).

| Answer to {examples} mutated bitstreams | count | share |
|---|---|---|
{outcome_rows(bitstreams)}

Time per bitstream (parser + full decode): {timing(bitstream_times, *bitstream_peak)}.

| Answer to {payload_examples} random payloads fed to the entropy decoder | count | share |
|---|---|---|
{outcome_rows(payloads)}

Time per payload: {timing(payload_times, *payload_peak)}.

The checks that answered (a sample of every tenth bitstream, numbers masked), which shows how deep the
mutations reached:

| count | error and message |
|---|---|
{message_rows}

Process memory (per run): resident {max(c["rss_start_mib"] for c in chunks):.0f} MiB after loading the models,
{max(c["rss_end_mib"] for c in chunks):.0f} MiB at the end, {max(c["max_rss_mib"] for c in chunks):.0f} MiB at most
(hypothesis's own bookkeeping included).
"""


if __name__ == "__main__":
    sys.exit(main())
