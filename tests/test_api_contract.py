"""The committed OpenAPI document is the app's, operations keep their ids, and the docs page works offline."""

from __future__ import annotations

import json
import re

import pytest
from api_support import ROOT, running, settings

from service.api.openapi import document

pytestmark = pytest.mark.anyio

OPERATIONS = {
    ("post", "/compress"): "compress",
    ("post", "/decompress"): "decompress",
    ("post", "/compare"): "compareCodecs",
    ("get", "/models"): "listModels",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}


def test_committed_openapi_matches_the_app():
    committed = (ROOT / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(document()), (
        "openapi.json is out of date: run `python -m service.api.openapi > openapi.json` and review the diff"
    )


def test_operation_ids_are_stable():
    schema = json.loads(document())
    found = {(method, path): op["operationId"] for path, item in schema["paths"].items() for method, op in item.items()}
    assert found == OPERATIONS


def test_every_error_response_is_problem_json():
    schema = json.loads(document())
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    content = response["content"]
                    assert list(content) == ["application/problem+json"], (method, path, status)
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/ProblemDetails"
                    }


async def test_swagger_ui_is_served_from_the_package_not_a_cdn(model_dir):
    async with running(settings(model_dir)) as (_, client):
        page = await client.get("/docs")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        fetched = {asset: (await client.get(asset)).status_code for asset in assets}
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert assets and all(asset.startswith("/docs/assets/") for asset in assets), assets
    assert set(fetched.values()) == {200}
