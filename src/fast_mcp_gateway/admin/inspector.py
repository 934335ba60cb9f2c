"""The inspector: list and call any upstream capability on a chosen server and replica.

Like the MCP Inspector, but from inside the gateway: ``inspect_server`` lists what a
replica offers *now* (original names, full schemas); ``call_tool``, ``read_resource``
and ``get_prompt`` run one operation on that replica (no balancing, no retries, no
renaming) and return the raw result.  Every operation is kept in the store's inspector
history when there is a store (see ``history.py`` to page and clear it), with known
secrets and the values of credential-like arguments masked; the caller's result is not.

An upstream that fails the operation is an outcome (``status="failed"``), not an error;
only an unknown server or replica raises (``AdminError`` / ``UpstreamError``).  One that
did not succeed for a name hosts see (``alpha_add``, ``data://alpha/config``: what a
model reads in its tool list) rather than the server's own says so and names the own
one in ``error``: the server's bare "not found" read as if the component were missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from fastmcp.resources.template import match_uri_template
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.admin.context import Actor, AdminContext
from fast_mcp_gateway.admin.models import Inspection, Listing
from fast_mcp_gateway.errors import AdminError, UpstreamError
from fast_mcp_gateway.routing.naming import Origin
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.telemetry.arguments import mask_argument_values, redact_arguments
from fast_mcp_gateway.telemetry.recorder import dumps_arguments
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.replica import Upstream


def _dump(items: list[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in items]


def _target(ctx: AdminContext, name: str, replica: int | None) -> Upstream:
    service = ctx.manager.get(name)
    return service.primary() if replica is None else service.replica(replica)


async def _run(ctx: AdminContext, name: str, replica: int | None, operation: str, what: str,
               arguments: Any, op: Callable[[Upstream], Awaitable[Any]]) -> Inspection:
    upstream = _target(ctx, name, replica)
    started = time.perf_counter()
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        raw = await op(upstream)
        result = raw.model_dump(mode="json", by_alias=True, exclude_none=True)
        status = "error" if getattr(raw, "is_error", False) else "success"
    except (UpstreamError, MCPError) as exc:
        status = "failed"
        error = (_undeclared(upstream, operation, what, exc) if isinstance(exc, MCPError)
                 else str(exc))
    duration = (time.perf_counter() - started) * 1000
    if status != "success" and (own := _own_name(ctx, name, operation, what)) is not None:
        hint = (f"{what!r} is the name hosts see; the inspector takes the server's own "
                f"name, {own!r} (as gateway_inspect_server lists it)")
        error = f"{error}.  {hint}" if error else hint
    entry_id = None
    if ctx.store is not None:
        secrets = upstream.config.secrets
        # Kept and shown later (history, dashboard): masked as a call record's error is,
        # whatever the status -- an upstream may echo its env or its arguments in a
        # success too.  Each string is masked before JSON escapes it, and the whole
        # before it is cut, so no part of a secret is kept.
        stored = (json.dumps(redact_arguments(result, (), secrets)) if result
                  else mask_text(error or "", secrets)) or None
        if stored:
            stored = mask_argument_values(stored, arguments)[:100_000]
        entry_id = await ctx.store.add_inspection(
            name, upstream.label, operation, what, dumps_arguments(arguments, secrets),
            status, duration, stored)
    return Inspection(id=entry_id, server=name, replica=upstream.label, operation=operation,
                      target=what, status=status, duration_ms=round(duration, 3),
                      result=result, error=error)


def _own_name(ctx: AdminContext, server: str, operation: str, what: str) -> str | None:
    """``server``'s own name (or URI) of the component hosts see as ``what``, if
    ``what`` is such an exposed name and not the server's own; else None."""
    view = ctx.manager.view
    entry: tuple[Origin, Any] | None
    if operation == "tools/call":
        entry = view.tools.get(what)
    elif operation == "prompts/get":
        entry = view.prompts.get(what)
    else:
        entry = view.resources.get(what) or view.resources.get(normalize_uri(what))
        if entry is None:   # a template-expanded URI: the same values in the server's own
            for exposed, (origin, _) in view.templates.items():
                values = match_uri_template(what, exposed) if origin.server == server else None
                if values is not None:
                    own = origin.original
                    for key, value in values.items():
                        own = own.replace(f"{{{key}}}", str(value))
                    return None if own == what else own
            return None
    if entry is None or entry[0].server != server or entry[0].original == what:
        return None
    return entry[0].original


# What a server declares in its capabilities to answer each operation.
_CAPABILITY = {"tools/call": "tools", "resources/read": "resources", "prompts/get": "prompts"}
_NOUN = {"tools/call": "call tool", "resources/read": "read resource",
         "prompts/get": "get prompt"}


def _undeclared(upstream: Upstream, operation: str, what: str, exc: MCPError) -> str:
    """The upstream's error message; a bare "Method not found" from a server that does
    not declare the capability the operation needs says so, and what to do instead."""
    capability = _CAPABILITY.get(operation)
    declared = upstream.capabilities
    if exc.error.code != types.METHOD_NOT_FOUND or capability is None or declared is None \
            or getattr(declared, capability, None) is not None:
        return exc.error.message
    return (f"{upstream.label} declares no {capability} capability (its initialize answer "
            f"lists none), so it cannot {_NOUN[operation]} '{what}'; it answered "
            f"'{exc.error.message}'.  Use gateway_inspect_server to see what it offers, or "
            f"inspect a server that declares {capability}")


async def inspect_server(ctx: AdminContext, name: str, replica: int | None = None) -> Listing:
    """Everything one replica offers right now, under its own names, with full schemas."""
    upstream = _target(ctx, name, replica)
    try:
        catalog = await upstream.list_catalog()
    except MCPError as exc:
        raise AdminError(str(exc)) from exc  # the upstream refused to list
    return Listing(server=name, replica=upstream.label,
                   protocol_version=upstream.protocol_version,
                   tools=_dump(catalog.tools), resources=_dump(catalog.resources),
                   resource_templates=_dump(catalog.templates),
                   prompts=_dump(catalog.prompts))


async def call_tool(ctx: AdminContext, actor: Actor, name: str, tool: str,
                    arguments: dict[str, Any] | None = None, replica: int | None = None
                    ) -> Inspection:
    """Call one tool on one replica directly (audited first: it can do anything that
    tool does, so it is refused, not made, while the store cannot take its entry)."""
    await ctx.audit_first(actor, "inspect_call_tool", f"{name}/{tool}", arguments)
    return await _run(ctx, name, replica, "tools/call", tool, arguments,
                      lambda u: u.call_tool(tool, arguments or {}, None))


async def read_resource(ctx: AdminContext, name: str, uri: str, replica: int | None = None
                        ) -> Inspection:
    """Read one resource (or a template-expanded URI) on one replica directly."""
    return await _run(ctx, name, replica, "resources/read", uri, None,
                      lambda u: u.read_resource(uri, None))


async def get_prompt(ctx: AdminContext, name: str, prompt: str,
                     arguments: dict[str, str] | None = None, replica: int | None = None
                     ) -> Inspection:
    """Render one prompt on one replica directly."""
    return await _run(ctx, name, replica, "prompts/get", prompt, arguments,
                      lambda u: u.get_prompt(prompt, arguments, None))
