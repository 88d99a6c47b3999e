"""Shuffled network ends (ModelConfig.end_scale) and their distillation from a trained model (models.distill)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, make_seed, save_checkpoint
from models.codec import GenerativeCodec
from models.config import CONFIGS, ExperimentConfig
from models.data import CropSampler, Sample, to_tensor
from models.distill import EndDistiller, distill
from models.export import export_model, onnx_parity
from models.train import Trainer

TINY = CONFIGS["tiny"]
FAST = dataclasses.replace(TINY, name="tiny-fast", model=dataclasses.replace(TINY.model, end_scale=4))


def teacher_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    codec = GenerativeCodec(TINY.model)
    discriminator = {"net.weight": torch.ones(1)}
    return {"config": TINY.to_dict(), "step": 7, "ema": codec.state_dict(), "discriminator": discriminator}


def sampler(make_image: Callable[..., np.ndarray]) -> CropSampler:
    images = {"synthetic": [make_image(64, 80, seed) for seed in range(3)]}
    return CropSampler(images=images, crop=32, rng=np.random.default_rng(0))


@pytest.mark.parametrize("end_scale", [3, 32])
def test_end_scale_must_be_a_power_of_two_within_the_downsampling(end_scale: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        dataclasses.replace(TINY.model, end_scale=end_scale)


def test_shuffled_ends_keep_the_image_size_and_the_bodys_parameter_names() -> None:
    full, fast = GenerativeCodec(TINY.model), GenerativeCodec(FAST.model)
    image = torch.rand(2, 3, 48, 64)
    output = fast(image)
    assert output.reconstruction.shape == image.shape
    assert output.latent.shape == full(image).latent.shape
    # Only the encoder's first three slots (stem and two down-samplings, now one shuffled head) and the
    # generator's layers from the last 1/4-resolution one on differ; every other name is shared.
    tail = len(fast.generator.net) - 1
    ends = ("encoder.net.0.", "encoder.net.1.", "encoder.net.2.", *(f"generator.net.{i}." for i in range(tail, 99)))
    full_names, fast_names = set(full.state_dict()), set(fast.state_dict())
    assert all(name.startswith(ends) for name in full_names ^ fast_names)
    assert {name for name in full_names if not name.startswith(ends)} == {
        name for name in fast_names if not name.startswith(ends)
    }
    assert not any(name.startswith(("encoder.net.1.", "encoder.net.2.")) for name in fast_names)


def test_shuffled_ends_export_to_onnx_and_seed_checkpoints_round_trip(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    torch.manual_seed(0)
    codec = GenerativeCodec(FAST.model)
    export_model(codec, tmp_path / "model", "gc-fast")
    parity = onnx_parity(codec, tmp_path / "model", make_image(70, 100))
    assert parity["encoder_max_abs_diff"] < 1e-4
    assert parity["generator_max_abs_diff"] < 1e-4
    state = {"config": FAST.to_dict(), "step": 3, "hours": 0.0, "data": {}, "ema": codec.state_dict()}
    state["discriminator"] = {}
    save_checkpoint(make_seed(state, tmp_path / "model"), tmp_path / "seed.pt")
    for name, weight in load_checkpoint(tmp_path / "seed.pt")["ema"].items():
        # The graphs store weights in float16.
        assert torch.allclose(weight, codec.state_dict()[name].half().float()), name


def test_distillation_copies_the_body_and_trains_only_the_new_ends(make_image: Callable[..., np.ndarray]) -> None:
    state = teacher_state()
    distiller = EndDistiller(state, FAST)
    crops = sampler(make_image)
    fixed = crops.batch(8).images
    before = [loss.item() for loss in distiller.losses(fixed, None)]
    body_before = {name: p.clone() for name, p in distiller.student.named_parameters() if not p.requires_grad}
    distill(distiller, crops, steps=60, learning_rate=1e-2, log_every=60)
    after = [loss.item() for loss in distiller.losses(fixed, None)]
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]
    assert body_before and all(torch.equal(state["ema"][name], p) for name, p in body_before.items())
    for name, weight in distiller.student.named_parameters():
        if name in body_before:
            assert torch.equal(weight, body_before[name]), name


def test_distilled_checkpoint_resumes_as_the_new_configuration_at_step_zero(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    state = teacher_state()
    torch.manual_seed(0)
    trainer_teacher = Trainer(TINY, tmp_path / "teacher", sampler(make_image), [])
    state["discriminator"] = trainer_teacher.discriminator.state_dict()
    distiller = EndDistiller(state, FAST)
    checkpoint = distiller.checkpoint(state, "teacher.pt", steps=0, data={"synthetic": 3})
    assert ExperimentConfig.from_dict(checkpoint["config"]) == FAST
    trainer = Trainer(FAST, tmp_path / "run", sampler(make_image), [Sample(to_tensor(make_image(40, 56, 9)))])
    trainer.restore(checkpoint)
    assert trainer.step == 0
    trainer.run(total_steps=2, max_minutes=None)
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert resumed["step"] == 2
    assert resumed["warm_start"]["config"] == "tiny"


def test_distillation_refuses_a_configuration_that_differs_beyond_its_ends() -> None:
    other = dataclasses.replace(FAST, model=dataclasses.replace(FAST.model, residual_blocks=2))
    with pytest.raises(ValueError, match="more than its ends"):
        EndDistiller(teacher_state(), other)
    with pytest.raises(ValueError, match="no coarser ends"):
        EndDistiller(teacher_state(), TINY)
