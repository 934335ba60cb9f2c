"""The gateway's own MCP tools (``gateway_*``): look at and steer the upstream servers.

Every tool returns structured output (a pydantic model) and carries honest
annotations: listing/detail are read-only; reconnect/enable are idempotent;
disable is destructive (it removes that server's components from every host).
Mutating tools wait, bounded by the connect timeout, for the change to take effect
and return the server's resulting status, so a host sees the outcome, not a promise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import mcp_types as types
from fastmcp.exceptions import ToolError
from pydantic import BaseModel, Field

from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.upstream import Upstream, UpstreamState

if TYPE_CHECKING:
    from fast_mcp_gateway.gateway import Gateway

_READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
_IDEMPOTENT = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
_DESTRUCTIVE = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False
)


class ServerStatus(BaseModel):
    """One upstream server as the gateway sees it now."""

    name: str
    namespace: str
    transport: str
    state: str
    enabled: bool
    protocol_version: str | None
    tools: int
    resources: int
    resource_templates: int
    prompts: int
    last_error: str | None
    uptime_seconds: float | None
    connect_seconds: float | None
    restarts: int
    pid: int | None = Field(default=None, description="the stdio server's process id")
    description: str | None = None


class ServerList(BaseModel):
    servers: list[ServerStatus]
    ready: int = Field(description="how many servers are ready")
    total: int


class ExposedName(BaseModel):
    kind: str
    exposed: str
    original: str
    renamed_because: str | None = None


class ServerDetail(ServerStatus):
    server_info: dict[str, Any] | None
    capabilities: dict[str, Any] | None
    instructions: str | None
    stderr_tail: list[str]
    exposed: list[ExposedName]
    config: dict[str, Any]


def status_of(upstream: Upstream) -> ServerStatus:
    counts = upstream.catalog.counts()
    config = upstream.config
    return ServerStatus(
        name=upstream.name,
        namespace=config.effective_namespace,
        transport=config.kind,
        state=str(upstream.state),
        enabled=upstream.state is not UpstreamState.DISABLED,
        protocol_version=upstream.protocol_version,
        last_error=upstream.last_error,
        uptime_seconds=None if upstream.uptime() is None else round(upstream.uptime() or 0, 3),
        connect_seconds=None if upstream.connect_seconds is None
        else round(upstream.connect_seconds, 3),
        restarts=upstream.restarts,
        pid=upstream.pid,
        description=config.description,
        **counts,
    )


def register_admin_tools(gateway: Gateway) -> set[str]:
    """Add the admin tools to ``gateway.server``; returns their names (reserved)."""
    server, manager = gateway.server, gateway.manager

    def find(name: str) -> Upstream:
        try:
            return manager.get(name)
        except AdminError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(name="gateway_list_servers", annotations=_READ_ONLY, tags={"admin"})
    def list_servers() -> ServerList:
        """List every upstream server: state, transport, component counts, last error, uptime."""
        servers = [status_of(u) for u in manager.upstreams.values()]
        return ServerList(
            servers=servers, ready=sum(s.state == "ready" for s in servers), total=len(servers)
        )

    @server.tool(name="gateway_server_detail", annotations=_READ_ONLY, tags={"admin"})
    def server_detail(
        name: Annotated[str, Field(description="the server's name in servers.yaml")],
        stderr_lines: Annotated[int, Field(ge=0, le=1000)] = 50,
    ) -> ServerDetail:
        """One server in depth: capabilities, instructions, exposed names, stderr tail, config."""
        upstream = find(name)
        view = manager.view
        renames = {(r.server, r.original): r.reason for r in view.renames}
        exposed = [
            ExposedName(kind=kind, exposed=exp, original=origin.original,
                        renamed_because=renames.get((origin.server, origin.original)))
            for kind, table in (("tool", view.tools), ("prompt", view.prompts),
                                ("resource", view.resources), ("resource_template", view.templates))
            for exp, (origin, _) in table.items()
            if origin.server == upstream.name
        ]
        base = status_of(upstream).model_dump()
        return ServerDetail(
            **base,
            server_info=upstream.server_info.model_dump(mode="json", exclude_none=True)
            if upstream.server_info else None,
            capabilities=upstream.capabilities.model_dump(mode="json", exclude_none=True)
            if upstream.capabilities else None,
            instructions=upstream.instructions,
            stderr_tail=upstream.stderr.tail(stderr_lines),
            exposed=exposed,
            config=upstream.config.redacted(),
        )

    async def settle(upstream: Upstream, *, since_attempts: int | None) -> ServerStatus:
        timeout = upstream.connect_timeout + 5

        def done() -> bool:
            if since_attempts is None:
                return upstream.state is UpstreamState.DISABLED
            return upstream.attempts > since_attempts

        await upstream.wait_until(done, within=timeout)
        return status_of(upstream)

    @server.tool(name="gateway_reconnect_server", annotations=_IDEMPOTENT, tags={"admin"})
    async def reconnect_server(
        name: Annotated[str, Field(description="the server's name in servers.yaml")],
    ) -> ServerStatus:
        """Drop the server's session and connect again (restarts a stdio process, and
        clears a 'failed' state). Returns the status after the new attempt."""
        upstream = find(name)
        before = upstream.attempts
        upstream.reconnect()
        return await settle(upstream, since_attempts=before)

    @server.tool(name="gateway_enable_server", annotations=_IDEMPOTENT, tags={"admin"})
    async def enable_server(
        name: Annotated[str, Field(description="the server's name in servers.yaml")],
    ) -> ServerStatus:
        """Enable a disabled server: connect it and expose its components again."""
        upstream = find(name)
        if upstream.state is not UpstreamState.DISABLED:
            return status_of(upstream)
        before = upstream.attempts
        upstream.set_enabled(True)
        return await settle(upstream, since_attempts=before)

    @server.tool(name="gateway_disable_server", annotations=_DESTRUCTIVE, tags={"admin"})
    async def disable_server(
        name: Annotated[str, Field(description="the server's name in servers.yaml")],
    ) -> ServerStatus:
        """Disable a server: stop it (its process for stdio) and remove its components from
        every connected host until it is enabled again. In-flight calls to it fail."""
        upstream = find(name)
        upstream.set_enabled(False)
        return await settle(upstream, since_attempts=None)

    return {
        "gateway_list_servers",
        "gateway_server_detail",
        "gateway_reconnect_server",
        "gateway_enable_server",
        "gateway_disable_server",
    }
