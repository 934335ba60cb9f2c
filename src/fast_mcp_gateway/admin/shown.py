"""Which of a server's exposed components a caller is shown where admin surfaces list
them (``gateway_server_detail``, REST ``GET /servers/{name}/tools``, the dashboard's
server page): what its ``tools/list`` lists, no more.

The catalog view holds every exposed name; a caller's lists leave out two kinds of its
tools (``front/provider.py``): a task-only tool of a handshake-era session (never
listed: ``front/unknown.TASK_REASON``), and, for a caller limited to some servers (a
token's ``servers``, a JWT's servers claim), a tool a route rule sends to a server
outside them (``RouteTable.outside``: the call would be refused).  A surface that
describes a server must not offer such a tool either.  Pure: a predicate over the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.routing.curation import task_required
from fast_mcp_gateway.routing.naming import Origin

Shown = Callable[[str, str, Origin, Any], bool]   # (kind, exposed, origin, item)


def shown_to(ctx: AdminContext, servers: frozenset[str] | None) -> Shown:
    """Whether a caller limited to ``servers`` (None: every server) is shown an exposed
    component of the catalog view (by kind, exposed name, origin and item)."""
    away = ctx.routes.outside(servers)
    services = ctx.manager.services

    def shown(kind: str, exposed: str, origin: Origin, item: Any) -> bool:
        if kind != "tool":
            return True
        if away is not None and away(exposed):
            return False
        service = services.get(origin.server)
        return not (task_required(item) and service is not None and not service.is_modern)

    return shown
