"""A corpus of bad (and awkward but valid) images and masks, made here, each with its one defined answer; and the
hostile AVIF bases of bench/fuzz.py in hybrid files.

Every image and mask goes through the library (`compress`, what the CLI runs) and through POST /compress; both must
give the same answer: the error's stable code (the problem type's slug), or "ok" with a file that decodes to the
image's size. Every hybrid file goes through `decompress` and POST /decompress, and must be a corrupt bitstream.
Nothing may crash, hang or answer 5xx.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from api_support import running, settings
from image_support import webp_claiming, with_extra_scans
from PIL import Image

from bench.fuzz import (
    base_shape,
    export_random_hybrid,
    hostile_bases,
    seed_image,
    sequence_header,
    with_sequence_header,
)
from service.codec import (
    CodecError,
    CorruptBitstream,
    Model,
    Registry,
    compress,
    decompress,
    load_manifest,
    unpack,
)
from service.codec.avif import check_base
from service.codec.base import BaseLayer
from service.codec.container import pack

OK = "ok"
OCTET = {"content-type": "application/octet-stream"}
PIXELS = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
"""The usual image: 64 wide, 48 high."""


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int = 8, colour: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand: any IHDR, and the given (or zero) filtered rows behind it."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    if rows is None:
        rows = bytes(min(10**6, height * (1 + width * channels * depth // 8)))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG's header with its frame size (SOF0) rewritten."""
    data = bytearray(_save(Image.fromarray(PIXELS), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    return _save(Image.fromarray(PIXELS), "JPEG", exif=exif.tobytes())


def _animated_png() -> bytes:
    frames = [Image.fromarray(PIXELS), Image.fromarray(255 - PIXELS)]
    return _save(frames[0], "PNG", save_all=True, append_images=frames[1:])


def _grey16() -> bytes:
    return _save(Image.fromarray(PIXELS[:, :, 0].astype(np.uint16) * 257), "PNG")


def _rgb16() -> bytes:
    """16 bits per channel RGB (Pillow reads it as 8-bit RGB)."""
    rows = b"".join(b"\x00" + (PIXELS[y].astype(">u2") * 257).tobytes() for y in range(48))
    return _png(64, 48, depth=16, colour=2, rows=rows)


def _valid_png() -> bytes:
    return _save(Image.fromarray(PIXELS), "PNG")


def _valid_jpeg() -> bytes:
    return _save(Image.fromarray(PIXELS), "JPEG", quality=90)


IMAGES: dict[str, tuple[Callable[[], bytes], str, tuple[int, int] | None]] = {
    # name: (bytes, defined answer, (height, width) decoded when ok)
    "empty": (lambda: b"", "invalid-image", None),
    "text": (lambda: b"hello, this is not an image\n", "unsupported-format", None),
    "gif (wrong magic for us)": (
        lambda: _save(Image.fromarray(PIXELS).convert("P"), "GIF"),
        "unsupported-format",
        None,
    ),
    "bmp": (lambda: _save(Image.fromarray(PIXELS), "BMP"), "unsupported-format", None),
    "tiff": (lambda: _save(Image.fromarray(PIXELS), "TIFF"), "unsupported-format", None),
    "a .gcx file": (lambda: b"GCX\x01" + bytes(40), "unsupported-format", None),
    "png with a wrong first byte": (lambda: b"\x88" + _valid_png()[1:], "unsupported-format", None),
    "png signature only": (lambda: _valid_png()[:8], "invalid-image", None),
    "png cut inside IHDR": (lambda: _valid_png()[:20], "invalid-image", None),
    "png cut in half": (lambda: _valid_png()[: len(_valid_png()) // 2], "invalid-image", None),
    "png without IEND": (lambda: _valid_png()[:-12], OK, (48, 64)),
    "png with a corrupt IDAT": (
        lambda: _valid_png().replace(b"IDAT", b"IDAT\xff\xff\xff\xff", 1),
        "invalid-image",
        None,
    ),
    "png zero width": (lambda: _png(0, 10), "invalid-image", None),
    "png zero height": (lambda: _png(10, 0), "invalid-image", None),
    "png 1x1": (lambda: _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), OK, (1, 1)),
    "png 1x3000": (lambda: _save(Image.new("RGB", (3000, 1), (0, 99, 0)), "PNG"), OK, (1, 3000)),
    "png 3000x1": (lambda: _save(Image.new("RGB", (1, 3000), (0, 99, 0)), "PNG"), OK, (3000, 1)),
    "png 1x1000000 (a side over the limit)": (lambda: _png(1, 1_000_000), "image-too-large", None),
    "jpeg SOI only": (lambda: b"\xff\xd8\xff", "invalid-image", None),
    "jpeg cut in half": (lambda: _valid_jpeg()[: len(_valid_jpeg()) // 2], "invalid-image", None),
    "webp cut in half": (
        lambda: _save(Image.fromarray(PIXELS), "WEBP")[: len(_save(Image.fromarray(PIXELS), "WEBP")) // 2],
        "invalid-image",
        None,
    ),
    "riff that is not webp": (lambda: b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(8), "unsupported-format", None),
    # Decompression bombs: a few bytes declaring a huge image; refused from the header, before any pixel.
    "bomb: png 100000x100000": (lambda: _png(100_000, 100_000), "image-too-large", None),
    "bomb: png 2^31-1 square": (lambda: _png(2**31 - 1, 2**31 - 1), "image-too-large", None),
    "bomb: png 4097x4096 of zeros (just over the cap)": (lambda: _png(4097, 4096), "image-too-large", None),
    "bomb: jpeg 65500x65500": (lambda: _jpeg_claiming(65500, 65500), "image-too-large", None),
    "bomb: webp 16383x16383": (lambda: webp_claiming(16383, 16383), "image-too-large", None),
    # Valid but unusual: each must work.
    "grey": (lambda: _save(Image.fromarray(PIXELS[:, :, 0]), "PNG"), OK, (48, 64)),
    "grey + alpha": (lambda: _save(Image.fromarray(PIXELS[:, :, :2].copy()), "PNG"), OK, (48, 64)),
    "bilevel": (lambda: _save(Image.fromarray(PIXELS[:, :, 0]).convert("1"), "PNG"), OK, (48, 64)),
    "16-bit grey": (_grey16, OK, (48, 64)),
    "16-bit RGB": (_rgb16, OK, (48, 64)),
    "palette": (lambda: _save(Image.fromarray(PIXELS).convert("P"), "PNG"), OK, (48, 64)),
    "palette with transparency": (
        lambda: _save(Image.fromarray(PIXELS).convert("P"), "PNG", transparency=0),
        OK,
        (48, 64),
    ),
    "RGBA": (lambda: _save(Image.fromarray(np.dstack([PIXELS, PIXELS[:, :, :1]])), "PNG"), OK, (48, 64)),
    "CMYK jpeg": (lambda: _save(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"), OK, (48, 64)),
    "grey jpeg": (lambda: _save(Image.fromarray(PIXELS[:, :, 0]), "JPEG"), OK, (48, 64)),
    "progressive jpeg": (lambda: _save(Image.fromarray(PIXELS), "JPEG", progressive=True), OK, (48, 64)),
    "progressive jpeg with 2000 more scans": (
        lambda: with_extra_scans(_save(Image.fromarray(PIXELS), "JPEG", progressive=True), 2000),
        "invalid-image",
        None,
    ),
    "jpeg rotated by EXIF": (_exif_rotated, OK, (64, 48)),
    "animated png (first frame)": (_animated_png, OK, (48, 64)),
    "lossless webp": (lambda: _save(Image.fromarray(PIXELS), "WEBP", lossless=True), OK, (48, 64)),
}

_MASK = np.zeros((48, 64), bool)
_MASK[8:40, 16:48] = True
_SPARSE = np.zeros((48, 64), np.uint8)
_SPARSE[::4, ::4] = 255  # 16 of each 16x16 block's 256 pixels: not more than 1/16, so no block is kept
MASKS: dict[str, tuple[Callable[[], bytes], str]] = {
    "mask of another size": (lambda: _save(Image.fromarray(_MASK[:, :32]), "PNG"), "mask-size-mismatch"),
    "mask as jpeg": (lambda: _save(Image.fromarray(_MASK.astype(np.uint8) * 255), "JPEG"), "unsupported-format"),
    "mask as text": (lambda: b"keep everything", "unsupported-format"),
    "empty mask": (lambda: b"", "invalid-image"),
    "mask cut in half": (lambda: _save(Image.fromarray(_MASK), "PNG")[:30], "invalid-image"),
    "mask bomb 100000x100000": (lambda: _png(100_000, 100_000, depth=1, colour=0), "image-too-large"),
    "mask keeping nothing": (lambda: _save(Image.fromarray(np.zeros((48, 64), np.uint8)), "PNG"), OK),
    "mask keeping too few pixels of every block": (lambda: _save(Image.fromarray(_SPARSE), "PNG"), OK),
    "mask keeping everything": (lambda: _save(Image.fromarray(np.full((48, 64), 255, np.uint8)), "PNG"), OK),
    "bilevel mask": (lambda: _save(Image.fromarray(_MASK), "PNG"), OK),
    "16-bit mask": (lambda: _save(Image.fromarray(_MASK.astype(np.uint16) * 65535), "PNG"), OK),
    "RGBA mask": (lambda: _save(Image.fromarray(np.dstack([_MASK.astype(np.uint8) * 255] * 4)), "PNG"), OK),
    "palette mask": (lambda: _save(Image.fromarray(_MASK.astype(np.uint8) * 255).convert("P"), "PNG"), OK),
}


def _library_answer(
    model: Model, image: bytes, mask: bytes | None = None, labels: bytes | None = None, synthesize: str | None = None
) -> tuple[str, bytes | None]:
    try:
        return OK, compress(image, model, mask, labels, None if synthesize is None else [synthesize])
    except CodecError as error:
        return error.code, None


async def _api_answer(
    client,
    image: bytes,
    model_id: str,
    mask: bytes | None = None,
    labels: bytes | None = None,
    synthesize: str | None = None,
) -> tuple[str, bytes | None]:
    maps = {name: (name, data) for name, data in (("mask", mask), ("labels", labels)) if data is not None}
    fields = {"model": model_id} | ({} if synthesize is None else {"synthesize": synthesize})
    response = await client.post("/compress", files={"image": ("image", image), **maps}, data=fields)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        return OK, response.content
    return response.json()["type"].rsplit(":", 1)[-1], None


@pytest.mark.anyio
async def test_every_image_in_the_corpus_gets_its_defined_answer(model_dir):
    model = Model(load_manifest(model_dir))
    registry = Registry([model])
    wrong = []
    async with running(settings(model_dir)) as (_, client):
        for name, (make, expected, shape) in IMAGES.items():
            data = make()
            library, file = _library_answer(model, data)
            api, api_file = await _api_answer(client, data, model.id)
            if (library, api) != (expected, expected):
                wrong.append(f"{name}: library {library}, API {api}, defined {expected}")
            elif expected == OK:
                assert file == api_file, name
                assert decompress(file, registry).shape == (*shape, 3), name
    assert not wrong, "\n".join(wrong)


@pytest.mark.anyio
@pytest.mark.parametrize("sc_fixture", ["sc_model_dir", "contextual_sc_model_dir"], ids=["static", "contexts"])
async def test_every_mask_in_the_corpus_gets_its_defined_answer(model_dir, sc_fixture, request):
    sc_model_dir = request.getfixturevalue(sc_fixture)
    gc, sc = Model(load_manifest(model_dir)), Model(load_manifest(sc_model_dir))
    image = _valid_png()
    wrong = []
    async with running(settings(model_dir, sc_model_dir)) as (_, client):
        for name, (make, expected) in MASKS.items():
            mask = make()
            library, file = _library_answer(sc, image, mask)
            api, api_file = await _api_answer(client, image, sc.id, mask)
            if (library, api) != (expected, expected):
                wrong.append(f"{name}: library {library}, API {api}, defined {expected}")
            elif expected == OK:
                assert file == api_file, name
                assert decompress(file, Registry([sc])).shape == (48, 64, 3), name
            # A GC model refuses every mask, good or bad, for what it is (a bad one may be refused first).
            gc_answer = _library_answer(gc, image, mask)[0]
            assert gc_answer in {"sc-unsupported", expected}, (name, gc_answer)
    assert not wrong, "\n".join(wrong)


def stripes() -> bytes:
    """A label map for the usual image: vertical stripes six pixels wide, class ids 0-10."""
    return _save(Image.fromarray((np.arange(64)[None, :] // 6).repeat(48, 0).astype(np.uint8)), "PNG")


def classes_to_synthesise(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """name: (classes to synthesise with the stripes, defined answer), for a model that knows `names`."""
    return {
        "every class by name": (",".join(names), OK),
        "every class by id": (",".join(map(str, range(len(names)))), OK),
        "superscript two": ("\u00b2", "invalid-selection"),
        "arabic-indic three": ("\u0663", "invalid-selection"),
        "fullwidth three": ("\uff13", "invalid-selection"),
        "5000 digits": ("9" * 5000, "invalid-selection"),
    }


@pytest.mark.anyio
async def test_classes_to_synthesise_are_names_or_ascii_ids(contextual_sc_model_dir):
    """Synthesising every class keeps nothing, a valid file; a digit of another script is no class id."""
    sc = Model(load_manifest(contextual_sc_model_dir))
    image, labels = _valid_png(), stripes()
    wrong = []
    async with running(settings(contextual_sc_model_dir)) as (_, client):
        for name, (synthesize, expected) in classes_to_synthesise(sc.manifest.classes).items():
            library, file = _library_answer(sc, image, labels=labels, synthesize=synthesize)
            api, api_file = await _api_answer(client, image, sc.id, labels=labels, synthesize=synthesize)
            if (library, api) != (expected, expected):
                wrong.append(f"{name}: library {library}, API {api}, defined {expected}")
            elif expected == OK:
                assert file == api_file, name
                assert decompress(file, Registry([sc])).shape == (48, 64, 3), name
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def hybrid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return export_random_hybrid(tmp_path_factory.mktemp("hybrid-zoo") / "gc-hybrid-tiny")


@pytest.mark.anyio
async def test_every_hostile_base_layer_is_a_corrupt_bitstream(hybrid_dir):
    """Hybrid files of three sizes whose AVIF payload is replaced by each of bench.fuzz's hostile bases."""
    registry = Registry.discover([hybrid_dir], include_zoo=False)
    model = registry.get()
    wrong = []
    async with running(settings(hybrid_dir)) as (_, client):
        for height, width in ((1, 1), (15, 17), (48, 64)):
            header = unpack(compress(np.ascontiguousarray(PIXELS[:height, :width]), model), sys.maxsize).header
            for name, payload in hostile_bases(*base_shape(header, registry)).items():
                data = pack(header, payload)
                try:
                    decompress(data, registry)
                    library = OK
                except CodecError as error:
                    library = error.code
                response = await client.post("/decompress", content=data, headers=OCTET)
                assert response.status_code < 500, (name, response.text)
                api = OK if response.status_code == 200 else response.json()["type"].rsplit(":", 1)[-1]
                if (library, api) != ("corrupt-bitstream", "corrupt-bitstream"):
                    wrong.append(f"{width}x{height}, {name}: library {library}, API {api}")
    assert not wrong, "\n".join(wrong)


def test_a_large_av1_frame_under_the_declared_size_is_refused_before_decoding():
    """libavif decodes an AV1 frame at the size its own headers give, then fits it to the declared size: a 3 KB
    file declaring a 2x2 base over a 16384x16384 frame took 534 MiB and 2.4 s to decode. Here a 1024x1024 one."""
    data = hostile_bases(2, 2)["a 1024x1024 AV1 frame declared as the base"]
    with pytest.raises(CorruptBitstream, match="allows 1024x1024 frames; the base is 2x2"):
        BaseLayer().decode(data, (2, 2))


@pytest.mark.parametrize("reduced", [True, False], ids=["reduced", "full"])
def test_sequence_headers_may_allow_frames_up_to_twice_the_base(reduced):
    """The fewest bits for a 17x9 base allow 32x16 frames; one more bit is refused, in either header's layout
    (the full one read past its timing, decoder-model and display-delay fields as dav1d reads them)."""
    avif = BaseLayer().encode(seed_image(9, 17), 50)
    check_base(with_sequence_header(avif, sequence_header(5, 4, reduced)), 9, 17)
    with pytest.raises(CorruptBitstream, match="allows 64x16 frames"):
        check_base(with_sequence_header(avif, sequence_header(6, 4, reduced)), 9, 17)
    with pytest.raises(CorruptBitstream, match="allows 32x32 frames"):
        check_base(with_sequence_header(avif, sequence_header(5, 5, reduced)), 9, 17)
