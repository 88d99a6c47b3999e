"""The request body cap and read deadline, enforced below the app so nothing parses more than the cap; and load
shedding, which refuses work while the server is saturated before any of it is parsed."""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import Problem, ProblemType, render

logger = logging.getLogger(__name__)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` and bodies slower than `read_timeout` seconds in all.

    A declared Content-Length over the cap is answered 413 at once, without reading a byte; chunked or
    understated bodies are counted as they arrive and stopped at the first byte over the cap, so the
    multipart parser never sees more than `max_bytes`. A client that disconnects mid-body is a client-side
    outcome (499, one log line), not the traceback and 500 that Starlette's ClientDisconnect would give.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await render(scope, self._too_large(f"{declared} bytes"))(scope, receive, send)
            return
        await self.app(scope, self._limited(scope, receive), send)

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body only a disconnect can come; waiting for it has no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                detail = f"the request body was not received within {self.read_timeout:g} s"
                raise Problem(ProblemType.REQUEST_TIMEOUT, detail) from None
            if message["type"] == "http.disconnect":
                detail = f"the client disconnected before the request body was complete ({received} bytes read)"
                logger.info("%s %s: %s", scope["method"], scope["path"], detail)
                raise Problem(ProblemType.CLIENT_DISCONNECTED, detail)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"at least {received} bytes")
                complete = not message.get("more_body", False)
            return message

        return limited_receive

    def _too_large(self, size: str) -> Problem:
        return Problem(ProblemType.UPLOAD_TOO_LARGE, f"the request body is {size}, above the limit of {self.max_bytes}")


class ShedLoadMiddleware:
    """While every worker is busy and the queue is full, answer POSTs to `paths` 429 at once.

    The body is drained unparsed first (a client still sending would otherwise see the connection reset instead
    of the answer), so a burst far past capacity costs the server little more than reading bytes: no multipart
    parsing, no image probing. A body that breaks the body limit while draining gets that limit's answer (413,
    408, or 499 for a client that left) instead. Requests that pass are still checked by the limiter itself when
    they get there.
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths and runtime:
            refusal = runtime.limiter.refusal()
            if refusal is not None:
                try:
                    while (await receive()).get("more_body", False):
                        pass
                except Problem as problem:  # raised by the body limit's receive, outside the exception handlers
                    refusal = problem
                await render(scope, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)
