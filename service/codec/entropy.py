"""Range coding of the latent's symbols (constriction), each under its channel's table for its context.

A model's manifest holds integer frequency tables: one per channel (static), and optionally, per channel, one
per context, the three symbols above a position (above-left, above, above-right, each a level or "outside"
for positions beyond the image or not coded). The latent's neighbouring cells are correlated, and contexts
from the row above leave every row decodable in one call. A static model is the one-context case and codes
exactly as before contexts existed, so its files stay readable.

constriction's Categorical takes float probabilities and re-quantises them to its own fixed point; we give it
freq / 2**precision in float64, which is exact, so encoder and decoder build bit-identical models wherever
the same constriction release runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import constriction
import numpy as np

from service.codec.errors import CorruptBitstream

MAX_PRECISION = 24
"""constriction's default coders quantise probabilities to 24 bits; finer tables cannot be represented."""


def context_count(levels: int) -> int:
    """Contexts of a latent with `levels` symbols: three neighbours, each a level or outside."""
    return (levels + 1) ** 3


def row_contexts(above: np.ndarray, levels: int) -> np.ndarray:
    """Context index of every position of a row from the row above it (`levels` marks outside or not coded);
    row after row for an array of rows."""
    base = levels + 1
    padded = np.pad(above.astype(np.int64), [(0, 0)] * (above.ndim - 1) + [(1, 1)], constant_values=levels)
    return (padded[..., :-2] * base + padded[..., 1:-1]) * base + padded[..., 2:]


def symbol_contexts(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Context index of every position of a (rows, columns) array (`levels` marks not coded), as the coder
    sees it: from the row above, the first row from outside."""
    outside = np.full((1, symbols.shape[1]), levels, symbols.dtype)
    return row_contexts(np.vstack([outside, symbols[:-1]]), levels)


def integer_frequencies(probabilities: np.ndarray, precision: int) -> np.ndarray:
    """Integer tables (..., levels) summing to 2**precision, each entry at least 1 (every symbol decodable)."""
    levels = probabilities.shape[-1]
    total = 1 << precision
    counts = 1 + np.floor(probabilities * (total - levels)).astype(np.int64)
    top = np.expand_dims(counts.argmax(axis=-1), -1)
    np.put_along_axis(counts, top, np.take_along_axis(counts, top, -1) + total - counts.sum(-1, keepdims=True), -1)
    return counts


class EntropyCoder:
    """Codes the kept symbols of a (channels, rows, columns) array, channel by channel, row-major within each."""

    def __init__(self, frequencies: list | np.ndarray, precision: int) -> None:
        """`frequencies`: (channels, levels) static tables or (channels, contexts, levels) context tables."""
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in 1..{MAX_PRECISION}, got {precision}")
        try:
            tables = np.asarray(frequencies, dtype=np.int64)
        except ValueError:
            raise ValueError("every channel must have the same number of symbols and contexts") from None
        if tables.ndim == 2:
            tables = tables[:, None, :]
        if tables.ndim != 3 or not tables.shape[0]:
            raise ValueError("need a frequency table for at least one channel")
        total = 1 << precision
        channels, contexts, levels = tables.shape
        if not 2 <= levels <= 256 or tables.min() < 1 or np.any(tables.sum(axis=-1) != total):
            raise ValueError(f"need tables of 2-256 frequencies, each >= 1, summing to {total}")
        if contexts not in (1, context_count(levels)):
            raise ValueError(f"need 1 or {context_count(levels)} tables per channel, got {contexts}")
        self.channels, self.levels = channels, levels
        self.contextual = contexts > 1
        # The fewest bits a symbol of each channel can cost: that of its most probable value in any context. No
        # stream of `count` symbols per channel can be shorter than `count` times their sum (minus a few words of
        # slack), so a payload that is shorter was not written by an encoder: refusing it keeps a tiny forged
        # file from making the decoder produce a full-size image (and the server run its generator) for free.
        self._min_bits_per_position = float(np.sum(precision - np.log2(tables.max(axis=(1, 2)))))
        self._probabilities = tables.astype(np.float64) / float(total)
        self._family = constriction.stream.model.Categorical(perfect=False)

    def encode(self, symbols: np.ndarray) -> bytes:
        """Symbols (channels, h, w) with values in [0, levels) -> payload bytes (32-bit words, little-endian)."""
        if symbols.ndim != 3 or symbols.shape[0] != self.channels:
            raise ValueError(f"expected symbols of shape ({self.channels}, h, w), got {symbols.shape}")
        encoder = constriction.stream.queue.RangeEncoder()
        self.write(encoder, symbols, np.ones(symbols.shape[1:], dtype=bool))
        return to_payload(encoder)

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: np.ndarray, keep: np.ndarray) -> None:
        """Append the symbols (channels, rows, columns) under `keep` (rows, columns) to a range coder's stream."""
        if symbols.size and int(symbols.max()) >= self.levels:
            raise ValueError(f"symbols must be below {self.levels}")
        for channel, probabilities in zip(symbols, self._probabilities, strict=True):
            if self.contextual:
                contexts = symbol_contexts(np.where(keep, channel, self.levels), self.levels)[keep]
            else:
                contexts = np.zeros(int(keep.sum()), dtype=np.int64)
            encoder.encode(channel[keep].astype(np.int32), self._family, probabilities[contexts])

    def read(self, decoder: constriction.stream.queue.RangeDecoder, keep: np.ndarray) -> np.ndarray:
        """The symbols under `keep` (rows, columns) from a range decoder: uint8 (channels, rows, columns), 0
        where not kept. A contextual model decodes row by row (each row's contexts come from the one above)."""
        symbols = np.zeros((self.channels, *keep.shape), dtype=np.uint8)
        count = int(keep.sum())
        with invalid_data_is_corrupt():
            for channel, probabilities in zip(symbols, self._probabilities, strict=True):
                if not self.contextual:
                    channel[keep] = decoder.decode(self._family, probabilities[np.zeros(count, dtype=np.int64)])
                    continue
                above = np.full(keep.shape[1], self.levels)
                for row, kept in zip(channel, keep, strict=True):
                    contexts = row_contexts(above, self.levels)[kept]
                    if contexts.size:
                        row[kept] = decoder.decode(self._family, probabilities[contexts])
                    above = np.where(kept, row, self.levels)
        return symbols

    def minimum_payload_bytes(self, count: int) -> int:
        """A lower bound on the payload of `count` symbols per channel, whatever the symbols are.

        A range coder cannot beat the information content of what it codes, and every symbol costs at least the
        information of its channel's most probable value. 1/1024 of the bound and 64 bits are left as slack for
        constriction's re-quantised probabilities and its final word (measured: real payloads exceed the bound).
        """
        bits = count * self._min_bits_per_position * (1 - 2**-10) - 64
        return max(0, 4 * math.floor(bits / 32))

    def decode(self, payload: bytes, height: int, width: int) -> np.ndarray:
        """Payload -> symbols (channels, height, width) uint8; data that cannot be a valid stream is rejected."""
        decoder = open_payload(payload)
        minimum = self.minimum_payload_bytes(height * width)
        if len(payload) < minimum:
            raise CorruptBitstream(
                f"truncated payload: {height * width} symbols per channel need at least {minimum} bytes, "
                f"the file has {len(payload)}"
            )
        symbols = self.read(decoder, np.ones((height, width), dtype=bool))
        check_exhausted(decoder)
        return symbols


def to_payload(encoder: constriction.stream.queue.RangeEncoder) -> bytes:
    """A coded stream as the file stores it: the range coder's 32-bit words, little-endian."""
    return encoder.get_compressed().astype("<u4").tobytes()


def open_payload(payload: bytes) -> constriction.stream.queue.RangeDecoder:
    if len(payload) % 4:
        raise CorruptBitstream(f"the payload is {len(payload)} bytes, not a whole number of 32-bit words")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))


@contextmanager
def invalid_data_is_corrupt() -> Iterator[None]:
    """constriction reports streams that cannot be decoded with assorted exception types."""
    try:
        yield
    except Exception as error:
        raise CorruptBitstream(f"the entropy-coded payload is invalid: {error}") from None


def check_exhausted(decoder: constriction.stream.queue.RangeDecoder) -> None:
    """A stream longer than its symbols need is corrupt (every symbol count is known before decoding)."""
    if not decoder.maybe_exhausted():
        raise CorruptBitstream("the entropy-coded payload is longer than its symbols need")
