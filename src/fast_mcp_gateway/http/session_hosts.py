"""The SDK connections of handshake-era HTTP sessions, by ``Mcp-Session-Id``.

The handshake-era session lane (``session_lane.py``) answers a ``tools/call`` in front
of FastMCP's app, and needs what only the SDK server saw of the session: its
``Connection`` (the negotiated version, the host's capabilities, the level it set with
``logging/setLevel``, whether ``notifications/initialized`` came), which is the host key
of its calls (``FrontCall.host``, as on the full path).  The SDK keeps it inside the
session's serving task only; ``SessionHosts`` is a FastMCP middleware that notes it
from each request the full path serves (``Connection.session_id`` is the session's
id), with the credential that request came with.

The lane serves a session only once the full path has seen it, and only with the
credential it last saw there: the full path's ``CallerStanding`` makes each request's
credential the one its session is judged by between requests (``FrontHub.refresh``);
a request with another one goes the full path, which does that, and notes it here.
A session's entry goes when its connection closes (the host's DELETE, expiry, a stop:
the connection's ``exit_stack``), which also ends its lane calls (``on_end``), or when
the connection is collected (closed without that cleanup: the entry held only a weak
reference, and stayed for good).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from fastmcp.server.dependencies import get_access_token, get_context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.server.connection import Connection

from fast_mcp_gateway._compat import connection_of, current_transport


class SessionHosts(Middleware):
    """Handshake-era HTTP sessions' connections, noted as the full path serves them."""

    def __init__(self) -> None:
        # session id -> (its connection, the bearer token its last full-path request had)
        self._sessions: dict[str, tuple[weakref.ref[Connection], str | None]] = {}
        self.on_end: list[Callable[[str], None]] = []  # the lanes': a session ended

    def get(self, session_id: str) -> tuple[Connection, str | None] | None:
        """The session's connection and the token the full path last saw it with."""
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        connection = entry[0]()
        return None if connection is None else (connection, entry[1])

    async def on_request(self, context: MiddlewareContext[Any],
                         call_next: CallNext[Any, Any]) -> Any:
        if current_transport() == "streamable-http":
            self._note()
        return await call_next(context)

    def _note(self) -> None:
        try:
            ctx = get_context()
        except RuntimeError:
            return
        if ctx.request_context is None:
            return
        connection = connection_of(ctx.session)
        session_id = getattr(connection, "session_id", None)
        if connection is None or not isinstance(session_id, str):
            return  # a 2026-07-28 request: no session
        token = get_access_token()
        self.note(session_id, connection, None if token is None else token.token)

    def note(self, session_id: str, connection: Connection, token: str | None) -> None:
        """The full path served a request of ``session_id`` on ``connection`` with
        ``token``.  The entry goes when the connection closes, or, closed without its
        cleanup (a serving task that died), when it is collected: none outlives it."""
        entry = self._sessions.get(session_id)
        if entry is None or entry[0]() is not connection:
            connection.exit_stack.callback(self._ended, session_id, weakref.ref(connection))
            ref = weakref.ref(connection, partial(self._collected, session_id))
        else:
            ref = entry[0]
        self._sessions[session_id] = (ref, token)

    def _collected(self, session_id: str, ref: weakref.ref[Connection]) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None and entry[0] is ref:
            del self._sessions[session_id]

    def _ended(self, session_id: str, connection: weakref.ref[Connection]) -> None:
        entry = self._sessions.get(session_id)
        if entry is not None and entry[0]() in (None, connection()):
            del self._sessions[session_id]
        for ended in self.on_end:
            ended(session_id)

    def __len__(self) -> int:
        return len(self._sessions)
