"""The gancodec command line with an SC model: --labels, --synthesize and --mask, info's label bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from service.codec import decode_image, encode_png
from service.codec import registry as registry_module


@pytest.fixture
def workdir(tmp_path, sc_model_dir, make_image, monkeypatch) -> Path:
    """An image, its label map and a mask, with only the SC test model installed."""
    monkeypatch.setattr(registry_module, "ZOO", tmp_path / "no-zoo")
    monkeypatch.setenv("GANCODEC_MODEL_DIRS", str(sc_model_dir))
    monkeypatch.delenv("GANCODEC_MODEL", raising=False)
    (tmp_path / "a.png").write_bytes(encode_png(make_image(90, 120)))
    labels = np.full((90, 120), 0, dtype=np.uint8)  # sky
    labels[45:] = 3  # road
    labels[30:60, 40:80] = 8  # car
    (tmp_path / "labels.png").write_bytes(_grey(labels))
    keep = np.zeros((90, 120), dtype=np.uint8)
    keep[:, :60] = 255
    (tmp_path / "keep.png").write_bytes(_grey(keep))
    (tmp_path / "small.png").write_bytes(_grey(keep[:45, :60]))
    return tmp_path


def _grey(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _info(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_selective_round_trip(workdir, capsys):
    image, labels = str(workdir / "a.png"), str(workdir / "labels.png")
    assert main(["compress", image, "--labels", labels, "--synthesize", "road,sky", "-o", str(workdir / "sc.gcx")]) == 0
    assert "(sc)" in capsys.readouterr().out
    assert main(["compress", image, "--labels", labels, "-o", str(workdir / "labels.gcx")]) == 0
    assert main(["compress", image, "--mask", str(workdir / "keep.png"), "-o", str(workdir / "mask.gcx")]) == 0
    selective, labelled, masked = (_info(workdir / f"{name}.gcx", capsys) for name in ("sc", "labels", "mask"))
    assert selective["mode"] == labelled["mode"] == masked["mode"] == "sc"
    assert selective["label_bytes"] == labelled["label_bytes"] > 0 and masked["label_bytes"] == 0
    assert selective["bytes"] < labelled["bytes"]
    assert main(["decompress", str(workdir / "sc.gcx"), "-o", str(workdir / "sc.png")]) == 0
    assert decode_image((workdir / "sc.png").read_bytes()).pixels.shape == (90, 120, 3)


def test_models_lists_the_classes(workdir, capsys):
    assert main(["models"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["modes"] == ["gc", "sc"] and entry["classes"][:4] == ["sky", "building", "pole", "road"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "{dir}/labels.png", "--synthesize", "road,lake"], "unknown class 'lake'"),
        (["--labels", "{dir}/labels.png", "--synthesize", "\u00b2"], "unknown class '\u00b2'"),
        (["--synthesize", "road"], "give the label map too"),
        (["--mask", "{dir}/small.png"], "the mask is 60x45, the image 120x90"),
        (["--labels", "{dir}/a.png"], "single-channel PNG of class ids"),
    ],
)
def test_selective_errors_are_one_line(workdir, capsys, extra, message):
    argv = ["compress", str(workdir / "a.png"), *(arg.format(dir=workdir) for arg in extra)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("gancodec: error: "), err
    assert message in err[0]


@pytest.mark.parametrize(
    "extra",
    [["--mask", "{dir}/black.png"], ["--labels", "{dir}/labels.png", "--synthesize", ",".join(map(str, range(12)))]],
    ids=["all-black mask", "every class synthesised"],
)
def test_selections_that_keep_nothing_round_trip_with_context_tables(
    workdir, contextual_sc_model_dir, monkeypatch, extra
):
    monkeypatch.setenv("GANCODEC_MODEL_DIRS", str(contextual_sc_model_dir))
    (workdir / "black.png").write_bytes(_grey(np.zeros((90, 120), dtype=np.uint8)))
    options = [arg.format(dir=workdir) for arg in extra]
    assert main(["compress", str(workdir / "a.png"), *options, "-o", str(workdir / "none.gcx")]) == 0
    assert main(["decompress", str(workdir / "none.gcx"), "-o", str(workdir / "none.png")]) == 0
    assert decode_image((workdir / "none.png").read_bytes()).pixels.shape == (90, 120, 3)


def test_maps_need_a_single_image(workdir, capsys):
    assert main(["compress", str(workdir / "a.png"), str(workdir / "a.png"), "--mask", str(workdir / "keep.png")]) == 1
    assert "give a single IMAGE" in capsys.readouterr().err


def test_gc_models_refuse_maps(tmp_path, model_dir, make_image, monkeypatch, capsys):
    monkeypatch.setattr(registry_module, "ZOO", tmp_path / "no-zoo")
    monkeypatch.setenv("GANCODEC_MODEL_DIRS", str(model_dir))
    (tmp_path / "a.png").write_bytes(encode_png(make_image(32, 32)))
    (tmp_path / "keep.png").write_bytes(_grey(np.full((32, 32), 255, dtype=np.uint8)))
    assert main(["compress", str(tmp_path / "a.png"), "--mask", str(tmp_path / "keep.png")]) == 1
    assert "supports only gc" in capsys.readouterr().err
