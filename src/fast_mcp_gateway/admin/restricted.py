"""What the read-only ``gateway_*`` tools show an admin restricted to some servers.

The same as the REST API and the dashboard show that token: its own servers only.  A
read naming another server is refused as if that server did not exist (``refusal``); a
read that covers every server by nature (the audit log, an export of the whole config)
needs a token without a ``servers`` list; any other read is cut down to the caller's
servers (``limited``), counts recomputed.  Before, an admin limited to one server read
every other server's status, stderr tail, call records, inspector history and config
through the tools that REST answered with 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fast_mcp_gateway.admin.alerts import AlertHistoryPage, AlertRuleList, AlertStatus, may_manage
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.models import (
    CallPage,
    HealthReport,
    HistoryPage,
    ServerList,
    StatsReport,
)
from fast_mcp_gateway.admin.pins import PinReport
from fast_mcp_gateway.principal import Principal

# The argument naming the one server a read-only tool reads (None: every server).
READ_ARGUMENT = {"gateway_server_detail": "name", "gateway_health_history": "name",
                 "gateway_calls": "server", "gateway_stats": "server",
                 "gateway_inspector_history": "name", "gateway_pin_status": "server",
                 "gateway_alert_history": "server"}
EVERY_SERVER = {"gateway_audit": "the audit log", "gateway_export_servers": "an export"}


def refusal(principal: Principal, what: str, arguments: Mapping[str, Any]) -> str | None:
    """Why ``principal`` (restricted) may not call the read-only tool ``what`` so."""
    assert principal.servers is not None
    if what in EVERY_SERVER:
        return (f"{EVERY_SERVER[what]} covers every server: '{what}' needs an admin token "
                f"without a 'servers' list; the token '{principal.name}' may only see the "
                f"servers {', '.join(sorted(principal.servers))}")
    server = arguments.get(READ_ARGUMENT.get(what, ""))
    if isinstance(server, str) and not principal.may_use(server):
        return f"unknown server '{server}'"  # worded as for a server that does not exist
    return None


def narrowed(principal: Principal, what: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with a caller restricted to one server's server filled in where the
    tool reads one and none was named (as REST does): its statistics, not an empty page."""
    key = READ_ARGUMENT.get(what)
    servers = principal.servers
    if key is None or arguments.get(key) is not None or servers is None or len(servers) != 1 \
            or what == "gateway_server_detail":
        return arguments
    return {**arguments, key: next(iter(servers))}


def limited(ctx: AdminContext, principal: Principal, result: Any) -> Any:
    """``result`` of a read-only tool with what concerns other servers left out."""
    mine = principal.may_use
    if isinstance(result, ServerList):
        kept = [s for s in result.servers if mine(s.name)]
        return ServerList(servers=kept, ready=sum(s.state == "ready" for s in kept),
                          total=len(kept))
    if isinstance(result, HealthReport):
        kept = [s for s in result.servers if mine(s.name)]
        return HealthReport(servers=kept, total=len(kept),
                            healthy=sum(s.health == "HEALTHY" for s in kept))
    if isinstance(result, CallPage):
        result.calls = [c for c in result.calls if mine(c.server)]
    elif isinstance(result, HistoryPage):
        result.entries = [e for e in result.entries if mine(str(e.get("server")))]
    elif isinstance(result, StatsReport):  # '': the total, over its servers already
        tools = ctx.manager.view.tools
        result.groups = [g for g in result.groups if mine(g.key) or not g.key or (
            g.key in tools and mine(tools[g.key][0].server))]
        result.inflight = {k: v for k, v in result.inflight.items() if mine(k)}
    elif isinstance(result, PinReport):
        result.findings = [f for f in result.findings if mine(f.server)]
        result.pinned = {k: v for k, v in result.pinned.items() if mine(k)}
        result.modes = {k: v for k, v in result.modes.items() if mine(k)}
    elif isinstance(result, AlertStatus):
        result.alerts = [a for a in result.alerts if mine(a.server)]
        result.firing = sum(a.state == "firing" for a in result.alerts)
        result.pending = sum(a.state == "pending" for a in result.alerts)
    elif isinstance(result, AlertRuleList):
        result.rules = [r for r in result.rules if may_manage(principal, str(r.rule["server"]))]
    elif isinstance(result, AlertHistoryPage):
        result.events = [e for e in result.events if mine(e.server)]
    elif isinstance(result, dict) and isinstance(result.get("records"), list):
        result = {**result, "records": [r for r in result["records"]
                                        if mine(str(r.get("server")))]}  # health history
    elif isinstance(result, dict) and isinstance(result.get("routes"), list):
        result = {**result, "routes": [r for r in result["routes"] if mine(str(r["target"]))]}
    return result

