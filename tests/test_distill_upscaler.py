"""Distilling a large upscaler into the compact one (models/distill_upscaler.py), with tiny networks: the teacher's
crops accumulate across calls, and the student trained on them moves towards the teacher and exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from models.distill_upscaler import MARGIN, label, learn  # noqa: E402
from models.export_hybrid import export_hybrid  # noqa: E402
from models.train_upscaler import Pair, UpscalerTrainConfig, UpscalerTrainer  # noqa: E402
from models.upscaler import CompactUpscaler, UpscalerConfig  # noqa: E402
from service.codec import Registry, compress, decompress  # noqa: E402
from service.codec.base import BaseLayer  # noqa: E402
from tests.test_hybrid import photo_like  # noqa: E402

CROP = 8


def pairs() -> list[Pair]:
    result = []
    for seed in range(2):
        original = photo_like(128, 160, seed=seed)
        base = np.asarray(Image.fromarray(original).resize((40, 32), Image.Resampling.LANCZOS))
        result.append(Pair(original, base))
    return result


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    torch.manual_seed(3)
    out_dir = tmp_path_factory.mktemp("teacher") / "teacher"
    export_hybrid(CompactUpscaler(UpscalerConfig(features=16, convolutions=3)), out_dir, "teacher", BaseLayer())
    return ort.InferenceSession(str(out_dir / "generator.onnx"), providers=["CPUExecutionProvider"])


def test_each_call_adds_new_crops_to_the_teachers_set(teacher: ort.InferenceSession, tmp_path: Path) -> None:
    path = tmp_path / "teacher.npz"
    label(teacher, pairs(), path, 3, CROP, 4)
    label(teacher, pairs(), path, 2, CROP, 4)
    data = np.load(path)
    assert data["bases"].shape == (5, CROP + 2 * MARGIN, CROP + 2 * MARGIN, 3)
    assert data["targets"].shape == data["originals"].shape == (5, 4 * CROP, 4 * CROP, 3)
    assert len({crop.tobytes() for crop in data["bases"]}) == 5
    assert not path.with_suffix(".partial.npz").exists()


def test_a_teacher_enlarging_more_than_the_student_is_reduced_to_its_factor(
    teacher: ort.InferenceSession, tmp_path: Path
) -> None:
    """A x4 teacher labelling for a x2 student (gc-hybrid-x2): its output reduced by Lanczos to twice the base,
    aligned with the original's crop."""
    halves = []
    for pair in pairs():
        half = np.asarray(Image.fromarray(pair.original).resize((80, 64), Image.Resampling.LANCZOS))
        halves.append(Pair(pair.original, half))
    path = tmp_path / "teacher.npz"
    label(teacher, halves, path, 3, CROP, 2)
    data = np.load(path)
    assert data["targets"].shape == data["originals"].shape == (3, 2 * CROP, 2 * CROP, 3)
    targets, originals = data["targets"].astype(float), data["originals"].astype(float)
    shifted = np.roll(targets, 5, axis=2)
    assert np.abs(targets - originals).mean() < 0.7 * np.abs(shifted - originals).mean(), "aligned, not shifted"


def student_error(run_dir: Path, state: dict) -> float:
    """Mean L1 between the student's (averaged weights) centre crops and the teacher's, in 0..255."""
    model = CompactUpscaler(UpscalerConfig(**state["upscaler"]))
    model.load_state_dict(state["ema"])
    data = np.load(run_dir / "teacher.npz")
    with torch.no_grad():
        out = model(torch.tensor(data["bases"]).permute(0, 3, 1, 2).float() / 255)
    inner = slice(MARGIN * 4, -MARGIN * 4)
    ours = out[:, :, inner, inner].clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255
    return float(np.abs(ours - data["targets"]).mean())


def test_the_student_moves_towards_the_teacher_and_exports(teacher: ort.InferenceSession, tmp_path: Path) -> None:
    label(teacher, pairs(), tmp_path / "teacher.npz", 16, CROP, 4)
    torch.manual_seed(0)
    start = UpscalerTrainer(
        UpscalerTrainConfig(), CompactUpscaler(UpscalerConfig(features=8, convolutions=1)), tmp_path
    )
    init = tmp_path / "init.pt"
    torch.save(start.state(), init)
    before = student_error(tmp_path, torch.load(init, weights_only=False))
    learn(tmp_path, init, minutes=0.1, batch=4, learning_rate=3e-3)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] > 10
    assert student_error(tmp_path, state) < before
    student = CompactUpscaler(UpscalerConfig(**state["upscaler"]))
    student.load_state_dict(state["ema"])
    export_hybrid(student, tmp_path / "student", "student", BaseLayer())
    registry = Registry.discover([tmp_path / "student"], include_zoo=False)
    image = photo_like(64, 96)
    assert decompress(compress(image, registry.get()), registry).shape == image.shape


def test_a_deepened_student_computes_what_it_did_until_trained() -> None:
    from models.upscaler import deepened

    torch.manual_seed(4)
    small = CompactUpscaler(UpscalerConfig(features=8, convolutions=2))
    deeper = deepened(small, 3)
    assert deeper.config.convolutions == 5
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deeper.body) == 2 + 5  # first, middle, last
    x = torch.rand(1, 3, 12, 10) * 2 - 0.5  # negative values too: the new PReLUs must pass them unchanged
    with torch.no_grad():
        assert torch.allclose(deeper(x), small(x), atol=1e-5)


def test_learning_from_init_can_start_deeper(teacher: ort.InferenceSession, tmp_path: Path) -> None:
    label(teacher, pairs(), tmp_path / "teacher.npz", 4, CROP, 4)
    start = UpscalerTrainer(
        UpscalerTrainConfig(), CompactUpscaler(UpscalerConfig(features=8, convolutions=1)), tmp_path
    )
    init = tmp_path / "init.pt"
    torch.save(start.state(), init)
    learn(tmp_path, init, minutes=0.005, batch=2, deepen=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["upscaler"]["convolutions"] == 3
    learn(tmp_path, init, minutes=0.005, batch=2, deepen=2)  # resuming: deepened once, not again
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["upscaler"]["convolutions"] == 3
