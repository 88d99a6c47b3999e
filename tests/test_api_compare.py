"""POST /compare in-process: AVIF, WebP and JPEG at about a byte count, and its errors as problem+json."""

from __future__ import annotations

import base64
import io
import threading

import anyio
import numpy as np
import pytest
from api_support import assert_problem, encode, running, settings
from PIL import Image

from service.api import baselines
from service.codec import bits_per_pixel, decode_image

pytestmark = pytest.mark.anyio


def _image(make_image, height=64, width=96):
    return ("a.png", encode(make_image(height, width)), "image/png")


async def test_each_codec_gets_the_highest_quality_that_fits_the_bitstream_bytes(model_dir, make_image):
    pixels = make_image(64, 96)
    async with running(settings(model_dir)) as (_, client):
        compressed = await client.post("/compress", files={"image": _image(make_image)})
        # The tiny test model's files are ~100 bytes, below any classical codec; give them room to choose.
        target = 4 * len(compressed.content) + 1500
        response = await client.post("/compare", files={"image": _image(make_image)}, data={"target_bytes": target})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"], body["target_bytes"]) == (96, 64, target)
    assert [result["codec"] for result in body["results"]] == ["avif", "webp", "jpeg"]
    for result in body["results"]:
        encoder = baselines.ENCODERS[result["codec"]]
        file = base64.b64decode(result["file"])
        assert result["media_type"] == encoder.media_type
        assert result["bytes"] == len(file) <= target and not result["over_target"]
        assert result["bpp"] == pytest.approx(bits_per_pixel(len(file), 96, 64))
        # The highest quality that fits: one step up no longer does.
        quality = result["quality"]
        assert quality in encoder.qualities
        if quality != encoder.qualities[-1]:
            assert len(baselines.encode_at(pixels, result["codec"], quality + 1)) > target
        with Image.open(io.BytesIO(file), formats=[encoder.pillow_format]) as image:
            shown = np.asarray(image.convert("RGB"))
        png = decode_image(base64.b64decode(result["png"]))
        assert png.format == "PNG"
        np.testing.assert_array_equal(png.pixels, shown)
        assert result["psnr"] == pytest.approx(baselines.psnr(pixels, shown), abs=1e-3)
        assert 10 < result["psnr"] < 100


async def test_a_budget_below_the_lowest_quality_gives_the_lowest_quality_marked_over_target(model_dir, make_image):
    async with running(settings(model_dir)) as (_, client):
        response = await client.post(
            "/compare",
            files={"image": _image(make_image)},
            data={"target_bytes": 1, "codecs": ["jpeg", "webp", "jpeg"]},
        )
        exposition = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["codec"] for result in results] == ["jpeg", "webp"]  # the order asked, duplicates dropped
    for result in results:
        assert result["over_target"] and result["bytes"] > 1
        assert result["quality"] == baselines.ENCODERS[result["codec"]].qualities[0]
    assert 'gancodec_compute_seconds_count{operation="compare"} 1.0' in exposition


async def test_decoded_false_leaves_out_the_pngs(model_dir, make_image):
    async with running(settings(model_dir)) as (_, client):
        response = await client.post(
            "/compare",
            files={"image": _image(make_image)},
            data={"target_bytes": "2000", "codecs": "webp", "decoded": "false"},
        )
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["png"] is None and len(base64.b64decode(result["file"])) == result["bytes"]


async def test_an_image_larger_than_a_codec_allows_is_refused_before_encoding(model_dir):
    wide = ("a.png", encode(np.zeros((1, 16384, 3), np.uint8)), "image/png")  # WebP stops at 16383 pixels a side
    async with running(settings(model_dir)) as (_, client):
        refused = await client.post("/compare", files={"image": wide}, data={"target_bytes": 99})
        others = await client.post(
            "/compare",
            files={"image": wide},
            data={"target_bytes": 99, "codecs": ["avif", "jpeg"]},
        )
    assert "webp 16383" in assert_problem(refused, "image-too-large")["detail"]
    assert others.status_code == 200, others.text
    assert baselines.too_large(baselines.CODECS, 65501, 1) == ["webp", "jpeg"]
    assert baselines.too_large(baselines.CODECS, 1, 65537) == ["avif", "webp", "jpeg"]


def test_search_quality_bisects_for_the_largest_fitting_quality():
    calls = []

    def encode(quality: int) -> bytes:
        calls.append(quality)
        return bytes(10 * quality)

    assert baselines.search_quality(encode, range(0, 101), 455) == (45, bytes(450))
    assert len(calls) <= 8
    calls.clear()
    assert baselines.search_quality(encode, range(1, 96), 5) == (1, bytes(10))  # nothing fits: the lowest
    assert calls == [1]  # found out with one encoding: the usual case at a generative codec's rates
    assert baselines.search_quality(encode, range(1, 96), 10_000)[0] == 95
    assert baselines.search_quality(encode, range(1, 96), 10)[0] == 1


@pytest.mark.parametrize(
    ("files", "data", "slug"),
    [
        ({"image": ("a.txt", b"hello, not an image", "text/plain")}, {"target_bytes": "100"}, "unsupported-format"),
        ({"image": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "image/png")}, {"target_bytes": "100"}, "invalid-image"),
        ({"image": ("a.png", b"", "image/png")}, {"target_bytes": "100"}, "invalid-image"),
        ("ok", {}, "invalid-request"),
        ("ok", {"target_bytes": "0"}, "invalid-request"),
        ("ok", {"target_bytes": "lots"}, "invalid-request"),
        ("ok", {"target_bytes": str(2**40)}, "invalid-request"),
        ("ok", {"target_bytes": "100", "codecs": "heic"}, "invalid-request"),
        (None, {"target_bytes": "100"}, "invalid-request"),
    ],
)
async def test_bad_requests_are_problems(model_dir, make_image, files, data, slug):
    if files == "ok":
        files = {"image": _image(make_image, 16, 16)}
    async with running(settings(model_dir)) as (_, client):
        response = await client.post("/compare", files=files or {"other": ("x", b"x")}, data=data)
    body = assert_problem(response, slug)
    if slug == "invalid-request":
        assert body["errors"]


async def test_the_pixel_cap_is_checked_from_the_header(model_dir, make_image):
    async with running(settings(model_dir, max_pixels=32 * 32)) as (_, client):
        response = await client.post("/compare", files={"image": _image(make_image, 40, 40)}, data={"target_bytes": 99})
    assert "image:" in assert_problem(response, "image-too-large")["detail"]


async def test_the_upload_cap_and_api_keys_apply(model_dir, make_image):
    async with running(settings(model_dir, api_keys="k1", max_upload_bytes=4096)) as (_, client):
        refused = await client.post("/compare", files={"image": _image(make_image, 16, 16)}, data={"target_bytes": 9})
        large = await client.post(
            "/compare",
            files={"image": ("a.png", bytes(8192), "image/png")},
            data={"target_bytes": 9},
            headers={"X-API-Key": "k1"},
        )
        allowed = await client.post(
            "/compare",
            files={"image": _image(make_image, 16, 16)},
            data={"target_bytes": 9},
            headers={"X-API-Key": "k1"},
        )
    assert_problem(refused, "unauthorized")
    assert_problem(large, "upload-too-large")
    assert allowed.status_code == 200, allowed.text


async def test_an_overloaded_server_refuses_with_429(model_dir, make_image):
    release = threading.Event()
    async with running(settings(model_dir, queue_size=0, retry_after=4)) as (app, client):
        limiter = app.state.runtime.limiter
        try:
            async with anyio.create_task_group() as group:
                # The only worker is busy, nothing may queue.
                group.start_soon(limiter.run, "test", lambda models: release.wait())
                with anyio.fail_after(5):
                    while limiter.running == 0:
                        await anyio.sleep(0.01)
                files = {"image": _image(make_image, 16, 16)}
                response = await client.post("/compare", files=files, data={"target_bytes": 9})
                release.set()
        finally:
            release.set()
    assert_problem(response, "overloaded")
    assert response.headers["retry-after"] == "4"
