"""Optional API keys, checked by a middleware before anything reads the body; health, metrics and docs stay open."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi import Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import Problem, ProblemType, render

API_KEY_HEADER = "X-API-Key"

API_KEY = Security(
    APIKeyHeader(
        name=API_KEY_HEADER,
        auto_error=False,
        description="Needed only when the server sets GANCODEC_API_KEYS.",
    )
)
"""The protected routers' dependency: it puts the key into the OpenAPI document; ApiKeyMiddleware enforces it."""


def key_matches(given: str, keys: Sequence[SecretStr]) -> bool:
    """Compare with every key in constant time, without stopping at a match, so timing reveals nothing."""
    candidate = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return matched


class ApiKeyMiddleware:
    """401 to requests for `paths` unless the header holds one of `keys` (none configured: everything passes).

    A middleware, not a dependency: FastAPI parses a form before it solves dependencies, so a 30 MB upload was
    read and parsed before its 401. This answers from the headers alone, before the body limit and load shedding.
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str], keys: Sequence[SecretStr]) -> None:
        self.app = app
        self.paths = paths
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and scope["path"] in self.paths:
            given = Headers(scope=scope).get(API_KEY_HEADER)
            if given is None or not key_matches(given, self.keys):
                what = "is missing" if given is None else "is not valid"
                detail = f"the {API_KEY_HEADER} header {what}"
                problem = Problem(ProblemType.UNAUTHORIZED, detail, {"WWW-Authenticate": "ApiKey"})
                await render(scope, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
