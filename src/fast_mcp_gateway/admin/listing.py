"""Listing servers and their health, narrowed: ``gateway_list_servers`` /
``gateway_health`` and ``GET /api/v1/servers``.

With 64 servers a whole answer was ~55 kB of text, most of it null or default fields
repeated per replica.  A caller narrows it to some servers (exact names: an unknown one
is refused naming the known ones) or to one state, and asks for each entry lean: the
fields at their default left out (``models.LEAN_DEFAULTS``); every field that says
something is wrong differs from its default, so it stays.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import get_args

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.invalid import with_invalid
from fast_mcp_gateway.admin.models import HealthReport, ServerList, ServerStatus, State
from fast_mcp_gateway.admin.status import status_of
from fast_mcp_gateway.errors import AdminError, UnknownServer

STATES: tuple[str, ...] = get_args(State)


def narrowed(ctx: AdminContext, names: Collection[str] | None = None,
             state: str | None = None, detail: bool = True,
             may_use: Callable[[str], bool] = lambda _name: True) -> list[ServerStatus]:
    """Every server's status (those ``names`` and in ``state`` if given), each lean
    unless ``detail``.  A name ``may_use`` does not admit is unknown (``UnknownServer``
    names the known ones and the one meant; the adapter cuts them to the caller's)."""
    view = ctx.manager.view
    every = with_invalid(ctx, [status_of(s, view) for s in ctx.manager.services.values()])
    known = [s.name for s in every]
    for name in names or ():
        if name not in known or not may_use(name):
            raise UnknownServer(name, known)
    if state is not None and state not in STATES:  # the tools' schema refuses it first
        raise AdminError(f"no state '{state}'; a server's state is one of "
                         f"{', '.join(STATES)}")
    return [s if detail else s.lean() for s in every
            if (names is None or s.name in names) and (state is None or s.state == state)]


def list_servers(ctx: AdminContext, names: Collection[str] | None = None,
                 state: str | None = None, detail: bool = True,
                 may_use: Callable[[str], bool] = lambda _name: True) -> ServerList:
    """Every upstream server's status (narrowed: ``narrowed``), and how many are ready."""
    servers = narrowed(ctx, names, state, detail, may_use)
    return ServerList(
        servers=servers, ready=sum(s.state == "ready" for s in servers), total=len(servers)
    )


def health(ctx: AdminContext, names: Collection[str] | None = None,
           state: str | None = None, detail: bool = True,
           may_use: Callable[[str], bool] = lambda _name: True) -> HealthReport:
    """Every server's and replica's health (narrowed: ``narrowed``), and how many
    servers are healthy."""
    servers = narrowed(ctx, names, state, detail, may_use)
    return HealthReport(servers=servers, total=len(servers),
                        healthy=sum(s.health == "HEALTHY" for s in servers))
