"""Range coding of the latent's symbols with one static categorical model per channel (constriction).

The models come from the manifest's integer frequency tables. constriction's Categorical takes float
probabilities and re-quantises them to its own fixed point; we give it freq / 2**precision in float64, which is
exact, so encoder and decoder build bit-identical models wherever the same constriction release runs.
"""

from __future__ import annotations

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
        table = np.asarray(frequencies, dtype=np.float64) / float(total)
        self._models = [constriction.stream.model.Categorical(row, perfect=False) for row in table]

    def encode(self, symbols: np.ndarray) -> bytes:
        """Symbols (channels, h, w) with values in [0, levels) -> payload bytes (32-bit words, little-endian)."""
        if symbols.ndim != 3 or symbols.shape[0] != self.channels:
            raise ValueError(f"expected symbols of shape ({self.channels}, h, w), got {symbols.shape}")
        if symbols.size and int(symbols.max()) >= self.levels:
            raise ValueError(f"symbols must be below {self.levels}")
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, model in zip(symbols, self._models, strict=True):
            encoder.encode(np.ascontiguousarray(channel, dtype=np.int32).ravel(), model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, height: int, width: int) -> np.ndarray:
        """Payload -> symbols (channels, height, width) uint8; data that cannot be a valid stream is rejected."""
        if len(payload) % 4:
            raise CorruptBitstream(f"the payload is {len(payload)} bytes, not a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        count = height * width
        try:
            channels = [decoder.decode(model, count) for model in self._models]
        except Exception as error:  # constriction reports invalid data with assorted exception types
            raise CorruptBitstream(f"the entropy-coded payload is invalid: {error}") from None
        if not decoder.maybe_exhausted():
            raise CorruptBitstream("the entropy-coded payload is longer than its symbols need")
        return np.stack(channels).astype(np.uint8).reshape(self.channels, height, width)
