"""The inspector page: pick a server (or replica) and a tool, fill the form generated
from its schema, call it and see the raw result; read resources, get prompts; history.

Lists come from the replica's catalog snapshot (no upstream round trip to render the
page); the operations are ``admin.inspector``'s (one replica, no routing or retries,
recorded in the store's inspector history, the call audited), scope ``admin``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway.admin import history, inspector
from fast_mcp_gateway.admin.json_input import parse_json
from fast_mcp_gateway.admin.models import Inspection
from fast_mcp_gateway.ui.core import Page, Ui
from fast_mcp_gateway.ui.pages import server_name
from fast_mcp_gateway.ui.schema_form import arguments_of, fields_of


def _replica(page: Page, text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _context(page: Page, server: str, replica: int | None, tool: str) -> dict[str, Any]:
    names = page.servers()
    ctx: dict[str, Any] = {"names": names, "server": server, "replica": replica, "tool": tool,
                           "catalog": None, "replicas": [], "fields": [], "definition": None,
                           "result": None, "errors": {}, "values": {}, "history": None,
                           "raw": ""}
    if server:
        service = page.ctx.manager.get(server_name(page, server))
        upstream = service.primary() if replica is None else service.replica(replica)
        ctx["replicas"] = [(r.replica, r.label) for r in
                           (u.statistics() for u in service.replicas)]
        ctx["catalog"] = upstream.catalog
        for t in upstream.catalog.tools:
            if t.name == tool:
                ctx["definition"] = t
                ctx["fields"] = fields_of(t.input_schema)
    return ctx


async def _history(page: Page, server: str, ctx: dict[str, Any]) -> None:
    if page.ctx.store is None:
        return
    before = page.query("before_id")
    ctx["history"] = await history.inspector_history(
        page.ctx, server=server or None, limit=10,
        before_id=int(before) if before.isdigit() else None)
    if ctx["history"] is not None:
        ctx["history"].entries = [e for e in ctx["history"].entries
                                  if page.viewer.may_use(str(e.get("server")))]


async def show(page: Page) -> Response:
    ctx = _context(page, page.query("server"), _replica(page, page.query("replica")),
                   page.query("tool"))
    await _history(page, ctx["server"], ctx)
    return page.render("inspector.html", **ctx)


def _result_view(result: Inspection) -> dict[str, Any]:
    """What the result panel shows: content items, structured content, isError."""
    raw = result.result or {}
    items: list[dict[str, Any]] = []
    for item in raw.get("content", []) or raw.get("contents", []) or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "image" and isinstance(item.get("data"), str):  # base64
            mime = str(item.get("mimeType", "image/png"))
            safe = mime if mime.startswith("image/") and "svg" not in mime else "image/png"
            items.append({"kind": "image", "src": f"data:{safe};base64,{item['data']}"})
        elif "text" in item:
            items.append({"kind": "text", "text": str(item["text"]),
                          "uri": item.get("uri")})
        else:
            items.append({"kind": "other", "text": json.dumps(item, indent=2)[:20000]})
    for message in raw.get("messages", []) or []:
        content = message.get("content", {}) if isinstance(message, dict) else {}
        text = content.get("text") if isinstance(content, dict) else None
        items.append({"kind": "text", "text": f"[{message.get('role')}] {text}"})
    return {"inspection": result, "parts": items,
            "structured": raw.get("structuredContent"), "is_error": bool(raw.get("isError")),
            "raw": json.dumps(raw, indent=2, ensure_ascii=False)[:200_000]}


async def call(page: Page) -> Response:
    server, tool = page.field("server"), page.field("tool")
    replica = _replica(page, page.field("replica"))
    ctx = _context(page, server, replica, tool)
    form = {k: v for k, v in (page.form or {}).items() if isinstance(v, str)}
    raw_json = page.field("raw_json").strip()
    if raw_json:
        try:
            arguments = parse_json(raw_json)
            errors = {} if isinstance(arguments, dict) else {"raw_json": "must be a JSON object"}
        except ValueError as exc:
            arguments, errors = {}, {"raw_json": f"not JSON: {exc}"}
    else:
        arguments, errors = arguments_of(ctx["fields"], form)
    ctx.update(values=form, errors=errors, raw=raw_json)
    if not errors:
        result = await inspector.call_tool(page.ctx, page.actor, server_name(page, server),
                                           tool, arguments, replica)
        ctx["result"] = _result_view(result)
    await _history(page, server, ctx)
    return page.render("inspector.html", 422 if errors else 200, **ctx)


async def read(page: Page) -> Response:
    server, uri = page.field("server"), page.field("uri")
    replica = _replica(page, page.field("replica"))
    ctx = _context(page, server, replica, "")
    result = await inspector.read_resource(page.ctx, server_name(page, server), uri, replica)
    ctx["result"] = _result_view(result)
    await _history(page, server, ctx)
    return page.render("inspector.html", **ctx)


async def prompt(page: Page) -> Response:
    server, name = page.field("server"), page.field("prompt")
    replica = _replica(page, page.field("replica"))
    ctx = _context(page, server, replica, "")
    arguments = {k.removeprefix("parg."): v for k, v in (page.form or {}).items()
                 if isinstance(k, str) and k.startswith("parg.") and isinstance(v, str) and v}
    result = await inspector.get_prompt(page.ctx, server_name(page, server), name, arguments,
                                        replica)
    ctx["result"] = _result_view(result)
    await _history(page, server, ctx)
    return page.render("inspector.html", **ctx)


def routes(ui: Ui) -> list[Route]:
    return [
        Route("/inspector", ui.page(show, scope="admin"), methods=["GET"]),
        Route("/inspector/call", ui.page(call, scope="admin", mutate=True), methods=["POST"]),
        Route("/inspector/read", ui.page(read, scope="admin"), methods=["POST"]),
        Route("/inspector/prompt", ui.page(prompt, scope="admin"), methods=["POST"]),
    ]
