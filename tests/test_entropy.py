"""Entropy coding: exact round trips with skewed and context tables, a rate near the entropy, no crash on garbage."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from service.codec import CorruptBitstream
from service.codec.entropy import (
    EntropyCoder,
    context_count,
    integer_frequencies,
    open_payload,
    symbol_contexts,
    to_payload,
    wavefronts,
)

SKEWED = [[60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1], [13108, 13107, 13107, 13107, 13107]]


def _draw(tables: list[list[int]], height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.choice(len(row), size=(height, width), p=np.asarray(row) / sum(row)) for row in tables]
    ).astype(np.uint8)


def test_entropy_round_trip_with_skewed_tables():
    coder = EntropyCoder(SKEWED, precision=16)
    for seed, (height, width) in enumerate([(1, 1), (2, 3), (23, 30), (68, 120)]):
        symbols = _draw(SKEWED, height, width, seed)
        decoded = coder.decode(coder.encode(symbols), height, width)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, symbols)


def test_rare_symbols_still_round_trip():
    coder = EntropyCoder(SKEWED, precision=16)
    symbols = np.zeros((3, 4, 5), dtype=np.uint8)
    symbols[1] = 4  # frequency 1 in 65536 in channel 1
    np.testing.assert_array_equal(coder.decode(coder.encode(symbols), 4, 5), symbols)


def test_rate_is_close_to_the_entropy():
    coder = EntropyCoder(SKEWED, precision=16)
    symbols = _draw(SKEWED, 100, 100, seed=7)
    probabilities = np.asarray(SKEWED, dtype=np.float64) / 65536
    information = -sum(np.log2(probabilities[c][symbols[c]]).sum() for c in range(3))
    bits = 8 * len(coder.encode(symbols))
    assert information <= bits <= information * 1.01 + 64


def test_payload_bytes_are_stable():
    """Golden bytes: a change here means files written before would no longer decode (e.g. a constriction update)."""
    coder = EntropyCoder([[60000, 2000, 1000, 1536, 1000], [1, 1, 65532, 1, 1]], precision=16)
    symbols = np.array([[[0, 0, 1, 0], [0, 2, 0, 4]], [[2, 2, 2, 2], [2, 2, 0, 2]]], dtype=np.uint8)
    assert coder.encode(symbols).hex() == "e505b8c941cca1ab"


def test_corrupt_payload_raises_without_hanging():
    coder = EntropyCoder(SKEWED, precision=16)
    symbols = _draw(SKEWED, 20, 20, seed=3)
    payload = coder.encode(symbols)
    with pytest.raises(CorruptBitstream, match="32-bit words"):
        coder.decode(payload[:-1], 20, 20)
    with pytest.raises(CorruptBitstream, match="longer"):
        coder.decode(payload + bytes(8), 20, 20)
    rng = np.random.default_rng(0)
    for _ in range(20):
        garbage = rng.integers(0, 256, size=4 * int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            decoded = coder.decode(garbage, 20, 20)
        except CorruptBitstream:
            continue
        assert decoded.shape == (3, 20, 20) and int(decoded.max()) < 5


def test_a_payload_the_coder_cannot_decode_is_reported_in_our_own_words():
    coder = EntropyCoder(SKEWED, precision=16)
    garbage = bytes.fromhex(  # random words on which constriction gives up with a message of its own
        "699ffd1de6074c7c0a305f01e55f316cb447970300bca5e080ee29f8dc7f391669516ad180ee5ab5ea7e004d940906ca"
        "ce025af6492298cc48c149b1fe61815206c0419ba48bf0cb3841f1b6f01faf39ec9a7969be36c05cc521dbb125e1dd6a"
        "673b616b3dd8998a4cf75194ca3fd41c6563c9ec26bb2d68e343eb2c"
    )
    with pytest.raises(CorruptBitstream) as error:
        coder.decode(garbage, 20, 20)
    assert str(error.value) == "the entropy-coded payload is invalid: it cannot be decoded with the model's tables"


def test_a_fault_of_the_decoder_itself_is_not_reported_as_a_corrupt_file(monkeypatch):
    """How an empty mask's zip error once reached clients as 'the entropy-coded payload is invalid: zip() ...'."""
    coder = EntropyCoder(_context_tables(), precision=16)
    payload = coder.encode(_smooth(2, 4, 5, seed=7))

    def broken(keep):
        raise RuntimeError("a bug")

    monkeypatch.setattr("service.codec.entropy.wavefronts", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        coder.decode(payload, 4, 5)


@pytest.mark.parametrize(
    ("tables", "precision"),
    [([[65535, 1]], 15), ([[0, 65536]], 16), ([[65536]], 16), ([], 16), ([[3, 1], [1, 1, 2]], 2), ([[1, 1]], 30)],
)
def test_invalid_tables_are_refused(tables, precision):
    with pytest.raises(ValueError):
        EntropyCoder(tables, precision)


def test_encode_refuses_symbols_out_of_range():
    coder = EntropyCoder(SKEWED, precision=16)
    with pytest.raises(ValueError):
        coder.encode(np.full((3, 2, 2), 5, dtype=np.uint8))
    with pytest.raises(ValueError):
        coder.encode(np.zeros((2, 2, 2), dtype=np.uint8))


def _context_tables(levels: int = 5, channels: int = 2) -> np.ndarray:
    """Tables that expect a symbol to repeat the one above it (symbol 0 below the outside): a smooth latent."""
    contexts = np.arange(context_count(levels))
    above = (contexts // (levels + 1) ** 2) % (levels + 1)  # ((above-left, above, above-right), left)
    probabilities = np.full((channels, len(contexts), levels), 0.2 / (levels - 1))
    probabilities[:, contexts, np.where(above < levels, above, 0)] = 0.8
    return integer_frequencies(probabilities, 16)


def _smooth(channels: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.cumsum(rng.random((channels, height, width)) < 0.1, axis=1)
    return ((rows + rng.integers(0, 5, (channels, 1, width))) % 5).astype(np.uint8)


def test_context_tables_round_trip_and_code_correlated_symbols_in_fewer_bytes():
    contextual = EntropyCoder(_context_tables(), precision=16)
    static = EntropyCoder([[13108, 13107, 13107, 13107, 13107]] * 2, precision=16)
    symbols = _smooth(2, 40, 30, seed=1)
    payload = contextual.encode(symbols)
    np.testing.assert_array_equal(contextual.decode(payload, 40, 30), symbols)
    assert len(payload) < 0.5 * len(static.encode(symbols))


def test_context_coding_of_kept_symbols_reads_uncoded_neighbours_as_outside():
    coder = EntropyCoder(_context_tables(), precision=16)
    symbols = _smooth(2, 17, 23, seed=2)
    keep = np.random.default_rng(3).random((17, 23)) < 0.4
    encoder = constriction.stream.queue.RangeEncoder()
    coder.write(encoder, symbols, keep)
    decoded = coder.read(open_payload(to_payload(encoder)), keep)
    np.testing.assert_array_equal(decoded[:, keep], symbols[:, keep])
    assert not decoded[:, ~keep].any()


def test_one_table_for_every_context_costs_what_the_static_table_costs():
    static = EntropyCoder(SKEWED[:2], precision=16)
    broadcast = EntropyCoder(np.repeat(np.asarray(SKEWED[:2])[:, None, :], context_count(5), axis=1), precision=16)
    symbols = _draw(SKEWED[:2], 19, 21, seed=4)
    payload = broadcast.encode(symbols)
    np.testing.assert_array_equal(broadcast.decode(payload, 19, 21), symbols)
    assert abs(len(payload) - len(static.encode(symbols))) <= 8  # the same bits in another order


def test_wavefronts_visit_each_kept_cell_once_after_its_four_coded_neighbours():
    keep = np.random.default_rng(5).random((9, 13)) < 0.7
    visited = np.full(keep.shape, -1)
    for front, (rows, columns) in enumerate(wavefronts(keep)):
        assert (visited[rows, columns] == -1).all() and np.all(np.diff(rows) > 0)
        visited[rows, columns] = front
    assert np.array_equal(visited >= 0, keep)
    order = np.pad(visited, 1, constant_values=-1)
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
        neighbour = order[1 + dy : order.shape[0] - 1 + dy, 1 + dx : order.shape[1] - 1 + dx]
        assert np.all(neighbour[keep] < visited[keep])


def test_a_mask_that_keeps_nothing_has_no_wavefronts_and_codes_no_symbols():
    keep = np.zeros((6, 9), dtype=bool)
    assert wavefronts(keep) == []
    coder = EntropyCoder(_context_tables(), precision=16)
    encoder = constriction.stream.queue.RangeEncoder()
    coder.write(encoder, _smooth(2, 6, 9, seed=6), keep)
    decoder = open_payload(to_payload(encoder))
    assert not coder.read(decoder, keep).any() and decoder.maybe_exhausted()


def test_a_context_is_above_left_above_above_right_then_left():
    symbols = np.array([[0, 1, 2], [3, 4, 0]], dtype=np.uint8)
    base = 6
    expected = ((0 * base + 1) * base + 2) * base + 3  # cell (1, 1): above-left 0, above 1, above-right 2, left 3
    assert symbol_contexts(symbols, 5)[1, 1] == expected
    assert symbol_contexts(symbols, 5)[0, 0] == ((5 * base + 5) * base + 5) * base + 5  # all outside


def test_context_tables_of_the_wrong_count_are_refused():
    with pytest.raises(ValueError, match="tables per channel"):
        EntropyCoder(np.full((1, 7, 2), 32768), precision=16)
