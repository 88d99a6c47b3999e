"""Multipart fields that take one value: a second one is refused (FastAPI and Starlette would keep the last)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, UploadFile


def check_single(form: FormData, names: Iterable[str]) -> None:
    """A validation error (422 invalid-request) naming each of `names` that the form holds more than once."""
    errors = []
    for name in names:
        values = form.getlist(name)
        if len(values) > 1:
            what = "file" if all(isinstance(value, UploadFile) for value in values) else "value"
            message = f"one {what} is expected, the form has {len(values)}"
            errors.append({"type": "multiple_values", "loc": ("body", name), "msg": message, "input": None})
    if errors:
        raise RequestValidationError(errors)


def single_valued(*names: str) -> Any:
    """A route dependency: check_single on the form FastAPI parsed for the route (Starlette keeps it parsed)."""

    async def check(request: Request) -> None:
        check_single(await request.form(), names)

    return Depends(check)
