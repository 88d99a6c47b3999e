"""Range coding of the latent's symbols (constriction), each under its channel's table for its context.

A model's manifest holds integer frequency tables: one per channel (static), and optionally, per channel, one
per context, the four neighbours already coded (above-left, above, above-right and left, each a level or
"outside" for positions beyond the image or not coded). The latent's neighbouring cells are correlated. So that
a decoder need not decode one symbol at a time, a contextual stream runs in wavefronts: the cells (i, j) with
2i + j = t depend only on wavefronts before t, so each wavefront, in every channel at once, decodes in one call.
A static model is the one-context case and codes channel by channel, row-major, as before contexts existed.

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
    """Contexts of a latent with `levels` symbols: four neighbours, each a level or outside."""
    return (levels + 1) ** 4


def symbol_contexts(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Context index of every position of a (..., rows, columns) array (`levels` marks not coded), as the coder
    sees it: ((above-left * B + above) * B + above-right) * B + left, B = levels + 1, outside the array `levels`."""
    pad = [(0, 0)] * (symbols.ndim - 2) + [(1, 0), (1, 1)]
    padded = np.pad(symbols.astype(np.int64), pad, constant_values=levels)
    above, left = padded[..., :-1, :], padded[..., 1:, :-2]
    return context_index(above[..., :-2], above[..., 1:-1], above[..., 2:], left, levels)


def context_index(
    above_left: np.ndarray, above: np.ndarray, above_right: np.ndarray, left: np.ndarray, levels: int
) -> np.ndarray:
    """The table index of the neighbours' values (each a level, or `levels` for outside)."""
    base = levels + 1
    return ((above_left * base + above) * base + above_right) * base + left


def wavefronts(keep: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The kept cells of a (rows, columns) mask in coding order: wavefront t = 2 * row + column, t = 0, 1, ...,
    each wavefront's cells by row. Returns each non-empty wavefront's (rows, columns) index arrays: none for a
    mask that keeps nothing (an SC file may keep nothing: docs/bitstream.md)."""
    rows, columns = np.nonzero(keep)
    if not rows.size:
        return []
    front = 2 * rows + columns
    order = np.argsort(front, kind="stable")  # np.nonzero is row-major: within a wavefront, by row
    rows, columns, front = rows[order], columns[order], front[order]
    starts = np.flatnonzero(np.diff(front, prepend=-1))
    bounds = zip(starts, [*starts[1:], len(front)], strict=True)
    return [(rows[start:end], columns[start:end]) for start, end in bounds]


def integer_frequencies(probabilities: np.ndarray, precision: int) -> np.ndarray:
    """Integer tables (..., levels) summing to 2**precision, each entry at least 1 (every symbol decodable)."""
    levels = probabilities.shape[-1]
    total = 1 << precision
    counts = 1 + np.floor(probabilities * (total - levels)).astype(np.int64)
    top = np.expand_dims(counts.argmax(axis=-1), -1)
    np.put_along_axis(counts, top, np.take_along_axis(counts, top, -1) + total - counts.sum(-1, keepdims=True), -1)
    return counts


class EntropyCoder:
    """Codes the kept symbols of a (channels, rows, columns) array: static tables channel by channel, row-major
    within each; context tables wavefront by wavefront, each wavefront channel by channel (module docstring)."""

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
        self._channel_index = np.arange(channels)[:, None]

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
        if not self.contextual:
            for channel, probabilities in zip(symbols, self._probabilities, strict=True):
                encoder.encode(channel[keep].astype(np.int32), self._family, probabilities[np.zeros(keep.sum(), int)])
            return
        contexts = symbol_contexts(np.where(keep, symbols, self.levels), self.levels)
        parts = [
            (symbols[:, rows, columns].ravel(), self._probabilities[self._channel_index, contexts[:, rows, columns]])
            for rows, columns in wavefronts(keep)
        ]
        if parts:
            coded = np.concatenate([part[0] for part in parts]).astype(np.int32)
            encoder.encode(coded, self._family, np.concatenate([part[1].reshape(-1, self.levels) for part in parts]))

    def read(self, decoder: constriction.stream.queue.RangeDecoder, keep: np.ndarray) -> np.ndarray:
        """The symbols under `keep` (rows, columns) from a range decoder: uint8 (channels, rows, columns), 0
        where not kept. A contextual model decodes wavefront by wavefront, all channels in one call each."""
        symbols = np.zeros((self.channels, *keep.shape), dtype=np.uint8)
        count = int(keep.sum())
        # Only constriction's calls are wrapped: a fault of this code is a bug, not a corrupt file.
        if not self.contextual:
            for channel, probabilities in zip(symbols, self._probabilities, strict=True):
                with invalid_data_is_corrupt():
                    channel[keep] = decoder.decode(self._family, probabilities[np.zeros(count, dtype=np.int64)])
            return symbols
        # The symbols so far, framed by a row above and a column either side of "outside" (cell (i, j) at
        # [i + 1, j + 1]); cells not coded stay outside.
        known = np.full((self.channels, keep.shape[0] + 1, keep.shape[1] + 2), self.levels, dtype=np.int64)
        for rows, columns in wavefronts(keep):
            contexts = context_index(
                known[:, rows, columns],
                known[:, rows, columns + 1],
                known[:, rows, columns + 2],
                known[:, rows + 1, columns],
                self.levels,
            )
            probabilities = self._probabilities[self._channel_index, contexts].reshape(-1, self.levels)
            with invalid_data_is_corrupt():
                decoded = decoder.decode(self._family, probabilities).reshape(self.channels, -1)
            known[:, rows + 1, columns + 1] = decoded
            symbols[:, rows, columns] = decoded
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
    """constriction reports streams that cannot be decoded with assorted exception types and messages of its own."""
    try:
        yield
    except Exception:
        raise CorruptBitstream(
            "the entropy-coded payload is invalid: it cannot be decoded with the model's tables"
        ) from None


def check_exhausted(decoder: constriction.stream.queue.RangeDecoder) -> None:
    """A stream longer than its symbols need is corrupt (every symbol count is known before decoding)."""
    if not decoder.maybe_exhausted():
        raise CorruptBitstream("the entropy-coded payload is longer than its symbols need")
