"""A session's event stream ends when its caller's credential no longer stands.

A handshake-era session's event stream (a GET with ``Mcp-Session-Id``) and, in SSE
mode, the legacy transport's ``/sse`` stream stay open for as long as the host keeps
them.  A reload that removed (revoked, rotated) the token they were opened with
refused that token's every request (401), yet its streams stayed open, pinged every
15 s, for as long as the host kept them: found revoking a token as an operator, a
``curl`` of the stream still receiving pings after the reload.  A 2026-07-28
``subscriptions/listen`` stream ended at once (``front/listen.py``); the dashboard's
live stream too (``ui/live.py``).

``RevokedStreams`` wraps the MCP endpoint's route (as ``StreamQuota`` does, the
verified caller in ``scope["user"]``) and, for those two kinds, watches the caller's
``Standing`` (``GatewayVerifier.standing``: a static token as the running
``gateway.auth`` has it; a JWT until it expires or the ``jwt`` section changes),
looked at again after every reload (``ControlPlane.reloads``) and at a JWT's expiry.
Once it no longer stands, the request's ``receive`` says the host went away
(``http.disconnect``): the SDK ends the stream as for a host that left, cleaning up as
it does then, and the wrapper ends the HTTP answer (its last, empty chunk), so the
host sees its stream end and, reconnecting, meets the 401 that says why.  The
session's other requests need nothing: each is checked as it comes.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway.http.auth import GatewayVerifier, principal_of
from fast_mcp_gateway.http.stream_quota import stream_kind
from fast_mcp_gateway.principal import Standing
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)


def standing_of(scope: Scope, verifier: GatewayVerifier) -> Standing | None:
    """The standing of the verified caller of ``scope`` (None: no token, FastMCP's 401)."""
    token = getattr(scope.get("user"), "access_token", None)
    if token is None:
        return None
    principal = principal_of(token)
    if principal.kind == "jwt":
        return verifier.jwt_standing(principal, token.expires_at)
    if principal.kind == "token":
        return verifier.standing(token.token)
    return None


class RevokedStreams:
    """ASGI app in front of the MCP endpoint's own (see the module docstring); ``sse``:
    in front of SSE's ``/sse``.  For a gateway with ``auth``."""

    def __init__(self, app: ASGIApp, *, verifier: GatewayVerifier, reloads: ChangeSignal,
                 sse: bool = False) -> None:
        self.app = app
        self.verifier = verifier
        self.reloads = reloads
        self.sse = sse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = stream_kind(scope, sse=self.sse) if scope["type"] == "http" else None
        standing = standing_of(scope, self.verifier) if kind in ("session", "sse") else None
        if standing is None:
            await self.app(scope, receive, send)
            return
        ended = anyio.Event()
        waiting: list[anyio.CancelScope] = []
        started = finished = False

        async def receive_() -> Message:
            if ended.is_set():
                return {"type": "http.disconnect"}
            with anyio.CancelScope() as cancel:
                waiting.append(cancel)
                try:
                    return await receive()
                finally:
                    waiting.remove(cancel)
            return {"type": "http.disconnect"}   # cancelled: its credential ended

        async def send_(message: Message) -> None:
            nonlocal started, finished
            started = started or message["type"] == "http.response.start"
            finished = finished or (message["type"] == "http.response.body"
                                    and not message.get("more_body", False))
            await send(message)

        async def watch() -> None:
            while True:
                rest = standing.remaining()
                if await self.reloads.wait_until(
                        lambda: standing() is None, math.inf if rest is None else max(rest, 0)):
                    break
            principal = _name(scope)
            logger.info("MCP endpoint: ended an event stream of '%s': its credential no "
                        "longer stands (a reload removed the token, or it expired)", principal)
            ended.set()
            for cancel in list(waiting):
                cancel.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                await self.app(scope, receive_, send_)
            finally:
                tg.cancel_scope.cancel()
        if ended.is_set() and started and not finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _name(scope: Scope) -> Any:
    token = getattr(scope.get("user"), "access_token", None)
    return principal_of(token).name if token is not None else "?"
