"""Prometheus metrics: the definitions, and the middleware that counts every HTTP exchange."""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import SCOPE_KEY, ProblemType

OTHER_ENDPOINT = "other"
"""Label for paths that are no API endpoint (404s, static assets), so clients cannot grow the label set."""

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BPP = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2)


class Metrics:
    """The service's metrics, in a registry of their own so that several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "gancodec_requests",
            "HTTP requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "gancodec_errors",
            "Problem answers, by endpoint and problem type slug.",
            ["endpoint", "type"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "gancodec_request_duration_seconds",
            "Time from request to the end of the response, by endpoint.",
            ["endpoint"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.requests_in_flight = Gauge("gancodec_requests_in_flight", "HTTP requests being served.", registry=registry)
        self.bytes_in = Counter(
            "gancodec_request_bytes", "Request body bytes received, by endpoint.", ["endpoint"], registry=registry
        )
        self.bytes_out = Counter(
            "gancodec_response_bytes", "Response body bytes sent, by endpoint.", ["endpoint"], registry=registry
        )
        self.queue_seconds = Histogram(
            "gancodec_queue_seconds",
            "Time codec jobs waited for a worker, by operation.",
            ["operation"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.compute_seconds = Histogram(
            "gancodec_compute_seconds",
            "Time codec jobs ran on a worker, by operation.",
            ["operation"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.in_flight = Gauge("gancodec_jobs_running", "Codec jobs running on a worker now.", registry=registry)
        self.queued = Gauge("gancodec_jobs_queued", "Codec jobs waiting for a worker now.", registry=registry)
        self.bits_per_pixel = Histogram(
            "gancodec_bits_per_pixel",
            "Rate of each compressed image, from the whole file's bytes, by model.",
            ["model"],
            buckets=_BPP,
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts each exchange by endpoint: status, problem type, latency, bytes in and out, requests in flight."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        endpoint = scope["path"] if scope["path"] in self.endpoints else OTHER_ENDPOINT
        status = 500

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                metrics.bytes_in.labels(endpoint).inc(len(message.get("body", b"")))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                metrics.bytes_out.labels(endpoint).inc(len(message.get("body", b"")))
            await send(message)

        started = time.perf_counter()
        metrics.requests_in_flight.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            # The error handler answers outside this middleware; it is always an internal error.
            scope[SCOPE_KEY] = ProblemType.INTERNAL_ERROR.slug
            status = 500
            raise
        finally:
            metrics.requests_in_flight.dec()
            metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
            metrics.requests.labels(endpoint, str(status)).inc()
            if status >= 400:
                metrics.errors.labels(endpoint, scope.get(SCOPE_KEY, "unclassified")).inc()
