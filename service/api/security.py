"""Optional API keys: a dependency for the protected routers; health, metrics and docs stay open."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from service.api.problems import Problem, ProblemType

API_KEY_HEADER = "X-API-Key"

_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Needed only when the server sets GANCODEC_API_KEYS.",
)


def key_matches(given: str, keys: Sequence[SecretStr]) -> bool:
    """Compare with every key in constant time, without stopping at a match, so timing reveals nothing."""
    candidate = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.get_secret_value().encode())
    return matched


async def require_api_key(request: Request, given: Annotated[str | None, Depends(_scheme)]) -> None:
    """Pass when no keys are configured, or when the header holds one of them; 401 otherwise."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    if given is None or not key_matches(given, keys):
        what = "is missing" if given is None else "is not valid"
        raise Problem(ProblemType.UNAUTHORIZED, f"the {API_KEY_HEADER} header {what}", {"WWW-Authenticate": "ApiKey"})
