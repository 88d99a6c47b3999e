"""The application factory: settings in, a FastAPI app out (models load when its lifespan starts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from service.api import problems
from service.api.docs import install_docs
from service.api.limits import BodyLimitMiddleware, ShedLoadMiddleware
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.routers import codec, compare, health, metrics, models, web
from service.api.runtime import lifespan
from service.api.security import API_KEY, ApiKeyMiddleware
from service.api.settings import Settings

API_VERSION = "0.2.0"
"""The contract's version (openapi.json), not the package's: bump it when the API changes."""
LIMITED_PATHS = frozenset({"/compress", "/decompress", "/compare"})
"""The endpoints whose work runs on the limiter's workers, refused at once while it is saturated."""

_TAGS = [
    {
        "name": "codec",
        "description": "Compress images to .gcx bitstreams and back; compare with classical codecs. "
        "Needs X-API-Key when keys are set.",
    },
    {"name": "models", "description": "The installed models. Needs X-API-Key when keys are set."},
    {"name": "health", "description": "Probes for orchestrators and load balancers; always open."},
    {"name": "metrics", "description": "Prometheus metrics; always open."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; without `settings`, they are read from the GANCODEC_* environment variables."""
    settings = settings or Settings()
    app = FastAPI(
        title="gancodec",
        version=API_VERSION,
        summary="Extreme generative image compression (Agustsson et al. 2019) over HTTP.",
        openapi_tags=_TAGS,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    problems.install_handlers(app)
    routers = [module.router for module in (codec, compare, models, health, metrics, web)]
    for router in routers:
        app.include_router(router)
    install_docs(app)
    endpoints = _paths(routers)
    protected = _paths(router for router in routers if API_KEY in router.dependencies)
    # The middleware added last runs outermost: the metrics also count the others' answers, the key is checked
    # before any of the body is read, and the body limit also bounds what load shedding drains.
    app.add_middleware(ShedLoadMiddleware, paths=LIMITED_PATHS)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, read_timeout=settings.read_timeout)
    app.add_middleware(ApiKeyMiddleware, paths=protected, keys=settings.api_keys)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, endpoints=endpoints)
    app.openapi = _completed_openapi(app)
    return app


def _paths(routers: Iterable[APIRouter]) -> frozenset[str]:
    return frozenset(route.path for router in routers for route in router.routes if isinstance(route, APIRoute))


def _completed_openapi(app: FastAPI) -> Any:
    """app.openapi, plus the ProblemDetails schema the error responses refer to, and binary marks."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            problems.add_schemas(schema)
            _mark_binary(schema)
        assert app.openapi_schema is not None
        return app.openapi_schema

    return openapi


def _mark_binary(node: Any) -> None:
    """Add OpenAPI 3.0's `format: binary` beside 3.1's contentMediaType: client generators look for the former."""
    if isinstance(node, dict):
        if node.get("contentMediaType") == "application/octet-stream" and node.get("type") == "string":
            node["format"] = "binary"
        for value in node.values():
            _mark_binary(value)
    elif isinstance(node, list):
        for value in node:
            _mark_binary(value)
