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
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import send_with_body

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
    if tokens:
        causes.append("it was opened with another token (a session answers only the "
                      "credential that opened it)")
    return ("Session not found: this gateway holds no session with the Mcp-Session-Id "
            f"sent: {', or '.join(causes)}; send 'initialize' again (without "
            "Mcp-Session-Id) to open a new session")


class SessionRefusals:
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, idle_timeout: float | None, tokens: bool) -> None:
        self.app = app
        self.unknown = unknown_session(idle_timeout, tokens=tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        named = False
        for key, value in scope["headers"]:
            if key == _VERSION and value not in _HANDSHAKE:  # the SDK's modern entry
                await self.app(scope, receive, send)
                return
            if key == _SESSION:
                named = True
        refusal = 404 if named else 400
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
            words = (self.unknown if named else missing_session(scope["method"]))
            body = _reworded(answer, _SDK_UNKNOWN if named else (_SDK_MISSING,), words)
            if body is None:
                await send(start)
                for part in parts:
                    await send(part)
                return
            if not named:  # the session the SDK opened for it is gone already
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
