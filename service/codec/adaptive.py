"""Context-adaptive coding of SC's side information: the preservation mask (2 symbols) and the label map (class ids).

Neither ships a table with the model: each learns its statistics while coding. A cell's context is the pair of
already-coded neighbours above and to the left (masks and label maps are made of regions, so a cell mostly
repeats them), or, when the decoder already holds a grid of side information (the label map, for the mask), the
cell's value there; each context keeps integer counts that start with a prior on the neighbours' values (none for
side information) and grow with every symbol coded in it. Integer counts, given to constriction as exact float64
values, make encoder and decoder build identical models everywhere (docs/bitstream.md gives the rule in full).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np

COUNT_LIMIT = 1 << 13
"""A context whose counts sum above this halves them (rounding up), so its statistics follow the image."""
_FAMILY = constriction.stream.model.Categorical(perfect=False)
"""Categorical models whose probabilities come with each symbol."""


@dataclass(frozen=True)
class ContextModel:
    """The adaptive model of one kind of grid: its alphabet, the prior given to the neighbours' values in a new
    context, and what each coded symbol adds to its count."""

    alphabet: int
    prior: int
    step: int

    def encode(
        self, encoder: constriction.stream.queue.RangeEncoder, grid: np.ndarray, given: np.ndarray | None = None
    ) -> None:
        """Append a grid (rows, columns) of values in [0, alphabet), row-major, to a range coder's stream; with
        `given` (side information of the grid's shape), each cell's context is its value there."""
        if grid.ndim != 2 or (grid.size and int(grid.max()) >= self.alphabet):
            raise ValueError(f"expected a 2-d grid of values below {self.alphabet}")

        def code(probabilities: np.ndarray, row: int, column: int) -> int:
            symbol = int(grid[row, column])
            encoder.encode(np.array([symbol], dtype=np.int32), _FAMILY, probabilities)
            return symbol

        self._scan(*grid.shape, code, given)

    def decode(
        self,
        decoder: constriction.stream.queue.RangeDecoder,
        rows: int,
        columns: int,
        given: np.ndarray | None = None,
    ) -> np.ndarray:
        """The next rows x columns values from a range decoder, as uint8 (values below 256) or int32; `given` as
        the encoder had it."""

        def code(probabilities: np.ndarray, row: int, column: int) -> int:
            return int(decoder.decode(_FAMILY, probabilities)[0])

        return self._scan(rows, columns, code, given)

    def _scan(
        self, rows: int, columns: int, code: Callable[[np.ndarray, int, int], int], given: np.ndarray | None
    ) -> np.ndarray:
        """Visit the cells row-major, handing `code` each cell's probabilities; counts follow what it returns."""
        if given is not None and given.shape != (rows, columns):
            raise ValueError(f"side information of shape {given.shape} for a {rows}x{columns} grid")
        grid = np.zeros((rows, columns), dtype=np.uint8 if self.alphabet <= 256 else np.int32)
        contexts: dict[tuple[int, int] | int, np.ndarray] = {}
        for row in range(rows):
            for column in range(columns):
                if given is None:
                    above = int(grid[row - 1, column]) if row else -1
                    left = int(grid[row, column - 1]) if column else -1
                    key: tuple[int, int] | int = (above, left)
                else:
                    above = left = -1
                    key = int(given[row, column])
                counts = contexts.get(key)
                if counts is None:
                    counts = contexts[key] = self._initial(above, left)
                symbol = code(counts[None].astype(np.float64), row, column)
                grid[row, column] = symbol
                counts[symbol] += self.step
                if counts.sum() > COUNT_LIMIT:
                    counts += 1
                    counts //= 2
        return grid

    def _initial(self, above: int, left: int) -> np.ndarray:
        counts = np.ones(self.alphabet, dtype=np.int64)
        for neighbour in (above, left):
            if neighbour >= 0:
                counts[neighbour] += self.prior
        return counts


MASK_MODEL = ContextModel(alphabet=2, prior=4, step=2)
"""The preservation mask, 1 = kept: coded from the label map (whose kept blocks name kept classes, selection.py),
a mask made by synthesising classes costs a few bits per class; 4 bytes for an all-kept or all-synthesised one
(docs/sc.md)."""


def label_model(classes: int) -> ContextModel:
    """A label map of `classes` ids. The prior and step were chosen on CamVid label maps (docs/sc.md): they cost
    about 54 bytes per 480x360 frame at 1/16 resolution, half what an order-0 adaptive model needs."""
    return ContextModel(alphabet=classes, prior=32, step=32)
