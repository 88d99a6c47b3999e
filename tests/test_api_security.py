"""Optional API keys: several accepted for rotation, compared in constant time; probes, metrics and docs stay open."""

from __future__ import annotations

import pytest
from api_support import assert_problem, encode, running, settings
from pydantic import SecretStr

from service.api.limiter import Limiter
from service.api.security import key_matches
from service.api.settings import Settings

pytestmark = pytest.mark.anyio

KEYS = "old-key,new-key"


async def test_without_configured_keys_everything_is_open(model_dir):
    async with running(settings(model_dir)) as (_, client):
        assert (await client.get("/models")).status_code == 200


async def test_protected_endpoints_need_one_of_the_keys(model_dir, make_image, monkeypatch):
    monkeypatch.setenv("GANCODEC_API_KEYS", KEYS)
    image = {"image": ("a.png", encode(make_image(20, 20)))}
    async with running(settings(model_dir)) as (_, client):
        missing = await client.post("/compress", files=image)
        wrong = await client.get("/models", headers={"X-API-Key": "older-key"})
        accepted = [await client.get("/models", headers={"X-API-Key": key}) for key in KEYS.split(",")]
        compressed = await client.post("/compress", files=image, headers={"X-API-Key": "new-key"})
        decompress = await client.post(
            "/decompress", content=compressed.content, headers={"content-type": "application/octet-stream"}
        )
    assert "missing" in assert_problem(missing, "unauthorized")["detail"]
    assert "not valid" in assert_problem(wrong, "unauthorized")["detail"]
    assert missing.headers["www-authenticate"] == "ApiKey"
    assert [response.status_code for response in accepted] == [200, 200]
    assert compressed.status_code == 200
    assert_problem(decompress, "unauthorized")


async def test_the_key_is_checked_before_any_of_the_body_is_read(model_dir, monkeypatch):
    monkeypatch.setenv("GANCODEC_API_KEYS", KEYS)
    read = 0

    async def body():
        nonlocal read
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(30):
            read += 1
            yield bytes(1 << 20)

    form = {"content-type": "multipart/form-data; boundary=b"}
    async with running(settings(model_dir)) as (_, client):
        answers = [await client.post(path, content=body(), headers=form) for path in ("/compress", "/compare")]
        monkeypatch.setattr(Limiter, "saturated", True)  # load shedding would drain the body before its 429
        answers.append(await client.post("/compress", content=body(), headers=form))
    assert read == 0
    for answer in answers:
        assert_problem(answer, "unauthorized")


async def test_probes_metrics_and_docs_need_no_key(model_dir, monkeypatch):
    monkeypatch.setenv("GANCODEC_API_KEYS", KEYS)
    async with running(settings(model_dir)) as (_, client):
        for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


def test_keys_are_compared_against_every_configured_key():
    keys = [SecretStr("a" * 32), SecretStr("b" * 32)]
    assert key_matches("b" * 32, keys)
    assert not key_matches("b" * 31, keys)
    assert not key_matches("", keys)
    assert not key_matches("anything", [])


def test_keys_come_from_a_comma_separated_variable_and_stay_secret(monkeypatch):
    monkeypatch.setenv("GANCODEC_API_KEYS", " k1 , k2,,")
    configured = Settings()
    assert [key.get_secret_value() for key in configured.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(configured)
