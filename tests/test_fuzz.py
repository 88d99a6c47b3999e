"""Fuzzing in CI: mutated, truncated and spliced real bitstreams get only the defined errors, quickly; so do
hybrid files whose AVIF base is mutated.

The same strategies and oracle as bench/fuzz.py (its long run is in docs/robustness.md), with a few thousand
examples. A watchdog ends the whole run with a stack trace if one input hangs.
"""

from __future__ import annotations

import faulthandler
import sys
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.fuzz import (
    base_shape,
    export_random_hybrid,
    fix_crc,
    hostile_bases,
    judge,
    judge_payload,
    mutated_bitstreams,
    repayloaded_bitstreams,
    resized,
    seed_bitstreams,
)
from service.codec import (
    Bitstream,
    CorruptBitstream,
    ImageTooLarge,
    Mode,
    Model,
    Registry,
    decompress,
    load_manifest,
    unpack,
)
from service.codec.container import pack
from service.codec.entropy import EntropyCoder
from service.codec.selective import decode_kept

HANG_SECONDS = 60
"""An input still running after this long is a hang: the watchdog prints every stack and ends the process."""
FUZZ = settings(
    max_examples=2000,
    deadline=timedelta(seconds=5),
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEEDS: list[bytes] = []
REGISTRY: list[Registry] = []
HYBRID_SEEDS: list[Bitstream] = []
HOSTILE: list[Bitstream] = []
HYBRID_REGISTRY: list[Registry] = []


@pytest.fixture(scope="module", autouse=True)
def _corpus(model_dir, noisy_model_dir, sc_model_dir):
    """Seed files from the tiny models (module-level, since hypothesis strategies are built at import)."""
    models = [Model(load_manifest(directory)) for directory in (model_dir, noisy_model_dir, sc_model_dir)]
    SEEDS[:] = seed_bitstreams(models)
    REGISTRY[:] = [Registry(models)]
    yield
    SEEDS.clear()
    REGISTRY.clear()


@pytest.fixture(scope="module")
def _hybrid_corpus(tmp_path_factory):
    """Seed files of a tiny hybrid model at every seed size (1x1 to 65535x1), and its hostile bases for three."""
    pytest.importorskip("torch")
    model = Model(load_manifest(export_random_hybrid(tmp_path_factory.mktemp("hybrid-zoo") / "gc-hybrid-tiny")))
    registry = Registry([model])
    HYBRID_SEEDS[:] = [unpack(data, sys.maxsize) for data in seed_bitstreams([model])]
    HOSTILE[:] = [
        unpack(pack(seed.header, payload), sys.maxsize)
        for seed in HYBRID_SEEDS[:3]
        for payload in hostile_bases(*base_shape(seed.header, registry)).values()
    ]
    HYBRID_REGISTRY[:] = [registry]
    yield
    for corpus in (HYBRID_SEEDS, HOSTILE, HYBRID_REGISTRY):
        corpus.clear()


def _watched(run):
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        return run()
    finally:
        faulthandler.cancel_dump_traceback_later()


@FUZZ
@given(bitstream=st.deferred(lambda: mutated_bitstreams(SEEDS)))
def test_mutated_bitstreams_get_only_defined_answers(bitstream):
    assert _watched(lambda: judge(bitstream, REGISTRY[0])) in {
        "decoded",
        "CorruptBitstream",
        "ImageTooLarge",
        "UnknownModel",
        "ModelMismatch",
    }


@settings(FUZZ, max_examples=1000)
@given(payload=st.binary(max_size=512), height=st.integers(1, 64), width=st.integers(1, 64), skewed=st.booleans())
def test_random_payloads_decode_or_raise_corrupt_bitstream(payload, height, width, skewed):
    tables = [[60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1]] if skewed else [[13108] + [13107] * 4] * 8
    coder = EntropyCoder(tables, 16)
    assert _watched(lambda: judge_payload(coder, payload, height, width)) in {"decoded", "CorruptBitstream"}


def test_every_truncation_and_byte_flip_of_real_files():
    """Exhaustive on four seeds, with and without a recomputed checksum: the cheap systematic part."""
    for seed in [*SEEDS[3:5], SEEDS[-2], SEEDS[-1]]:  # two GC files, an SC file with a mask and one with labels
        for length in range(len(seed)):
            for data in (seed[:length], fix_crc(seed[:length])):
                assert judge(data, REGISTRY[0]) != "decoded" or length == len(seed)
        for index in range(len(seed) - 4):
            flipped = bytearray(seed)
            flipped[index] ^= 0xFF
            judge(bytes(flipped), REGISTRY[0])
            judge(fix_crc(bytes(flipped)), REGISTRY[0])


def test_forged_size_with_a_tiny_payload_is_refused_before_decoding():
    """A ~40-byte file claiming 4096x4096 must not make the decoder produce (and a server generate) 16 Mpixels."""
    seed = SEEDS[0]
    forged = resized(seed, 4096, 4096)
    assert len(forged) < 64
    with pytest.raises(CorruptBitstream, match="truncated payload"):
        decompress(forged, REGISTRY[0])
    with pytest.raises(ImageTooLarge):
        decompress(resized(seed, 5000, 5000), REGISTRY[0])
    # The parser alone (what `gancodec info` runs) reads it without allocating anything it claims.
    assert unpack(forged, sys.maxsize).header.width == 4096


def test_payloads_from_the_encoder_always_meet_the_length_bound():
    """The bound that refuses forged files must never refuse a real one: check the cheapest possible streams."""
    tables = [[13108] + [13107] * 4, [60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1], [1, 65535]]
    for table in tables:
        coder = EntropyCoder([table, table], 16)
        cheapest = int(np.argmax(table))
        for side in (1, 2, 3, 7, 16, 45, 100, 256):
            symbols = np.full((2, side, side), cheapest, dtype=np.uint8)
            payload = coder.encode(symbols)
            assert len(payload) >= coder.minimum_payload_bytes(side * side)
            np.testing.assert_array_equal(coder.decode(payload, side, side), symbols)


def test_seeds_for_a_model_with_context_tables_include_a_file_that_keeps_nothing(contextual_sc_model_dir):
    """What `python -m bench.fuzz --model-dir service/zoo/sc-small` starts from: sc-small codes with contexts."""
    model = Model(load_manifest(contextual_sc_model_dir))
    seeds = seed_bitstreams([model], sizes=((1, 1), (48, 64)))
    registry = Registry([model])
    assert [judge(seed, registry) for seed in seeds] == ["decoded"] * len(seeds)
    gc, nothing, left_half, _ = seeds[-4:]  # the 48x64 files (a 3x4 latent)
    assert unpack(gc, sys.maxsize).header.mode is Mode.GC
    kept = [decode_kept(model.entropy, unpack(seed, sys.maxsize).payload, 3, 4)[0] for seed in (nothing, left_half)]
    assert not kept[0].any() and kept[1][:, :2].all()


def test_hybrid_files_of_every_seed_size_decode(_hybrid_corpus):
    """The base layer's checks refuse nothing the encoder writes, from 1x1 to the longest sides, 1x65535 and
    65535x1 (a 2x16384 base)."""
    sizes = [(seed.header.width, seed.header.height) for seed in HYBRID_SEEDS]
    assert (65535, 1) in sizes and (1, 65535) in sizes
    for seed in HYBRID_SEEDS:
        assert judge(pack(seed.header, seed.payload), HYBRID_REGISTRY[0]) == "decoded", seed.header


@settings(FUZZ, max_examples=1000)
@given(bitstream=st.deferred(lambda: repayloaded_bitstreams(HYBRID_SEEDS, HOSTILE)))
def test_mutated_hybrid_bases_are_decoded_or_corrupt(_hybrid_corpus, bitstream):
    assert _watched(lambda: judge(bitstream, HYBRID_REGISTRY[0])) in {"decoded", "CorruptBitstream"}


def test_every_truncation_and_byte_flip_of_a_hybrid_base(_hybrid_corpus):
    """Exhaustive on the 48x64 file's AVIF, re-packed with a valid checksum: every cut is refused."""
    seed = next(seed for seed in HYBRID_SEEDS if (seed.header.width, seed.header.height) == (64, 48))
    for length in range(len(seed.payload)):
        assert judge(pack(seed.header, seed.payload[:length]), HYBRID_REGISTRY[0]) == "CorruptBitstream"
    for index in range(len(seed.payload)):
        flipped = bytearray(seed.payload)
        flipped[index] ^= 0xFF
        assert judge(pack(seed.header, bytes(flipped)), HYBRID_REGISTRY[0]) in {"decoded", "CorruptBitstream"}
