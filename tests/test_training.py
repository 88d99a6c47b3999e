"""The training package: quantiser, entropy tables, schedule, the loop's stages, resume and ONNX parity."""

from __future__ import annotations

import csv
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
from models.export import export_model, onnx_parity
from models.networks import NearestUpsampleBlock
from models.quantizer import ChannelEntropyModel, Quantizer
from models.train import LOG_FIELDS, Trainer, distortion, learning_rate, lowpass_distortion

TINY = CONFIGS["tiny"]


def make_trainer(run_dir: Path, make_image: Callable[..., np.ndarray], **train_overrides: object) -> Trainer:
    config = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, **train_overrides))
    images = {"synthetic": [make_image(64, 80, seed) for seed in range(3)]}
    sampler = CropSampler(images=images, crop=config.train.crop, rng=np.random.default_rng(0))
    return Trainer(config, run_dir, sampler, [Sample(to_tensor(make_image(40, 56, 9)))])


def test_quantizer_maps_to_nearest_centre_and_passes_gradients_straight_through() -> None:
    quantizer = Quantizer((-2.0, -1.0, 0.0, 1.0, 2.0), sigma=1.0)
    w = torch.tensor([-7.0, -1.4, 0.2, 0.6, 2.4], requires_grad=True)
    out = quantizer(w)
    assert out.latent.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert out.symbols.tolist() == [0, 1, 2, 3, 4]
    out.latent.sum().backward()
    assert w.grad.tolist() == [1.0] * 5


def test_range_penalty_is_zero_inside_the_centres_and_grows_outside() -> None:
    quantizer = Quantizer((-2.0, -1.0, 0.0, 1.0, 2.0), sigma=1.0)
    assert quantizer.range_penalty(torch.tensor([-2.4, 0.0, 2.4])).item() == 0.0
    assert quantizer.range_penalty(torch.tensor([3.5])).item() == pytest.approx(1.0)


def test_frequency_tables_are_positive_and_sum_to_the_precision() -> None:
    model = ChannelEntropyModel(channels=3, levels=5)
    with torch.no_grad():
        model.logits[0] = torch.tensor([30.0, 0.0, 0.0, 0.0, 0.0])
    for table in model.frequency_tables(precision=16):
        assert sum(table) == 1 << 16
        assert min(table) >= 1
    assert model.frequency_tables(16)[0][0] > 60_000


def test_nested_rate_points_code_and_decode_only_their_first_channels() -> None:
    config = dataclasses.replace(TINY.model, latent_channels=4, rate_channels=(2, 4), default_channels=2)
    codec = GenerativeCodec(config).eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        low, high = codec(image, channels=torch.tensor([2])), codec(image, channels=torch.tensor([4]))
        # Only the coded channels reach the generator: the uncoded ones read as zero.
        w = codec.encoder(image)
        latent = codec.quantizer(w).latent * torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1)
        assert torch.allclose(low.reconstruction, codec.decode(latent))
    bits = codec.entropy_model.symbol_bits(codec.quantizer(w).symbols, codec.channel_mask(torch.tensor([2])))
    assert low.symbol_bits.item() == pytest.approx(bits.item())
    assert low.symbol_bits < high.symbol_bits


def test_rate_points_are_drawn_by_their_weights(tmp_path: Path, make_image: Callable[..., np.ndarray]) -> None:
    model = dataclasses.replace(TINY.model, latent_channels=4, rate_channels=(2, 4), default_channels=2)
    config = dataclasses.replace(TINY, model=model, train=dataclasses.replace(TINY.train, rate_weights=(0.0, 1.0)))
    sampler = CropSampler(images={"s": [make_image(64, 80)]}, crop=32, rng=np.random.default_rng(0))
    trainer = Trainer(config, tmp_path, sampler, [Sample(to_tensor(make_image(40, 56, 9)))])
    assert trainer.draw_rate_points(16).tolist() == [4] * 16
    assert make_trainer(tmp_path, make_image).draw_rate_points(4) is None


@pytest.mark.parametrize("norm", ["none", "channel"])
def test_sub_pixel_upsampling_computes_nearest_upsampling_then_convolution(norm: str) -> None:
    torch.manual_seed(0)
    block = NearestUpsampleBlock(5, 7, norm)
    x = torch.randn(2, 5, 9, 6)
    plain = x
    for layer in block:
        plain = layer(plain)
    assert list(block.state_dict()) == list(torch.nn.Sequential(*block).state_dict())
    torch.testing.assert_close(block(x), plain, atol=1e-5, rtol=0)


def test_learning_rate_warms_up_then_decays_to_its_floor() -> None:
    cfg = dataclasses.replace(CONFIGS["small"].train, gan_learning_rate=None)
    assert learning_rate(0, 0, cfg) < cfg.learning_rate / 100
    assert learning_rate(cfg.warmup_steps, 0, cfg) == pytest.approx(cfg.learning_rate)
    end = cfg.decay_start + cfg.decay_steps
    assert learning_rate(end, 0, cfg) == pytest.approx(cfg.learning_rate * cfg.final_lr_fraction)


def test_gan_stage_runs_at_its_own_peak_learning_rate_and_decays_from_it() -> None:
    cfg = CONFIGS["small"].train
    assert cfg.gan_learning_rate is not None and cfg.gan_learning_rate < cfg.learning_rate
    gan_start = cfg.distortion_only_steps
    assert learning_rate(gan_start - 1, 0, cfg) == pytest.approx(cfg.learning_rate)
    assert learning_rate(gan_start, 0, cfg) == pytest.approx(cfg.gan_learning_rate)
    end = cfg.decay_start + cfg.decay_steps
    assert learning_rate(end, 0, cfg) == pytest.approx(cfg.gan_learning_rate * cfg.final_lr_fraction)


def test_distortion_stage_then_gan_stage_are_logged(tmp_path: Path, make_image: Callable[..., np.ndarray]) -> None:
    trainer = make_trainer(tmp_path, make_image, distortion_only_steps=2)
    trainer.run(total_steps=4, max_minutes=None)
    rows = list(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert [row["stage"] for row in rows] == ["distortion", "gan"]
    assert rows[1]["discriminator"] and rows[1]["feature_matching"]
    assert float(rows[0]["val_psnr"]) > 0


def test_lowpass_distortion_compares_block_means_over_whole_preserved_blocks() -> None:
    images = torch.rand(2, 3, 16, 24)
    detail = images + 0.1 * torch.tensor([1.0, -1.0]).repeat(12)  # alternating columns: every 8x8 mean unchanged
    assert lowpass_distortion(detail, images, None, 8).item() == pytest.approx(0.0, abs=1e-10)
    assert distortion(detail, images, None).item() == pytest.approx(0.01)
    shifted = images + 0.1
    assert lowpass_distortion(shifted, images, None, 8).item() == pytest.approx(0.01)
    preserved = torch.zeros(2, 1, 16, 24)
    preserved[..., :8, :9] = 1  # one whole block (and a column of the next, which does not count)
    shifted[..., :8, :8] = images[..., :8, :8]
    assert lowpass_distortion(shifted, images, preserved, 8).item() == pytest.approx(0.0, abs=1e-10)


def test_a_log_begun_with_fewer_columns_gets_the_current_header(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    older = ",".join(LOG_FIELDS[:-1])
    (tmp_path / "log.csv").write_text(f"{older}\n1,0.1,distortion\n")
    make_trainer(tmp_path, make_image, lowpass_weight=1.0).run(total_steps=2, max_minutes=None)
    rows = list(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert rows[0]["step"] == "1" and float(rows[1]["lowpass_mse"]) > 0


def test_training_resumes_from_its_checkpoint(tmp_path: Path, make_image: Callable[..., np.ndarray]) -> None:
    make_trainer(tmp_path, make_image).run(total_steps=2, max_minutes=None)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 2
    resumed = make_trainer(tmp_path, make_image)
    resumed.restore(state)
    resumed.run(total_steps=4, max_minutes=None)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_every_keep_every_steps_a_checkpoint_is_kept_to_roll_back_to(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    make_trainer(tmp_path, make_image, keep_every=2).run(total_steps=5, max_minutes=None)
    kept = sorted(path.name for path in tmp_path.glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-2.pt", "checkpoint-4.pt"]
    assert load_checkpoint(tmp_path / "checkpoint-4.pt")["step"] == 4
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 5


def test_seed_checkpoint_resumes_from_the_exported_graphs(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    trainer = make_trainer(tmp_path / "run", make_image)
    trainer.run(total_steps=2, max_minutes=None)
    export_model(trainer.ema, tmp_path / "model", "gc-seed")
    save_checkpoint(make_seed(trainer.state(), tmp_path / "model"), tmp_path / "seed.pt")
    seed = load_checkpoint(tmp_path / "seed.pt")
    assert "opt_g" not in seed
    assert ExperimentConfig.from_dict(seed["config"]) == trainer.config
    fresh = make_trainer(tmp_path / "next", make_image)
    fresh.restore(seed)
    assert fresh.step == 2
    for name, weight in trainer.ema.state_dict().items():
        assert torch.equal(fresh.codec.state_dict()[name], weight), name


def test_seed_checkpoint_refuses_graphs_it_was_not_written_with(
    tmp_path: Path, make_image: Callable[..., np.ndarray]
) -> None:
    trainer = make_trainer(tmp_path / "run", make_image)
    export_model(trainer.ema, tmp_path / "model", "gc-seed")
    save_checkpoint(make_seed(trainer.state(), tmp_path / "model"), tmp_path / "seed.pt")
    torch.manual_seed(1)
    export_model(GenerativeCodec(TINY.model), tmp_path / "model", "gc-seed")
    with pytest.raises(ValueError, match="not the ones"):
        load_checkpoint(tmp_path / "seed.pt")


def test_onnx_export_matches_pytorch(tmp_path: Path, make_image: Callable[..., np.ndarray]) -> None:
    torch.manual_seed(0)
    codec = GenerativeCodec(TINY.model)
    export_model(codec, tmp_path, "gc-parity")
    parity = onnx_parity(codec, tmp_path, make_image(70, 100))
    assert parity["encoder_max_abs_diff"] < 1e-4
    assert parity["generator_max_abs_diff"] < 1e-4
