"""bench.selective end to end on two CamVid frames with random-weight models: the table, the rows, the sheet."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from bench import selective
from bench.random_models import export_random_model


def test_measures_sc_against_gc_and_draws_the_sheet(tmp_path, capsys):
    gc_dir = export_random_model(tmp_path / "zoo" / "gc-nested", "tiny", "gc-nested", 0, rate_channels=(4, 8))
    sc_dir = export_random_model(tmp_path / "zoo" / "sc-nested", "sc-tiny", "sc-nested", 1, rate_channels=(4, 8))
    argv = ["--sc-model", "sc-nested-c8", "--gc-model", "gc-nested-c8", "--model-dir", str(gc_dir)]
    argv += ["--model-dir", str(sc_dir), "--limit", "2", "--sheet-frames", "2", "-o", str(tmp_path / "out")]
    assert selective.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert len(rows) == 2
    for row in rows:
        assert int(row["sc_bytes"]) < int(row["gc_bytes"]) and int(row["sc_label_bytes"]) > 0
        assert 0 < float(row["kept_cells"]) < 1 and float(row["preserved_fraction"]) <= float(row["kept_cells"]) + 0.5
    table = (tmp_path / "out" / "results.md").read_text()
    assert "python -m bench.selective --sc-model sc-nested-c8" in table and "Both criteria" in table
    assert Image.open(tmp_path / "out" / "sheet.png").size == (4 * 240, 2 * 180)


def test_refuses_unknown_classes(tmp_path):
    sc_dir = export_random_model(tmp_path / "sc-tiny", "sc-tiny", "sc-tiny", 1)
    argv = ["--sc-model", "sc-tiny", "--gc-model", "sc-tiny", "--model-dir", str(sc_dir), "--synthesize", "lake"]
    with pytest.raises(SystemExit):
        selective.main([*argv, "-o", str(tmp_path / "out")])
