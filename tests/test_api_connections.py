"""Connections that misbehave, against a real `gancodec serve` (uvicorn) on 127.0.0.1: headers trickling in, more
connections than the server takes, a client leaving mid-body, HEAD probes; each bounded to a few seconds."""

from __future__ import annotations

import contextlib
import math
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from api_support import serve

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 4
SLACK = 2.0
"""Seconds a deadline may be overshot on a busy two-core machine."""


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("connections") / "server.log"
    env = {
        "GANCODEC_MODEL_DIRS": str(model_dir),
        "GANCODEC_INCLUDE_ZOO": "false",
        "GANCODEC_THREADS": "1",
        "GANCODEC_ISOLATION": "thread",
        "GANCODEC_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "GANCODEC_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with serve(env, log) as url:
        yield url, log


def _connect(url: str) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=5)


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _seconds_until_closed(started: dict[socket.socket, float], limit: float) -> list[float]:
    """Send each socket a header line every 0.2 s until the server closes it; for each, the seconds from its
    start (a time.monotonic() value) to the close, or infinity past `limit` seconds."""
    closed: dict[socket.socket, float] = {}
    end = time.monotonic() + limit
    while len(closed) < len(started) and time.monotonic() < end:
        readable, _, _ = select.select([sock for sock in started if sock not in closed], [], [], 0.2)
        for sock in readable:
            with contextlib.suppress(ConnectionResetError):
                if sock.recv(1024):
                    continue
            closed[sock] = time.monotonic() - started[sock]
        for sock in started.keys() - closed.keys():
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")
    return [closed.get(sock, math.inf) for sock in started]


def test_headers_trickling_in_are_cut_off_at_the_header_timeout(server):
    url, _ = server
    with _connect(url) as fresh, _connect(url) as reused:
        connected = time.monotonic()
        reused.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while b'"alive"' not in answer:
            answer += reused.recv(1024)
        # The next request on a kept-alive connection gets the same deadline, from its first byte.
        reused.sendall(b"GET /healthz HTTP/1.1\r\n")
        took = _seconds_until_closed({fresh: connected, reused: time.monotonic()}, HEADER_TIMEOUT + SLACK)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert all(HEADER_TIMEOUT - 0.1 < seconds < HEADER_TIMEOUT + SLACK for seconds in took), took
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_connections_beyond_the_maximum_get_503_until_idle_ones_time_out(server):
    url, _ = server
    idle = [_connect(url) for _ in range(MAX_CONNECTIONS)]
    try:
        refused = httpx.get(f"{url}/healthz", timeout=5)
    finally:
        time.sleep(HEADER_TIMEOUT + 0.2)  # they have sent nothing: the header deadline closes them
        closed = [_read_all(sock) for sock in idle]
        for sock in idle:
            sock.close()
    assert refused.status_code == 503
    assert closed == [b""] * MAX_CONNECTIONS
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_client_leaving_mid_body_is_one_quiet_log_line_and_a_499(server):
    url, log = server
    logged = len(log.read_text().splitlines())
    with _connect(url) as sock:
        head = b"POST /decompress HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        sock.sendall(head + b"Content-Length: 100000\r\n\r\n" + bytes(1000))
    deadline = time.monotonic() + 5
    while 'endpoint="/decompress",status="499"' not in (metrics := httpx.get(f"{url}/metrics", timeout=5).text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.1)
    new_lines = log.read_text().splitlines()[logged:]
    [line] = [line for line in new_lines if "/decompress" in line]
    assert line.startswith("INFO:     service.api.limits: POST /decompress: the client disconnected before the request")
    assert not [line for line in new_lines if "Traceback" in line or "ERROR" in line]
    assert 'gancodec_requests_total{endpoint="/decompress",status="500"}' not in metrics


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_probes_get_the_headers_of_get_and_no_body(server, path):
    url, _ = server
    with _connect(url) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    got = httpx.get(f"{url}{path}", timeout=5)
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert f"content-length: {len(got.content)}".encode() in head.lower()
