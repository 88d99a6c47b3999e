"""The issue's "done when" criteria, decided from a results.json record: pass, fail, or undecided, with numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import criteria


def entry(images: int = 10, too_high: int = 0, never: int = 0, ratio: float | None = 2.5, **at_2x: tuple) -> dict:
    return {
        "images": images,
        "cannot_reach": {"1x": too_high, "2x": 0},
        "never_reaches_our_ms_ssim": never,
        "bpp_for_our_ms_ssim": None if ratio is None else 0.05 * ratio,
        "our_bpp": None if ratio is None else 0.05,
        "ratio": ratio,
        "at_2x": {key: {"wins": wins, "images": n} for key, (wins, n) in at_2x.items()},
    }


def record(comparisons: dict, default: str | None = "gc-c8") -> dict:
    return {"default_model": default, "sets": {"photos": {"comparisons": {"gc-c8": comparisons}}}}


def verdicts(found: list[criteria.Check]) -> list[bool | None]:
    return [c.passed for c in found]


def test_all_pass() -> None:
    realism = entry(swd=(7, 10), spectrum_error_db=(6, 10))
    found = criteria.checks(
        record({"webp": entry(ratio=2.1), "jpeg": entry(ratio=3.0), "avif": realism, "hevc": realism})
    )
    assert verdicts(found) == [True] * 6
    assert "x2.10" in found[0].detail


def test_fails_are_reported_with_their_numbers() -> None:
    found = criteria.checks(
        record(
            {
                "webp": entry(ratio=1.6),
                "jpeg": entry(ratio=None, never=10),  # never reaches our MS-SSIM: ours is better at any rate
                "avif": entry(swd=(5, 10), spectrum_error_db=(9, 10)),  # 5/10 is not "most"
                "hevc": entry(swd=(6, 10)),
            }
        )
    )
    assert verdicts(found) == [False, True, False, True, True, None]
    assert "x1.60" in found[0].detail and "5/10" in found[2].detail


def test_a_codec_that_cannot_reach_our_rate_passes_the_rate_criterion() -> None:
    found = criteria.rate_check("photos", "webp", entry(too_high=10, ratio=1.5))
    assert found.passed and "only because it cannot go as low" in found.detail and "x1.50" in found.detail


def test_undecided_without_a_default_model_or_a_codec() -> None:
    assert verdicts(criteria.checks(record({}, default=None))) == [None]
    assert verdicts(criteria.checks(record({}))) == [None] * 6


def test_command_line_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    realism = entry(swd=(7, 10), spectrum_error_db=(6, 10))
    path.write_text(json.dumps(record({"webp": entry(), "jpeg": entry(), "avif": realism, "hevc": realism})))
    assert criteria.main([str(path)]) == 0
    assert capsys.readouterr().out.count("PASS") == 6
    path.write_text(json.dumps(record({"webp": entry(ratio=1.0)})))
    assert criteria.main([str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out
