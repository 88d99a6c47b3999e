"""POST /compress and /decompress in-process: round trips, the response headers, formats, model choice."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from api_support import encode, running, settings

from service.codec import Model, Registry, bits_per_pixel, decode_image, decompress, load_manifest

pytestmark = pytest.mark.anyio

OCTET = {"content-type": "application/octet-stream"}


async def test_compress_then_decompress_round_trips_an_image(model_dir, make_image):
    pixels = make_image(40, 50)
    async with running(settings(model_dir)) as (_, client):
        compressed = await client.post("/compress", files={"image": ("a.png", encode(pixels), "image/png")})
        assert compressed.status_code == 200, compressed.text
        bitstream = compressed.content
        decompressed = await client.post("/decompress", content=bitstream, headers=OCTET)
    assert compressed.headers["content-type"] == "application/octet-stream"
    assert compressed.headers["etag"] == f'"{hashlib.sha256(bitstream).hexdigest()}"'
    for response in (compressed, decompressed):
        assert response.headers["gancodec-model"] == "gc-tiny"
        assert (response.headers["gancodec-width"], response.headers["gancodec-height"]) == ("50", "40")
        assert response.headers["gancodec-bytes"] == str(len(bitstream))
        assert float(response.headers["gancodec-bpp"]) == pytest.approx(bits_per_pixel(len(bitstream), 50, 40))
    assert decompressed.status_code == 200 and decompressed.headers["content-type"] == "image/png"
    # The service decodes exactly what the library does with the same model.
    expected = decompress(bitstream, Registry([Model(load_manifest(model_dir))]))
    np.testing.assert_array_equal(decode_image(decompressed.content).pixels, expected)


async def test_decompress_takes_a_multipart_field_and_answers_lossless_webp(model_dir, make_image):
    async with running(settings(model_dir)) as (_, client):
        bitstream = (await client.post("/compress", files={"image": ("a.png", encode(make_image(33, 17)))})).content
        png = await client.post("/decompress", files={"bitstream": ("a.gcx", bitstream)})
        webp = await client.post("/decompress", params={"format": "webp"}, files={"bitstream": ("a.gcx", bitstream)})
    assert png.status_code == webp.status_code == 200
    assert webp.headers["content-type"] == "image/webp"
    decoded = decode_image(webp.content)
    assert decoded.format == "WEBP"
    np.testing.assert_array_equal(decoded.pixels, decode_image(png.content).pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
async def test_jpeg_and_webp_uploads_are_compressed(model_dir, make_image, fmt):
    async with running(settings(model_dir)) as (_, client):
        response = await client.post("/compress", files={"image": ("a", encode(make_image(24, 36), fmt))})
    assert response.status_code == 200, response.text
    assert (response.headers["gancodec-width"], response.headers["gancodec-height"]) == ("36", "24")


async def test_detail_restoration_is_on_unless_the_form_turns_it_off(model_dir, make_image):
    image = encode(make_image(40, 50))
    async with running(settings(model_dir)) as (_, client):
        default = await client.post("/compress", files={"image": ("a.png", image)})
        plain = await client.post("/compress", files={"image": ("a.png", image)}, data={"detail": "false"})
        refused = await client.post("/compress", files={"image": ("a.png", image)}, data={"detail": "maybe"})
    assert default.content[3] == 3 and plain.content[3] == 1
    assert len(default.content) == len(plain.content) + 3  # a count byte and two bands for 40x50
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"


async def test_compressing_twice_gives_the_same_bytes_and_etag(model_dir, make_image):
    image = encode(make_image(20, 20))
    async with running(settings(model_dir)) as (_, client):
        first, second = [await client.post("/compress", files={"image": ("a.png", image)}) for _ in range(2)]
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]


async def test_several_models_need_the_model_field_or_a_configured_default(model_dir, noisy_model_dir, make_image):
    image = {"image": ("a.png", encode(make_image(20, 20)))}
    async with running(settings(model_dir, noisy_model_dir)) as (_, client):
        unnamed = await client.post("/compress", files=image)
        named = await client.post("/compress", files=image, data={"model": "gc-tiny-noise"})
        listing = (await client.get("/models")).json()
        back = await client.post("/decompress", content=named.content, headers=OCTET)
    assert unnamed.status_code == 422 and "several models" in unnamed.json()["detail"]
    assert named.status_code == 200 and named.headers["gancodec-model"] == "gc-tiny-noise"
    assert back.status_code == 200
    assert [(entry["id"], entry["default"]) for entry in listing] == [("gc-tiny", False), ("gc-tiny-noise", False)]
    async with running(settings(model_dir, noisy_model_dir, model="gc-tiny-noise")) as (_, client):
        response = await client.post("/compress", files=image)
    assert response.headers["gancodec-model"] == "gc-tiny-noise"


async def test_models_lists_what_the_manifest_says(model_dir):
    async with running(settings(model_dir)) as (_, client):
        response = await client.get("/models")
    [entry] = response.json()
    manifest = load_manifest(model_dir)
    assert entry["id"] == "gc-tiny" and entry["default"] is True and entry["modes"] == ["gc"]
    assert entry["fingerprint"] == manifest.fingerprint().hex()
    assert entry["levels"] == len(manifest.centres) and entry["downsampling"] == manifest.downsampling
    assert entry["max_bits_per_pixel"] == pytest.approx(manifest.latent_channels * np.log2(len(manifest.centres)) / 256)
    assert entry["graph_bytes"]["generator"] == manifest.graph_files["generator"].stat().st_size
    assert entry["metrics"] == {"seed": 0}
