"""The ``gateway_*`` alert tools: thin adapters over ``admin.alerts``.

Declared here, registered by ``mcp_tools`` (which turns errors into ``ToolError`` and
checks scope ``admin``, as for every admin tool).  ``kind`` picks the annotations:
``read`` (read-only), ``idempotent`` or ``destructive``.  The changes pass the caller
down: the operation decides which rules a token limited to some servers may change
(``alerts.restricted_refusal``), and which rules, alerts and events its reads show, as
it does for REST and the dashboard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from fast_mcp_gateway.admin import alerts
from fast_mcp_gateway.admin.alerts import (
    AlertHistoryPage,
    AlertRuleList,
    AlertRuleView,
    AlertStatus,
)
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.scope import CALLER, actor
from fast_mcp_gateway.config.schema import RowId


@dataclass(frozen=True)
class AlertTool:
    name: str
    kind: Literal["read", "idempotent", "destructive"]
    fn: Callable[..., Awaitable[Any]]


TOOLS: list[AlertTool] = []


def _tool(name: str, kind: Literal["read", "idempotent", "destructive"]
          ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    def declare(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        TOOLS.append(AlertTool(name, kind, fn))
        return fn
    return declare


RuleName = Annotated[str, Field(min_length=1, max_length=64, description="the rule's name")]
RuleArg = Annotated[dict[str, Any], Field(description=(
    "the rule as in servers.yaml's alerts.rules, e.g. {\"name\": \"notes-errors\", "
    "\"server\": \"notes\", \"metric\": \"success_rate\", \"threshold\": 0.95, "
    "\"window\": \"5m\", \"for\": \"1m\"}; metrics: success_rate, p95_ms, "
    "consecutive_failures, not_ready; or \"when\": \"p95_ms > 500\""))]


@_tool("gateway_alerts", "read")
async def alert_status(ctx: AdminContext) -> AlertStatus:
    """Alerts firing and pending now, with the evaluator's and the webhook's state
    (deliveries sent, failed, dropped, queued; for a token without a servers list)."""
    return await alerts.status(ctx, principal=CALLER.get())


@_tool("gateway_alert_rules", "read")
async def alert_rules(ctx: AdminContext) -> AlertRuleList:
    """Alert rules in effect (servers.yaml's and runtime ones), with where each fires."""
    return await alerts.list_rules(ctx, principal=CALLER.get())


@_tool("gateway_add_alert_rule", "idempotent")
async def add_alert_rule(ctx: AdminContext, rule: RuleArg) -> AlertRuleView:
    """Add an alert rule (kept in the store); it is evaluated at once."""
    return await alerts.add_rule(ctx, actor(), rule, principal=CALLER.get())


@_tool("gateway_update_alert_rule", "idempotent")
async def update_alert_rule(ctx: AdminContext, name: RuleName, rule: RuleArg) -> AlertRuleView:
    """Replace an alert rule (a servers.yaml rule is overridden in the store)."""
    return await alerts.update_rule(ctx, actor(), name, rule, principal=CALLER.get())


@_tool("gateway_delete_alert_rule", "destructive")
async def delete_alert_rule(ctx: AdminContext, name: RuleName) -> dict[str, str]:
    """Delete an alert rule; its firing alerts resolve."""
    return await alerts.delete_rule(ctx, actor(), name, principal=CALLER.get())


@_tool("gateway_alert_history", "read")
async def alert_history(
    ctx: AdminContext,
    server: Annotated[str | None, Field(description="only this server")] = None,
    rule: Annotated[str | None, Field(description="only this rule")] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
    before_id: Annotated[RowId | None, Field(description="from a previous page")] = None,
) -> AlertHistoryPage:
    """Alert transitions (firing, resolved), newest first."""
    return await alerts.history(ctx, server=server, rule=rule, limit=limit,
                                before_id=before_id, principal=CALLER.get())
