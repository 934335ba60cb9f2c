"""The HTTP express lanes in front of FastMCP's app, as ``gateway.http_app`` builds them.

``HttpLane`` (``lane.py``: a 2026-07-28 host's sessionless ``tools/call``) ->
``RootsChangedNote`` -> ``SessionLane`` (``session_lane.py``: a handshake-era host's
``tools/call`` on its session) -> FastMCP's app; one setting, ``http_express_lane``,
turns both off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.http.session_hosts import SessionHosts
from fast_mcp_gateway.http.session_lane import SessionLane

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from fast_mcp_gateway._compat import RoundStates
    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.http.access import Access


def express_lanes(server: FastMCP[Any], provider: GatewayProvider,
                  server_info: Callable[[], dict[str, Any]], states: RoundStates,
                  enabled: bool) -> Callable[..., ASGIApp]:
    """``build_app``'s ``lane`` for ``server``: the 2026-07-28 lane (``lane.HttpLane``:
    sessionless POSTs) in front of the session lane (a session's POST) in front of
    FastMCP's app.  Notes the sessions' connections from then on (``SessionHosts``, once)."""
    hosts = next((m for m in server.middleware if isinstance(m, SessionHosts)), None)
    if hosts is None:
        hosts = SessionHosts()
        server.add_middleware(hosts)

    def lanes(app: ASGIApp, access: Access, *, max_body: int,
              held: set[tuple[bytes, Any, Any]], manager: Callable[[], Any]) -> ASGIApp:
        sessions = SessionLane(app, access, provider, hosts, manager, enabled=enabled,
                               held=held, max_body=max_body)
        return HttpLane(sessions, access, provider, server_info=server_info,
                        enabled=enabled, states=states, max_body=max_body)

    return lanes


__all__ = ["express_lanes"]
