"""Overlapping tiles over the latent grid, so that the graphs never run on more than a bounded region at once.

Only the networks are tiled, never the bitstream: the encoder runs on overlapping image tiles whose latents are
stitched into the one latent the file codes, and the generator runs on overlapping latent tiles whose pixels are
stitched into the image. Each tile reaches `halo` cells past the cells it keeps (the graph's receptive field,
`Model.halo`), and keeps only its own cells, so a tiled run computes what a whole run would: no seams, and a file
decodes to the same pixels however it was encoded (up to the last bit of floating point, see
docs/performance.md). Where a tile meets the image's edge it ends there, and the graphs' reflection padding
sees the same edge as in a whole run.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """Cells [row0, row1) x [column0, column1) are kept; the graph runs on the window around them."""

    row0: int
    row1: int
    column0: int
    column1: int
    window_row0: int
    window_row1: int
    window_column0: int
    window_column1: int

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.window_row0, self.window_row1), slice(self.window_column0, self.window_column1)

    @property
    def kept(self) -> tuple[slice, slice]:
        """The kept cells within the window's own coordinates."""
        return (
            slice(self.row0 - self.window_row0, self.row1 - self.window_row0),
            slice(self.column0 - self.window_column0, self.column1 - self.window_column0),
        )


def plan(rows: int, columns: int, halo: int, max_cells: int) -> list[Tile]:
    """Tiles covering a rows x columns grid: the fewest cells computed in all with every window (kept cells plus
    halo) at most `max_cells` cells; one tile, the whole grid without halo, when it fits. Where no split fits (a
    halo too wide for `max_cells`), tiles keep `halo` cells a side, the smallest that still make progress.

    Every count of tiles across the rows is tried, each with the fewest across the columns that fit; each try
    costs a few steps (`_measure`), so planning takes time linear in the grid's longer side, not its square
    (a 1-pixel-wide image a million pixels tall took minutes)."""
    if rows * columns <= max_cells:
        return [Tile(0, rows, 0, columns, 0, rows, 0, columns)]
    best: tuple[int, int, int] | None = None
    thinnest = max(halo, 1)
    most_rows, most_columns = math.ceil(rows / thinnest), math.ceil(columns / thinnest)
    for across_rows in range(1, most_rows + 1):
        window_rows, computed_rows = _measure(rows, across_rows, halo)
        widest = max_cells // window_rows
        if not widest:
            continue
        # No split into fewer than columns / widest parts fits: one part is at least that wide.
        for across_columns in range(math.ceil(columns / widest), most_columns + 1):
            window_columns, computed_columns = _measure(columns, across_columns, halo)
            if window_columns <= widest:
                cost = computed_rows * computed_columns
                if best is None or cost < best[0]:
                    best = (cost, across_rows, across_columns)
                break  # more columns only cost more
    if best is None:
        best = (0, most_rows, most_columns)
    _, across_rows, across_columns = best
    return [
        Tile(r0, r1, c0, c1, max(0, r0 - halo), min(rows, r1 + halo), max(0, c0 - halo), min(columns, c1 + halo))
        for r0, r1 in _split(rows, across_rows)
        for c0, c1 in _split(columns, across_columns)
    ]


def _measure(length: int, parts: int, halo: int) -> tuple[int, int]:
    """(largest window, cells the windows cover in all) along an axis of `length` cells cut into `parts` (at most
    `length`) by `_split`.

    Only parts within `halo` of an end are measured one by one; those between have windows of their own length
    plus `halo` either side, and their lengths are floor(length / parts) or one more (the bounds are rounded
    multiples of length / parts), so their largest and their sum follow from the bounds of the first and last.
    """

    def bound(i: int) -> int:
        return round(i * length / parts)

    def window(i: int) -> int:
        return min(length, bound(i + 1) + halo) - max(0, bound(i) - halo)

    first = 0  # parts [0, first) start within halo of the top
    while first < parts and bound(first) < halo:
        first += 1
    last = parts - 1  # parts (last, parts) end within halo of the bottom
    while last >= 0 and bound(last + 1) > length - halo:
        last -= 1
    edges = [window(i) for i in {*range(first), *range(last + 1, parts)}]
    if first > last:
        return max(edges), sum(edges)
    count, inner = last - first + 1, bound(last + 1) - bound(first)
    short, rest = divmod(length, parts)
    longest = short + 1 if rest and inner > count * short else short
    return max([*edges, longest + 2 * halo]), sum(edges) + inner + 2 * halo * count


def _split(length: int, parts: int) -> list[tuple[int, int]]:
    bounds = [round(i * length / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
