"""Against a real `gancodec serve` (uvicorn) on 127.0.0.1: HTTP round trip, limits on the wire, a client generated
from the committed openapi.json, and schemathesis fuzzing the schema."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from api_support import ROOT, assert_problem, encode, serve
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.codec import decode_image

API_KEY = "test-key"
KEY_HEADER = {"X-API-Key": API_KEY}
MAX_UPLOAD_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "GANCODEC_MODEL_DIRS": str(model_dir),
        "GANCODEC_INCLUDE_ZOO": "false",
        "GANCODEC_THREADS": "1",
        "GANCODEC_API_KEYS": f"old-key,{API_KEY}",
        "GANCODEC_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    }
    with serve(env, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def test_round_trip_over_http(server, make_image):
    pixels = make_image(48, 64)
    with httpx.Client(base_url=server, headers=KEY_HEADER, timeout=30) as client:
        compressed = client.post("/compress", files={"image": ("a.png", encode(pixels), "image/png")})
        assert compressed.status_code == 200, compressed.text
        decompressed = client.post("/decompress", files={"bitstream": ("a.gcx", compressed.content)})
    assert decompressed.status_code == 200 and decompressed.headers["content-type"] == "image/png"
    assert decode_image(decompressed.content).pixels.shape == (48, 64, 3)


def test_declared_oversized_upload_is_refused_before_it_is_read(server):
    with httpx.Client(base_url=server, headers=KEY_HEADER, timeout=30) as client:
        response = client.post(
            "/decompress", content=bytes(MAX_UPLOAD_BYTES + 1), headers={"content-type": "application/octet-stream"}
        )
    assert_problem(response, "upload-too-large")


def test_generated_client_round_trips_an_image(server, make_image, tmp_path, monkeypatch):
    # The image responses are plain bytes to the generator; no post-hooks (they would run ruff on the client).
    config = tmp_path / "client.json"
    overrides = {"image/png": "application/octet-stream", "image/webp": "application/octet-stream"}
    config.write_text(json.dumps({"content_type_overrides": overrides, "post_hooks": []}))
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(ROOT / "openapi.json"),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(tmp_path / "gancodec_client"),
        ],
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    client_module = importlib.import_module("gancodec_client")
    compress = importlib.import_module("gancodec_client.api.codec.compress")
    decompress = importlib.import_module("gancodec_client.api.codec.decompress")
    list_models = importlib.import_module("gancodec_client.api.models.list_models")
    models = importlib.import_module("gancodec_client.models")
    types = importlib.import_module("gancodec_client.types")

    client = client_module.AuthenticatedClient(base_url=server, token=API_KEY, prefix="", auth_header_name="X-API-Key")
    png = encode(make_image(40, 56))

    def image() -> object:
        return types.File(payload=io.BytesIO(png), file_name="a.png", mime_type="image/png")

    with client:
        assert [model.id for model in list_models.sync(client=client)] == ["gc-tiny"]
        compressed = compress.sync_detailed(client=client, body=models.BodyCompress(image=image()))
        assert compressed.status_code == 200 and compressed.headers["gancodec-model"] == "gc-tiny"
        bitstream = compressed.parsed.payload.read()
        raw = decompress.sync_detailed(client=client, body=types.File(payload=io.BytesIO(bitstream)))
        form = models.DecompressFilesDecompressForm(bitstream=types.File(payload=io.BytesIO(bitstream), file_name="a"))
        webp = decompress.sync_detailed(client=client, body=form, format_=models.DecompressFormat.WEBP)
        refused = compress.sync_detailed(client=client, body=models.BodyCompress(image=image(), model="nope"))
    png_pixels = decode_image(raw.parsed.payload.read()).pixels
    assert png_pixels.shape == (40, 56, 3)
    np.testing.assert_array_equal(decode_image(webp.parsed.payload.read()).pixels, png_pixels)
    assert refused.status_code == 422 and refused.parsed.type_ == "urn:gancodec:problem:unknown-model"


schema = schemathesis.openapi.from_path(ROOT / "openapi.json")


@schema.parametrize()
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_errors(case, server):
    case.call_and_validate(
        base_url=server,
        headers=KEY_HEADER,
        timeout=30,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
