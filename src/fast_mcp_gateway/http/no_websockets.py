"""uvicorn's WebSocket protocol for a server that has no WebSocket endpoint.

No MCP transport is a WebSocket, and neither is anything else the gateway serves.
uvicorn's default (``ws="auto"``) loads the ``websockets`` library (~0.65 MB of RSS)
only for the app to refuse each upgrade; ``ws="none"`` serves an upgrade as a plain
HTTP request and logs two warnings per request advising to install a WebSocket
library.  ``RefusedWebSocket`` (``uvicorn.Config(ws=RefusedWebSocket)``) answers every
WebSocket upgrade with ``403 Forbidden`` and closes the connection, as uvicorn's
protocols do for an app that refuses it, without logging or loading anything.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

REFUSAL = (b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n"
           b"content-length: 33\r\nconnection: close\r\n\r\n"
           b"this server serves no WebSocket.\n")


class RefusedWebSocket(asyncio.Protocol):
    """Built by uvicorn's HTTP protocol for a WebSocket upgrade (with the connection
    and the request's head): the refusal is written and the connection closed."""

    def __init__(self, config: Any = None, server_state: Any = None,
                 app_state: Any = None, _loop: Any = None) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(REFUSAL)
            self.transport.close()
