"""The inspector: list and call any upstream capability on a chosen server and replica.

Like the MCP Inspector, but from inside the host: ``gateway_inspect_server`` lists what a
replica offers *now* (original names, full schemas); ``gateway_inspect_call_tool``,
``gateway_inspect_read_resource`` and ``gateway_inspect_get_prompt`` run one operation
on that replica (no balancing, no retries, no renaming) and return the raw result.
Every operation is kept in the store's inspector history (paged, clearable).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import mcp_types as types
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

from fast_mcp_gateway.errors import AdminError, UpstreamError
from fast_mcp_gateway.telemetry.recorder import dumps_arguments
from fast_mcp_gateway.upstream.replica import Upstream

if TYPE_CHECKING:
    from fast_mcp_gateway.gateway import Gateway

_SERVER = Annotated[str, Field(description="the server's name in servers.yaml")]
_REPLICA = Annotated[int | None, Field(ge=0, description="replica index (default: the first "
                                                           "ready one)")]


class Listing(BaseModel):
    server: str
    replica: str
    protocol_version: str | None
    tools: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    prompts: list[dict[str, Any]]


class Inspection(BaseModel):
    id: int | None = Field(description="its entry in the inspector history (if recorded)")
    server: str
    replica: str
    operation: str
    target: str
    status: str = Field(description="success, error or failed")
    duration_ms: float
    result: dict[str, Any] | None = Field(description="the upstream's raw result")
    error: str | None = None


class HistoryPage(BaseModel):
    entries: list[dict[str, Any]]
    next_before_id: int | None = Field(description="pass as `before_id` for older entries")


def _dump(items: list[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json", by_alias=True, exclude_none=True) for i in items]


def register_inspector_tools(gateway: Gateway) -> set[str]:
    """Add the inspector tools to ``gateway.server``; returns their names."""
    server, manager = gateway.server, gateway.manager
    read_only = types.ToolAnnotations(read_only_hint=True, idempotent_hint=True,
                                      destructive_hint=False, open_world_hint=False)
    # Calling an arbitrary upstream tool can do anything that tool does.
    acting = types.ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                   idempotent_hint=False, open_world_hint=True)
    clearing = types.ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                     idempotent_hint=True, open_world_hint=False)

    def target(name: str, replica: int | None) -> Upstream:
        try:
            service = manager.get(name)
            return service.primary() if replica is None else service.replica(replica)
        except (AdminError, UpstreamError) as exc:
            raise ToolError(str(exc)) from exc

    async def run(name: str, replica: int | None, operation: str, what: str,
                  arguments: Any, op: Any) -> Inspection:
        upstream = target(name, replica)
        started = time.perf_counter()
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            raw = await op(upstream)
            result = raw.model_dump(mode="json", by_alias=True, exclude_none=True)
            status = "error" if getattr(raw, "is_error", False) else "success"
        except (UpstreamError, MCPError) as exc:
            status = "failed"
            error = exc.error.message if isinstance(exc, MCPError) else str(exc)
        duration = (time.perf_counter() - started) * 1000
        entry_id = None
        if gateway.store is not None:
            secrets = upstream.config.secrets
            entry_id = await gateway.store.add_inspection(
                name, upstream.label, operation, what, dumps_arguments(arguments, secrets),
                status, duration, json.dumps(result)[:100_000] if result else error)
        return Inspection(id=entry_id, server=name, replica=upstream.label, operation=operation,
                          target=what, status=status, duration_ms=round(duration, 3),
                          result=result, error=error)

    @server.tool(name="gateway_inspect_server", annotations=read_only, tags={"admin"})
    async def inspect_server(name: _SERVER, replica: _REPLICA = None) -> Listing:
        """Everything one server offers right now, under its own (original) names, with
        full input/output schemas, annotations and arguments."""
        upstream = target(name, replica)
        try:
            catalog = await upstream.list_catalog()
        except (UpstreamError, MCPError) as exc:
            raise ToolError(str(exc)) from exc
        return Listing(server=name, replica=upstream.label,
                       protocol_version=upstream.protocol_version,
                       tools=_dump(catalog.tools), resources=_dump(catalog.resources),
                       resource_templates=_dump(catalog.templates),
                       prompts=_dump(catalog.prompts))

    @server.tool(name="gateway_inspect_call_tool", annotations=acting, tags={"admin"})
    async def inspect_call_tool(
        name: _SERVER,
        tool: Annotated[str, Field(description="the tool's original name on that server")],
        arguments: dict[str, Any] | None = None,
        replica: _REPLICA = None,
    ) -> Inspection:
        """Call one tool on one replica directly and return its raw result."""
        await gateway.audit("inspect_call_tool", f"{name}/{tool}", arguments)
        return await run(name, replica, "tools/call", tool, arguments,
                         lambda u: u.call_tool(tool, arguments or {}, None))

    @server.tool(name="gateway_inspect_read_resource", annotations=read_only, tags={"admin"})
    async def inspect_read_resource(
        name: _SERVER,
        uri: Annotated[str, Field(description="the resource's original URI on that server")],
        replica: _REPLICA = None,
    ) -> Inspection:
        """Read one resource (or a template-expanded URI) on one replica directly."""
        return await run(name, replica, "resources/read", uri, None,
                         lambda u: u.read_resource(uri, None))

    @server.tool(name="gateway_inspect_get_prompt", annotations=read_only, tags={"admin"})
    async def inspect_get_prompt(
        name: _SERVER,
        prompt: Annotated[str, Field(description="the prompt's original name on that server")],
        arguments: dict[str, str] | None = None,
        replica: _REPLICA = None,
    ) -> Inspection:
        """Render one prompt on one replica directly."""
        return await run(name, replica, "prompts/get", prompt, arguments,
                         lambda u: u.get_prompt(prompt, arguments, None))

    @server.tool(name="gateway_inspector_history", annotations=read_only, tags={"admin"})
    async def inspector_history(
        name: Annotated[str | None, Field(description="only this server")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 20,
        before_id: Annotated[int | None, Field(description="from a previous page")] = None,
    ) -> HistoryPage:
        """Past inspector operations, newest first (per server or all)."""
        store = gateway.require_store()
        rows = await store.inspections(server=name, limit=limit, before_id=before_id)
        return HistoryPage(entries=[asdict(r) for r in rows],
                           next_before_id=rows[-1].id if len(rows) == limit else None)

    @server.tool(name="gateway_inspector_clear", annotations=clearing, tags={"admin"})
    async def inspector_clear(
        name: Annotated[str | None, Field(description="only this server's history")] = None,
    ) -> dict[str, int]:
        """Delete the inspector history (of one server, or all)."""
        store = gateway.require_store()
        removed = await store.clear_inspections(name)
        await gateway.audit("inspector_clear", name, None, f"{removed} entries removed")
        return {"removed": removed}

    return {"gateway_inspect_server", "gateway_inspect_call_tool",
            "gateway_inspect_read_resource", "gateway_inspect_get_prompt",
            "gateway_inspector_history", "gateway_inspector_clear"}
