"""Every failure is problem+json with a stable type, and bad input never gets a 5xx.

The limiter's problems (overloaded, queue-timeout, processing-timeout, not-ready) are in test_api_limiter.py,
unauthorized in test_api_security.py.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import anyio
import pytest
from api_support import ROOT, assert_problem, encode, running, settings

from service.api.problems import ProblemType
from service.codec import InferenceError, Model, compress, load_manifest

pytestmark = pytest.mark.anyio

OCTET = {"content-type": "application/octet-stream"}
FORM = {"content-type": "multipart/form-data; boundary=b"}
PART = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
"""The start of a valid multipart body (boundary `b`), for bodies that stall or grow past the cap inside a file."""


def _bitstream(model_dir: Path, pixels) -> bytes:
    return compress(pixels, Model(load_manifest(model_dir)))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size with no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


async def test_unknown_paths_and_methods(model_dir):
    async with running(settings(model_dir)) as (_, client):
        assert_problem(await client.get("/nope"), "not-found")
        wrong_method = await client.get("/compress")
    assert_problem(wrong_method, "method-not-allowed")
    assert wrong_method.headers["allow"] == "POST"


async def test_request_validation_errors_name_the_field(model_dir, make_image):
    bitstream = _bitstream(model_dir, make_image(20, 20))
    image = {"image": ("a.png", encode(make_image(20, 20)))}
    async with running(settings(model_dir)) as (_, client):
        missing = await client.post("/compress", data={"model": "gc-tiny"})
        bad_format = await client.post("/decompress", params={"format": "gif"}, content=bitstream, headers=OCTET)
        no_labels = await client.post("/compress", files=image, data={"synthesize": ["sky"]})
        no_field = await client.post("/decompress", files={"other": ("a.gcx", bitstream)})
    assert assert_problem(missing, "invalid-request")["errors"] == [
        {"loc": ["body", "image"], "msg": "Field required", "type": "missing"}
    ]
    assert assert_problem(bad_format, "invalid-request")["errors"][0]["loc"] == ["query", "format"]
    assert "labels" in assert_problem(no_labels, "invalid-request")["detail"]
    assert "bitstream" in assert_problem(no_field, "invalid-request")["detail"]


async def test_a_field_that_takes_one_value_refuses_a_second_instead_of_keeping_the_last(model_dir, make_image):
    first, second = ("a.png", encode(make_image(20, 30))), ("b.png", encode(make_image(30, 20)))
    bitstream = ("a.gcx", _bitstream(model_dir, make_image(20, 20)))
    sent = {
        "image": ("/compress", [("image", first), ("image", second)], {}),
        "mask": ("/compress", [("image", first), ("mask", first), ("mask", first)], {}),
        "labels": ("/compress", [("image", first), ("labels", first), ("labels", first)], {}),
        "model": ("/compress", [("image", first)], {"model": ["gc-tiny", "gc-tiny"]}),
        "target_bytes": ("/compare", [("image", first)], {"target_bytes": ["100", "200"]}),
        "bitstream": ("/decompress", [("bitstream", bitstream), ("bitstream", bitstream)], {}),
    }
    async with running(settings(model_dir)) as (_, client):
        answers = {field: await client.post(url, files=files, data=data) for field, (url, files, data) in sent.items()}
    for field, answer in answers.items():
        what = "value" if field in ("model", "target_bytes") else "file"
        assert assert_problem(answer, "invalid-request")["errors"] == [
            {"loc": ["body", field], "msg": f"one {what} is expected, the form has 2", "type": "multiple_values"}
        ], field


async def test_unparseable_multipart_is_a_malformed_body(model_dir):
    async with running(settings(model_dir)) as (_, client):
        for url in ("/compress", "/decompress"):
            response = await client.post(url, content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
            assert_problem(response, "malformed-body")


async def test_body_over_the_cap_is_refused_whether_declared_or_streamed(model_dir):
    async def chunks(first: bytes = b""):
        yield first
        for _ in range(10):
            yield bytes(200)

    async with running(settings(model_dir, max_upload_bytes=1000)) as (_, client):
        declared = await client.post("/decompress", content=bytes(1001), headers=OCTET)
        streamed = await client.post("/decompress", content=chunks(), headers=OCTET)
        # FastAPI's own form parsing must pass the cap's problem through, not turn it into a 400.
        streamed_form = await client.post("/compress", content=chunks(PART), headers=FORM)
        metrics = (await client.get("/metrics")).text
    assert "1001 bytes" in assert_problem(declared, "upload-too-large")["detail"]
    assert "content-length" not in streamed.request.headers
    assert "at least 1200 bytes" in assert_problem(streamed, "upload-too-large")["detail"]
    assert_problem(streamed_form, "upload-too-large")
    # Nothing past the cap was read from the declared body.
    assert 'gancodec_request_bytes_total{endpoint="/decompress"} 1200.0' in metrics


async def test_slow_body_times_out(model_dir):
    async def trickle(first: bytes):
        yield first
        await anyio.sleep(2)
        yield b"never read"

    async with running(settings(model_dir, read_timeout=0.2)) as (_, client):
        for url, start, headers in (("/decompress", b"GCX", OCTET), ("/compress", PART, FORM)):
            assert_problem(await client.post(url, content=trickle(start), headers=headers), "request-timeout")


async def test_formats_are_judged_by_magic_bytes(model_dir, make_image):
    pixels = make_image(20, 20)
    async with running(settings(model_dir)) as (_, client):
        gif = await client.post("/compress", files={"image": ("a.png", b"GIF89a" + bytes(40), "image/png")})
        jpeg_mask = await client.post(
            "/compress", files={"image": ("a.png", encode(pixels)), "mask": ("m.jpg", encode(pixels, "JPEG"))}
        )
        text_body = await client.post("/decompress", content=b"GCX", headers={"content-type": "text/plain"})
    assert assert_problem(gif, "unsupported-format")["detail"].startswith("image: ")
    assert "mask: must be a PNG" in assert_problem(jpeg_mask, "unsupported-format")["detail"]
    assert_problem(text_body, "unsupported-media-type")


async def test_pixel_caps_are_checked_from_headers(model_dir, make_image):
    pixels = make_image(40, 50)
    bitstream = _bitstream(model_dir, pixels)
    async with running(settings(model_dir, max_pixels=1999)) as (_, client):
        image = await client.post("/compress", files={"image": ("a.png", encode(pixels))})
        claimed = await client.post("/compress", files={"image": ("a.png", _png_claiming(100_000, 100_000))})
        stream = await client.post("/decompress", content=bitstream, headers=OCTET)
    assert "50x40" in assert_problem(image, "image-too-large")["detail"]
    assert_problem(claimed, "image-too-large")
    assert "50x40" in assert_problem(stream, "image-too-large")["detail"]


async def test_undecodable_image_is_invalid(model_dir, make_image):
    data = encode(make_image(64, 64))
    async with running(settings(model_dir)) as (_, client):
        response = await client.post("/compress", files={"image": ("a.png", data[: len(data) // 2])})
    assert_problem(response, "invalid-image")


async def test_masks_and_label_maps(model_dir, make_image):
    image = ("a.png", encode(make_image(20, 30)))
    same_size = ("m.png", encode(make_image(20, 30)))
    async with running(settings(model_dir)) as (_, client):
        mismatch = await client.post("/compress", files={"image": image, "mask": ("m.png", encode(make_image(30, 20)))})
        mask = await client.post("/compress", files={"image": image, "mask": same_size})
        labels = await client.post("/compress", files={"image": image, "labels": same_size}, data={"synthesize": "1"})
    assert "mask: is 20x30, the image 30x20" in assert_problem(mismatch, "mask-size-mismatch")["detail"]
    for response in (mask, labels):
        assert "supports only gc" in assert_problem(response, "sc-unsupported")["detail"]


async def test_corrupt_bitstreams(model_dir, make_image):
    flipped = bytearray(_bitstream(model_dir, make_image(20, 20)))
    flipped[-6] ^= 0xFF
    async with running(settings(model_dir)) as (_, client):
        for data in (b"", b"not a gancodec file", bytes(flipped)):
            assert_problem(await client.post("/decompress", content=data, headers=OCTET), "corrupt-bitstream")


async def test_models_that_are_not_installed(model_dir, other_model_dir, noisy_model_dir, make_image):
    pixels = make_image(20, 20)
    async with running(settings(model_dir)) as (_, client):
        named = await client.post("/compress", files={"image": ("a.png", encode(pixels))}, data={"model": "nope"})
        absent = await client.post("/decompress", content=_bitstream(noisy_model_dir, pixels), headers=OCTET)
        other = await client.post("/decompress", content=_bitstream(other_model_dir, pixels), headers=OCTET)
    assert "'nope' is not installed" in assert_problem(named, "unknown-model")["detail"]
    assert "gc-tiny-noise" in assert_problem(absent, "unknown-model")["detail"]
    assert "different model" in assert_problem(other, "model-mismatch")["detail"]


async def test_server_faults_are_problems_without_internals(model_dir, make_image, monkeypatch):
    image = {"image": ("a.png", encode(make_image(20, 20)))}
    async with running(settings(model_dir)) as (_, client):
        bitstream = (await client.post("/compress", files=image)).content

        def broken(*args, **kwargs):
            raise RuntimeError("secret internal state")

        def failing(self, latent):
            raise InferenceError("model gc-tiny: the generator failed: out of memory")

        monkeypatch.setattr("service.api.routers.codec.compress", broken)
        monkeypatch.setattr(Model, "generate", failing)
        crashed = await client.post("/compress", files=image)
        inference = await client.post("/decompress", content=bitstream, headers=OCTET)
    assert "secret" not in assert_problem(crashed, "internal-error")["detail"]
    assert_problem(inference, "inference-failed")


def test_every_problem_type_is_exercised_and_documented():
    tests = "".join(path.read_text() for path in (ROOT / "tests").glob("test_api_*.py"))
    docs = (ROOT / "docs" / "service.md").read_text()
    for kind in ProblemType:
        assert f'"{kind.slug}"' in tests, f"no test answers {kind.slug}"
        assert re.search(rf"`{kind.slug}`.*\b{kind.status}\b", docs), (
            f"docs/service.md lacks {kind.slug} ({kind.status})"
        )
