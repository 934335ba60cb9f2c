"""The MCP SDK's session refusals on the MCP endpoint, in words saying what to do.

A handshake-era request (no 2026-07-28 ``MCP-Protocol-Version``) belongs to a session
the host opens with ``initialize``.  The SDK refuses one without ``Mcp-Session-Id``
with 400 "Bad Request: Missing session ID", and one whose session it does not know
(ended, expired after ``session_idle_timeout``, opened before a restart or on another
instance behind a load balancer) with 404 "Session not found": neither says what to
do, and the 400 even carried an ``Mcp-Session-Id`` of a session the SDK discarded as
it answered.

``SessionRefusals`` wraps the MCP endpoint's route in FastMCP's app (as
``batches.BatchRefusal`` does) and rewrites those answers alone: the status (hosts
re-``initialize`` on the 404, as the MCP spec says), the JSON-RPC shape, code and id
stay the SDK's; the message keeps the SDK's words first and says why and what to do
(the 400's discarded session id is left out).  A 2026-07-28 request (no session; the
express lane's and the SDK's modern entry's) is passed on untouched, and for the
others only the answer's start is looked at: a body is read only when the start is
the refusal's status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway._compat import http_session_owner
from fast_mcp_gateway.http.reworded import send_with_body
from fast_mcp_gateway.http.session_quota import QuotaLog, caller_of

logger = logging.getLogger(__name__)

_SESSION = b"mcp-session-id"
_VERSION = b"mcp-protocol-version"
_HANDSHAKE = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)
_MODERN = MODERN_PROTOCOL_VERSIONS[-1]
_SDK_MISSING = "Bad Request: Missing session ID"
_SDK_UNKNOWN = ("Session not found", "Not Found: Invalid or expired session ID")


def missing_session(method: str) -> str:
    """What a ``method`` request without ``Mcp-Session-Id`` is told."""
    opened = ("send 'initialize' first (a POST without Mcp-Session-Id) and then the "
              "Mcp-Session-Id header its answer carries")
    if method == "GET":
        return (f"{_SDK_MISSING}: a GET opens the event stream of a session, and this "
                f"one names none: {opened} on this GET")
    if method == "DELETE":
        return (f"{_SDK_MISSING}: a DELETE ends the session its Mcp-Session-Id header "
                "names, and this one names none: send the id 'initialize' answered with")
    return (f"{_SDK_MISSING}: this request is of the handshake era (it has no "
            f"'MCP-Protocol-Version: {_MODERN}'), whose requests belong to a session: "
            f"{opened} on every request; or send it sessionless in protocol {_MODERN} "
            f"(header 'MCP-Protocol-Version: {_MODERN}', and the protocol version, client "
            "info and capabilities in the request's params._meta)")


def unknown_session(idle_timeout: float | None, *, tokens: bool) -> str:
    """What a request naming a session the gateway does not hold is told
    (``idle_timeout``: ``session_idle_timeout``; ``tokens``: the gateway has auth)."""
    causes = ["the host ended it (DELETE)"]
    if idle_timeout is not None:
        causes.append(f"it expired after {idle_timeout:g} s without a request "
                      "(session_idle_timeout, MCP_GATEWAY_SESSION_IDLE_TIMEOUT)")
    causes += ["the gateway restarted since it was opened",
               "another gateway instance holds it (behind a load balancer, send a "
               "session's requests to one instance)"]
    if tokens:  # a session another credential opened is answered in these words too
        causes.append("it was opened with another credential (a session answers only the "
                      "token or JWT that opened it: send its requests with that one)")
    whose = " of this credential" if tokens else ""
    return (f"Session not found: this gateway holds no session{whose} with the "
            f"Mcp-Session-Id sent: {', or '.join(causes)}; send 'initialize' again (without "
            "Mcp-Session-Id) to open a new session")


class SessionRefusals:
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, idle_timeout: float | None, tokens: bool,
                 manager: Callable[[], Any] | None = None) -> None:
        """``manager`` (with ``tokens``): the SDK's session manager, where a session's
        opener is looked up (``others``)."""
        self.app = app
        self.manager = manager if tokens else None
        self.unknown = unknown_session(idle_timeout, tokens=tokens)
        self._log = QuotaLog(logger)
        self._unknown_body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": -32600, "message": self.unknown}}, separators=(",", ":")).encode()

    async def others(self, scope: Scope, session: str, send: Send) -> bool:
        """Answer a request of a verified caller naming a session it did not open, and
        True.

        The SDK answers one naming another credential's session "exactly as if the
        session did not exist" (its 404 "Session not found") and logs a WARNING naming
        the session on every request.  Here both are answered alike, the same 404 in the
        same words (``unknown_session``, which names that cause too) on the same path:
        an answer telling them apart told any token holder whether a session id it
        holds is live (a session-id oracle).  A held session another credential
        opened is logged once a minute per caller, never the id or whose it is.  A
        request without a verified caller is left to FastMCP's 401."""
        user = scope.get("user")
        if self.manager is None or not isinstance(user, AuthenticatedUser):
            return False
        manager = self.manager()
        if manager.stateless:  # no sessions held: the SDK serves the request
            return False
        held, owner = http_session_owner(manager, session)
        if held and owner == authorization_context(user):
            return False
        if held:
            caller = caller_of(scope)
            self._log.warn(caller, "refused a request of %s for a session another "
                           "credential opened (a session answers only the credential "
                           "that opened it)",
                           f"{caller[0]} '{caller[1]}'" if caller else "a caller")
        await send_with_body({"type": "http.response.start", "status": 404, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"")]},
            self._unknown_body, send)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        named: bytes | None = None
        for key, value in scope["headers"]:
            if key == _VERSION and value not in _HANDSHAKE:  # the SDK's modern entry
                await self.app(scope, receive, send)
                return
            if key == _SESSION:
                named = value
        if named is not None and await self.others(scope, named.decode("latin-1"), send):
            return
        refusal = 404 if named is not None else 400
        held: list[Message] = []
        watching = True

        async def reword(message: Message) -> None:
            nonlocal watching
            if not watching:
                await send(message)
                return
            if not held and not (message["type"] == "http.response.start"
                                 and message["status"] == refusal):
                watching = False
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.start" or message.get("more_body", False):
                return
            watching = False
            start, *parts = held
            held.clear()
            answer = b"".join(part.get("body", b"") for part in parts)
            words = self.unknown if named is not None else missing_session(scope["method"])
            body = _reworded(answer, _SDK_UNKNOWN if named is not None else (_SDK_MISSING,),
                             words)
            if body is None:
                await send(start)
                for part in parts:
                    await send(part)
                return
            if named is None:  # the session the SDK opened for it is gone already
                start = {**start, "headers": [(k, v) for k, v in start["headers"]
                                              if k != _SESSION]}
            await send_with_body(start, body, send)

        await self.app(scope, receive, reword)


def _reworded(answer: bytes, said: tuple[str, ...], words: str) -> bytes | None:
    """``answer`` (a JSON-RPC error) with its message, one of ``said``, as ``words``;
    None when it is another answer."""
    try:
        reply: Any = json.loads(answer)
    except (ValueError, RecursionError):
        return None
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict) or error.get("message") not in said:
        return None
    error["message"] = words
    return json.dumps(reply, separators=(",", ":")).encode()
