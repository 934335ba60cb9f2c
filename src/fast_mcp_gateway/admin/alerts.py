"""Admin operations on alerts: rules (list, add, update, delete), the active alerts with
the engine's and webhook's state, and the alert history.

Rules added here live in the store and override servers.yaml's rules by name; deleting
a servers.yaml rule stores a tombstone (the file is never edited).  A rule is validated
by the same model as the file's (``config.alerts.AlertRule``): an invalid one is a
``ConfigError`` naming each field.  Every change is audited and evaluated at once, so
the answer already reflects it.  The result models are shared by the MCP tools, REST
and the dashboard.

Who may change which rule is decided here too, for every surface (``principal``):
an admin token limited to some servers manages the rules on those servers, as it
manages the servers themselves; a rule on ``*`` (every server) or on another server
is for an admin without a ``servers`` list (``Forbidden``).  The reads are filtered
here too, for every surface (MCP, REST, the dashboard): such a principal sees the rules
it manages (``may_manage``: not ``*``), and the alerts and history of its servers.
What is the whole gateway's in the status (the webhook's target and deliveries, the
store's error, every server's transitions waiting for the store) is shown to an admin
without a ``servers`` list only (``sees_whole_gateway``): the reads need scope ``tools``.
The store unreadable, the rules listed are those in force (the engine's, as last read)
and changes are refused, saying so (``in_force.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from fast_mcp_gateway.admin.context import Actor, AdminContext, finishing, require_store
from fast_mcp_gateway.admin.in_force import unchanged, unreachable
from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.alerts.states import loads_value
from fast_mcp_gateway.config.alerts import AlertRule
from fast_mcp_gateway.config.checks import explain, field_path
from fast_mcp_gateway.errors import (
    AdminError,
    ConfigError,
    ConfigIssue,
    Conflict,
    Forbidden,
    NotFound,
)
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.store import StorageError

AlertValue = float | str | None


class AlertRuleView(BaseModel):
    rule: dict[str, Any] = Field(description="the rule, as servers.yaml's alerts.rules "
                                             "entries are written")
    source: Literal["file", "runtime"] = Field(
        description="servers.yaml, or added/changed at runtime (stored)")
    firing: list[str] = Field(default_factory=list,
                              description="servers it is firing on now")


class AlertRuleList(BaseModel):
    rules: list[AlertRuleView]
    store_unreachable: str | None = Field(default=None, description=(
        "null, or why the store cannot be read now: the rules listed are then those in "
        "force in this gateway (held in memory), not necessarily the stored set"))


class ActiveAlert(BaseModel):
    rule: str
    server: str
    metric: str
    state: Literal["pending", "firing"] = Field(
        description="pending: the condition holds, not yet for the rule's 'for'")
    since: float = Field(description="when the condition started to hold (unix seconds)")
    fired_at: float | None
    value: AlertValue = Field(description="the metric now (a state name for not_ready)")
    threshold: AlertValue
    op: str | None
    severity: str
    calls: int | None = Field(default=None, description="calls in the window, if counted")


class WebhookStatus(BaseModel):
    url: str = Field(description="scheme, host and path only")
    sent: int
    failed: int = Field(description="deliveries given up after their retries")
    dropped: int = Field(description="events dropped because the queue was full")
    retries: int
    queued: int
    last_error: str | None


_WHOLE_GATEWAY = " (to an admin token without a 'servers' list; null to any other caller)"


class AlertStatus(BaseModel):
    alerts: list[ActiveAlert] = Field(default_factory=list)
    firing: int
    pending: int
    evaluate_every: float = Field(description="seconds between evaluations")
    evaluations: int
    last_evaluated_at: float | None
    store_error: str | None = Field(description="why rules on calls cannot be evaluated "
                                                "now (the store is unreadable), if so; the "
                                                "store's own error to an admin token without "
                                                "a 'servers' list")
    leading: bool = Field(default=True, description="whether this gateway announces "
                          "(webhook, history) alerts on calls for the gateways sharing its "
                          "store; one of them does")
    history_unsaved: int | None = Field(description="transitions waiting for the store, "
                                                    "of every server" + _WHOLE_GATEWAY)
    history_dropped: int | None = Field(description="transitions dropped before they were "
                                                    "stored, of every server" + _WHOLE_GATEWAY)
    webhook: WebhookStatus | None = Field(description="the webhook's target and deliveries, "
                                                      "if one is configured" + _WHOLE_GATEWAY)


class AlertEventView(BaseModel):
    id: int
    at: float
    rule: str
    server: str
    state: Literal["firing", "resolved"] | str
    metric: str
    value: AlertValue
    threshold: AlertValue
    severity: str
    message: str | None


class AlertHistoryPage(BaseModel):
    events: list[AlertEventView]
    next_before_id: int | None = Field(description="pass as `before_id` for older events")


def require_alerts(ctx: AdminContext) -> AlertEngine:
    if ctx.alerts is None:
        raise AdminError("alerts are not running in this gateway")
    return ctx.alerts


def _views(engine: AlertEngine) -> list[AlertRuleView]:
    firing: dict[str, list[str]] = {}
    for alert in engine.alerts.snapshot():
        if alert.state == "firing":
            firing.setdefault(alert.rule, []).append(alert.server)
    return [AlertRuleView(rule=rule.stored(), source=source,  # type: ignore[arg-type]
                          firing=firing.get(rule.name, [])) for rule, source in engine.rules()]


def may_manage(principal: Principal | None, server: str) -> bool:
    """Whether ``principal`` sees and changes a rule on ``server`` (a server's name, or
    ``*``); ``None``: the library or stdio, unrestricted."""
    return principal is None or principal.servers is None or (
        server != "*" and principal.may_use(server))


def restricted_refusal(principal: Principal | None, server: str) -> str | None:
    """Why ``principal`` may not have a rule on ``server`` (None: it may)."""
    if may_manage(principal, server):
        return None
    assert principal is not None and principal.servers is not None
    target = "every server ('*')" if server == "*" else f"server '{server}'"
    if principal.no_server is not None:
        return f"no alert rule on {target}: {principal.no_server}"
    if principal.kind == "jwt":  # it has no 'servers' list: its claim names them
        return (f"no alert rule on {target}: {principal.only('manage')}; a rule beyond "
                "them needs an admin JWT whose servers claim holds \"*\"")
    return (f"the token '{principal.name}' may manage alert rules on its own servers only "
            f"({', '.join(sorted(principal.servers))}), not on {target}; that needs an "
            "admin token without a 'servers' list")


def _own(principal: Principal | None, server: str) -> None:
    if (refusal := restricted_refusal(principal, server)) is not None:
        raise Forbidden(refusal)


def _validate(ctx: AdminContext, raw: dict[str, Any], source: str,
              principal: Principal | None) -> AlertRule:
    try:
        rule = AlertRule.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([ConfigIssue(source, None, field_path(err["loc"]) or None,
                                       explain(err, AlertRule))
                           for err in exc.errors()]) from None
    _own(principal, rule.server)  # before the known servers are named
    if rule.server != "*" and rule.server not in ctx.manager.services:
        known = ", ".join(ctx.manager.services) or "none"
        raise ConfigError.single(source, None, "server", f"no server named '{rule.server}' "
                                 f"(known: {known}); use '*' for every server")
    return rule


def _sees(principal: Principal | None, server: str) -> bool:
    """Whether ``principal`` sees an alert or an alert event on ``server``."""
    return principal is None or principal.may_use(server)


async def list_rules(ctx: AdminContext, *, principal: Principal | None = None
                     ) -> AlertRuleList:
    """The rules in effect (servers.yaml's, overridden by runtime ones), by name; those
    ``principal`` manages.  The store unreadable, those the engine holds (in force),
    ``store_unreachable`` saying so."""
    engine = require_alerts(ctx)
    note = None
    if ctx.store is not None:
        try:
            await engine.load_rules()
        except StorageError as exc:
            note = unreachable(ctx, exc, "alert rules", shown=sees_whole_gateway(principal))
    return AlertRuleList(rules=[view for view in _views(engine)
                                if may_manage(principal, str(view.rule["server"]))],
                         store_unreachable=note)


async def _save(ctx: AdminContext, actor: Actor, action: str, rule: AlertRule
                ) -> AlertRuleView:
    engine = require_alerts(ctx)
    store = require_store(ctx, "alert rules")
    # Once written, audited whatever the caller does.
    with finishing(ctx, actor, action, rule.name, rule.stored()):
        with unchanged("the alert rule"):
            await store.put_alert_rule(rule.name, rule.stored())
        engine.hold(rule.name, rule)  # in force, and answered, if the store goes now
        await ctx.audit(actor, action, rule.name, rule.stored())
    await engine.evaluate()
    return next(v for v in _views(engine) if v.rule["name"] == rule.name)


async def _existing(engine: AlertEngine, name: str, principal: Principal | None
                    ) -> AlertRule:
    """Rule ``name`` in effect, if ``principal`` may change it: one it may not is not
    listed to it (``list_rules``), so it is answered as absent, naming no server."""
    with unchanged("the alert rule"):
        await engine.load_rules()
    rule = next((r for r, _ in engine.rules() if r.name == name), None)
    if rule is None or not may_manage(principal, rule.server):
        raise NotFound(f"no alert rule named '{name}'")
    return rule


async def add_rule(ctx: AdminContext, actor: Actor, rule: dict[str, Any], *,
                   principal: Principal | None = None) -> AlertRuleView:
    """A new rule (``Conflict`` when the name is taken); evaluated at once."""
    engine = require_alerts(ctx)
    parsed = _validate(ctx, rule, "add_alert_rule", principal)
    require_store(ctx, "alert rules")
    with unchanged("the alert rule"):
        await engine.load_rules()
    taken = next((r for r, _ in engine.rules() if r.name == parsed.name), None)
    if taken is not None:
        # Names are one namespace; a caller that cannot see the rule cannot update it.
        raise Conflict(f"an alert rule named '{parsed.name}' exists; update it, or choose "
                       "another name" if may_manage(principal, taken.server) else
                       f"an alert rule named '{parsed.name}' exists, on a server this "
                       "token does not manage; choose another name")
    return await _save(ctx, actor, "add_alert_rule", parsed)


async def update_rule(ctx: AdminContext, actor: Actor, name: str, rule: dict[str, Any], *,
                      principal: Principal | None = None) -> AlertRuleView:
    """Replace rule ``name`` (a servers.yaml rule is overridden, not edited); the body's
    ``name`` may be left out, and may not differ."""
    engine = require_alerts(ctx)
    if "name" in rule and rule["name"] != name:
        raise ConfigError.single("update_alert_rule", None, "name", "a rule cannot be "
                                 "renamed; delete it and add one under the new name")
    parsed = _validate(ctx, {**rule, "name": name}, "update_alert_rule", principal)
    require_store(ctx, "alert rules")
    await _existing(engine, name, principal)
    return await _save(ctx, actor, "update_alert_rule", parsed)


async def delete_rule(ctx: AdminContext, actor: Actor, name: str, *,
                      principal: Principal | None = None) -> dict[str, str]:
    """Delete rule ``name``; its firing alerts resolve.  A servers.yaml rule stays
    deleted (a tombstone in the store) until added again."""
    engine = require_alerts(ctx)
    store = require_store(ctx, "alert rules")
    await _existing(engine, name, principal)
    with finishing(ctx, actor, "delete_alert_rule", name), unchanged("the alert rule"):
        if engine.file_rule(name) is not None:
            await store.put_alert_rule(name, None)
        else:
            await store.delete_alert_rule(name)
        engine.hold(name, None)
        await ctx.audit(actor, "delete_alert_rule", name)
    await engine.evaluate()
    return {"deleted": name}


STORE_UNREADABLE = ("the store cannot be read now (its own error is shown to an admin "
                    "token without a 'servers' list)")


def sees_whole_gateway(principal: Principal | None) -> bool:
    """Whether ``principal`` is shown what is the whole gateway's (the webhook's target,
    deliveries and errors, every server's transitions, the store's error): an admin
    without a ``servers`` list, as for every change beyond one server."""
    return principal is None or (principal.has("admin") and principal.servers is None)


async def status(ctx: AdminContext, *, principal: Principal | None = None) -> AlertStatus:
    """The alerts pending and firing now (on ``principal``'s servers), and the engine's
    state; the webhook's and the store's, and the counts of every server's transitions,
    only to a principal that ``sees_whole_gateway``."""
    engine = require_alerts(ctx)
    alerts = [ActiveAlert.model_validate(a.as_dict()) for a in engine.alerts.snapshot()]
    alerts = [a for a in alerts if _sees(principal, a.server)]
    state = engine.status()
    if not sees_whole_gateway(principal):
        state.update(webhook=None, history_unsaved=None, history_dropped=None,
                     store_error=STORE_UNREADABLE if state["store_error"] else None)
    return AlertStatus(alerts=alerts, firing=sum(a.state == "firing" for a in alerts),
                       pending=sum(a.state == "pending" for a in alerts), **state)


async def history(ctx: AdminContext, *, server: str | None = None, rule: str | None = None,
                  limit: int = 50, before_id: int | None = None,
                  principal: Principal | None = None) -> AlertHistoryPage:
    """Firing and resolved transitions, newest first (of ``principal``'s servers: a
    page may then hold fewer events)."""
    rows = await require_store(ctx, "alert history").alert_events(
        server=server, rule=rule, limit=limit, before_id=before_id)
    events = [AlertEventView(id=r.id or 0, at=r.at, rule=r.rule, server=r.server,
                             state=r.state, metric=r.metric, value=loads_value(r.value),
                             threshold=loads_value(r.threshold), severity=r.severity,
                             message=r.message) for r in rows if _sees(principal, r.server)]
    return AlertHistoryPage(events=events, next_before_id=rows[-1].id
                            if len(rows) == limit and rows else None)

