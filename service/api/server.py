"""uvicorn as `gancodec serve` runs it: connection limits from the settings, and a deadline for request headers.

uvicorn closes idle kept-alive connections, but only until their first byte, and a new connection never: a client
sending a header line now and then held its connection (and one of `max_connections`) for as long as it liked.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.settings import Settings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request line and headers are not all in within
    `header_timeout` seconds of its start, or of the first byte of its next request when kept alive."""

    header_timeout: ClassVar[float]
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in (or the connection is done with)
            self._stop_timer()
        elif self._header_timer is None:  # the first bytes of the next request on a kept-alive connection
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE:
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for the connection settings (the app, host and port aside)."""
    # uvicorn makes one protocol object per connection with arguments of its own: the deadline rides on the class.
    deadline = {"header_timeout": settings.header_timeout}
    protocol = type(HeaderTimeoutProtocol.__name__, (HeaderTimeoutProtocol,), deadline)
    return {
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        # uvicorn refuses a request once open connections reach its limit, its own connection included.
        "limit_concurrency": settings.max_connections + 1,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
