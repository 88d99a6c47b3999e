"""Errors as RFC 9457 problem details (`application/problem+json`), each kind with a stable `type` URI.

Every failure the service answers goes through `render`, so clients and metrics see one vocabulary: the
codec's error codes, request validation, limits, overload and authentication alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import Scope

from service.codec import CodecError

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:gancodec:problem:"
SCOPE_KEY = "gancodec.problem"
"""Where `render` leaves the problem's slug in the ASGI scope, for the metrics middleware to count."""


class ProblemType(Enum):
    """The kinds of failure: slug (the `type` is TYPE_PREFIX + slug), HTTP status and a fixed title.

    Slugs shared with service.codec errors equal their `.code`, so a codec error maps by name. 499 (nginx's
    "client closed request") is never received by anyone: it is what the metrics count for a client that left.
    """

    MALFORMED_BODY = ("malformed-body", 400, "The request body cannot be parsed")
    UNAUTHORIZED = ("unauthorized", 401, "A valid API key is required")
    NOT_FOUND = ("not-found", 404, "No such resource")
    METHOD_NOT_ALLOWED = ("method-not-allowed", 405, "Method not allowed on this resource")
    REQUEST_TIMEOUT = ("request-timeout", 408, "The request body arrived too slowly")
    UPLOAD_TOO_LARGE = ("upload-too-large", 413, "The request body is too large")
    IMAGE_TOO_LARGE = ("image-too-large", 413, "The image has too many pixels")
    UNSUPPORTED_MEDIA_TYPE = ("unsupported-media-type", 415, "The request's Content-Type is not accepted")
    UNSUPPORTED_FORMAT = ("unsupported-format", 415, "The file format is not accepted")
    INVALID_REQUEST = ("invalid-request", 422, "The request does not match the API")
    INVALID_IMAGE = ("invalid-image", 422, "The image cannot be decoded")
    MASK_SIZE_MISMATCH = ("mask-size-mismatch", 422, "The mask or label map is not the image's size")
    INVALID_SELECTION = ("invalid-selection", 422, "The mask, label map or class names do not fit the model")
    SC_UNSUPPORTED = ("sc-unsupported", 422, "Selective compression is not available")
    CORRUPT_BITSTREAM = ("corrupt-bitstream", 422, "The bitstream is not a valid gancodec file")
    UNKNOWN_MODEL = ("unknown-model", 422, "The model is not installed")
    MODEL_MISMATCH = ("model-mismatch", 422, "The installed model of that id did not make this bitstream")
    OVERLOADED = ("overloaded", 429, "Too many requests are waiting; retry later")
    CLIENT_DISCONNECTED = ("client-disconnected", 499, "The client closed the connection before sending its body")
    INTERNAL_ERROR = ("internal-error", 500, "Internal server error")
    INFERENCE_FAILED = ("inference-failed", 500, "The model failed while running")
    QUEUE_TIMEOUT = ("queue-timeout", 503, "The request waited too long for a free worker; retry later")
    PROCESSING_TIMEOUT = ("processing-timeout", 503, "Processing took too long")
    NOT_READY = ("not-ready", 503, "The service is not ready")

    def __init__(self, slug: str, status: int, title: str) -> None:
        self.slug = slug
        self.status = status
        self.title = title

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


_BY_SLUG = {kind.slug: kind for kind in ProblemType}
_BY_HTTP_STATUS = {
    400: ProblemType.MALFORMED_BODY,
    404: ProblemType.NOT_FOUND,
    405: ProblemType.METHOD_NOT_ALLOWED,
    413: ProblemType.UPLOAD_TOO_LARGE,
}


class Problem(HTTPException):
    """A failure to answer as problem details.

    A Starlette HTTPException so that FastAPI re-raises it unchanged when it comes out of body parsing
    (the upload cap raises it from inside `receive`), instead of turning it into a generic 400.
    """

    def __init__(self, kind: ProblemType, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(kind.status, detail, dict(headers) if headers else None)
        self.kind = kind


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where the problem is, e.g. ["body", "image"].')
    msg: str
    type: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; `type` is stable, `detail` is for people."""

    type: str = Field(description=f"{TYPE_PREFIX}<slug>; the slugs are listed in docs/service.md.")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(default=None, description="Only for invalid-request: each bad field.")


def render(scope: Scope, problem: Problem, **extensions: Any) -> JSONResponse:
    """The problem+json response; also notes the slug in the scope for the metrics."""
    scope[SCOPE_KEY] = problem.kind.slug
    body = {
        "type": problem.kind.uri,
        "title": problem.kind.title,
        "status": problem.kind.status,
        "detail": problem.detail,
        **extensions,
    }
    return JSONResponse(body, status_code=problem.kind.status, headers=problem.headers, media_type=PROBLEM_JSON)


def from_codec_error(error: CodecError) -> Problem:
    """Codec errors by their stable code; codes without a client-side cause (broken model) are server errors."""
    return Problem(_BY_SLUG.get(error.code, ProblemType.INTERNAL_ERROR), str(error))


def install_handlers(app: FastAPI) -> None:
    """Route every exception FastAPI and Starlette can raise into problem details."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(CodecError, _on_codec_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


async def _on_problem(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Problem)
    return render(request.scope, error)


async def _on_codec_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CodecError)
    return render(request.scope, from_codec_error(error))


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
    detail = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in errors)
    return render(request.scope, Problem(ProblemType.INVALID_REQUEST, detail), errors=errors)


async def _on_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    kind = _BY_HTTP_STATUS.get(error.status_code)
    if kind is None:  # no status we answer on purpose: a plain RFC 9457 "about:blank" problem
        status = HTTPStatus(error.status_code)
        body = {"type": "about:blank", "title": status.phrase, "status": status.value, "detail": error.detail}
        return JSONResponse(body, status_code=status.value, headers=error.headers, media_type=PROBLEM_JSON)
    return render(request.scope, Problem(kind, str(error.detail), error.headers))


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    # Starlette logs the traceback after this handler; the client learns nothing internal.
    return render(request.scope, Problem(ProblemType.INTERNAL_ERROR, "an unexpected error occurred; it was logged"))


def responses(*kinds: ProblemType) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems an operation can answer, grouped by status."""
    by_status: dict[int, list[ProblemType]] = {}
    for kind in kinds:
        by_status.setdefault(kind.status, []).append(kind)
    return {
        status: {
            "description": "Problem types: " + ", ".join(kind.slug for kind in group),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
        for status, group in sorted(by_status.items())
    }


def add_schemas(openapi: dict[str, Any]) -> None:
    """Put ProblemDetails (and what it refers to) into the document's components, where `responses` point."""
    schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas["ProblemDetails"] = schema
