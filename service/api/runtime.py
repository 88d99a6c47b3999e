"""What the endpoints share (settings, models, limiter, metrics), built at startup by the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from service.api import workers
from service.api.limiter import Limiter
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.codec import Registry


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    registry: Registry
    limiter: Limiter
    ready: bool = False
    """Models loaded and warmed up, and not shutting down."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm up the models and start the workers before the server takes requests; drain them at
    shutdown."""
    settings: Settings = app.state.settings
    registry, pool = await asyncio.to_thread(workers.start, settings)
    limiter = Limiter(
        workers=pool,
        concurrency=settings.concurrency,
        queue_size=settings.queue_size,
        queue_timeout=settings.queue_timeout,
        compute_timeout=settings.compute_timeout,
        retry_after=settings.retry_after,
        metrics=app.state.metrics,
    )
    runtime = Runtime(settings, app.state.metrics, registry, limiter, ready=True)
    app.state.runtime = runtime
    try:
        yield
    finally:
        runtime.ready = False
        await asyncio.to_thread(limiter.close)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
