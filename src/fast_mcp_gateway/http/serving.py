"""The uvicorn server under HTTP/SSE mode, and what it says of requests a stop cuts.

``uvicorn_server`` builds it as ``Gateway`` serves it (the guarded protocols of
``slow_clients``, no WebSockets, ``stop_grace`` (5 s) for requests in flight at a stop).

At a stop uvicorn gives requests in flight ``timeout_graceful_shutdown`` seconds, logs
"Cancel N running task(s), timeout graceful shutdown exceeded" at ERROR and cancels
each one's task (``Task.cancel()``); the ``CancelledError`` leaves the app, and
uvicorn's ``RequestResponseCycle.run_asgi`` logs it as a crash: "Exception in ASGI
application" with a traceback, at ERROR, for a request cut on purpose.  ``CutAtStop``,
around the app, takes that cancellation while the server is stopping (never
otherwise: a cancellation at any other time, and every other exception, goes on to
uvicorn as it is): it says in one line what was cut and why, and ends the answer (503
``gateway_stopping`` when none was started: the request may have done what it asked,
an admin change finishes, ``admin/in_flight.py``; an answer under way, a stream, is
ended).  uvicorn's own count line is left out (``_CutCount``): each request cut is
named instead.  A stream a stop ended without its last chunk (sse-starlette ends every
stream once uvicorn exits) is completed too: uvicorn said "ASGI callable returned
without completing response" at ERROR for each host's open stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.http.no_websockets import RefusedWebSocket
from fast_mcp_gateway.http.slow_clients import protocol_with_timeout

logger = logging.getLogger(__name__)

_STOPPING = {"error": {"code": "gateway_stopping", "message": (
    "the gateway stopped before this request ended; what it asked for may have been "
    "done (an admin change is finished and audited): check, then retry once the "
    "gateway is back")}}


def uvicorn_server(app: ASGIApp, settings: GatewaySettings) -> uvicorn.Server:
    """The uvicorn server for ``app`` (wrapped in ``CutAtStop``) as ``settings`` say."""
    server: uvicorn.Server | None = None

    def stopping() -> bool:
        return server is not None and (server.should_exit or server.force_exit)

    config = uvicorn.Config(
        CutAtStop(app, stopping, settings.stop_grace), host=settings.host, port=settings.port,
        log_level="warning", lifespan="on", log_config=None, access_log=False,
        # A client that never finishes its headers is closed (uvicorn has no such
        # timeout of its own): httptools when installed, else h11, both guarded.
        http=protocol_with_timeout(settings.header_timeout),
        # The idle limit between requests is that timeout too: uvicorn's own (5 s)
        # equals httpx's pool expiry, so a host's next request could be written into
        # a connection the gateway was closing, and fail with a read error.
        timeout_keep_alive=max(1, math.ceil(settings.header_timeout)),
        h11_max_incomplete_event_size=16384,
        # Nothing here is a WebSocket: upgrades are refused without loading the
        # websockets library (~0.65 MB of RSS).
        ws=RefusedWebSocket,
        # A host holding a stream open must not keep a stopping gateway alive.
        timeout_graceful_shutdown=math.ceil(settings.stop_grace),
    )
    server = uvicorn.Server(config)
    errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CutCount) for f in errors.filters):
        errors.addFilter(_CutCount())
    return server


class CutAtStop:
    """``app``, whose requests cut by a stop (``stopping()``) end in one line, not a
    traceback (module docstring)."""

    def __init__(self, app: ASGIApp, stopping: Callable[[], bool], grace: float = 5.0
                 ) -> None:
        self.app = app
        self.stopping = stopping
        self.grace = grace  # uvicorn's timeout_graceful_shutdown, for the words

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # ``send`` is not wrapped (a call per message on every request): what the
        # answer had reached is learned from what uvicorn accepts at the end.
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.stopping():
                raise
            ended = await _end(send)
            if ended is None:
                return  # answered: cut while it tidied up after
            # A stream (an answer under way) is ended, as at any stop; a request not
            # answered yet is news: what it asked for may or may not be done.
            logger.log(logging.INFO if ended == "its stream is ended" else logging.WARNING,
                       "stopping: cut %s %s, still running %g s after the stop began (the "
                       "grace for requests in flight); %s", scope.get("method"),
                       scope.get("path"), math.ceil(self.grace), ended)
            return
        if self.stopping():
            # A stream the stop ended (sse-starlette ends them when uvicorn exits)
            # without its last chunk: uvicorn said "ASGI callable returned without
            # completing response" at ERROR for each host's open stream.
            await _end(send, streams_only=True)


async def _end(send: Send, *, streams_only: bool = False) -> str | None:
    """End an answer cut short: 503 if none was started, else its last (empty) chunk;
    what was done (None: it was complete, or the host is gone).  uvicorn refuses, with a
    ``RuntimeError``, a message that does not follow the answer's state."""
    if not streams_only:
        body = json.dumps(_STOPPING).encode()
        try:
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        except RuntimeError:
            pass  # started already
        except OSError:
            return None
        else:
            with contextlib.suppress(RuntimeError, OSError):
                await send({"type": "http.response.body", "body": body, "more_body": False})
            return "answered 503"
    try:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except (RuntimeError, OSError):
        return None  # complete already (or not started: uvicorn says so itself)
    return "its stream is ended"


class _CutCount(logging.Filter):
    """Leaves out uvicorn's "Cancel N running task(s), timeout graceful shutdown
    exceeded" (ERROR): ``CutAtStop`` names each request cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str)
                    and record.msg.startswith("Cancel %s running task(s)"))
