"""What the endpoints share (settings, models, limiter, metrics), built at startup by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request

from service.api.limiter import Limiter
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.codec import InvalidModel, Model, Registry, compress, reconstruct, unpack

logger = logging.getLogger(__name__)

WARMUP_SIZE = 64
"""Side of the image each model compresses and decodes once at startup: creates its sessions, proves it works."""


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    registry: Registry
    limiter: Limiter
    ready: bool = False
    """Models loaded and warmed up, and not shutting down."""


def load_models(settings: Settings) -> Registry:
    """Discover every model and run each once; a broken model or a missing default stops the start."""
    registry = Registry.discover(
        settings.model_dirs,
        include_zoo=settings.include_zoo,
        default_id=settings.model,
        options=settings.runtime_options,
    )
    if not len(registry):
        raise InvalidModel("no models found: set GANCODEC_MODEL_DIRS or install a model in service/zoo")
    if settings.model is not None:
        registry.get(settings.model)
    for model in registry:
        warm_up(model)
        logger.info("model %s (%s) loaded and warmed up", model.id, model.fingerprint.hex())
    return registry


def warm_up(model: Model) -> None:
    y, x = np.mgrid[0:WARMUP_SIZE, 0:WARMUP_SIZE]
    image = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    data = compress(image, model)
    reconstruct(unpack(data, max_pixels=WARMUP_SIZE**2), model)
    for graph in ("encoder", "generator"):  # measured once per model, so the first large image does not wait
        model.halo(graph)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm up the models before the server takes requests; drain the workers at shutdown."""
    settings: Settings = app.state.settings
    registry = await asyncio.to_thread(load_models, settings)
    limiter = Limiter(
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
