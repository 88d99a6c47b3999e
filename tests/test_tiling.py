"""Tiling: large images go through the graphs in overlapping tiles that leave no seams and change nothing."""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest

from service.cli import main
from service.codec import (
    MIN_TILE_PIXELS,
    Model,
    Registry,
    RuntimeOptions,
    compress,
    decode_image,
    decompress,
    encode_png,
    is_tiled,
    load_manifest,
)
from service.codec.pipeline import latent_size, plan_tiles
from service.codec.tiling import plan

SMALL_TILES = RuntimeOptions(intra_op_threads=1, tile_pixels=MIN_TILE_PIXELS)
"""256x256-pixel tiles (16x16 latent cells, halo included): a 300x410 image needs several."""


def _covered(rows: int, columns: int, halo: int, max_cells: int) -> None:
    tiles = plan(rows, columns, halo, max_cells)
    count = np.zeros((rows, columns), int)
    for tile in tiles:
        count[tile.row0 : tile.row1, tile.column0 : tile.column1] += 1
        window_rows, window_columns = tile.window
        assert 0 <= window_rows.start <= tile.row0 < tile.row1 <= window_rows.stop <= rows
        assert 0 <= window_columns.start <= tile.column0 < tile.column1 <= window_columns.stop <= columns
        # The window reaches `halo` past the kept cells, or to the grid's edge.
        assert tile.row0 - window_rows.start in {halo, tile.row0}
        assert window_rows.stop - tile.row1 in {halo, rows - tile.row1}
        assert tile.column0 - window_columns.start in {halo, tile.column0}
        assert window_columns.stop - tile.column1 in {halo, columns - tile.column1}
        if len(tiles) > 1 and max_cells >= (3 * halo) ** 2:
            assert (window_rows.stop - window_rows.start) * (window_columns.stop - window_columns.start) <= max_cells
    assert (count == 1).all(), "every cell is kept by exactly one tile"


@pytest.mark.parametrize(
    ("rows", "columns", "halo", "max_cells"),
    [(68, 120, 16, 9216), (135, 240, 16, 9216), (375, 500, 16, 9216), (2, 6250, 16, 9216), (19, 26, 4, 256),
     (40, 3, 6, 64), (7, 7, 30, 16)],
)  # fmt: skip
def test_tiles_keep_every_cell_once_within_the_budget(rows, columns, halo, max_cells):
    _covered(rows, columns, halo, max_cells)


def _exhaustive(rows: int, columns: int, halo: int, max_cells: int) -> list[tuple[int, int, int, int]]:
    """The plan by brute force (what tiling.plan computed before it was made linear): every count of tiles
    across the rows, each with the fewest across the columns that fit, windows measured part by part."""

    def split(length, parts):
        bounds = [round(i * length / parts) for i in range(parts + 1)]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def windows(length, parts):
        return [min(length, b + halo) - max(0, a - halo) for a, b in split(length, parts)]

    thinnest, best = max(halo, 1), None
    for across_rows in range(1, math.ceil(rows / thinnest) + 1):
        for across_columns in range(1, math.ceil(columns / thinnest) + 1):
            if max(windows(rows, across_rows)) * max(windows(columns, across_columns)) <= max_cells:
                cost = sum(windows(rows, across_rows)) * sum(windows(columns, across_columns))
                if best is None or cost < best[0]:
                    best = (cost, across_rows, across_columns)
                break
    if best is None:
        best = (0, math.ceil(rows / thinnest), math.ceil(columns / thinnest))
    return [(r0, r1, c0, c1) for r0, r1 in split(rows, best[1]) for c0, c1 in split(columns, best[2])]


def test_plan_chooses_the_tiles_an_exhaustive_search_chooses():
    rng = np.random.default_rng(0)
    grids = [(68, 120, 16, 9216), (135, 240, 16, 9216), (375, 500, 16, 9216), (2, 6250, 16, 9216), (40, 3, 6, 64)]
    grids += [(int(rng.integers(1, 300)), int(rng.integers(1, 300)), int(rng.integers(0, 20)), 0) for _ in range(300)]
    for rows, columns, halo, max_cells in grids:
        max_cells = max_cells or int(rng.integers(1, rows * columns + 1))
        tiles = plan(rows, columns, halo, max_cells)
        if len(tiles) > 1:
            kept = [(tile.row0, tile.row1, tile.column0, tile.column1) for tile in tiles]
            assert kept == _exhaustive(rows, columns, halo, max_cells), (rows, columns, halo, max_cells)


def test_planning_a_tall_grid_takes_time_linear_in_its_length():
    """A 1-pixel-wide image 256,000 pixels tall is 16,000 x 2 cells: the quadratic search took 2.7 s on it."""
    started = time.perf_counter()
    tiles = plan(16_000, 2, 8, 9216)
    assert time.perf_counter() - started < 1.0
    assert sum(tile.row1 - tile.row0 for tile in tiles) == 16_000


def test_a_grid_that_fits_is_one_tile_without_halo():
    assert len(plan(68, 120, 16, 68 * 120)) == 1
    tile = plan(68, 120, 16, 68 * 120)[0]
    assert tile.window == (slice(0, 68), slice(0, 120))


def test_halo_covers_the_receptive_field(model_dir):
    # The tiny config: encoder 7x7 stem + four stride-2 3x3 convolutions + a 3x3 one (34 pixels: 3 cells);
    # generator 3x3 + one residual block (two 3x3) + up-sampling + the bilinear bypass (about 5 cells).
    model = Model(load_manifest(model_dir), SMALL_TILES)
    assert 3 <= model.halo("encoder") <= 5
    assert 4 <= model.halo("generator") <= 8
    shared = model.at_rate(model.point)
    assert shared.halo("generator") == model.halo("generator")


@pytest.mark.parametrize("size", [(300, 410), (37, 1500), (530, 130)])
def test_tiled_compression_and_decompression_equal_whole_runs(model_dir, make_image, size):
    whole = Model(load_manifest(model_dir), RuntimeOptions(intra_op_threads=1))
    tiled = Model(load_manifest(model_dir), SMALL_TILES)
    height, width = size
    assert is_tiled(tiled, width, height) and not is_tiled(whole, width, height)
    rows, columns = latent_size(width, height, 16)
    assert len(plan_tiles(tiled, "encoder", rows, columns)) > 1
    assert len(plan_tiles(tiled, "generator", rows, columns)) > 1
    pixels = make_image(height, width)
    data = compress(pixels, whole)
    assert compress(pixels, tiled) == data, "the encoder's tiles give the same latent, hence the same file"
    expected = decompress(data, Registry([whole]))
    np.testing.assert_array_equal(decompress(data, Registry([tiled])), expected)


def test_tiles_with_noise_channels_and_selective_files(noisy_model_dir, sc_model_dir, make_image):
    pixels = make_image(300, 330)
    for directory in (noisy_model_dir, sc_model_dir):
        whole = Model(load_manifest(directory), RuntimeOptions(intra_op_threads=1))
        tiled = Model(load_manifest(directory), SMALL_TILES)
        mask = None
        if whole.manifest.selective:
            mask = np.zeros(pixels.shape[:2], bool)
            mask[40:200, 100:300] = True
        data = compress(pixels, whole, mask)
        assert compress(pixels, tiled, mask) == data
        np.testing.assert_array_equal(decompress(data, Registry([tiled])), decompress(data, Registry([whole])))


def test_cli_reports_tiling_and_takes_a_tile_size(model_dir, make_image, tmp_path, capsys):
    image = tmp_path / "wide.png"
    image.write_bytes(encode_png(make_image(40, 1500)))
    common = ["--model-dir", str(model_dir), "--threads", "1"]
    assert main(["compress", str(image), "-o", str(tmp_path / "wide.gcx"), "--model", "gc-tiny", *common]) == 0
    capsys.readouterr()
    for tile_pixels, tiled in ((None, False), (MIN_TILE_PIXELS, True)):
        option = [] if tile_pixels is None else ["--tile-pixels", str(tile_pixels)]
        assert main(["info", str(tmp_path / "wide.gcx"), *common, *option]) == 0
        assert json.loads(capsys.readouterr().out)["tiled"] is tiled
    out = tmp_path / "wide.png.out.png"
    assert main(["decompress", str(tmp_path / "wide.gcx"), "-o", str(out), *common, "--tile-pixels", "65536"]) == 0
    assert decode_image(out.read_bytes()).pixels.shape == (40, 1500, 3)
    with pytest.raises(SystemExit):
        main(["info", str(tmp_path / "wide.gcx"), "--tile-pixels", "1000"])


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (5, 3), (17, 33), (40, 40)])
def test_windows_are_cut_as_from_the_reflect_padded_image(size):
    from service.codec.pipeline import _padded_window

    height, width = size
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rows, columns = max(32, -(-height // 16) * 16), max(32, -(-width // 16) * 16)
    padded = np.pad(pixels, ((0, rows - height), (0, columns - width), (0, 0)), mode="reflect")
    for top in range(0, rows, 16):
        for bottom in range(top + 16, rows + 1, 16):
            for left, right in ((0, columns), (0, 16), (columns - 16, columns)):
                window = _padded_window(pixels, slice(top, bottom), slice(left, right))
                np.testing.assert_array_equal(window, padded[top:bottom, left:right])
