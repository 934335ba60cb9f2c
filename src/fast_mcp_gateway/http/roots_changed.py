"""A 2026-07-28 HTTP host's ``notifications/roots/list_changed``, seen before the SDK
drops it.

Such a host has no session: it POSTs a notification on its own, and the SDK's modern
entry (``mcp.server._streamable_http_modern``) answers ``202`` and drops it before any
handler runs (``HostRequests``' handler only ever sees a handshake-era host's).  So the
roots the gateway kept from that host (``upstream/roots.py``: ``HostRoots``, keyed by its
verified credential, the key of its ``per_client`` sessions) were never marked stale: a
host that changed its roots and said so got the old ones at its ``per_client`` sessions
until it answered some server's ``roots/list`` within a call.

``RootsChangedNote`` wraps FastMCP's app inside the HTTP express lane (``http/lane.py``),
so it sees every request the lane passes on, whether the lane is enabled or not.  A
sessionless 2026-07-28 POST whose ``Mcp-Method`` header names the notification or is
absent (a request carries its own method's: any other goes on unread) and whose token
verifies (``Access.verified``, before its body is read, which FastMCP's 401 never reads:
without ``gateway.auth`` every host is the one unauthenticated caller) is read; when its
body is that notification, that caller's roots are marked stale (``HostRoots.changed``)
before the request goes on to be answered ``202``.
The host's next call of a server that asks for roots then asks it again in a round
(roots first, ``SoleHost.before_call``) and its sessions are told if they changed -- as
a 2026-07-28 stdio host's notification does (``front/lane.py``).  A host sends its next
request only once the notification's POST was answered, so that call sees the mark.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from mcp.shared.inbound import MCP_METHOD_HEADER
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.http.transport_refusals import read_body, replay
from fast_mcp_gateway.upstream.credentials import Caller
from fast_mcp_gateway.upstream.roots import caller_key

if TYPE_CHECKING:
    from fast_mcp_gateway.http.access import Access
    from fast_mcp_gateway.principal import Principal
    from fast_mcp_gateway.upstream.roots import HostRoots

logger = logging.getLogger(__name__)

ROOTS_CHANGED = "notifications/roots/list_changed"
NOTE_MAX = 64 * 1024
"""Bytes read of a body that may be the notification (it is ~100): a longer one goes on
unread past them (the SDK judges it)."""
_METHOD = MCP_METHOD_HEADER.encode()
_SAID = ROOTS_CHANGED.encode()


class RootsChangedNote:
    """ASGI app in front of ``app``: marks a 2026-07-28 HTTP caller's roots stale when it
    says they changed (module doc); every request goes on to ``app`` unchanged."""

    def __init__(self, app: ASGIApp, access: Access, roots: HostRoots) -> None:
        self.app, self.access, self.roots = app, access, roots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = await self.access.verified(scope) if _may_say(scope) else None
        if found is None:  # FastMCP's 401 reads no body: an unknown caller's is not read
            await self.app(scope, receive, send)
            return
        body, end = await read_body(receive, NOTE_MAX)
        if end == "whole" and len(body) <= NOTE_MAX:
            try:
                await self._note(scope, body, found[0])
            except Exception:  # a bug here must not cost the host its answer
                logger.exception("roots/list_changed of a 2026-07-28 HTTP host: not noted")
        await self.app(scope, replay(body, end, receive), send)

    async def _note(self, scope: Scope, body: bytes, principal: Principal) -> None:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            return  # the SDK answers it
        if not isinstance(message, dict) or message.get("method") != ROOTS_CHANGED \
                or "id" in message or message.get("jsonrpc") != "2.0":
            return
        header = next((value.decode("latin-1") for key, value in scope["headers"]
                       if key == b"authorization"), None)
        caller = None
        if header is not None and self.access.verifier:   # as the lane's FrontCall.caller
            caller = Caller(name=principal.name, token=header.partition(" ")[2].strip())
        self.roots.changed(caller_key(caller))
        logger.debug("a 2026-07-28 HTTP host said its roots changed: asked again at its "
                     "next call of a server that asks for roots")


def _may_say(scope: Scope) -> bool:
    """Cheap header checks: a sessionless 2026-07-28 POST that may be the notification."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    version = method = None
    for key, value in scope["headers"]:
        if key == b"mcp-protocol-version":
            version = value
        elif key == _METHOD:
            method = value
        elif key == b"mcp-session-id":
            return False
    return version is not None and version.decode("latin-1") in MODERN_PROTOCOL_VERSIONS \
        and method in (None, _SAID)
