"""What a principal restricted to some servers sees of a read-only admin answer.

A token with ``servers: [...]`` sees only those servers, on every surface: the REST API
answers another server with 404 and filters pages of logs, statistics and history; the
dashboard shows only its servers.  Over MCP, the read-only ``gateway_*`` tools answer
with the same operations, so ``restricted_view(what, answer, principal, ctx)`` filters
each tool's answer the same way (``mcp_tools._bind``), after ``scope.beyond_servers``
has refused arguments naming another server.  Pure functions over the answers' models:
nothing here does I/O, and an unrestricted principal's answer is returned as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.models import (
    CallPage,
    HealthReport,
    HistoryPage,
    ServerList,
    StatsReport,
)
from fast_mcp_gateway.admin.pins import PinReport
from fast_mcp_gateway.admin.status import own_sessions
from fast_mcp_gateway.principal import Principal

Keep = Callable[[str], bool]
"""Whether the principal may see the server of this name."""


def servers_only(listed: ServerList, keep: Keep, principal: Principal | None = None
                 ) -> ServerList:
    """The servers ``keep`` allows; with ``principal``, each listing only its own
    per-client sessions (``own_sessions``)."""
    mine = [s if principal is None else own_sessions(s, principal)
            for s in listed.servers if keep(s.name)]
    return ServerList(servers=mine, ready=sum(s.state == "ready" for s in mine),
                      total=len(mine))


def health_only(report: HealthReport, keep: Keep) -> HealthReport:
    mine = [s for s in report.servers if keep(s.name)]
    return HealthReport(servers=mine, healthy=sum(s.health == "HEALTHY" for s in mine),
                        total=len(mine))


def calls_only(page: CallPage, keep: Keep) -> CallPage:
    page.calls = [c for c in page.calls if keep(c.server)]
    return page


def records_only(page: dict[str, Any], keep: Keep) -> dict[str, Any]:
    """A health-history page (``{"records": [...], ...}``)."""
    return {**page, "records": [r for r in page["records"] if keep(str(r.get("server")))]}


def entries_only(page: HistoryPage, keep: Keep) -> HistoryPage:
    page.entries = [e for e in page.entries if keep(str(e.get("server")))]
    return page


def pins_only(report: PinReport, keep: Keep) -> PinReport:
    return PinReport(findings=[f for f in report.findings if keep(f.server)],
                     pinned={k: v for k, v in report.pinned.items() if keep(k)},
                     modes={k: v for k, v in report.modes.items() if keep(k)},
                     not_configured={k: v for k, v in report.not_configured.items()
                                     if keep(k)})


def routes_only(listed: dict[str, Any], keep: Keep) -> dict[str, Any]:
    """Route rules whose target the principal may use."""
    return {**listed, "routes": [r for r in listed["routes"] if keep(str(r["target"]))]}


def stats_only(report: StatsReport, keep: Keep, keep_group: Keep) -> StatsReport:
    """``keep_group`` judges a group's key (a server, or an exposed tool's name)."""
    report.groups = [g for g in report.groups if keep_group(g.key)]
    report.inflight = {k: v for k, v in report.inflight.items() if keep(k)}
    return report


def _stats(report: StatsReport, principal: Principal, ctx: AdminContext) -> StatsReport:
    tools = ctx.manager.view.tools

    def keep_group(key: str) -> bool:  # a server's name, a tool's, or '' (one server's)
        owner = tools.get(key)
        return key == "" or principal.may_use(owner[0].server if owner else key)

    return stats_only(report, principal.may_use, keep_group)


_VIEWS: dict[str, Callable[[Any, Principal, AdminContext], Any]] = {
    "gateway_list_servers": lambda r, p, _: servers_only(r, p.may_use),
    "gateway_health": lambda r, p, _: health_only(r, p.may_use),
    "gateway_calls": lambda r, p, _: calls_only(r, p.may_use),
    "gateway_health_history": lambda r, p, _: records_only(r, p.may_use),
    "gateway_inspector_history": lambda r, p, _: entries_only(r, p.may_use),
    "gateway_pin_status": lambda r, p, _: pins_only(r, p.may_use),
    "gateway_list_routes": lambda r, p, _: routes_only(r, p.may_use),
    "gateway_stats": _stats,
}


def restricted_view(what: str, answer: Any, principal: Principal,
                    ctx: AdminContext) -> Any:
    """``answer`` of admin tool ``what`` as ``principal`` may see it (only its servers;
    of the call log, only its own calls unless it is an admin: ``own_records``)."""
    if what == "gateway_calls" and principal.own_records is not None:
        answer.calls = [c for c in answer.calls
                        if principal.sees_records_of(c.client, c.client_kind)]
    view = _VIEWS.get(what)
    if principal.servers is None or view is None:
        return answer
    return view(answer, principal, ctx)
