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


def down(images: int = 10, over_budget: int = 0, **measures: tuple) -> dict:
    """An at-our-bytes entry: measure=(ours mean, theirs mean, images where ours is not worse)."""
    higher = {"psnr_4": True, "ms_ssim_4": True, "delta_e_16": False}
    return {
        "images": images,
        "over_budget": over_budget,
        "bytes_ratio": 0.97,
        "measures": {
            key: {
                "ours": ours,
                "theirs": theirs,
                "mean_not_worse": ours >= theirs if higher[key] else ours <= theirs,
                "not_worse": not_worse,
                "images": images,
            }
            for key, (ours, theirs, not_worse) in measures.items()
        },
    }


GOOD_DOWN = down(psnr_4=(26.0, 25.0, 8), ms_ssim_4=(0.95, 0.94, 7), delta_e_16=(2.0, 2.5, 6))


def record(comparisons: dict, default: str | None = "gc-c8", at_our_bytes: dict | None = None) -> dict:
    data = {"comparisons": {"gc-c8": comparisons}, "at_our_bytes": {"gc-c8": {"avif-down": at_our_bytes or GOOD_DOWN}}}
    return {"default_model": default, "sets": {"photos": data}}


def verdicts(found: list[criteria.Check]) -> list[bool | None]:
    return [c.passed for c in found]


def test_all_pass() -> None:
    realism = entry(swd=(7, 10), spectrum_error_db=(6, 10))
    found = criteria.checks(
        record({"webp": entry(ratio=2.1), "jpeg": entry(ratio=3.0), "avif": realism, "hevc": realism})
    )
    assert verdicts(found) == [True] * 9
    assert "x2.10" in found[3].detail


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
    assert verdicts(found) == [True, True, True, False, True, False, True, True, None]
    assert "x1.60" in found[3].detail and "5/10" in found[5].detail


def test_a_codec_that_cannot_reach_our_rate_passes_the_rate_criterion() -> None:
    found = criteria.rate_check("photos", "webp", entry(too_high=10, ratio=1.5))
    assert found.passed and "only because it cannot go as low" in found.detail and "x1.50" in found.detail


def test_issue_16_needs_the_mean_and_seven_of_ten_images_for_the_coarse_scale_and_the_mean_for_colour() -> None:
    entry = down(psnr_4=(26.0, 25.0, 6), ms_ssim_4=(0.93, 0.94, 9), delta_e_16=(2.6, 2.5, 9), over_budget=1)
    found = criteria.checks(record({}, at_our_bytes=entry))[:3]
    assert verdicts(found) == [False, False, False]
    assert "26.0000 against 25.0000" in found[0].detail and "6/10" in found[0].detail
    assert "could not fit in our bytes on 1" in found[0].detail
    assert ">= 7 of 10 images" in found[0].criterion and "7 of 10" not in found[2].criterion
    ties = down(psnr_4=(25.0, 25.0, 7), ms_ssim_4=(0.9, 0.9, 7), delta_e_16=(2.5, 2.5, 0))
    assert verdicts(criteria.checks(record({}, at_our_bytes=ties))[:3]) == [True, True, True], "at least as good"


def test_issue_16_is_undecided_where_the_quarter_image_is_too_small_for_ms_ssim() -> None:
    entry = down(psnr_4=(26.0, 25.0, 8), delta_e_16=(2.0, 2.5, 6))
    found = criteria.checks(record({}, at_our_bytes=entry))[1]
    assert found.passed is None and "measured on none of 10 images" in found.detail


def test_the_old_realism_checks_say_they_are_not_evidence_of_realism() -> None:
    found = criteria.checks(record({"avif": entry(swd=(7, 10), spectrum_error_db=(6, 10))}))
    realism = [c for c in found if "at 2x our bytes" in c.criterion]
    assert len(realism) == 4 and all("not evidence of realism" in c.caveat for c in realism)
    assert all(not c.caveat for c in found if c not in realism)
    assert "not evidence of realism" in criteria.as_text(realism, "gc-c8")[0]


def test_undecided_without_a_default_model_or_a_codec() -> None:
    assert verdicts(criteria.checks(record({}, default=None))) == [None]
    empty = {"default_model": "gc-c8", "sets": {"photos": {"comparisons": {"gc-c8": {}}}}}
    assert verdicts(criteria.checks(empty)) == [None] * 9


def test_command_line_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.json"
    realism = entry(swd=(7, 10), spectrum_error_db=(6, 10))
    path.write_text(json.dumps(record({"webp": entry(), "jpeg": entry(), "avif": realism, "hevc": realism})))
    assert criteria.main([str(path)]) == 0
    assert capsys.readouterr().out.count("PASS") == 9
    path.write_text(json.dumps(record({"webp": entry(ratio=1.0)})))
    assert criteria.main([str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out
