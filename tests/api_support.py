"""Helpers for the REST service's tests: settings for the tiny test models, an in-process client, a real server."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from service.api import Settings, create_app
from service.api.problems import PROBLEM_JSON, TYPE_PREFIX, ProblemType

ROOT = Path(__file__).resolve().parent.parent


def settings(*model_dirs: Path, **overrides: Any) -> Settings:
    """Only the given models (never the zoo, which may hold anything), one thread per graph."""
    return Settings(model_dirs=list(model_dirs), include_zoo=False, threads=1, **overrides)


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path, timeout: float = 90.0) -> Iterator[str]:
    """`gancodec serve` as a real uvicorn process on a free local port; yields its base URL once ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output)
    try:
        _wait_until_ready(url, process, log, timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:g} s:\n{log.read_text()}")
