"""uvicorn's h11 protocol with a deadline for a request's headers.

uvicorn has no header or body read timeout: a client that opens a connection and sends
nothing, or half a request line, holds it (and its memory) for ever.  Its keep-alive
timeout starts only after a response and any byte cancels it.  ``HeaderTimeoutH11Protocol``
closes a connection whose request head has not fully arrived ``header_timeout`` seconds
after the connection opened or the previous response completed.  Always pass the class as
``http=`` explicitly: ``http="auto"`` would switch to httptools if it were installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 30.0


class HeaderTimeoutH11Protocol(H11Protocol):
    """``H11Protocol`` that closes a connection idle or mid-head past ``header_timeout``."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is parsed
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's head must arrive in time too

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol_with_timeout(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    """A subclass bound to ``seconds`` (uvicorn instantiates the class it is given)."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,),
                {"header_timeout": seconds})
