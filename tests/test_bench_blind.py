"""Blind paired comparisons: pictures that give nothing away, a key kept apart, balanced sides, and a tally that
maps left/right answers back to the subjects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytorch_msssim")

from bench import blind
from bench.codecs import AT_OUR_BYTES

LAYOUT = blind.Layout(crops=3, crop=48, whole_width=200)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, make_image) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for number, (height, width) in enumerate(((128, 160), (112, 144)), 25):
        path = folder / f"{number:03d}.png"
        Image.fromarray(make_image(height, width, seed=number)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def made(photos: list[Path], model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`make` through the command line: the tiny model against downscaled AVIF."""
    if not AT_OUR_BYTES["avif-down"].available():
        pytest.skip("Pillow without AVIF")
    root = tmp_path_factory.mktemp("blind")
    argv = [*map(str, photos), "--a", "ours:gc-tiny", "--b", "avif-down", "--out", str(root / "pictures")]
    argv += ["--model-dir", str(model_dir), "--no-zoo", "--crop", "48", "--whole-width", "200"]
    assert blind.main(["make", *argv]) == 0
    return root, json.loads((root / "pictures-key.json").read_text())


def test_each_image_gives_three_detail_crops_and_the_whole_as_trials(made: tuple[Path, dict]) -> None:
    root, key = made
    assert sorted(key["trials"]) == sorted(
        f"{n}-{v}" for n in ("025", "026") for v in ("crop1", "crop2", "crop3", "whole")
    )
    pictures = sorted(p.name for p in (root / "pictures").iterdir())
    assert pictures == sorted([*(f"{t}.png" for t in key["trials"]), "README.txt", "judgments.json"])
    with Image.open(root / "pictures" / "025-crop1.png") as picture:
        assert picture.size == (2 * 48 + LAYOUT.gap, 2 * (48 + LAYOUT.caption) + LAYOUT.gap)
    with Image.open(root / "pictures" / "025-whole.png") as picture:
        assert picture.width <= 200, "the whole image is scaled so the two side by side fit"


def test_the_pictures_folder_gives_nothing_away(made: tuple[Path, dict]) -> None:
    root, key = made
    assert not (root / "pictures" / "pictures-key.json").exists() and (root / "pictures-key.json").is_file()
    for path in (root / "pictures").iterdir():
        content = path.read_bytes().lower()
        for telling in (b"gc-tiny", b"ours", b"avif", b"bytes", b"bpp"):
            assert telling not in content, (path.name, telling)
        if path.suffix == ".png":
            with Image.open(path) as picture:
                assert not picture.info.get("text") and "exif" not in picture.info
    assert json.loads((root / "pictures" / "judgments.json").read_text()) == dict.fromkeys(sorted(key["trials"]), "")


def test_the_key_records_same_bytes_and_balanced_sides(made: tuple[Path, dict], photos: list[Path]) -> None:
    _, key = made
    assert key["a"] == "ours:gc-tiny" and key["b"] == "avif-down"
    for entry in key["images"].values():
        assert entry["bytes"]["b"] <= entry["bytes"]["a"] or entry["over_budget"]["b"]
    lefts = [trial["left"] for trial in key["trials"].values()]
    assert lefts.count("a") == lefts.count("b") == len(lefts) // 2
    assert {trial["right"] for trial in key["trials"].values()} == {"a", "b"}


def test_the_reconstructions_shown_are_the_subjects(made: tuple[Path, dict], photos: list[Path], registry) -> None:
    """The bottom panels of a crop trial are the crop of each subject's reconstruction, on the key's sides."""
    from service.codec import compress, decompress

    root, key = made
    trial = key["trials"]["025-crop2"]
    original = np.asarray(Image.open(photos[0]).convert("RGB"))
    ours = decompress(compress(original, registry.get("gc-tiny")), registry)
    left, top, width, height = trial["box"]
    with Image.open(root / "pictures" / "025-crop2.png") as picture:
        panels = np.asarray(picture.convert("RGB"))
    y = 48 + LAYOUT.caption + LAYOUT.gap + LAYOUT.caption
    x = 0 if trial["left"] == "a" else 48 + LAYOUT.gap
    np.testing.assert_array_equal(panels[y : y + height, x : x + width], ours[top : top + height, left : left + width])
    centre = (panels.shape[1] - 48) // 2
    shown = panels[LAYOUT.caption : LAYOUT.caption + height, centre : centre + width]
    np.testing.assert_array_equal(shown, original[top : top + height, left : left + width])


def test_making_again_gives_the_same_trials(made: tuple[Path, dict], photos: list[Path], registry, tmp_path) -> None:
    _, key = made
    subjects = (blind.subject("ours:gc-tiny", registry), blind.subject("avif-down", registry))
    again = blind.make(photos, subjects, tmp_path / "pictures", tmp_path / "key.json", layout=LAYOUT)
    assert again["trials"] == key["trials"] and again["images"] == key["images"]


def test_the_key_may_not_sit_among_the_pictures_and_trials_are_never_mixed_up(
    photos: list[Path], registry, tmp_path: Path
) -> None:
    subjects = (blind.subject("ours:gc-tiny", registry), blind.subject("avif-down", registry))
    with pytest.raises(ValueError, match="must not be inside"):
        blind.make(photos, subjects, tmp_path / "pictures", tmp_path / "pictures" / "key.json", layout=LAYOUT)
    with pytest.raises(ValueError, match="share a file name"):
        blind.make([photos[0], photos[0]], subjects, tmp_path / "twice", tmp_path / "key.json", layout=LAYOUT)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not empty"):
        blind.make(photos, subjects, tmp_path / "used", tmp_path / "key.json", layout=LAYOUT)


def test_one_side_must_set_the_budget(registry) -> None:
    with pytest.raises(ValueError, match="budget"):
        blind.make_pair(np.zeros((32, 32, 3), np.uint8), (blind.subject("avif", registry),) * 2)
    with pytest.raises(ValueError, match="unknown"):
        blind.subject("jpeg2000", registry)


def test_held_out_photos_need_asking(capsys: pytest.CaptureFixture[str]) -> None:
    held = [blind.images.DEFAULT_FOLDER / "031.webp"]
    assert blind.held_out(held) == held and blind.held_out(blind.default_images()) == []
    assert [p.stem for p in blind.default_images()] == ["025", "026", "027", "028", "029"]
    with pytest.raises(SystemExit):
        blind.main(["make", str(held[0]), "--out", "/nonexistent/pictures"])
    assert "--allow-held-out" in capsys.readouterr().err


def test_detail_crops_prefer_detail_and_do_not_overlap() -> None:
    image = np.full((200, 300, 3), 128, np.uint8)
    image[20:80, 200:280] = np.random.default_rng(0).integers(0, 256, (60, 80, 3))
    layout = blind.Layout(crops=2, crop=50, candidates=200)
    first, second = blind.detail_crops(image, layout, np.random.default_rng(1))
    assert 150 <= first[0] <= 280 and first[1] <= 80, "the noisy patch is the detail"
    assert abs(first[0] - second[0]) >= 50 or abs(first[1] - second[1]) >= 50


def test_where_crops_must_overlap_the_third_shares_least_with_the_others() -> None:
    """Two 50 px crops side by side fill a 100 px wide image: the third cannot avoid them, and is not a near copy
    of the most detailed one but the candidate that shares fewest pixels with both."""
    image = np.random.default_rng(0).integers(0, 256, (50, 100, 3)).astype(np.uint8)
    layout = blind.Layout(crops=3, crop=50, candidates=200)
    boxes = blind.detail_crops(image, layout, np.random.default_rng(2))
    shared = [max(0, 50 - abs(a[0] - b[0])) for i, a in enumerate(boxes) for b in boxes[i + 1 :]]
    assert len(boxes) == 3 and max(shared) <= 26, boxes


def test_tally_maps_sides_back_to_subjects(made: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    root, key = made
    prefers_a = {trial: "left" if entry["left"] == "a" else "right" for trial, entry in key["trials"].items()}
    mixed = dict.fromkeys(key["trials"], "same") | {"025-whole": "LEFT ", "026-whole": ""}
    files = []
    for number, judgments in enumerate((prefers_a, mixed)):
        files.append(tmp_path / f"judge-{number}.json")
        files[-1].write_text(json.dumps(judgments))
    out = tmp_path / "tally.md"
    assert blind.main(["tally", str(root / "pictures-key.json"), *map(str, files), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    whole_a = key["trials"]["025-whole"]["left"] == "a"
    a_all, b_all = 8 + whole_a, int(not whole_a)
    share = f"| {a_all} ({100 * a_all / 15:.0f}%) | {b_all} ({100 * b_all / 15:.0f}%) |"
    assert f"| **all** | 15 {share} 6 (40%) | 1 |" in printed
    assert "| 026 | 7 | 4 (57%) | 0 (0%) | 3 (43%) | 1 |" in printed
    assert "`ours:gc-tiny`" in printed and "`avif-down`" in printed


def test_tally_rejects_judgments_of_another_run_and_unknown_answers(made: tuple[Path, dict]) -> None:
    _, key = made
    with pytest.raises(ValueError, match="not in the key"):
        blind.read_judgments(key, {"999-crop1": "left"})
    with pytest.raises(ValueError, match="not one of"):
        blind.read_judgments(key, {"025-crop1": "A"})


def test_sign_test() -> None:
    assert blind.sign_test(0, 0) == 1.0
    assert blind.sign_test(5, 5) == 1.0
    assert blind.sign_test(10, 0) == pytest.approx(2 / 1024)
    assert blind.sign_test(2, 8) == blind.sign_test(8, 2) == pytest.approx(2 * 56 / 1024)
