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
ended).  The 503 is in the words of where the request came (``stop_answers``): a
JSON-RPC error with the request's id on the MCP endpoint, the REST error shape
elsewhere; an MCP POST whose stream is under way (every handshake-era call) gets that
error as its stream's last event, when its id is known (``StopAnswers.stream_tail``).
uvicorn's own count line is left out (``_CutCount``); the first ``NAMED``
requests cut are named, each in its line, and the rest counted in one line as the stop
ends (``_Server.shutdown``): 100 calls in flight were 100 lines.  A stream a stop ended
without its last chunk (sse-starlette ends every stream once uvicorn exits) is
completed too: uvicorn said "ASGI callable returned without completing response" at
ERROR for each host's open stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import socket
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.http.no_websockets import RefusedWebSocket
from fast_mcp_gateway.http.slow_clients import protocol_with_timeout
from fast_mcp_gateway.http.stop_answers import StopAnswers

logger = logging.getLogger(__name__)

NAMED = 3
"""Requests a stop cuts that are named each in a line; the rest are counted in one."""


def uvicorn_server(app: ASGIApp, settings: GatewaySettings,
                   on_stop: Callable[[], None] | None = None) -> uvicorn.Server:
    """The uvicorn server for ``app`` (wrapped in ``CutAtStop``) as ``settings`` say;
    the MCP endpoint is the first of ``app.mcp_paths`` (``GatewayApp``).  ``on_stop``
    is called as the stop begins, before the grace for requests in flight."""
    server: uvicorn.Server | None = None

    def stopping() -> bool:
        return server is not None and (server.should_exit or server.force_exit)

    paths = getattr(app, "mcp_paths", ())
    cut = CutAtStop(app, stopping, settings.stop_grace, mcp_path=paths[0] if paths else None)
    config = uvicorn.Config(
        cut, host=settings.host, port=settings.port,
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
    server = _Server(config, cut, on_stop)
    errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CutCount) for f in errors.filters):
        errors.addFilter(_CutCount())
    return server


class CutAtStop:
    """``app``, whose requests cut by a stop (``stopping()``) end in one line, not a
    traceback (module docstring); ``mcp_path``: the MCP endpoint's."""

    def __init__(self, app: ASGIApp, stopping: Callable[[], bool], grace: float = 5.0,
                 *, mcp_path: str | None = None) -> None:
        self.app = app
        self.stopping = stopping
        self.grace = grace  # uvicorn's timeout_graceful_shutdown, for the words
        self.answers = StopAnswers(mcp_path, grace)
        self.named = 0
        self.counted: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.summed = False  # the count's line is written: a later cut is named

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
            ended = await _end(send, self.answers(scope), self.answers.stream_tail(scope))
            if ended is None:
                return  # answered: cut while it tidied up after
            self._said(scope, ended)
            return
        if self.stopping():
            # A stream the stop ended (sse-starlette ends them when uvicorn exits)
            # without its last chunk: uvicorn said "ASGI callable returned without
            # completing response" at ERROR for each host's open stream.
            await _end(send, None)

    def _said(self, scope: Scope, ended: str) -> None:
        """A stream (an answer under way) is ended, as at any stop: INFO; a request not
        answered yet is news (what it asked for may or may not be done): WARNING.  The
        first ``NAMED`` each in a line, the rest counted (``summary``)."""
        method, path = str(scope.get("method")), str(scope.get("path"))
        if self.named >= NAMED and not self.summed:
            self.counted[(method, path, ended)] += 1
            return
        self.named += 1
        logger.log(logging.INFO if ended == _STREAM_ENDED else logging.WARNING,
                   "stopping: cut %s %s, still running %g s after the stop began (the "
                   "grace for requests in flight); %s", method, path,
                   math.ceil(self.grace), ended)

    def summary(self) -> None:
        """As the stop ends: one line counting the requests cut past the first
        ``NAMED`` (none: no line)."""
        self.summed = True
        if not self.counted:
            return
        more = sum(self.counted.values())
        groups = sorted(self.counted.items(), key=lambda item: -item[1])
        said = "; ".join(f"{count} x {method} {path}, {ended}"
                         for (method, path, ended), count in groups[:5])
        if len(groups) > 5:
            said += f"; {sum(c for _, c in groups[5:])} more elsewhere"
        logger.log(logging.INFO if all(e == _STREAM_ENDED for _, _, e in self.counted)
                   else logging.WARNING,
                   "stopping: cut %d request(s) in all, still running %g s after the stop "
                   "began (the grace for requests in flight): the first %d named above, "
                   "and %d more: %s", self.named + more, math.ceil(self.grace),
                   self.named, more, said)
        self.counted.clear()


class _Server(uvicorn.Server):
    """uvicorn's server, whose stop ends with ``CutAtStop``'s count of the requests it
    cut (``CutAtStop.summary``)."""

    def __init__(self, config: uvicorn.Config, cut: CutAtStop,
                 on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.cut, self.on_stop = cut, on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_stop is not None:
            self.on_stop()
        try:
            await super().shutdown(sockets)
        finally:
            self.cut.summary()


_STREAM_ENDED = "its stream is ended"
_STREAM_ANSWERED = "its stream is ended with a JSON-RPC error under its id"


async def _end(send: Send, body: bytes | None, tail: bytes = b"") -> str | None:
    """End an answer cut short: 503 with ``body`` if none was started, else its last
    chunk, ``tail`` (an SSE event with the request's error, or nothing; ``body`` None:
    a stream only); what was done (None: it was complete, or the host is gone).
    uvicorn refuses, with a ``RuntimeError``, a message that does not follow the
    answer's state."""
    if body is not None:
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
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    except (RuntimeError, OSError):
        return None  # complete already (or not started: uvicorn says so itself)
    return _STREAM_ANSWERED if tail else _STREAM_ENDED


class _CutCount(logging.Filter):
    """Leaves out uvicorn's "Cancel N running task(s), timeout graceful shutdown
    exceeded" (ERROR): ``CutAtStop`` names each request cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str)
                    and record.msg.startswith("Cancel %s running task(s)"))
