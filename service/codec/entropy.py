"""Range coding of the latent's symbols with one static categorical model per channel (constriction).

The models come from the manifest's integer frequency tables. constriction's Categorical takes float
probabilities and re-quantises them to its own fixed point; we give it freq / 2**precision in float64, which is
exact, so encoder and decoder build bit-identical models wherever the same constriction release runs.
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


class EntropyCoder:
    """Codes a (channels, height, width) array of symbol indices, channel by channel, row-major within each."""

    def __init__(self, frequencies: list[list[int]], precision: int) -> None:
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in 1..{MAX_PRECISION}, got {precision}")
        if not frequencies:
            raise ValueError("need a frequency table for at least one channel")
        total = 1 << precision
        for channel, row in enumerate(frequencies):
            if not 2 <= len(row) <= 256 or min(row) < 1 or sum(row) != total:
                raise ValueError(f"channel {channel}: need 2-256 frequencies, each >= 1, summing to {total}")
        if len({len(row) for row in frequencies}) != 1:
            raise ValueError("every channel must have the same number of symbols")
        self.channels = len(frequencies)
        self.levels = len(frequencies[0])
        # The fewest bits a symbol of each channel can cost: that of its most probable value. No stream of
        # `count` symbols per channel can be shorter than `count` times their sum (minus a few words of slack),
        # so a payload that is shorter was not written by an encoder: refusing it keeps a tiny forged file from
        # making the decoder produce a full-size image (and the server run its generator) for free.
        self._min_bits_per_position = sum(precision - math.log2(max(row)) for row in frequencies)
        table = np.asarray(frequencies, dtype=np.float64) / float(total)
        self._models = [constriction.stream.model.Categorical(row, perfect=False) for row in table]

    def encode(self, symbols: np.ndarray) -> bytes:
        """Symbols (channels, h, w) with values in [0, levels) -> payload bytes (32-bit words, little-endian)."""
        if symbols.ndim != 3 or symbols.shape[0] != self.channels:
            raise ValueError(f"expected symbols of shape ({self.channels}, h, w), got {symbols.shape}")
        if symbols.size and int(symbols.max()) >= self.levels:
            raise ValueError(f"symbols must be below {self.levels}")
        encoder = constriction.stream.queue.RangeEncoder()
        self.write(encoder, symbols.reshape(self.channels, -1))
        return to_payload(encoder)

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: np.ndarray) -> None:
        """Append symbols (channels, n) to a range coder's stream, channel by channel (SC: only the kept ones)."""
        for channel, model in zip(symbols, self._models, strict=True):
            encoder.encode(np.ascontiguousarray(channel, dtype=np.int32), model)

    def read(self, decoder: constriction.stream.queue.RangeDecoder, count: int) -> np.ndarray:
        """The next `count` symbols of each channel from a range decoder, as uint8 (channels, count)."""
        with invalid_data_is_corrupt():
            return np.stack([decoder.decode(model, count) for model in self._models]).astype(np.uint8)

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
        symbols = self.read(decoder, height * width)
        check_exhausted(decoder)
        return symbols.reshape(self.channels, height, width)


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
