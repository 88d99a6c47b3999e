"""The gancodec command line: the four sub-commands, output naming, and one-line errors with exit status 1."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from image_support import png_claiming, with_extra_scans
from PIL import Image

from service.cli import main
from service.codec import Header, decode_image, encode_png
from service.codec import registry as registry_module
from service.codec.container import pack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, model_dir, make_image, monkeypatch) -> Path:
    """A folder with two PNGs, and only the test model installed (through the environment variable)."""
    monkeypatch.setattr(registry_module, "ZOO", tmp_path / "no-zoo")
    monkeypatch.setenv("GANCODEC_MODEL_DIRS", str(model_dir))
    monkeypatch.delenv("GANCODEC_MODEL", raising=False)
    for name, size in (("a", (30, 41)), ("b", (17, 16))):
        (tmp_path / f"{name}.png").write_bytes(encode_png(make_image(*size)))
    return tmp_path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gancodec: error: "), err
    return err[0]


def test_compress_decompress_and_info(workdir, capsys):
    assert main(["compress", str(workdir / "a.png")]) == 0
    assert "bpp" in capsys.readouterr().out
    assert main(["decompress", str(workdir / "a.gcx"), "-o", str(workdir / "a-out.png")]) == 0
    assert decode_image((workdir / "a-out.png").read_bytes()).pixels.shape == (30, 41, 3)
    capsys.readouterr()
    assert main(["info", str(workdir / "a.gcx")]) == 0
    info = json.loads(capsys.readouterr().out)
    size = (workdir / "a.gcx").stat().st_size
    assert info["model"] == "gc-tiny" and (info["width"], info["height"]) == (41, 30)
    assert info["bytes"] == size and info["mode"] == "gc" and info["detail_bands"] == 2
    assert info["bpp"] == pytest.approx(8 * size / (41 * 30), rel=1e-5)


def test_no_detail_leaves_the_detail_section_out(workdir, capsys):
    assert main(["compress", str(workdir / "a.png"), "-o", str(workdir / "plain.gcx"), "--no-detail"]) == 0
    capsys.readouterr()
    assert main(["info", str(workdir / "plain.gcx")]) == 0
    assert json.loads(capsys.readouterr().out)["detail_bands"] == 0
    assert (workdir / "plain.gcx").read_bytes()[3] == 1


def test_many_inputs_go_to_the_output_directory(workdir):
    inputs = [str(workdir / "a.png"), str(workdir / "b.png")]
    assert main(["compress", *inputs, "-o", str(workdir / "gcx")]) == 0
    files = sorted(str(path) for path in (workdir / "gcx").iterdir())
    assert [Path(path).name for path in files] == ["a.gcx", "b.gcx"]
    assert main(["decompress", *files, "-o", str(workdir / "png")]) == 0
    assert sorted(path.name for path in (workdir / "png").iterdir()) == ["a.png", "b.png"]


def test_models_lists_the_installed_models(workdir, capsys):
    assert main(["models"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [entry["id"] for entry in listing] == ["gc-tiny"]
    assert listing[0]["channels"] == 8 and listing[0]["modes"] == ["gc"] and listing[0]["metrics"] == {"seed": 0}


def test_model_dir_option_is_accepted_before_and_after_the_command(workdir, model_dir, monkeypatch, capsys):
    monkeypatch.delenv("GANCODEC_MODEL_DIRS")
    assert main(["--model-dir", str(model_dir), "models"]) == 0
    assert main(["models", "--model-dir", str(model_dir)]) == 0
    assert main(["compress", str(workdir / "b.png"), "--model-dir", str(model_dir), "--model", "gc-tiny"]) == 0


def test_existing_output_is_not_overwritten_without_force(workdir, capsys):
    assert main(["compress", str(workdir / "a.png")]) == 0
    capsys.readouterr()
    assert main(["compress", str(workdir / "a.png")]) == 1
    assert "exists (use --force" in _one_error_line(capsys)
    assert main(["compress", str(workdir / "a.png"), "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compress", "{dir}/missing.png"], "No such file"),
        (["compress", "{dir}/a.png", "--model", "gc-nope"], "'gc-nope' is not installed"),
        (["decompress", "{dir}/a.png", "-o", "{dir}/out.png"], "not a gancodec file"),
        (["decompress", "{dir}/a.png"], "would overwrite the input"),
        (["info", "{dir}/a.png"], "not a gancodec file"),
        (["--model-dir", "{dir}/nowhere", "models"], "does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_1(workdir, capsys, argv, message):
    assert main([arg.format(dir=workdir) for arg in argv]) == 1
    assert message in _one_error_line(capsys)


def test_image_errors_are_one_line(workdir, capsys):
    (workdir / "bad.png").write_bytes((workdir / "a.png").read_bytes()[:100])
    (workdir / "x.gif").write_bytes(b"GIF89a" + bytes(30))
    assert main(["compress", str(workdir / "bad.png")]) == 1
    assert "truncated or corrupt" in _one_error_line(capsys)
    assert main(["compress", str(workdir / "x.gif")]) == 1
    assert "only PNG, JPEG and WebP" in _one_error_line(capsys)


def test_hostile_inputs_are_refused_in_one_line_at_once(workdir, capsys):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buffer, format="JPEG", progressive=True)
    files = {
        "tall.png": (png_claiming(1, 1_000_000), "the image is 1x1000000, a side above the limit of 65535 pixels"),
        "bomb.png": (png_claiming(20_000, 20_000), "the image is 20000x20000 (400000000 pixels), above the limit"),
        "scans.jpg": (with_extra_scans(buffer.getvalue(), 2000), "the JPEG has more than 100 scans"),
        "tall.gcx": (pack(Header("gc-tiny", bytes(8), 1, 2**24), b""), "a side above the limit of 65535 pixels"),
    }
    for name, (data, message) in files.items():
        (workdir / name).write_bytes(data)
        command = "decompress" if name.endswith(".gcx") else "compress"
        started = time.perf_counter()
        assert main([command, str(workdir / name), "-o", str(workdir / "out")]) == 1
        assert time.perf_counter() - started < 5, name
        assert message in _one_error_line(capsys), name


def test_corrupt_file_error_is_one_line(workdir, capsys):
    assert main(["compress", str(workdir / "a.png")]) == 0
    data = bytearray((workdir / "a.gcx").read_bytes())
    data[-6] ^= 1
    (workdir / "a.gcx").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["decompress", str(workdir / "a.gcx"), "-o", str(workdir / "out.png")]) == 1
    assert "checksum mismatch" in _one_error_line(capsys)
    assert not (workdir / "out.png").exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "0", "models"])
    assert exit_info.value.code == 2


def test_decoding_in_two_processes_gives_identical_png(workdir, model_dir, make_image):
    (workdir / "a.png").write_bytes(encode_png(make_image(360, 480)))
    assert main(["compress", str(workdir / "a.png")]) == 0
    env = {**os.environ, "GANCODEC_MODEL_DIRS": str(model_dir), "PYTHONPATH": str(ROOT)}
    outputs = []
    for run in range(2):
        out = workdir / f"run{run}.png"
        command = [sys.executable, "-m", "service.cli", "decompress", str(workdir / "a.gcx"), "-o", str(out)]
        result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert decode_image(outputs[0]).pixels.shape == (360, 480, 3)
