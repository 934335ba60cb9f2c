"""The ``gateway_*`` MCP tools: thin adapters from MCP to the admin operations.

Each tool is declared once, below, with ``@admin_tool(name, annotations)``: its
parameters (their types and descriptions are the tool's input schema), its docstring
(the tool's description) and one call to an operation.  The servers-and-replicas
adapters (``server_tools``) and the alert ones (``alert_tools``) live in modules of their
own and are declared here all the same, in order.  ``ADMIN_TOOLS`` is that
registry.  The gateway lists them from ``tools.json``, generated from it, and loads
this module on the first call of one (``listed.py``); ``register_admin_tools`` builds
them all at once.  Their names are reserved in the catalog: no upstream tool can shadow
an admin tool, not even one added later, and no list of names is kept by hand.

Only this module knows MCP: it names the actor (the caller's token or JWT name, else
the host's client id) and turns the gateway's errors into ``ToolError`` once, in
``_bind``.  Every admin tool needs scope ``admin``: a caller without it does not see
them (``AdminVisibility``) and a call is refused naming the scope; an admin restricted
to some servers sees, inspects and changes only those (``scope.beyond_servers`` refuses
arguments naming another, ``views.restricted_view`` cuts the read-only answers).  The
caller comes from the principal resolver the gateway injects (HTTP: the verified token;
stdio: ``LOCAL``).  Annotations are honest: lists are read-only, reconnect/enable
idempotent, disable destructive (for every host).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import mcp_types as types
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools import Tool
from pydantic import Field

from fast_mcp_gateway.admin import (
    alert_tools,
    history,
    inspector,
    pins,
    routes,
    server_tools,
    servers,
    sign_in_tools,
)
from fast_mcp_gateway.admin.arguments import PlainArgumentsTool
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.invalid import unread
from fast_mcp_gateway.admin.lean import lean_output_schema, lean_schema
from fast_mcp_gateway.admin.models import (
    CallPage,
    ChangeReport,
    HistoryPage,
    Inspection,
    Listing,
    StatsReport,
)
from fast_mcp_gateway.admin.scope import (
    CALLER,
    PrincipalResolver,
    actor,
    beyond_servers,
    guard_admin_tools,
    narrowed,
    refusal,
    turned_off,
)
from fast_mcp_gateway.admin.server_tools import ServerName
from fast_mcp_gateway.admin.views import restricted_view
from fast_mcp_gateway.config.names import NEW_NAME_CHARS
from fast_mcp_gateway.config.registrations import not_carried_words
from fast_mcp_gateway.config.schema import AdminKind, RoutePriority, RowId
from fast_mcp_gateway.config.settings import MAX_INSTANCE_ID
from fast_mcp_gateway.errors import GatewayError, UnknownServer
from fast_mcp_gateway.principal import LOCAL

READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
IDEMPOTENT = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
DESTRUCTIVE = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False
)
# Calling an arbitrary upstream tool can do anything that tool does.
ACTING = types.ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)

# Argument types (module level: FastMCP resolves annotations in module globals).
NameArg = Annotated[str, Field(description="the server's name", min_length=1)]
NewNameArg = Annotated[str, Field(description=f"the new server's name: {NEW_NAME_CHARS}",
                                  min_length=1)]
ReplicaArg = Annotated[int | None, Field(ge=0, description="replica index (default: the first "
                                                             "ready one)")]
OnlyServer = Annotated[str | None, Field(description="only this server")]
BeforeId = Annotated[RowId | None, Field(description="from a previous page")]
PatternArg = Annotated[str, Field(min_length=1, description="an exposed tool name, prefix or "
                                                             "wildcard such as 'search_*'")]
MatchArg = Literal["exact", "prefix", "wildcard"]
ConfigArg = Annotated[dict[str, Any], Field(
    description="settings as in servers.yaml, e.g. {\"command\": \"uvx\", \"args\": "
                "[\"mcp-server-time\"]} or {\"url\": \"http://127.0.0.1:9000/mcp\"}; "
                "use ${VAR} for secrets")]


@dataclass(frozen=True)
class AdminTool:
    """One ``gateway_*`` tool: its name, annotations and adapter ``fn(ctx, **arguments)``."""

    name: str
    annotations: types.ToolAnnotations
    fn: Callable[..., Awaitable[Any]]


ADMIN_TOOLS: list[AdminTool] = []


def admin_tool(name: str, annotations: types.ToolAnnotations
               ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Declare an admin tool (its adapter takes the ``AdminContext`` first)."""

    def declare(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        if any(tool.name == name for tool in ADMIN_TOOLS):
            raise ValueError(f"admin tool '{name}' is declared twice")
        ADMIN_TOOLS.append(AdminTool(name, annotations, fn))
        return fn

    return declare


def admin_kind(tool: AdminTool) -> AdminKind:
    """``read`` for a read-only tool, else ``mutate`` (what ``gateway.admin`` limits)."""
    return "read" if tool.annotations.read_only_hint else "mutate"


def register_admin_tools(server: FastMCP[Any], ctx: AdminContext,
                         principal: PrincipalResolver = lambda: LOCAL, *,
                         listed: Callable[[str], bool] = lambda name: True,
                         registered: Callable[[Tool], None] = lambda t: None) -> frozenset[str]:
    """Every admin tool ``gateway.admin`` allows, built now (the gateway lists them from
    ``tools.json`` instead: ``listed.py``), then ``guard_admin_tools`` (their names)."""
    for tool in ADMIN_TOOLS:
        if ctx.options.allows_admin(admin_kind(tool)):
            registered(server.add_tool(made_tool(tool, ctx, principal)))
    names = frozenset(tool.name for tool in ADMIN_TOOLS)
    return guard_admin_tools(server, names, principal, listed)


def declared(name: str) -> AdminTool:
    """The admin tool declared as ``name``."""
    for tool in ADMIN_TOOLS:
        if tool.name == name:
            return tool
    raise LookupError(f"no admin tool '{name}' is declared; regenerate admin/tools.json: "
                      "python -m fast_mcp_gateway.admin.doc")


def made_tool(tool: AdminTool, ctx: AdminContext, principal: PrincipalResolver) -> Tool:
    """``tool`` as FastMCP runs it: its operation over ``ctx`` for callers ``principal()``
    says have scope ``admin``, with lean schemas (what ``tools.json`` holds)."""
    made = PlainArgumentsTool.from_function(
        _bind(tool, ctx, principal), name=tool.name,
        description=inspect.getdoc(tool.fn), annotations=tool.annotations)
    return made.model_copy(update={"parameters": lean_schema(made.parameters),
                                   "output_schema": lean_output_schema(made.output_schema)})


def _bind(tool: AdminTool, ctx: AdminContext,
          principal: PrincipalResolver) -> Callable[..., Awaitable[Any]]:
    """``tool.fn`` with ``ctx`` bound, as FastMCP sees a plain function: the adapter's
    own parameters and resolved types (a ``functools.partial`` would make FastMCP
    resolve them in its namespace), no docstring (a docstring loads griffe, ~2 MB, to
    find sections these have none of).  Gateway errors become ``ToolError`` here."""
    hints = typing.get_type_hints(tool.fn, include_extras=True)
    signature = inspect.signature(tool.fn)
    parameters = [p.replace(annotation=hints[p.name])
                  for p in list(signature.parameters.values())[1:]]

    async def run(**arguments: Any) -> Any:
        caller, kind = principal(), admin_kind(tool)
        arguments = narrowed(caller, tool.name, arguments)
        reason = (refusal(caller, tool.name)
                  or turned_off(ctx.options, kind, f"'{tool.name}'")
                  or beyond_servers(caller, tool.name, kind == "read", arguments,
                                    ctx.manager.services))
        if reason is not None:
            raise ToolError(reason)
        token = CALLER.set(caller)
        try:
            return restricted_view(tool.name, await tool.fn(ctx, **arguments), caller, ctx)
        except UnknownServer as exc:  # a restricted caller is told of its servers only
            raise ToolError(str(exc.seen_by(caller.may_use, caller.no_server,
                                            unread(ctx)))) from exc
        except GatewayError as exc:
            raise ToolError(str(exc)) from exc
        finally:
            CALLER.reset(token)

    run.__name__ = run.__qualname__ = tool.fn.__name__
    run.__annotations__ = {p.name: p.annotation for p in parameters} | {
        "return": hints["return"]}
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=hints["return"])
    return run


# -- servers and replicas (adapters in server_tools: this module is full) ----------

admin_tool("gateway_list_servers", READ_ONLY)(server_tools.list_servers)
admin_tool("gateway_server_detail", READ_ONLY)(server_tools.server_detail)
admin_tool("gateway_reconnect_server", IDEMPOTENT)(server_tools.reconnect_server)
admin_tool("gateway_enable_server", IDEMPOTENT)(server_tools.enable_server)
admin_tool("gateway_disable_server", DESTRUCTIVE)(server_tools.disable_server)
admin_tool("gateway_health", READ_ONLY)(server_tools.health)
admin_tool("gateway_reset_breaker", IDEMPOTENT)(server_tools.reset_breaker)
admin_tool("gateway_restart_replica", IDEMPOTENT)(server_tools.restart_replica)
admin_tool("gateway_drain_replica", IDEMPOTENT)(server_tools.drain_replica)
admin_tool("gateway_sign_in", IDEMPOTENT)(sign_in_tools.sign_in)
admin_tool("gateway_sign_out", DESTRUCTIVE)(sign_in_tools.sign_out)


# -- history and statistics ---------------------------------------------------------


@admin_tool("gateway_health_history", READ_ONLY)
async def health_history(
    ctx: AdminContext,
    name: OnlyServer = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
    before_id: BeforeId = None,
) -> dict[str, Any]:
    """State and health transitions of servers and replicas, newest first."""
    return await history.health_history(ctx, server=name, limit=limit, before_id=before_id)


@admin_tool("gateway_audit", READ_ONLY)
async def audit_log(
    ctx: AdminContext,
    limit: Annotated[int, Field(ge=1, le=500)] = 50,
    before_id: BeforeId = None,
) -> dict[str, Any]:
    """Who changed what through the admin tools, newest first."""
    return await history.audit_log(ctx, limit=limit, before_id=before_id)


@admin_tool("gateway_calls", READ_ONLY)
async def calls(
    ctx: AdminContext,
    server: OnlyServer = None,
    tool: Annotated[str | None, Field(description="only this exposed name")] = None,
    status: Annotated[Literal["success", "error", "timeout", "rejected", "cancelled"] | None,
                      Field(description="only this outcome")] = None,
    since_minutes: Annotated[float | None, Field(gt=0)] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 20,
    cursor: Annotated[str | None, Field(description="from a previous page")] = None,
    oldest_first: bool = False,
    instance: Annotated[str | None, Field(
        max_length=MAX_INSTANCE_ID,
        description="only the calls this gateway served (its instance_id: gateways "
                    "sharing a store)")] = None,
) -> CallPage:
    """The latest calls through the gateway (newest first), filtered and paged."""
    return await history.calls(ctx, server=server, tool=tool, status=status,
                               since_minutes=since_minutes, limit=limit, cursor=cursor,
                               oldest_first=oldest_first, instance=instance)


@admin_tool("gateway_stats", READ_ONLY)
async def stats(
    ctx: AdminContext,
    group_by: Literal["none", "server", "tool"] = "none",
    since_minutes: Annotated[float, Field(gt=0, le=60 * 24 * 365)] = 60,
    server: OnlyServer = None,
) -> StatsReport:
    """Call counts, success rates and latency (min/avg/max, p50/p95/p99) over a window,
    with the previous window of the same length for the trend."""
    caller = CALLER.get()
    return await history.stats(ctx, group_by=group_by, since_minutes=since_minutes,
                               server=server, servers=caller.servers if caller else None)


# -- inspector ----------------------------------------------------------------------


@admin_tool("gateway_inspect_server", READ_ONLY)
async def inspect_server(ctx: AdminContext, name: ServerName,
                         replica: ReplicaArg = None) -> Listing:
    """Everything one server offers right now, under its own (original) names, with
    full input/output schemas, annotations and arguments."""
    return await inspector.inspect_server(ctx, name, replica)


@admin_tool("gateway_inspect_call_tool", ACTING)
async def inspect_call_tool(
    ctx: AdminContext,
    name: ServerName,
    tool: Annotated[str, Field(description="the tool's original name on that server")],
    arguments: dict[str, Any] | None = None,
    replica: ReplicaArg = None,
) -> Inspection:
    """Call one tool on one replica directly and return its raw result."""
    return await inspector.call_tool(ctx, actor(), name, tool, arguments, replica)


@admin_tool("gateway_inspect_read_resource", READ_ONLY)
async def inspect_read_resource(
    ctx: AdminContext,
    name: ServerName,
    uri: Annotated[str, Field(description="the resource's original URI on that server")],
    replica: ReplicaArg = None,
) -> Inspection:
    """Read one resource (or a template-expanded URI) on one replica directly."""
    return await inspector.read_resource(ctx, name, uri, replica)


@admin_tool("gateway_inspect_get_prompt", READ_ONLY)
async def inspect_get_prompt(
    ctx: AdminContext,
    name: ServerName,
    prompt: Annotated[str, Field(description="the prompt's original name on that server")],
    arguments: dict[str, str] | None = None,
    replica: ReplicaArg = None,
) -> Inspection:
    """Render one prompt on one replica directly."""
    return await inspector.get_prompt(ctx, name, prompt, arguments, replica)


@admin_tool("gateway_inspector_history", READ_ONLY)
async def inspector_history(
    ctx: AdminContext,
    name: Annotated[str | None, Field(description="only this server")] = None,
    limit: Annotated[int, Field(ge=1, le=500)] = 20,
    before_id: BeforeId = None,
) -> HistoryPage:
    """Past inspector operations, newest first (per server or all)."""
    return await history.inspector_history(ctx, server=name, limit=limit,
                                           before_id=before_id)


@admin_tool("gateway_inspector_clear", DESTRUCTIVE)
async def inspector_clear(
    ctx: AdminContext,
    name: Annotated[str | None, Field(description="only this server's history")] = None,
) -> dict[str, int]:
    """Delete the inspector history (of one server, or all)."""
    return await history.inspector_clear(ctx, actor(), name)


# -- server management --------------------------------------------------------------


@admin_tool("gateway_add_server", IDEMPOTENT)
async def add_server(ctx: AdminContext, name: NewNameArg, config: ConfigArg) -> ChangeReport:
    """Register a new upstream server; it starts now and after every restart."""
    return await servers.add_server(ctx, actor(), name, config)


@admin_tool("gateway_update_server", IDEMPOTENT)
async def update_server(ctx: AdminContext, name: NameArg, config: ConfigArg) -> ChangeReport:
    """Replace a server's settings (overrides servers.yaml): a change of how it is
    reached or started restarts it now; one of its description, curation or call
    policies applies as it runs."""
    return await servers.update_server(ctx, actor(), name, config)


@admin_tool("gateway_remove_server", DESTRUCTIVE)
async def remove_server(ctx: AdminContext, name: NameArg) -> ChangeReport:
    """Stop a server and forget it (a servers.yaml entry stays removed until re-added)."""
    return await servers.remove_server(ctx, actor(), name)


@admin_tool("gateway_export_servers", READ_ONLY)
async def export(ctx: AdminContext, format: Literal["yaml", "claude"] = "yaml") -> str:
    """The running servers as servers.yaml or as Claude-Desktop mcpServers JSON
    (credentials and ${VAR} values are shown as ***); a second text block names the
    settings the Claude file does not carry."""
    caller = CALLER.get()
    only = caller.servers if caller else None
    text = servers.export(ctx, format, only)
    dropped = servers.not_exported(ctx, only) if format == "claude" else {}
    if not dropped:
        return text
    from fastmcp.tools import ToolResult  # the JSON stays the result; a warning beside it

    warning = f"warning: {not_carried_words(dropped)}"
    # Passed through by FastMCP as is; ``str`` stays the declared output (its schema).
    return typing.cast(str, ToolResult(
        content=[types.TextContent(type="text", text=text),
                 types.TextContent(type="text", text=warning)],
        structured_content={"result": text}, meta={"not_carried": dropped}))


@admin_tool("gateway_import_servers", IDEMPOTENT)
async def import_servers(
    ctx: AdminContext,
    content: Annotated[str, Field(description="servers.yaml text, or a Claude-Desktop "
                                              "mcpServers file (JSON or YAML)")],
    replace_existing: bool = False,
) -> ChangeReport:
    """Register every server of a config file (ours or Claude Desktop's); existing
    names are skipped unless replace_existing."""
    return await servers.import_servers(ctx, actor(), content, replace_existing)


@admin_tool("gateway_reload_config", IDEMPOTENT)
async def reload_config(ctx: AdminContext) -> ChangeReport:
    """Re-read servers.yaml now: restart the servers whose connection settings changed,
    update the others in place. An invalid file is rejected with its errors and the
    running config is kept."""
    return await servers.reload_config(ctx, actor())


# -- routes -------------------------------------------------------------------------


@admin_tool("gateway_add_route", IDEMPOTENT)
async def add_route(ctx: AdminContext, pattern: PatternArg, target: NameArg,
                    match: MatchArg = "exact", priority: RoutePriority = 0) -> dict[str, Any]:
    """Send calls of matching exposed tool names to another server (same tool name
    there). Higher priority wins; without a rule a tool goes to its own server."""
    return await routes.add_route(ctx, actor(), pattern, target, match, priority)


@admin_tool("gateway_update_route", IDEMPOTENT)
async def update_route(ctx: AdminContext, route_id: RowId, pattern: PatternArg, target: NameArg,
                       match: MatchArg = "exact", priority: RoutePriority = 0) -> dict[str, Any]:
    """Change a route rule."""
    return await routes.update_route(ctx, actor(), route_id, pattern, target, match, priority)


@admin_tool("gateway_delete_route", DESTRUCTIVE)
async def delete_route(ctx: AdminContext, route_id: RowId) -> dict[str, Any]:
    """Delete a route rule (its tools go back to their own servers)."""
    return await routes.delete_route(ctx, actor(), route_id)


@admin_tool("gateway_list_routes", READ_ONLY)
async def list_routes(ctx: AdminContext) -> dict[str, Any]:
    """Route rules in decision order (priority, then age).  The store unreadable: those in
    force in this gateway, store_unreachable saying so."""
    return await routes.list_routes(ctx, principal=CALLER.get())


# -- pinned definitions -------------------------------------------------------------


@admin_tool("gateway_pin_status", READ_ONLY)
async def pin_status(ctx: AdminContext, server: OnlyServer = None) -> pins.PinReport:
    """Tool/prompt/resource definitions that changed, are new or carry injection markers
    since they were pinned (with diffs), and how many are pinned per server."""
    return pins.pin_status(ctx, server)


@admin_tool("gateway_approve_changes", IDEMPOTENT)
async def approve_changes(ctx: AdminContext, server: NameArg, names: Annotated[
        list[str] | None, Field(description="upstream names to approve (default: all of "
                                            "the server's findings)")] = None
                          ) -> pins.ApprovalReport:
    """Approve a server's changed/new definitions as they are now (shows the diffs): they
    become its pins and held ones are listed and callable again."""
    return await pins.approve_changes(ctx, actor(), server, names)


@admin_tool("gateway_forget_pins", DESTRUCTIVE)
async def forget_pins(ctx: AdminContext, server: NameArg) -> pins.ForgetReport:
    """Drop the pinned and pending definitions kept of a server no longer configured
    (gateway_pin_status counts them in not_configured): added again, it is trusted on
    first use."""
    return await pins.forget_pins(ctx, actor(), server)

for _tool in alert_tools.TOOLS:  # declared in their own module (this one is full)
    admin_tool(_tool.name, {"read": READ_ONLY, "idempotent": IDEMPOTENT,
                            "destructive": DESTRUCTIVE}[_tool.kind])(_tool.fn)

# What the gateway reserves; read by non-MCP code (REST, docs) that must know the names.
ADMIN_TOOL_NAMES: frozenset[str] = frozenset(tool.name for tool in ADMIN_TOOLS)
