"""Handshake-era MCP sessions, bounded per caller.

The MCP SDK's session manager opens a session for each ``initialize`` POST without
``Mcp-Session-Id`` and keeps it until the host ends it or it has been idle for
``session_idle_timeout`` (30 minutes by default); past ``max_sessions`` (10,000) open at
once it answers every new one 503 "Too many open sessions".  One caller -- a token of
any scope, or anyone on loopback without ``auth`` -- that opened 10,000 sessions and
left them locked every other host out of the gateway for half an hour.

``SessionQuota`` wraps the MCP endpoint's route in FastMCP's app (after FastMCP's auth
guard: ``scope["user"]`` is the verified caller) and lets one caller (a token's name, a
JWT's subject, whatever JWTs it brings) hold at most ``max_sessions // PER_CALLER_SHARE``
of the sessions open: its next ``initialize`` is a 429 saying so, and other callers
still open theirs.  Only with ``auth``, and only while it can name more than one
caller (``several_callers``: two tokens, or JWTs): without it every host is the one
anonymous caller, whom a share would protect from nobody -- it only cut every host of
the machine, all together, to an eighth of the SDK's bound; so with one token, which
every host then shares.  It remembers which caller opened
each session from the ``Mcp-Session-Id`` of the answer, and forgets the sessions the
manager no longer holds (ended, expired).  A 2026-07-28 request (sessionless) and a
request naming a session pass untouched.  A refusal is logged at WARNING, once a minute
per caller at most (``QuotaLog``, shared with ``stream_quota``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway._compat import open_http_sessions
from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http.auth import principal_of
from fast_mcp_gateway.http.transport_refusals import endpoint_manager

logger = logging.getLogger(__name__)

PER_CALLER_SHARE = 8  # one caller may hold an eighth of the sessions open at once
_SESSION = b"mcp-session-id"
_VERSION = b"mcp-protocol-version"
_HANDSHAKE = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)


def session_manager_of(mcp_app: Any, path: str) -> Callable[[], Any]:
    """The SDK's session manager behind the endpoint ``path`` (``endpoint_manager``)."""
    return endpoint_manager(mcp_app, path, "sessions cannot be counted per caller")


def several_callers(auth: AuthConfig | None) -> bool:
    """Whether ``auth`` (the running ``gateway.auth``) can name more than one caller:
    a per-caller share protects the others, where there are others."""
    return auth is not None and (len({t.name for t in auth.tokens}) > 1
                                 or auth.jwt is not None)  # a name's tokens: one


def caller_of(scope: Scope) -> tuple[str, str] | None:
    """Who sends the request: the verified token's principal, else None."""
    token = getattr(scope.get("user"), "access_token", None)
    if token is None:
        return None
    principal = principal_of(token)
    return principal.kind, principal.name


class SessionQuota:
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, manager: Callable[[], Any],
                 several: Callable[[], bool] = lambda: True) -> None:
        """For a gateway with ``auth`` (a request without a verified token is FastMCP's
        401, not a session); ``several()``: whether it can name more than one caller
        now (``several_callers``; asked at a refusal only)."""
        self.app = app
        self.manager = manager
        self.several = several
        self._opened: dict[str, tuple[str, str]] = {}  # session id -> its caller
        self._pending: dict[tuple[str, str], int] = {}  # callers' opening requests
        self._log = QuotaLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == _SESSION or (key == _VERSION and value not in _HANDSHAKE):
                await self.app(scope, receive, send)  # a session's, or sessionless
                return
        manager = self.manager()
        if manager.max_sessions is None or manager.stateless:
            await self.app(scope, receive, send)
            return
        live = open_http_sessions(manager)
        limit = max(1, manager.max_sessions // PER_CALLER_SHARE)
        if len(self._opened) > len(live):  # ended and expired sessions are forgotten
            self._opened = {s: who for s, who in self._opened.items() if s in live}
        who = caller_of(scope)
        if who is None:  # refused by FastMCP's guard: no session
            await self.app(scope, receive, send)
            return
        # Requests still being answered count too: many sent at once all passed before.
        held = self._pending.get(who, 0) + sum(
            owner == who and session in live for session, owner in self._opened.items())
        if held >= limit and self.several():
            self._log.warn(who, "MCP endpoint: refused a session of '%s' (429): it holds "
                           "%d open already, the most one caller may hold", who[1], limit)
            await send_too_many(send, too_many_sessions(who[1], limit,
                                                        manager.session_idle_timeout))
            return

        pending = True

        def settled() -> None:  # counted from now by its session, if it opened one
            nonlocal pending
            if pending:
                pending = False
                self._pending[who] -= 1
                if not self._pending[who]:
                    del self._pending[who]

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", ()):
                    if key == _SESSION:
                        self._opened[value.decode("latin-1")] = who
                settled()  # the answer's stream may outlast it: the host goes on
            await send(message)

        self._pending[who] = self._pending.get(who, 0) + 1
        try:
            await self.app(scope, receive, noted)
        finally:
            settled()


def too_many_sessions(name: str, limit: int, idle: float | None) -> str:
    """The refusal of ``name``'s next session past ``limit`` (``idle``: the SDK's
    ``session_idle_timeout``)."""
    expiry = (f"; an unused one ends after {idle:g} s without a request "
              "(MCP_GATEWAY_SESSION_IDLE_TIMEOUT)" if idle is not None else "")
    return (f"Too many open sessions: '{name}' holds {limit} MCP sessions of this gateway "
            "already (the most one caller may hold); end the ones it no longer uses "
            f"(an HTTP DELETE with their Mcp-Session-Id){expiry}, or send requests "
            "sessionless in protocol 2026-07-28")


async def send_too_many(send: Send, message: str, request_id: Any = None, *,
                        status: int = 429, allow: bytes | None = None) -> None:
    """A quota's refusal: ``status`` (429) with a JSON-RPC error (-32000, ``message``)
    under ``request_id`` (None when it cannot be told), as the MCP endpoint's refusals
    are; ``allow``: the ``Allow`` header of a 405."""
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": -32000, "message": message}}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class QuotaLog:
    """Logs a quota's refusals on ``log`` at WARNING, each caller's (``key``) at most
    once every ``EVERY`` seconds: a host retrying its refused stream or session in a
    loop would write a line per try.  Remembers at most ``KEYS`` callers (then it starts
    over)."""

    EVERY = 60.0
    KEYS = 1024

    def __init__(self, log: logging.Logger = logger, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = log
        self._clock = clock
        self._last: dict[Hashable, float] = {}

    def warn(self, key: Hashable, message: str, *args: Any) -> None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.EVERY:
            return
        if len(self._last) >= self.KEYS:
            self._last.clear()
        self._last[key] = now
        self._logger.warning(message + " (repeats for this caller are not logged for "
                             "%d s)", *args, int(self.EVERY))
