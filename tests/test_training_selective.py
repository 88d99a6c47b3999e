"""Training selective (SC) models: masks, label maps at the runtime's resolutions, a conditioned discriminator,
export parity, and GC checkpoints that still load."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, make_seed, save_checkpoint, warm_start
from models.codec import GenerativeCodec, label_map, latent_mask
from models.config import CONFIGS, ExperimentConfig
from models.data import CropSampler, labelled_files, load_labels, load_rgb, validation_samples
from models.export import export_model, onnx_parity
from models.masks import connected_components, draw_mask
from models.networks import MultiScaleDiscriminator
from models.train import Trainer
from service.codec.selection import block_labels, kept_blocks

SC_TINY = CONFIGS["sc-tiny"]
CAMVID = labelled_files("train")[:3]


def make_trainer(run_dir: Path, **train_overrides: object) -> Trainer:
    """sc-tiny on three CamVid frames with their label maps, validated on one camvid/val frame."""
    config = dataclasses.replace(SC_TINY, train=dataclasses.replace(SC_TINY.train, **train_overrides))
    cfg = config.train
    sampler = CropSampler.load_labelled(CAMVID, cfg.crop, cfg.seed, cfg.preservation_masks, cfg.label_dropout)
    validation = validation_samples(config.model.classes, cfg.validation_synthesize, per_source=1)
    return Trainer(config, run_dir, sampler, validation)


def test_sc_training_steps_run_in_both_stages(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, distortion_only_steps=2, label_dropout=0.5)
    trainer.run(total_steps=4, max_minutes=None)
    rows = list(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert [row["stage"] for row in rows] == ["distortion", "gan"]
    assert float(rows[1]["discriminator"]) > 0 and float(rows[1]["feature_matching"]) > 0
    assert float(rows[0]["val_psnr"]) > 0 and float(rows[0]["val_bpp"]) > 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_labelled_batches_carry_labels_masks_and_withheld_maps() -> None:
    sampler = CropSampler.load_labelled(CAMVID, 64, 0, (("classes", 1.0),), label_dropout=0.5)
    batch = sampler.batch(16)
    assert batch.images.shape == (16, 3, 64, 64) and batch.keep.shape == (16, 1, 64, 64)
    withheld = (batch.labels == -1).flatten(1).all(dim=1)
    assert 0 < int(withheld.sum()) < 16
    present = batch.labels[~withheld]
    assert int(present.min()) >= 0 and int(present.max()) < len(SC_TINY.model.classes)


def test_preservation_masks_of_each_kind() -> None:
    rng = np.random.default_rng(0)
    labels = load_labels(CAMVID[0][1])[:128, :128]
    assert draw_mask(labels, "all", rng).all() and not draw_mask(labels, "none", rng).any()
    boxes = draw_mask(labels, "boxes", rng)
    assert 0 < boxes.mean() < 1
    for _ in range(5):
        classes = draw_mask(labels, "classes", rng)
        assert all(len(np.unique(classes[labels == c])) == 1 for c in np.unique(labels))  # whole classes only
        instances = draw_mask(labels, "instances", rng)
        assert instances.any() and len(np.unique(labels[instances])) == 1


def test_connected_components_are_four_connected() -> None:
    region = np.array([[1, 1, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)
    assert connected_components(region).tolist() == [[1, 1, 0, 2], [0, 1, 0, 2], [3, 0, 0, 0], [3, 3, 0, 4]]


@pytest.mark.parametrize("factor", [16, 8])
def test_label_map_and_mask_match_the_runtime(factor: int) -> None:
    """Training feeds the generator what the runtime derives from the same pixels (service/codec/selection.py)."""
    rng = np.random.default_rng(factor)
    ids = rng.integers(0, 4, size=(48, 64))
    ids[:16, :16] = 2  # a block with a clear majority, beside blocks full of ties
    keep = rng.random((48, 64)) < rng.random((48 // factor, 64 // factor)).repeat(factor, 0).repeat(factor, 1) / 4
    keep_tensor = torch.from_numpy(keep).float()[None, None]
    for kept in (None, keep_tensor):
        onehot = label_map(torch.from_numpy(ids)[None], 12, factor, kept)
        runtime = block_labels(ids, keep if kept is not None else np.zeros_like(keep), factor)
        assert torch.equal(onehot.argmax(dim=1)[0], torch.from_numpy(runtime.astype(np.int64)))
        assert torch.equal(onehot.sum(dim=1), torch.ones(1, 48 // factor, 64 // factor))
    assert torch.equal(latent_mask(keep_tensor, factor)[0, 0].bool(), torch.from_numpy(kept_blocks(keep, factor)))
    assert 0 < kept_blocks(keep, factor).sum() < kept_blocks(keep, factor).size
    assert not label_map(torch.full((1, 32, 32), -1), 12, factor).any()


def test_a_block_is_kept_when_more_than_a_sixteenth_of_its_pixels_are() -> None:
    keep = torch.zeros(1, 1, 32, 48)
    keep[0, 0, 0, :16] = 1  # 16 of 256 pixels: painted
    keep[0, 0, 16:, 16:33] = 1  # 16 rows of 17 pixels, across two blocks: 256 and 16 pixels
    keep[0, 0, 16, 40] = 1  # one more in the third block: 17 pixels, kept
    assert latent_mask(keep, 16)[0, 0].tolist() == [[0, 0, 0], [0, 1, 1]]


def test_a_kept_block_is_labelled_with_its_kept_pixels_majority() -> None:
    ids = np.full((16, 16), 3)  # road
    ids[:, :2] = 8  # a car's edge: 32 of 256 pixels
    keep = ids == 8
    assert block_labels(ids, keep, 16).tolist() == [[8]]
    assert block_labels(ids, np.zeros_like(keep), 16).tolist() == [[3]]


@pytest.mark.parametrize("label_downsampling", [16, 8])
def test_sc_onnx_export_matches_pytorch(tmp_path: Path, label_downsampling: int) -> None:
    torch.manual_seed(0)
    codec = GenerativeCodec(dataclasses.replace(SC_TINY.model, label_downsampling=label_downsampling))
    export_model(codec, tmp_path, "sc-parity")
    image, labels = labelled_files("val")[0]
    parity = onnx_parity(codec, tmp_path, load_rgb(image)[:100, :150], load_labels(labels)[:100, :150])
    assert parity["encoder_max_abs_diff"] < 1e-4
    assert parity["generator_max_abs_diff"] < 1e-4


def test_sc_seed_checkpoint_resumes_from_the_exported_graphs(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path / "run")
    trainer.run(total_steps=1, max_minutes=None)
    export_model(trainer.ema, tmp_path / "model", "sc-seed")
    save_checkpoint(make_seed(trainer.state(), tmp_path / "model"), tmp_path / "seed.pt")
    fresh = make_trainer(tmp_path / "next")
    fresh.restore(load_checkpoint(tmp_path / "seed.pt"))
    assert any(name.startswith("generator.label_features.") for name in trainer.ema.state_dict())
    for name, weight in trainer.ema.state_dict().items():
        assert torch.equal(fresh.codec.state_dict()[name], weight), name


def test_gc_models_and_their_checkpoints_are_unchanged() -> None:
    """SC adds fields with GC defaults: a GC configuration written before them loads, with the same weights' names
    and shapes (the first layers still take the latent alone and the image alone)."""
    small = CONFIGS["small"]
    old = small.to_dict()
    for key in ("classes", "label_downsampling", "label_widths"):
        del old["model"][key]
    for key in ("preservation_masks", "label_dropout", "validation_synthesize"):
        del old["train"][key]
    assert ExperimentConfig.from_dict(old) == small
    codec = GenerativeCodec(small.model)
    assert not any("label" in name for name in codec.state_dict())
    assert codec.generator.net[0][1].in_channels == small.model.latent_channels
    assert MultiScaleDiscriminator(small.model).scales[0].blocks[0][0].in_channels == 3


def test_sc_small_shares_the_gc_models_latent_and_rate_points() -> None:
    """sc-small warm-starts from small and its files compare with small's at the same C."""
    small, sc = CONFIGS["small"].model, CONFIGS["sc-small"].model
    assert sc.selective and sc.classes == tuple(CONFIGS["sc-tiny"].model.classes)
    for field in ("latent_channels", "rate_channels", "default_channels", "encoder_widths", "generator_widths"):
        assert getattr(sc, field) == getattr(small, field), field
    assert CONFIGS["sc-small"].train.rate_weights == CONFIGS["small"].train.rate_weights


def test_sc_training_with_nested_rate_points(tmp_path: Path) -> None:
    """Rate points and masks together: only the first k channels of kept cells are coded."""
    model = dataclasses.replace(SC_TINY.model, latent_channels=4, rate_channels=(2, 4), default_channels=2)
    config = dataclasses.replace(SC_TINY, model=model)
    codec = GenerativeCodec(model)
    images = torch.rand(2, 3, 32, 32)
    keep = torch.zeros(2, 1, 32, 32)
    keep[:, :, :16] = 1  # the top row of latent cells
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    out = codec(images, keep, labels, torch.tensor([2, 4]))
    per_symbol = -codec.entropy_model.log_probs()[0, 0].item() / np.log(2)  # uniform at initialisation
    assert out.symbol_bits.item() == pytest.approx((2 + 4) * 2 * per_symbol, rel=1e-5)  # 2 kept cells per image
    cfg = config.train
    sampler = CropSampler.load_labelled(CAMVID, cfg.crop, cfg.seed, cfg.preservation_masks, cfg.label_dropout)
    validation = validation_samples(model.classes, cfg.validation_synthesize, per_source=1)
    Trainer(config, tmp_path, sampler, validation).run(total_steps=2, max_minutes=None)
    row = next(csv.DictReader((tmp_path / "log.csv").read_text().splitlines()))
    assert float(row["val_bpp"]) > 0


def _gc_trainer_state(tmp_path: Path) -> dict:
    """A GC tiny run of one step, as a checkpoint on disk would hold it."""
    gc = CONFIGS["tiny"]
    sampler = CropSampler.load({"camvid": [image for image, _ in CAMVID]}, gc.train.crop, 0)
    trainer = Trainer(gc, tmp_path / "gc", sampler, validation_samples(per_source=1))
    trainer.run(total_steps=1, max_minutes=None)
    return load_checkpoint(trainer.checkpoint_path)


def test_sc_run_warm_starts_from_a_gc_checkpoint(tmp_path: Path) -> None:
    """Same-shape weights are copied; the generator's and discriminator's widened inputs get GC weights for the
    old channels and zeros for the mask and labels, so the SC model first computes what GC computes."""
    gc_state = _gc_trainer_state(tmp_path)
    trainer = make_trainer(tmp_path / "sc")
    report = trainer.warm_start(gc_state, "gc.pt")
    assert report["codec"]["widened"] == ["generator.net.0.1.weight", "generator.bypass.weight"]
    assert len(report["discriminator"]["widened"]) == SC_TINY.model.discriminator_scales
    assert all(name.startswith("generator.label_features.") for name in report["codec"]["kept"])
    codec, ema = trainer.codec.state_dict(), trainer.ema.state_dict()
    for name, weight in gc_state["ema"].items():
        got = codec[name][:, : weight.shape[1]] if name in report["codec"]["widened"] else codec[name]
        assert torch.equal(got, weight) and torch.equal(ema[name], codec[name]), name
    first = codec["generator.net.0.1.weight"]
    assert not first[:, SC_TINY.model.latent_channels :].any()
    disc = trainer.discriminator.state_dict()["scales.0.blocks.0.0.weight"]
    assert torch.equal(disc[:, :3], gc_state["discriminator"]["scales.0.blocks.0.0.weight"]) and not disc[:, 3:].any()
    # With everything kept the SC generator reproduces the GC one, whatever the label map says.
    gc_codec = GenerativeCodec(CONFIGS["tiny"].model).eval()
    gc_codec.load_state_dict(gc_state["ema"])
    image = torch.rand(1, 3, 32, 48)
    labels = torch.randint(0, 12, (1, 32, 48))
    with torch.no_grad():
        expected = gc_codec(image).reconstruction
        got = trainer.codec.eval()(image, None, labels).reconstruction
    torch.testing.assert_close(got, expected)
    # The origin travels with the checkpoint, then into the manifest's training record.
    trainer.codec.train()
    trainer.run(total_steps=1, max_minutes=None)
    state = load_checkpoint(trainer.checkpoint_path)
    assert state["warm_start"] == {"checkpoint": "gc.pt", "config": "tiny", "step": 1}


def test_warm_start_refuses_another_network(tmp_path: Path) -> None:
    gc_state = _gc_trainer_state(tmp_path)
    other = dataclasses.replace(SC_TINY.model, latent_channels=4)
    with pytest.raises(ValueError, match="weights of other shapes: encoder"):
        warm_start(GenerativeCodec(other), gc_state["ema"])
    with pytest.raises(ValueError, match="the source has weights this model lacks"):
        warm_start(GenerativeCodec(CONFIGS["tiny"].model), GenerativeCodec(SC_TINY.model).state_dict())


def test_train_command_warm_starts_sc_from_gc(tmp_path: Path, monkeypatch) -> None:
    """python -m models.train --config sc-tiny --init-from GC.pt: the origin is recorded; resuming ignores it."""
    from models import train

    gc_state = _gc_trainer_state(tmp_path)
    save_checkpoint(gc_state, tmp_path / "gc.pt")
    monkeypatch.setattr(train, "labelled_files", lambda split: CAMVID)
    argv = ["--config", "sc-tiny", "--run-dir", str(tmp_path / "sc"), "--init-from", str(tmp_path / "gc.pt")]
    train.main([*argv, "--steps", "1"])
    assert load_checkpoint(tmp_path / "sc" / "checkpoint.pt")["warm_start"]["config"] == "tiny"
    train.main([*argv, "--steps", "2"])
    state = load_checkpoint(tmp_path / "sc" / "checkpoint.pt")
    assert state["step"] == 2 and state["warm_start"]["step"] == 1
