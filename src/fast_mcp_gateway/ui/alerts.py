"""The Alerts page: alerts pending and firing now, the rules (servers.yaml's and runtime
ones) with add / edit / delete, and the firing/resolved history, paged.

Everything goes through ``admin.alerts`` (the same operations as the ``gateway_*``
tools and REST): a change is validated by the rule model of servers.yaml
(``config.alerts.AlertRule``), audited as ``dashboard:<principal>`` and evaluated at
once.  Each validation issue is shown next to its form field (an issue about the whole
rule goes to the field it names, else above the form).  Scoping matches REST: a viewer
restricted to some servers sees and manages only rules on those servers (never ``*``),
and only their alerts.  The active alerts and history part (``/partials/alerts``)
re-fetches itself when the live stream carries an ``alert`` event.  The store
unreadable, the page shows the rules in force (saying so) and the active alerts, and
names the store's problem in place of the history.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway.admin import alerts as alert_ops
from fast_mcp_gateway.config.alerts import METRICS
from fast_mcp_gateway.errors import AdminError, ConfigError, Conflict, Forbidden, NotFound
from fast_mcp_gateway.store import StorageError
from fast_mcp_gateway.ui.core import Page, Ui

FIELDS = ("name", "server", "metric", "op", "threshold", "window", "for", "min_calls",
          "severity", "enabled", "description")
OPS = ("<", "<=", ">", ">=")
SEVERITIES = ("info", "warning", "critical")
HISTORY_PAGE = 20


async def active_alerts(page: Page) -> alert_ops.AlertStatus | None:
    if page.ctx.alerts is None:
        return None
    return await alert_ops.status(page.ctx, principal=page.viewer.principal)


async def _history(page: Page) -> dict[str, Any]:
    """The template's ``history`` (None: no store) and ``history_problem`` (the store
    cannot be read: why, the store's own words to a viewer that sees the whole gateway)."""
    if page.ctx.store is None or page.ctx.alerts is None:
        return {"history": None, "history_problem": None}
    before = page.query("before_id")
    who = page.viewer.principal
    try:
        return {"history": await alert_ops.history(
            page.ctx, limit=HISTORY_PAGE, before_id=int(before) if before.isdigit() else None,
            principal=who), "history_problem": None}
    except StorageError as exc:
        return {"history": None, "history_problem": str(exc) if alert_ops.sees_whole_gateway(
            who) else alert_ops.STORE_UNREADABLE}


async def _listed(page: Page) -> alert_ops.AlertRuleList:
    """The rules the viewer manages, and ``store_unreachable`` (``admin/in_force.py``)."""
    if page.ctx.alerts is None:
        return alert_ops.AlertRuleList(rules=[])
    return await alert_ops.list_rules(page.ctx, principal=page.viewer.principal)


async def _rules(page: Page) -> list[alert_ops.AlertRuleView]:
    return (await _listed(page)).rules


def form_of(rule: dict[str, Any] | None) -> dict[str, str]:
    """The form's fields for a stored rule (empty for a new one)."""
    rule = rule or {}

    def text(key: str) -> str:
        value = rule.get(key)
        if value is None:
            return ""
        return f"{value:g}" if isinstance(value, float) else str(value)

    values = {key: text(key) for key in FIELDS}
    values["server"] = values["server"] or "*"
    values["metric"] = values["metric"] or "success_rate"
    values["severity"] = values["severity"] or "warning"
    values["enabled"] = "off" if rule.get("enabled") is False else "on"
    return values


def _number(text: str) -> float | str:
    # Not a number: passed on as it is, so the rule model names the field and the fix.
    try:
        return float(text)
    except ValueError:
        return text


def rule_from_form(page: Page) -> dict[str, Any]:
    """The rule as servers.yaml writes it; fields left empty take the model's defaults."""
    raw: dict[str, Any] = {"name": page.field("name").strip(),
                           "server": page.field("server", "*").strip() or "*",
                           "metric": page.field("metric").strip()}
    op = page.field("op").strip()
    if op:
        raw["op"] = op
    threshold = page.field("threshold").strip()
    if threshold:
        raw["threshold"] = _number(threshold)
    for key in ("window", "for"):
        text = page.field(key).strip()
        if text:  # a bare number is seconds; "5m" and the like go to the model as text
            raw[key] = _number(text)
    min_calls = page.field("min_calls").strip()
    if min_calls:
        raw["min_calls"] = int(min_calls) if min_calls.isdigit() else min_calls
    raw["severity"] = page.field("severity", "warning")
    # A checked box sends "on" beside the hidden "off" that marks the form as sent.
    if page.form is not None and "on" not in page.form.getlist("enabled"):
        raw["enabled"] = False
    description = page.field("description").strip()
    if description:
        raw["description"] = description
    return raw


def issues_by_field(exc: ConfigError) -> tuple[dict[str, str], list[str]]:
    """The rule model's issues keyed by form field; an issue about the whole rule goes to
    the field its text names (threshold, window, op), else to the list above the form."""
    fields: dict[str, str] = {}
    other: list[str] = []
    for issue in exc.issues:
        key = (issue.field or "").split(".")[0]
        if key == "for_":
            key = "for"
        if key not in FIELDS:
            text = issue.message.lower()
            key = next((f for f in ("threshold", "window", "op") if f in text.split()
                        or f + ":" in text), "")
        if key in FIELDS:
            fields[key] = (fields[key] + "; " if key in fields else "") + issue.message
        else:
            other.append(issue.message)
    return fields, other


async def render(page: Page, *, status: int = 200, editing: str | None = None,
                 values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                 other: list[str] | None = None, flash: str | None = None,
                 confirm: str | None = None) -> Response:
    listed = await _listed(page)
    rules = listed.rules
    if editing is None and page.query("edit"):
        editing = page.query("edit")
        current = next((r for r in rules if r.rule["name"] == editing), None)
        if current is None:
            raise NotFound(f"no alert rule named '{editing}'")
        values = form_of(current.rule)
    names = page.servers()
    return page.render(
        "alerts.html", status, rules=rules, active=await active_alerts(page),
        rules_note=listed.store_unreachable, **await _history(page), editing=editing,
        values=values or form_of(None),
        errors=errors or {}, other=other or [], flash=flash, confirm=confirm,
        metrics=METRICS, ops=OPS, severities=SEVERITIES,
        targets=(["*"] if page.viewer.principal.servers is None else []) + names,
        running=page.ctx.alerts is not None, before_id=page.query("before_id"))


async def show(page: Page) -> Response:
    return await render(page)


async def partial(page: Page) -> Response:
    """The live part of the page (and, out of band, the menu's count)."""
    listed = await _listed(page)
    return page.render("_alerts_live.html", active=await active_alerts(page), oob=True,
                       rules=listed.rules, rules_note=listed.store_unreachable,
                       **await _history(page), before_id=page.query("before_id"))


async def banner(page: Page) -> Response:
    """The overview's firing-alert banner (and, out of band, the menu's count)."""
    return page.render("_alert_banner.html", active=await active_alerts(page), oob=True)


async def _visible_rule(page: Page, name: str) -> alert_ops.AlertRuleView:
    for rule in await _rules(page):
        if rule.rule["name"] == name:
            return rule
    raise NotFound(f"no alert rule named '{name}'")


async def save(page: Page) -> Response:
    """Add, update (``action=update``) or delete (``action=delete``, confirmed) a rule."""
    action = page.field("action", "add")
    if action == "delete":
        name = page.field("name")
        await _visible_rule(page, name)
        if page.field("confirm") != "yes":
            return await render(page, confirm=name)
        try:
            await alert_ops.delete_rule(page.ctx, page.actor, name,
                                        principal=page.viewer.principal)
        except StorageError as exc:  # nothing changed
            return await render(page, status=503, other=[str(exc)])
        return await render(page, flash=f"Deleted alert rule '{name}'.")
    raw = rule_from_form(page)
    editing = raw["name"] if action == "update" else None
    values = {k: page.field(k) for k in FIELDS} | {
        "enabled": "off" if raw.get("enabled") is False else "on"}
    errors: dict[str, str] = {}
    other: list[str] = []
    try:
        who = page.viewer.principal
        if editing is not None:
            await _visible_rule(page, editing)
            saved = await alert_ops.update_rule(page.ctx, page.actor, editing, raw,
                                                principal=who)
        else:
            saved = await alert_ops.add_rule(page.ctx, page.actor, raw, principal=who)
    except ConfigError as exc:
        errors, other = issues_by_field(exc)
    except Conflict as exc:
        errors["name"] = str(exc)
    except Forbidden as exc:  # a server outside the viewer's token
        errors["server"] = str(exc)
    except NotFound:
        raise
    except AdminError as exc:  # e.g. no store to keep runtime rules in
        other = [str(exc)]
    except StorageError as exc:  # the store unreadable: nothing changed, the form kept
        return await render(page, status=503, editing=editing, values=values,
                            other=[str(exc)])
    if errors or other:
        return await render(page, status=422, editing=editing, values=values, errors=errors,
                            other=other)
    verb = "Updated" if editing else "Added"
    where = ", ".join(saved.firing)
    return await render(page, flash=f"{verb} alert rule '{saved.rule['name']}'"
                                    + (f"; firing now on {where}." if where else "."))


def routes(ui: Ui) -> list[Route]:
    return [
        Route("/alerts", ui.page(show), methods=["GET"]),
        Route("/partials/alerts", ui.page(partial), methods=["GET"]),
        Route("/partials/alert-banner", ui.page(banner), methods=["GET"]),
        Route("/alerts", ui.page(save, scope="admin", mutate=True), methods=["POST"]),
    ]
