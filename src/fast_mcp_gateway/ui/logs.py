"""The Logs pages (calls across servers, one call record, audit log, health history) and
the Routes page.

Calls come from ``admin.history.calls`` (the store, cursor-paged, filtered by time,
server, tool, status and, on a store gateways share, the gateway that served them); a
restricted viewer sees its servers' calls only, a viewer without scope admin its own
calls only (``Principal.own_records``).  The audit log covers every server, so
it needs an admin without a ``servers`` restriction (as on REST).  Route rules are
``admin.routes``'s; "which server does this name go to" is answered from the rules in
decision order and the catalog view, as the call path does.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway.admin import history
from fast_mcp_gateway.admin import routes as route_ops
from fast_mcp_gateway.admin.context import require_store
from fast_mcp_gateway.admin.models import CallRecord
from fast_mcp_gateway.config.settings import MAX_INSTANCE_ID
from fast_mcp_gateway.errors import AdminError, NotFound
from fast_mcp_gateway.routing.rules import Route as Rule
from fast_mcp_gateway.routing.rules import RouteTable
from fast_mcp_gateway.store import StorageError
from fast_mcp_gateway.ui.core import Page, Ui
from fast_mcp_gateway.ui.pages import STATUSES, limit_of, server_name, status_problem

WINDOWS = {"": None, "15m": 15.0, "1h": 60.0, "24h": 1440.0, "7d": 10080.0}


async def logs(page: Page) -> Response:
    tab = page.query("tab", "calls")
    ctx: dict[str, Any] = {"tab": tab, "names": page.servers(), "windows": WINDOWS,
                           "statuses": STATUSES, "calls": None, "audit": None,
                           "health_log": None, "f": dict(page.request.query_params)}
    if page.ctx.store is None:
        return page.render("logs.html", **ctx)
    server = page.query("server")
    only = server_name(page, server) if server else None
    mine = page.viewer.principal.servers
    if only is None and mine is not None and len(mine) == 1:
        only = next(iter(mine))
    before = page.query("before_id")
    before_id = int(before) if before.isdigit() else None
    if tab == "audit":
        if not page.viewer.admin or mine is not None:
            return page.ui.error(page.request, page.viewer, 403, "The audit log covers every "
                                 "server: it needs an admin token without a 'servers' "
                                 "restriction.")
        ctx["audit"] = await history.audit_log(page.ctx, limit=limit_of(page),
                                               before_id=before_id)
    elif tab == "health":
        page_ = await history.health_history(page.ctx, server=only, limit=limit_of(page),
                                             before_id=before_id)
        page_["records"] = [r for r in page_["records"] if page.viewer.may_use(str(r["server"]))]
        ctx["health_log"] = page_
    elif (problem := status_problem(status := page.query("status"))) is not None:
        ctx |= {"status_error": problem, "status": status}
        return page.render("logs.html", 422, **ctx)
    else:
        calls = await history.calls(
            page.ctx, server=only, tool=page.query("tool") or None,
            status=status if status in STATUSES else None,  # type: ignore[arg-type]
            since_minutes=WINDOWS.get(page.query("since")), limit=limit_of(page),
            cursor=page.query("cursor") or None,
            instance=page.query("instance")[:MAX_INSTANCE_ID] or None,
            client=page.viewer.principal.own_records)
        calls.calls = [c for c in calls.calls if page.viewer.may_use(c.server)]
        ctx["calls"] = calls
        ctx["status"] = status
        ctx["shared"] = page.ctx.store.shared
    return page.render("logs.html", **ctx)


# -- one call record -----------------------------------------------------------------

SCAN_LIMIT = 2000  # records looked through for an id given without its time


async def find_call(page: Page, call_id: str, at: float | None) -> CallRecord | None:
    """The record ``call_id``: read at its start time ``at`` (the links carry it: one
    indexed query), else looked for among the newest ``SCAN_LIMIT`` records."""
    store = require_store(page.ctx)
    mine = page.viewer.principal.own_records  # another caller's record is not found
    if page.ctx.recorder is not None:
        await page.ctx.recorder.flushed(within=2)
    cursor: str | None = None
    seen = 0
    while seen < SCAN_LIMIT:
        if at is not None:
            rows, cursor = await store.invocations(since=at - 0.001, until=at + 0.001,
                                                   limit=200, cursor=cursor, client=mine)
        else:
            rows, cursor = await store.invocations(limit=200, cursor=cursor, client=mine)
        for row in rows:
            if row.id == call_id:
                return CallRecord(**{k: getattr(row, k) for k in CallRecord.model_fields})
        seen += len(rows)
        if cursor is None:
            break
    return None


async def call_detail(page: Page) -> Response:
    call_id = page.request.path_params["id"]
    try:
        at: float | None = float(page.query("at")) if page.query("at") else None
    except ValueError:
        at = None
    record = await find_call(page, call_id, at)
    if record is None or not page.viewer.may_use(record.server) \
            or not page.viewer.principal.sees_records_of(record.client, record.client_kind):
        raise NotFound(f"no call record with id '{call_id}' (records older than the "
                       "store's retention are gone)")
    return page.render("call.html", c=record)


# -- routes --------------------------------------------------------------------------


def resolve(page: Page, rules: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Where a call of exposed tool ``name`` goes: the first matching rule, else the
    server that exposes it."""
    table = RouteTable(Rule(id=r["id"], pattern=r["pattern"], match=r["match"],
                            target=r["target"], priority=r["priority"]) for r in rules)
    rule = table.rule_for(name)
    owner = page.ctx.manager.view.tools.get(name)
    if rule is not None:
        return {"server": rule.target, "rule": rule, "exposed": owner is not None}
    if owner is not None and page.viewer.may_use(owner[0].server):
        return {"server": owner[0].server, "rule": None, "exposed": True}
    return {"server": None, "rule": None, "exposed": False}


async def _listed(page: Page) -> dict[str, Any]:
    """The rules the viewer may see, and ``store_unreachable`` (``admin/in_force.py``)."""
    listed = await route_ops.list_routes(page.ctx, principal=page.viewer.principal)
    return {**listed, "routes": [r for r in listed["routes"]
                                 if page.viewer.may_use(r["target"])]}


async def _rules(page: Page) -> list[dict[str, Any]]:
    return list((await _listed(page))["routes"])


async def routes_page(page: Page, *, flash: str | None = None, error: str | None = None,
                      status: int = 200, confirm: dict[str, Any] | None = None) -> Response:
    listed = (await _listed(page) if page.ctx.store is not None
              else {"routes": [], "store_unreachable": None})
    rules = listed["routes"]
    sample = page.query("sample") or page.field("sample")
    edit = page.query("edit")
    return page.render("routes.html", status, rules=rules, sample=sample,
                       store_unreachable=listed["store_unreachable"],
                       resolved=resolve(page, rules, sample) if sample else None,
                       names=page.servers(), flash=flash, error=error, confirm=confirm,
                       editing=int(edit) if edit.isdigit() else None)


async def show_routes(page: Page) -> Response:
    return await routes_page(page)


async def save_route(page: Page) -> Response:
    action = page.field("action", "add")
    route_id = page.field("id")
    try:
        if (refusal := route_ops.restricted_refusal(page.viewer.principal)) is not None:
            return await routes_page(page, error=refusal, status=403)
        if action == "delete":
            rules = await _rules(page)
            rule = next((r for r in rules if route_id.isdigit() and r["id"] == int(route_id)),
                        None)
            if rule is None:
                raise AdminError(f"no route #{route_id}")
            if page.field("confirm") != "yes":   # a delete is shown first, then confirmed
                return await routes_page(page, confirm=rule)
            await route_ops.delete_route(page.ctx, page.actor, int(route_id))
            return await routes_page(page, flash=f"Deleted route #{route_id}.")
        match = page.field("match", "exact")
        if match not in ("exact", "prefix", "wildcard"):
            raise AdminError("match must be exact, prefix or wildcard")
        pattern = page.field("pattern").strip()
        if not pattern:
            raise AdminError("give the rule a pattern (an exposed tool name, a prefix or a "
                             "wildcard such as search_*)")
        priority_text = page.field("priority", "0").strip() or "0"
        if not priority_text.lstrip("-").isdigit():
            raise AdminError("priority must be a whole number")
        target = server_name(page, page.field("target"))
        if action == "update" and route_id.isdigit():
            rules = await _rules(page)
            if all(r["id"] != int(route_id) for r in rules):
                raise AdminError(f"no route #{route_id}")
            saved = await route_ops.update_route(page.ctx, page.actor, int(route_id), pattern,
                                                 target, match, int(priority_text))  # type: ignore[arg-type]
        else:
            saved = await route_ops.add_route(page.ctx, page.actor, pattern, target, match,  # type: ignore[arg-type]
                                              int(priority_text))
    except AdminError as exc:
        return await routes_page(page, error=str(exc), status=422)
    except StorageError as exc:  # nothing changed; the page shows the rules in force
        return await routes_page(page, error=str(exc), status=503)
    return await routes_page(page, flash=f"Saved route #{saved['id']}: {saved['pattern']} → "
                                         f"{saved['target']}.")


def routes(ui: Ui) -> list[Route]:
    return [
        Route("/logs", ui.page(logs), methods=["GET"]),
        Route("/calls/{id}", ui.page(call_detail), methods=["GET"]),
        Route("/routes", ui.page(show_routes), methods=["GET"]),
        Route("/routes", ui.page(save_route, scope="admin", mutate=True), methods=["POST"]),
    ]
