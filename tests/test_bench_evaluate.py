"""The one command end to end on tiny random models and small images: JSON, plots, sheet, summary, criteria, the
cache, downscaled AVIF at our bytes, and every rate point of a nested-rate model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("pytorch_msssim")
pytest.importorskip("matplotlib", reason="pip install -e '.[bench]'")

from bench import evaluate
from bench.random_models import export_random_model
from service.codec import load_manifest


@pytest.fixture()
def folder(tmp_path: Path, make_image) -> Path:
    images = tmp_path / "photos"
    images.mkdir()
    Image.fromarray(make_image(176, 192, seed=1)).save(images / "one.png")
    Image.fromarray(make_image(64, 80, seed=2)).save(images / "two.png")  # too small for MS-SSIM: recorded as null
    return images


def run(folder: Path, model_dir: Path, out: Path) -> dict:
    return evaluate.main(
        [
            str(folder), "--model-dir", str(model_dir), "--no-zoo", "--model", "gc-tiny", "--out", str(out),
            "--codec", "jpeg", "--codec", "jpeg2000", "--codec", "avif-down", "--crop", "96x64", "--no-learned",
            "--quiet", "--threads", "1",
        ]
    )  # fmt: skip


def test_one_command_writes_everything_and_reuses_the_cache(folder: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = run(folder, model_dir, out)
    expected_points = 2 * (1 + 1 + 11 + 11)  # two images x (our model, AVIF downscaled, JPEG's and JPEG 2000's sweeps)
    assert record["points_measured"] == expected_points and record["points_from_cache"] == 0
    files = ("results.json", "summary.md", "rd-photos.png", "coarse-photos.png", "realism-photos.png")
    for name in (*files, "sheet-photos-two.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["machine"] and "cores" in results["machine"] and results["machine_details"]
    assert results["default_model"] == "gc-tiny"
    points = results["sets"]["photos"]["points"]
    assert len(points) == expected_points
    for p in points:
        assert p["bpp"] == pytest.approx(8 * p["bytes"] / (192 * 176 if p["image"] == "one.png" else 80 * 64), 1e-5)
        assert p["encode_seconds"] > 0 and p["decode_seconds"] > 0
        assert p["swd"] >= 0 and p["spectrum_error_db"] >= 0 and p["delta_e_16"] >= 0 and p["psnr_4"] > 0
        assert (p["ms_ssim"] is None) == (p["image"] == "two.png")
        assert p["ms_ssim_4"] is None, "1/4 of these images is far under MS-SSIM's 161 pixels"
    ours = {p["image"]: p for p in points if p["codec"] == "ours"}
    for p in (p for p in points if p["codec"] == "avif-down"):
        assert p["setting"] == "gc-tiny" and p["factor"] in (2, 3, 4)
        assert p["bytes"] <= ours[p["image"]]["bytes"] or p["over_budget"], "at no more than our bytes"
    assert {p["setting"] for p in ours.values()} == {"gc-tiny"}
    comparison = results["sets"]["photos"]["comparisons"]["gc-tiny"]["jpeg"]
    assert comparison["images"] == 2 and "at_2x" in comparison
    assert "avif-down" not in results["sets"]["photos"]["comparisons"]["gc-tiny"]
    assert results["sets"]["photos"]["at_our_bytes"]["gc-tiny"]["avif-down"]["images"] == 2
    assert "not run" in results["learned"]["lpips"]
    summary = (out / "summary.md").read_text()
    assert "gc-tiny" in summary and "JPEG 2000" in summary
    assert "| AVIF, downscaled | at most gc-tiny's bytes |" in summary and "PSNR at 1/4 (dB)" in summary
    assert "against AVIF, downscaled, made on each of 2 images" in summary
    assert "MS-SSIM at 1/4 is not measured on 2 of 2 images" in summary
    assert len(results["criteria"]) == 3 + 2 + 4, "issue 16 (3), WebP and JPEG (rate), AVIF and HEVC x SWD, spectrum"
    assert [c["verdict"] for c in results["criteria"]][1] == "UNDECIDED", "no image is large enough for MS-SSIM at 1/4"
    measured = [c for c in results["criteria"] if "JPEG needs" in c["criterion"]]
    assert len(measured) == 1 and measured[0]["verdict"] in {"PASS", "FAIL"}, "JPEG was run: decided"
    plain_avif = [c for c in results["criteria"] if "than AVIF at" in c["criterion"]]
    assert len(plain_avif) == 2 and all(c["verdict"] == "UNDECIDED" for c in plain_avif), "not run"
    assert "## The issues' criteria" in summary
    with Image.open(out / "sheet-photos-two.png") as sheet:
        assert sheet.size == (2 * 80, 4 * 64), "original + ours, then three codecs at 1x and 2x (crop fits the image)"

    again = run(folder, model_dir, out)
    assert again["points_measured"] == 0 and again["points_from_cache"] == expected_points
    rerun = json.loads((out / "results.json").read_text())["sets"]["photos"]["points"]
    strip = [{k: v for k, v in p.items() if not k.endswith("seconds")} for p in points]
    assert [{k: v for k, v in p.items() if not k.endswith("seconds")} for p in rerun] == strip


def test_a_new_model_only_measures_itself(folder: Path, model_dir: Path, noisy_model_dir: Path, tmp_path) -> None:
    out = tmp_path / "out"
    run(folder, model_dir, out)
    record = evaluate.main(
        [
            str(folder), "--model-dir", str(model_dir), "--model-dir", str(noisy_model_dir), "--no-zoo",
            "--out", str(out), "--codec", "jpeg", "--codec", "jpeg2000", "--sheets", "0", "--no-learned", "--quiet",
        ]
    )  # fmt: skip
    assert record["points_measured"] == 2, "only the new model, on each of the two images"
    assert set(record["models"]) == {"gc-tiny", "gc-tiny-noise"}


def test_every_rate_point_is_evaluated_and_the_default_marked(tmp_path: Path, make_image) -> None:
    """A nested-rate model appears in the registry as one id per rate point: each is a point on our curve."""
    zoo = tmp_path / "zoo" / "gc-nested"
    export_random_model(zoo, "tiny", "gc-nested", seed=5, rate_channels=(2, 4, 8), default_channels=4)
    images = tmp_path / "photos"
    images.mkdir()
    for number in (29, 30, 31):
        Image.fromarray(make_image(176, 176, seed=number)).save(images / f"{number:03d}.png")
    out = tmp_path / "out"
    record = evaluate.main(
        [
            str(images), "--held-out", "030-039", "--model-dir", str(zoo.parent), "--no-zoo", "--out", str(out),
            "--codec", "jpeg", "--crop", "64x48", "--no-learned", "--quiet", "--threads", "1", "--no-cache",
            "--record-in-manifests",
        ]
    )  # fmt: skip
    assert set(record["models"]) == {"gc-nested-c2", "gc-nested-c4", "gc-nested-c8"}
    assert record["default_model"] == "gc-nested-c4"
    assert list(record["sets"]) == ["photos-030-039"]
    data = json.loads((out / "results.json").read_text())["sets"]["photos-030-039"]
    assert [i["image"] for i in data["images"]] == ["030.png", "031.png"], "only the held-out numbers"
    ours = data["curves"]["ours"]
    assert [e["setting"] for e in ours] == ["gc-nested-c2", "gc-nested-c4", "gc-nested-c8"], "in order of rate"
    assert ours[0]["bpp"] < ours[1]["bpp"] < ours[2]["bpp"], "more channels, more bytes"
    assert data["sheets"][0]["model"] == "gc-nested-c4"
    assert {c["set"] for c in record["criteria"]} == {"photos-030-039"}
    assert "**gc-nested-c4** (default)" in (out / "summary.md").read_text()
    recorded = {point.id: point.metrics for point in load_manifest(zoo).rate_points}
    assert recorded["gc-nested-c4"]["photos_030_039"]["bpp"] == pytest.approx(ours[1]["bpp"], rel=1e-5)
    assert "--record-in-manifests" in recorded["gc-nested-c8"]["source"]


def test_select_spreads_a_limit_over_the_set() -> None:
    files = [Path(f"{i:03d}.png") for i in range(10)]
    assert evaluate.images.select(files, 3) == [files[0], files[3], files[6]]
    assert evaluate.images.select(files, None) == files


def test_held_out_numbers() -> None:
    assert evaluate.images.parse_numbers("030-039") == set(range(30, 40))
    assert evaluate.images.parse_numbers("1,5-6") == {1, 5, 6}
    with pytest.raises(ValueError):
        evaluate.images.parse_numbers("39-30")


def test_default_set_is_the_held_out_photos() -> None:
    name, photos = evaluate.images.folder_set(evaluate.images.DEFAULT_FOLDER, evaluate.images.DEFAULT_HELD_OUT)
    assert name == "photos-030-039"
    assert [int(p.stem) for p in photos] == list(range(30, 40))


def test_a_folder_of_unnumbered_frames_is_held_out_whole_and_named_after_its_parents(tmp_path) -> None:
    frames = tmp_path / "camvid" / "val" / "images"
    frames.mkdir(parents=True)
    for stem in ("0016E5_07959", "0016E5_07961"):
        Image.new("RGB", (8, 8)).save(frames / f"{stem}.png")
    name, files = evaluate.images.folder_set(frames, "030-039")
    assert name == "camvid-val" and [p.stem for p in files] == ["0016E5_07959", "0016E5_07961"]


def test_codecs_enlarged_by_a_network_are_made_only_at_the_chosen_rate_points() -> None:
    """avif-down-sr takes about 40 s a photo on a CPU: --slow-at (default: the default rate point) limits it,
    while Lanczos-enlarged avif-down is made at every rate point."""
    from bench.codecs import AT_OUR_BYTES
    from bench.runner import at_our_bytes_subjects

    subjects = at_our_bytes_subjects(AT_OUR_BYTES.values(), ["gc-a", "gc-b"], ["gc-b"])
    made = [(s.codec, s.setting, s.budget) for s in subjects]
    assert made == [("avif-down", "gc-a", "gc-a"), ("avif-down", "gc-b", "gc-b"), ("avif-down-sr", "gc-b", "gc-b")]
