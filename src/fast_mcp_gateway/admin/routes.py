"""Admin operations on route rules: send matching exposed tool names to another server.

Rules live in the store; every change is audited and reloaded into the call path at
once (``AdminContext.load_routes``).  Results are plain dicts, the shape the
``gateway_*_route`` tools have always returned.  The store unreadable, the list is the
rules in force, from memory, and changes are refused, saying so (``in_force.py``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal

from fast_mcp_gateway.admin.alerts import sees_whole_gateway
from fast_mcp_gateway.admin.context import Actor, AdminContext, finishing, require_store
from fast_mcp_gateway.admin.in_force import unchanged, unreachable
from fast_mcp_gateway.errors import AdminError, NotFound
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.rules import Route
from fast_mcp_gateway.store import StorageError

Match = Literal["exact", "prefix", "wildcard"]


def restricted_refusal(principal: Principal) -> str | None:
    """Why ``principal`` may not change route rules (None: it may).  A rule's pattern
    matches exposed names of any server: a token limited to some servers could send
    every caller's calls of another server's tools (arguments included) to its own.
    So rules are for an admin without a ``servers`` list, on every surface (the
    ``gateway_*_route`` tools: ``admin/scope.beyond_servers``; REST; the dashboard)."""
    if principal.servers is None:
        return None
    return (f"route rules act beyond one server (a pattern may match any server's tools): "
            f"they need an admin token without a 'servers' list; "
            f"{principal.only('manage')}")


async def _save(ctx: AdminContext, actor: Actor, route_id: int | None, pattern: str,
                match: Match, target: str, priority: int) -> dict[str, Any]:
    store = require_store(ctx, "route rules")
    action = "add_route" if route_id is None else "update_route"
    if target not in ctx.manager.services:
        known = ", ".join(ctx.manager.services) or "none"
        raise AdminError(f"no server named '{target}' to route to (known: {known})")
    if match == "exact" and any(c in pattern for c in "*?"):
        # No exposed tool name holds '*' or '?': the rule would silently match nothing.
        raise AdminError(
            f"the pattern '{pattern}' holds a wildcard ('*' or '?'), but 'match' is "
            f"'exact' (the default), which compares names as written: set 'match' to "
            f"'wildcard' (or to 'prefix' with the pattern '{pattern.split('*')[0]}')")
    planned = {"id": route_id, "match": match, "target": target, "priority": priority}
    with finishing(ctx, actor, action, pattern, planned):  # once written, in the call
        # path and audited whatever the caller does
        with unchanged("the route rule"):
            if route_id is None:
                route_id, made = await store.add_route(pattern, match, target, priority), None
            elif not await store.update_route(route_id, pattern, match, target, priority):
                raise NotFound(_no_route(actor, route_id))
            else:
                made = next((r.created_at for r in ctx.routes.routes if r.id == route_id), None)
        # Written: in force and audited even if the store goes now (in_force.py).
        await ctx.load_routes(Route(route_id, pattern, match, target, priority,
                                    made or time.time()))
        await ctx.audit(actor, action, pattern, {"id": route_id, "match": match,
                                                 "target": target, "priority": priority})
    # The rule in force (its creation time as stored), as the list shows it.
    rule = next((r for r in ctx.routes.routes if r.id == route_id), None)
    return _as_stored(rule or Route(route_id, pattern, match, target, priority))


async def add_route(ctx: AdminContext, actor: Actor, pattern: str, target: str,
                    match: Match = "exact", priority: int = 0) -> dict[str, Any]:
    """A new rule; returns it with its id.  ``target`` must be a running server."""
    return await _save(ctx, actor, None, pattern, match, target, priority)


async def update_route(ctx: AdminContext, actor: Actor, route_id: int, pattern: str,
                       target: str, match: Match = "exact", priority: int = 0
                       ) -> dict[str, Any]:
    """Replace rule ``route_id``; ``AdminError`` when there is no such rule."""
    return await _save(ctx, actor, route_id, pattern, match, target, priority)


async def delete_route(ctx: AdminContext, actor: Actor, route_id: int) -> dict[str, Any]:
    """Delete rule ``route_id`` (its tools go back to their own servers)."""
    store = require_store(ctx, "route rules")
    with finishing(ctx, actor, "delete_route", str(route_id)):
        with unchanged("the route rule"):
            deleted = await store.delete_route(route_id)
        if not deleted:
            raise NotFound(_no_route(actor, route_id))
        await ctx.load_routes(route_id)
        await ctx.audit(actor, "delete_route", str(route_id))
    return {"deleted": route_id}


async def list_routes(ctx: AdminContext, *, principal: Principal | None = None
                      ) -> dict[str, Any]:
    """Every rule in decision order (priority, then age), ``store_unreachable`` None; the
    store unreadable, the rules in force (``ctx.routes``), ``store_unreachable`` saying so
    (the store's own words to a ``principal`` that ``sees_whole_gateway``)."""
    store = require_store(ctx, "route rules")
    try:
        return {"routes": [asdict(r) for r in await store.routes()], "store_unreachable": None}
    except StorageError as exc:
        note = unreachable(ctx, exc, "route rules", shown=sees_whole_gateway(principal))
    return {"routes": [_as_stored(r) for r in ctx.routes.routes], "store_unreachable": note}


def _as_stored(rule: Route) -> dict[str, Any]:
    """A rule in force as the store lists it (``RouteRecord``'s fields, in order)."""
    return {"id": rule.id, "pattern": rule.pattern, "match": rule.match,
            "priority": rule.priority, "target": rule.target, "created_at": rule.created_at}


def _no_route(actor: Actor, route_id: int) -> str:
    where = "GET /api/v1/routes" if actor.surface == "rest" else "gateway_list_routes"
    return f"no route #{route_id}; {where} lists the rules with their ids"
