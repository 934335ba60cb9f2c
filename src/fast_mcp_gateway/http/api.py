"""The REST management API ``/api/v1``: thin HTTP adapters over the admin operations.

Each endpoint is declared once, below, with ``@endpoint(method, path, response, ...)``
(``endpoints.py``): its scope (``tools`` for reads, ``admin`` for changes, the
inspector and the audit log), its query and body models (``schemas.py``), and a
handler that calls one admin operation (``admin.servers``, ``routes``, ``history``,
``inspector``) with the gateway's ``AdminContext``.  ``ENDPOINTS`` is that table:
``endpoints.api_routes`` serves it and ``openapi.py`` describes it, so the document
cannot drift from what is served.

Handlers add only what HTTP needs: the actor is the principal's name, and a restricted
principal's view is filtered to its servers (others answer 404, as if they did not
exist; pages of logs are filtered after the store's filter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import RootModel

from fast_mcp_gateway.admin import alerts, history, inspector, pins, routes, servers, views
from fast_mcp_gateway.admin.alerts import (
    AlertHistoryPage,
    AlertRuleList,
    AlertRuleView,
    AlertStatus,
)
from fast_mcp_gateway.admin.invalid import invalid_of
from fast_mcp_gateway.admin.models import (
    CallPage,
    ChangeReport,
    HistoryPage,
    Inspection,
    Listing,
    ServerDetail,
    ServerList,
    ServerStatus,
    StatsReport,
)
from fast_mcp_gateway.admin.removed import removal
from fast_mcp_gateway.admin.scope import add_refusal
from fast_mcp_gateway.admin.shown import shown_to
from fast_mcp_gateway.admin.status import own_sessions
from fast_mcp_gateway.config.alerts import AlertRule
from fast_mcp_gateway.http import schemas as s
from fast_mcp_gateway.http.endpoints import ENDPOINTS, Call, endpoint
from fast_mcp_gateway.http.errors import ApiError, forbidden, not_found

__all__ = ["ENDPOINTS"]


class ServerView(RootModel[ServerDetail | ServerStatus]):
    """A server in depth (``admin`` scope), or its status (``tools`` scope: no config,
    no stderr)."""


# -- servers -----------------------------------------------------------------------


@endpoint("GET", "/servers", ServerList, scope="tools", tag="servers", query=s.ServersQuery)
async def list_servers(call: Call) -> ServerList:
    """Every server you may use (or those named, or in a state): state, transport,
    component counts, health."""
    q: s.ServersQuery = call.query
    return views.servers_only(servers.list_servers(call.ctx, q.names(), q.state, q.detail,
                                                   call.may_use), call.may_use, call.principal)


@endpoint("POST", "/servers", ChangeReport, scope="admin", tag="servers", body=s.ServerCreate,
          status=201, errors=(409, 422))
async def add_server(call: Call) -> ChangeReport:
    """Register a new server (settings as in servers.yaml); it starts now and after restarts."""
    body: s.ServerCreate = call.body
    if not call.may_use(body.name):
        raise forbidden("admin", add_refusal(call.principal, body.name))
    return await servers.add_server(call.ctx, call.actor, body.name, body.config)


@endpoint("GET", "/servers/{name}", ServerView, scope="tools", tag="servers",
          query=s.DetailQuery, errors=(404,))
async def get_server(call: Call) -> ServerView:
    """One server; with scope admin also its config (secrets redacted), capabilities,
    exposed names and stderr tail."""
    q: s.DetailQuery = call.query
    name = call.path["name"]  # a server not started for its invalid entry is shown too
    if name not in call.ctx.manager.services and name not in invalid_of(call.ctx) \
            and call.may_use(name) and (gone := await removal(call.ctx, name)) is not None:
        raise ApiError(404, "not_found", gone.words(name), gone.details(name))  # said so
    name = call.recorded_server(name) if name in invalid_of(call.ctx) else call.server(name)
    detail = own_sessions(servers.server_detail(
        call.ctx, name, q.stderr_lines, q.replica, call.may_use, call.principal.servers),
        call.principal)
    if call.principal.has("admin"):
        return ServerView(detail)
    return ServerView(ServerStatus.model_validate(
        detail.model_dump(include=set(ServerStatus.model_fields))))


@endpoint("PUT", "/servers/{name}", ChangeReport, scope="admin", tag="servers",
          body=s.ServerUpdate, errors=(404, 422))
async def update_server(call: Call) -> ChangeReport:
    """Replace a server's settings (overrides servers.yaml): a change of how it is
    reached or started restarts it now; one of its description, curation or call
    policies applies as it runs."""
    body: s.ServerUpdate = call.body
    return await servers.update_server(call.ctx, call.actor, call.server(call.path["name"]),
                                       body.config)


@endpoint("DELETE", "/servers/{name}", ChangeReport, scope="admin", tag="servers",
          errors=(404,))
async def remove_server(call: Call) -> ChangeReport:
    """Stop a server and forget it (a servers.yaml entry stays removed until re-added);
    also a stored registration this gateway ignores (it does not validate here)."""
    name = call.path["name"]
    if name not in call.ctx.manager.services and call.may_use(name):
        return await servers.remove_server(call.ctx, call.actor, name)  # 404 if not stored
    return await servers.remove_server(call.ctx, call.actor, call.server(name))


@endpoint("PUT", "/servers/{name}/enable", ServerStatus, scope="admin", tag="servers",
          errors=(404,))
async def enable_server(call: Call) -> ServerStatus:
    """Connect a disabled server and expose it again (persisted)."""
    return await servers.enable_server(call.ctx, call.actor, call.server(call.path["name"]))


@endpoint("PUT", "/servers/{name}/disable", ServerStatus, scope="admin", tag="servers",
          errors=(404,))
async def disable_server(call: Call) -> ServerStatus:
    """Stop a server and hide its components until enabled (persisted)."""
    return await servers.disable_server(call.ctx, call.actor, call.server(call.path["name"]))


@endpoint("POST", "/servers/{name}/restart", ServerStatus, scope="admin", tag="servers",
          errors=(404,))
async def restart_server(call: Call) -> ServerStatus:
    """Drop every session of the server and connect again (clears a 'failed' state)."""
    return await servers.reconnect_server(call.ctx, call.actor, call.server(call.path["name"]))


_KINDS = {"tools": ("tool",), "resources": ("resource", "resource_template"),
          "prompts": ("prompt",)}


def _components(call: Call, kinds: tuple[str, ...]) -> s.ComponentList:
    name = call.server(call.path["name"])
    view = call.ctx.manager.view
    tables: dict[str, dict[str, Any]] = {"tool": view.tools, "resource": view.resources,
                                         "resource_template": view.templates,
                                         "prompt": view.prompts}
    shown = shown_to(call.ctx, call.principal.servers)   # what its lists list
    items = [s.Component(kind=kind, exposed=exposed, original=origin.original,
                         definition=item.model_dump(mode="json", by_alias=True,
                                                    exclude_none=True))
             for kind in kinds for exposed, (origin, item) in tables[kind].items()
             if origin.server == name and shown(kind, exposed, origin, item)]
    return s.ComponentList(server=name, items=items)


@endpoint("GET", "/servers/{name}/tools", s.ComponentList, scope="tools", tag="servers",
          errors=(404,))
async def server_tools(call: Call) -> s.ComponentList:
    """The server's tools as hosts see them (exposed name, original name, definition)."""
    return _components(call, _KINDS["tools"])


@endpoint("GET", "/servers/{name}/resources", s.ComponentList, scope="tools", tag="servers",
          errors=(404,))
async def server_resources(call: Call) -> s.ComponentList:
    """The server's resources and resource templates as hosts see them."""
    return _components(call, _KINDS["resources"])


@endpoint("GET", "/servers/{name}/prompts", s.ComponentList, scope="tools", tag="servers",
          errors=(404,))
async def server_prompts(call: Call) -> s.ComponentList:
    """The server's prompts as hosts see them."""
    return _components(call, _KINDS["prompts"])


# -- routes ------------------------------------------------------------------------


async def _route_rules(call: Call) -> s.RouteList:
    listed = s.RouteList.model_validate(await routes.list_routes(call.ctx,
                                                                 principal=call.principal))
    listed.routes = [r for r in listed.routes if call.may_use(r.target)]
    return listed


def _may_change_routes(call: Call) -> None:
    if (refusal := routes.restricted_refusal(call.principal)) is not None:
        raise forbidden("admin", refusal)


@endpoint("GET", "/routes", s.RouteList, scope="tools", tag="routes")
async def list_routes(call: Call) -> s.RouteList:
    """Route rules in decision order (priority, then age); the store unreadable, those in
    force in this gateway (from memory), ``store_unreachable`` saying so."""
    return await _route_rules(call)


@endpoint("POST", "/routes", s.RouteOut, scope="admin", tag="routes", body=s.RouteIn,
          status=201, errors=(404,))
async def add_route(call: Call) -> s.RouteOut:
    """Send calls of matching exposed tool names to another server."""
    b: s.RouteIn = call.body
    _may_change_routes(call)
    return s.RouteOut.model_validate(await routes.add_route(
        call.ctx, call.actor, b.pattern, call.server(b.target), b.match, b.priority))


@endpoint("PUT", "/routes/{id}", s.RouteOut, scope="admin", tag="routes",
          body=s.RouteUpdate, errors=(404, 409))
async def update_route(call: Call) -> s.RouteOut:
    """Replace a route rule (a rule as GET lists it is accepted back)."""
    b: s.RouteUpdate = call.body
    route_id = call.route_id()
    if b.id is not None and b.id != route_id:
        raise ApiError(409, "conflict", f"the body is route #{b.id}, the path names route "
                       f"#{route_id}: PUT it to /api/v1/routes/{b.id}, or leave 'id' out",
                       {"body_id": b.id, "path_id": route_id})
    _may_change_routes(call)
    return s.RouteOut.model_validate(await routes.update_route(
        call.ctx, call.actor, route_id, b.pattern, call.server(b.target), b.match, b.priority))


@endpoint("DELETE", "/routes/{id}", s.Deleted, scope="admin", tag="routes", errors=(404,))
async def delete_route(call: Call) -> s.Deleted:
    """Delete a route rule (its tools go back to their own servers)."""
    route_id = call.route_id()
    _may_change_routes(call)
    return s.Deleted.model_validate(await routes.delete_route(call.ctx, call.actor, route_id))


# -- pinned definitions -----------------------------------------------------------------


@endpoint("GET", "/pins", pins.PinReport, scope="admin", tag="pins", query=s.PinQuery,
          errors=(404,))
async def pin_status(call: Call) -> pins.PinReport:
    """Definitions changed, new or flagged since they were pinned (with diffs)."""
    q: s.PinQuery = call.query
    return views.pins_only(pins.pin_status(call.ctx, _only(call, q.server)), call.may_use)


@endpoint("POST", "/pins/approve", pins.ApprovalReport, scope="admin", tag="pins",
          body=s.PinApprovalIn, errors=(404,))
async def approve_changes(call: Call) -> pins.ApprovalReport:
    """Approve a server's changed/new definitions as they are now (held ones are released)."""
    b: s.PinApprovalIn = call.body
    return await pins.approve_changes(call.ctx, call.actor, call.server(b.server), b.names)


@endpoint("DELETE", "/pins/{name}", pins.ForgetReport, scope="admin", tag="pins",
          errors=(404,))
async def forget_pins(call: Call) -> pins.ForgetReport:
    """Drop the definitions kept of a server no longer configured (trusted on first use if
    it is added again)."""
    return await pins.forget_pins(call.ctx, call.actor,
                                  call.recorded_server(call.path["name"]))


# -- logs and statistics --------------------------------------------------------------


def _only(call: Call, server: str | None) -> str | None:
    """The server filter to pass down: the asked one (if visible; a removed one's records
    stay readable), or a restricted principal's only server; ``None`` means "filter the
    page afterwards" (or all)."""
    if server is not None:
        return call.recorded_server(server)
    mine = call.principal.servers
    return next(iter(mine)) if mine is not None and len(mine) == 1 else None


@endpoint("GET", "/logs/invocations", CallPage, scope="tools", tag="logs",
          query=s.InvocationsQuery, errors=(404,))
async def invocations(call: Call) -> CallPage:
    """The latest calls (newest first), filtered and paged like gateway_calls; a
    restricted token sees its servers' calls only (a page may then hold fewer rows), a
    token without scope admin its own calls only."""
    q: s.InvocationsQuery = call.query
    page = await history.calls(call.ctx, server=_only(call, q.server), tool=q.tool,
                               status=q.status, since_minutes=q.since_minutes, limit=q.limit,
                               cursor=q.cursor, oldest_first=q.oldest_first,
                               instance=q.instance, client=call.principal.own_records)
    return views.calls_only(page, call.may_use)


@endpoint("GET", "/logs/audit", s.AuditPage, scope="admin", tag="logs", query=s.AuditQuery)
async def audit(call: Call) -> s.AuditPage:
    """Who changed what through the admin operations (newest first)."""
    if call.principal.servers is not None:
        raise forbidden("admin", "the audit log covers every server: it needs a token "
                                 "without a 'servers' restriction; "
                                 + call.principal.only("see"))
    q: s.AuditQuery = call.query
    return s.AuditPage.model_validate(
        await history.audit_log(call.ctx, limit=q.limit, before_id=q.before_id))


@endpoint("GET", "/logs/health", s.HealthPage, scope="tools", tag="logs", query=s.HealthQuery,
          errors=(404,))
async def health_log(call: Call) -> s.HealthPage:
    """State and health transitions of servers and replicas (newest first)."""
    q: s.HealthQuery = call.query
    page = s.HealthPage.model_validate(await history.health_history(
        call.ctx, server=_only(call, q.server), limit=q.limit, before_id=q.before_id))
    page.records = [r for r in page.records if call.may_use(str(r.get("server")))]
    return page


def _mine(call: Call, report: StatsReport, keep: Callable[[str], bool]) -> StatsReport:
    return views.stats_only(report, call.may_use, keep)


@endpoint("GET", "/stats/overview", StatsReport, scope="tools", tag="stats",
          query=s.StatsQuery)
async def stats_overview(call: Call) -> StatsReport:
    """Counts, success rates and latency percentiles per server over a window, with the
    previous window for the trend, and the calls in flight now."""
    q: s.StatsQuery = call.query
    report = await history.stats(call.ctx, group_by="server", since_minutes=q.since_minutes)
    return _mine(call, report, call.may_use)


@endpoint("GET", "/stats/servers/{name}", StatsReport, scope="tools", tag="stats",
          query=s.StatsQuery, errors=(404,))
async def stats_server(call: Call) -> StatsReport:
    """One server's statistics, per tool (a removed server's while the store keeps its
    records)."""
    q: s.StatsQuery = call.query
    name = call.recorded_server(call.path["name"])
    report = await history.stats(call.ctx, group_by="tool", since_minutes=q.since_minutes,
                                 server=name)
    return _mine(call, report, lambda _key: True)


@endpoint("GET", "/stats/tools/{name}", StatsReport, scope="tools", tag="stats",
          query=s.StatsQuery, errors=(404,))
async def stats_tool(call: Call) -> StatsReport:
    """One exposed tool's statistics."""
    q: s.StatsQuery = call.query
    tool = call.path["name"]
    tools = call.ctx.manager.view.tools
    entry = tools.get(tool)
    if entry is None or not call.may_use(entry[0].server):
        import difflib  # here, not at the top: only a wrong name needs it

        shown = shown_to(call.ctx, call.principal.servers)   # as its lists list them
        mine = [name for name, (origin, item) in tools.items()
                if call.may_use(origin.server) and shown("tool", name, origin, item)]
        close = difflib.get_close_matches(tool, mine, n=3, cutoff=0.8)
        meant = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise not_found(f"no tool named '{tool}': {meant}a tool is named by its exposed "
                        f"name, as GET /api/v1/servers/{{name}}/tools lists them")
    report = await history.stats(call.ctx, group_by="tool", since_minutes=q.since_minutes)
    return _mine(call, report, lambda key: key == tool)


# -- inspector ------------------------------------------------------------------------


@endpoint("POST", "/debug/call-tool", Inspection, scope="admin", tag="debug",
          body=s.CallToolIn, errors=(404,))
async def debug_call_tool(call: Call) -> Inspection:
    """Call one tool on one replica directly (original name, no routing or retries)."""
    b: s.CallToolIn = call.body
    return await inspector.call_tool(call.ctx, call.actor, call.server(b.target), b.tool,
                                     b.arguments, b.replica)


@endpoint("GET", "/debug/list-tools", Listing, scope="admin", tag="debug",
          query=s.ListToolsQuery, errors=(404,))
async def debug_list_tools(call: Call) -> Listing:
    """Everything one replica offers now, under its own names, with full schemas."""
    q: s.ListToolsQuery = call.query
    return await inspector.inspect_server(call.ctx, call.server(q.server), q.replica)


@endpoint("GET", "/debug/get-resource", Inspection, scope="admin", tag="debug",
          query=s.GetResourceQuery, errors=(404,))
async def debug_get_resource(call: Call) -> Inspection:
    """Read one resource (or a template-expanded URI) on one replica directly."""
    q: s.GetResourceQuery = call.query
    return await inspector.read_resource(call.ctx, call.server(q.server), q.uri, q.replica)


@endpoint("GET", "/debug/history", HistoryPage, scope="admin", tag="debug",
          query=s.HistoryQuery, errors=(404,))
async def debug_history(call: Call) -> HistoryPage:
    """Past inspector operations (newest first)."""
    q: s.HistoryQuery = call.query
    page = await history.inspector_history(call.ctx, server=_only(call, q.server),
                                           limit=q.limit, before_id=q.before_id)
    return views.entries_only(page, call.may_use)


# -- alerts -----------------------------------------------------------------------------


@endpoint("GET", "/alerts", AlertStatus, scope="tools", tag="alerts")
async def alert_status(call: Call) -> AlertStatus:
    """Alerts firing and pending now, and the evaluator's and webhook's state."""
    return await alerts.status(call.ctx, principal=call.principal)


@endpoint("GET", "/alerts/rules", AlertRuleList, scope="tools", tag="alerts")
async def alert_rules(call: Call) -> AlertRuleList:
    """Alert rules in effect (servers.yaml's and runtime ones), with where each fires."""
    return await alerts.list_rules(call.ctx, principal=call.principal)


async def _visible_rule(call: Call, name: str) -> None:
    """A restricted principal sees only rules on its servers (others answer 404, as the
    list leaves them out; which it may change, the operation decides)."""
    if call.principal.servers is not None and not any(
            r.rule["name"] == name
            for r in (await alerts.list_rules(call.ctx, principal=call.principal)).rules):
        raise not_found(f"no alert rule named '{name}'")


@endpoint("POST", "/alerts/rules", AlertRuleView, scope="admin", tag="alerts", body=AlertRule,
          status=201, errors=(409, 422))
async def add_alert_rule(call: Call) -> AlertRuleView:
    """Add an alert rule (stored); it is evaluated at once."""
    rule: AlertRule = call.body
    return await alerts.add_rule(call.ctx, call.actor, rule.stored(), principal=call.principal)


@endpoint("PUT", "/alerts/rules/{name}", AlertRuleView, scope="admin", tag="alerts",
          body=AlertRule, errors=(404, 422))
async def update_alert_rule(call: Call) -> AlertRuleView:
    """Replace an alert rule (the body's name must be the path's); a servers.yaml rule
    is overridden in the store."""
    rule: AlertRule = call.body
    await _visible_rule(call, call.path["name"])
    return await alerts.update_rule(call.ctx, call.actor, call.path["name"], rule.stored(),
                                    principal=call.principal)


@endpoint("DELETE", "/alerts/rules/{name}", s.DeletedRule, scope="admin", tag="alerts",
          errors=(404,))
async def delete_alert_rule(call: Call) -> s.DeletedRule:
    """Delete an alert rule; its firing alerts resolve."""
    await _visible_rule(call, call.path["name"])
    return s.DeletedRule.model_validate(
        await alerts.delete_rule(call.ctx, call.actor, call.path["name"],
                                 principal=call.principal))


@endpoint("GET", "/alerts/history", AlertHistoryPage, scope="tools", tag="alerts",
          query=s.AlertHistoryQuery, errors=(404,))
async def alert_history(call: Call) -> AlertHistoryPage:
    """Alert transitions (firing, resolved), newest first."""
    q: s.AlertHistoryQuery = call.query
    return await alerts.history(call.ctx, server=_only(call, q.server), rule=q.rule,
                                limit=q.limit, before_id=q.before_id, principal=call.principal)
