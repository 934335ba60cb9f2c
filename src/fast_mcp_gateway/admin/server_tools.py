"""The servers-and-replicas ``gateway_*`` tools: thin adapters over ``admin.servers``.

Listing and health (``gateway_list_servers``, ``gateway_server_detail``,
``gateway_health``) and a server's or a replica's lifecycle (reconnect, enable,
disable, reset the breaker, restart, drain).  Each adapter's parameters are its tool's
input schema and its docstring the description; ``mcp_tools`` registers them under
their names and annotations (in its order), binds the ``AdminContext``, checks scope
``admin`` and turns errors into ``ToolError``, as for every admin tool.  A module of
their own because ``mcp_tools`` had no room left; registering servers at runtime
(add, update, remove, import) stays there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import Field

from fast_mcp_gateway.admin import listing, servers
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.models import (
    HealthReport,
    ReplicaStatus,
    ServerDetail,
    ServerList,
    ServerStatus,
    State,
)
from fast_mcp_gateway.admin.scope import CALLER, actor

# Module level, as in mcp_tools: the tools' annotations are resolved in these globals.
ServerName = Annotated[str, Field(description="the server's name in servers.yaml")]


Names = Annotated[list[str] | None, Field(
    description="only these servers (exact names; default: every one)", min_length=1)]
StateArg = Annotated[State | None, Field(description="only servers in this state")]
Detail = Annotated[bool, Field(description=(
    "every field of each entry; default: protocol_reason and those at their default are "
    "left out (null, 0, false, {}, breaker closed, weight 1, protocol auto, balance "
    "round_robin, isolation shared)"))]


def _may_use() -> Callable[[str], bool]:
    caller = CALLER.get()
    return (lambda _name: True) if caller is None else caller.may_use


async def list_servers(ctx: AdminContext, servers: Names = None, state: StateArg = None,
                       detail: Detail = False) -> ServerList:
    """List upstream servers: state, transport, component counts, last error, uptime."""
    return listing.list_servers(ctx, servers, state, detail, _may_use())


async def server_detail(
    ctx: AdminContext,
    name: ServerName,
    stderr_lines: Annotated[int, Field(ge=0, le=1000)] = 50,
    replica: Annotated[int | None, Field(
        description="whose stderr to show (default: the first ready replica)")] = None,
) -> ServerDetail:
    """One server in depth: capabilities, instructions, exposed names, stderr tail, config."""
    caller = CALLER.get()
    if caller is None:
        return servers.server_detail(ctx, name, stderr_lines, replica)
    return servers.server_detail(ctx, name, stderr_lines, replica, caller.may_use,
                                 caller.servers)


async def reconnect_server(ctx: AdminContext, name: ServerName) -> ServerStatus:
    """Drop every session of the server and connect again (restarts stdio processes, and
    clears a 'failed' state). Returns the status after the new attempts."""
    return await servers.reconnect_server(ctx, actor(), name)


async def enable_server(ctx: AdminContext, name: ServerName) -> ServerStatus:
    """Enable a disabled server: connect it and expose its components again."""
    return await servers.enable_server(ctx, actor(), name)


async def disable_server(ctx: AdminContext, name: ServerName) -> ServerStatus:
    """Disable a server: stop it (its processes for stdio) and remove its components from
    every connected host until it is enabled again. In-flight calls to it fail."""
    return await servers.disable_server(ctx, actor(), name)


async def health(ctx: AdminContext, servers: Names = None, state: StateArg = None,
                 detail: Detail = False) -> HealthReport:
    """Health of servers and their replicas: status, circuit breaker, calls in flight,
    EWMA latency, success rate, restarts, last error."""
    return listing.health(ctx, servers, state, detail, _may_use())


async def reset_breaker(
    ctx: AdminContext,
    name: ServerName,
    replica: Annotated[int | None, Field(description="one replica; default: all")] = None,
) -> ServerStatus:
    """Close the circuit breaker of a replica (or all), letting calls through again."""
    return await servers.reset_breaker(ctx, actor(), name, replica)


async def restart_replica(
    ctx: AdminContext,
    name: ServerName,
    replica: Annotated[int, Field(ge=0, description="replica index (0 for single)")],
) -> ReplicaStatus:
    """Restart one replica (its process for stdio); the others keep serving."""
    return await servers.restart_replica(ctx, actor(), name, replica)


async def drain_replica(
    ctx: AdminContext,
    name: ServerName,
    replica: Annotated[int, Field(ge=0, description="replica index")],
    drain: Annotated[bool, Field(description="false puts it back in the pool")] = True,
) -> ReplicaStatus:
    """Take a replica out of the balancing pool (new calls avoid it; calls in flight
    finish), or put it back. Waits for its in-flight calls to finish (bounded)."""
    return await servers.drain_replica(ctx, actor(), name, replica, drain)
