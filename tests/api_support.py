"""Helpers for the REST service's tests: settings for the tiny test models, an in-process client, a real server."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from bench.load import Server
from service.api import Settings, create_app
from service.api.problems import PROBLEM_JSON, TYPE_PREFIX, ProblemType

ROOT = Path(__file__).resolve().parent.parent


def settings(*model_dirs: Path, **overrides: Any) -> Settings:
    """Only the given models (never the zoo, which may hold anything), one thread per graph; jobs in threads
    unless `isolation` says otherwise (worker processes take a start each: test_api_isolation.py tests them)."""
    defaults: dict[str, Any] = {"include_zoo": False, "threads": 1, "isolation": "thread"}
    return Settings(model_dirs=list(model_dirs), **(defaults | overrides))


@contextlib.asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, with its lifespan (model loading) run around it."""
    async with app.router.lifespan_context(app):
        # App errors come back as the 500 answers a client would see, not as exceptions in the test.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gancodec.test") as client:
            yield client


@contextlib.asynccontextmanager
async def running(service_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(service_settings)
    async with client_for(app) as client:
        yield app, client


async def abandon(app: FastAPI, path: str, content_type: str, sent: bytes) -> list[dict[str, Any]]:
    """POST `sent`, the first half of the body declared, then disconnect, as a client that gives up mid-body does;
    the ASGI messages the app sent back (which a server would drop)."""
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(2 * len(sent)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gancodec.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    incoming = [{"type": "http.request", "body": sent, "more_body": True}, {"type": "http.disconnect"}]
    sent_back: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if len(incoming) > 1 else incoming[0]

    async def send(message: dict[str, Any]) -> None:
        sent_back.append(message)

    await app(scope, receive, send)
    return sent_back


def assert_problem(response: httpx.Response, slug: str) -> dict[str, Any]:
    """The response is the problem+json of that type, with its status and title; returns the body."""
    kind = next(kind for kind in ProblemType if kind.slug == slug)
    assert (response.status_code, response.headers.get("content-type")) == (kind.status, PROBLEM_JSON), response.text
    body = response.json()
    assert body["type"] == TYPE_PREFIX + slug and body["status"] == kind.status and body["title"] == kind.title
    assert body["detail"]
    return body


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path, timeout: float = 90.0) -> Iterator[str]:
    """`gancodec serve` as a real uvicorn process on a free local port (bench.load's Server, which the load
    benchmark drives too); yields its base URL once ready."""
    server = Server(env, log)
    try:
        server.wait_ready(timeout)
        yield server.url
    finally:
        server.stop(timeout=15)
