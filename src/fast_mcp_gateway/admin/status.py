"""The gateway's own MCP tools (``gateway_*``): look at and steer the upstream servers.

Every tool returns structured output (a pydantic model) and carries honest
annotations: listing/detail are read-only; reconnect/enable are idempotent;
disable is destructive (it removes that server's components from every host).
Mutating tools wait, bounded by the connect timeout, for the change to take effect
and return the server's resulting status, so a host sees the outcome, not a promise.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal

import mcp_types as types
from fastmcp.exceptions import ToolError
from pydantic import BaseModel, Field

from fast_mcp_gateway.errors import AdminError, UpstreamError
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.store import StorageError, Store
from fast_mcp_gateway.telemetry.recorder import Recorder
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState

if TYPE_CHECKING:
    from fast_mcp_gateway.gateway import Gateway

ServerName = Annotated[str, Field(description="the server's name in servers.yaml")]
_READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
_IDEMPOTENT = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=False
)
_DESTRUCTIVE = types.ToolAnnotations(
    read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False
)


class ReplicaStatus(BaseModel):
    """One replica (one live session) of a server."""

    replica: str
    index: int
    state: str
    health: str = Field(description="HEALTHY, DEGRADED, UNHEALTHY or UNKNOWN")
    breaker: str = Field(description="closed, open or half_open")
    breaker_retry_in_seconds: float | None = None
    inflight: int
    ewma_latency_ms: float | None
    success_rate: float | None = Field(description="over the health window")
    median_latency_ms: float | None
    weight: int
    draining: bool
    restarts: int
    pid: int | None
    uptime_seconds: float | None
    last_error: str | None


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
    health: str = Field(default="UNKNOWN", description="the best of its replicas' health")
    balance: str = "round_robin"
    replicas: list[ReplicaStatus] = Field(default_factory=list)


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


class HealthReport(BaseModel):
    servers: list[ServerStatus]
    healthy: int
    total: int


class CallRecord(BaseModel):
    id: str
    trace_id: str
    client: str
    kind: str
    exposed: str
    server: str
    original: str
    replica: str | None
    retries: int
    route: list[dict[str, str]] | None
    started_at: float = Field(description="unix seconds")
    duration_ms: float
    status: str = Field(description="success, error, timeout or rejected")
    error: str | None
    arguments: str | None = Field(description="JSON, with secrets redacted")
    response_bytes: int | None
    rule: str | None = Field(default=None, description="the route rule that chose the server")


class CallPage(BaseModel):
    calls: list[CallRecord]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class GroupStats(BaseModel):
    key: str = Field(description="server or tool name; '' for everything")
    count: int
    errors: int
    success_rate: float | None
    min_ms: float | None
    avg_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    previous_count: int = Field(description="calls in the window before this one")
    previous_p50_ms: float | None


class StatsReport(BaseModel):
    window_minutes: float
    groups: list[GroupStats]
    inflight: dict[str, int] = Field(description="calls in flight now, per server")
    recorder: dict[str, int] = Field(description="records written, dropped, queued")


_HEALTH_ORDER = ("HEALTHY", "DEGRADED", "UNKNOWN", "UNHEALTHY")


def replica_status(service: Service, upstream: Upstream) -> ReplicaStatus:
    now = time.monotonic()
    _samples, success, median = upstream.health.stats(now)
    retry_at = upstream.breaker.retry_at()
    return ReplicaStatus(
        replica=upstream.label, index=upstream.replica, state=str(upstream.state),
        health=str(upstream.status()), breaker=str(upstream.breaker.state),
        breaker_retry_in_seconds=None if retry_at is None else round(max(0.0, retry_at - now), 3),
        inflight=upstream.active,
        ewma_latency_ms=None if upstream.ewma_ms is None else round(upstream.ewma_ms, 3),
        success_rate=None if success is None else round(success, 4),
        median_latency_ms=None if median is None else round(median, 3),
        weight=upstream.weight, draining=upstream.replica in service.draining,
        restarts=upstream.restarts, pid=upstream.pid,
        uptime_seconds=None if upstream.uptime() is None else round(upstream.uptime() or 0, 3),
        last_error=upstream.last_error,
    )


def status_of(service: Service) -> ServerStatus:
    upstream = service.primary()
    config = service.config
    replicas = [replica_status(service, r) for r in service.replicas]
    errors = [f"{r.replica}: {r.last_error}" if len(replicas) > 1 else r.last_error
              for r in replicas if r.last_error]
    return ServerStatus(
        name=service.name,
        namespace=config.effective_namespace,
        transport=config.kind,
        state=str(service.state),
        enabled=service.state is not UpstreamState.DISABLED,
        protocol_version=upstream.protocol_version,
        last_error="; ".join(e for e in errors if e) or None,
        uptime_seconds=None if upstream.uptime() is None else round(upstream.uptime() or 0, 3),
        connect_seconds=None if upstream.connect_seconds is None
        else round(upstream.connect_seconds, 3),
        restarts=sum(r.restarts for r in service.replicas),
        pid=upstream.pid,
        description=config.description,
        health=min((r.health for r in replicas), key=_HEALTH_ORDER.index),
        balance=config.balance,
        replicas=replicas,
        **service.catalog.counts(),
    )


def register_admin_tools(gateway: Gateway) -> set[str]:
    """Add the admin tools to ``gateway.server``; returns their names (reserved)."""
    server, manager = gateway.server, gateway.manager

    def find(name: str) -> Service:
        try:
            return manager.get(name)
        except AdminError as exc:
            raise ToolError(str(exc)) from exc

    def find_replica(name: str, index: int) -> tuple[Service, Upstream]:
        service = find(name)
        try:
            return service, service.replica(index)
        except UpstreamError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(name="gateway_list_servers", annotations=_READ_ONLY, tags={"admin"})
    def list_servers() -> ServerList:
        """List every upstream server: state, transport, component counts, last error, uptime."""
        servers = [status_of(u) for u in manager.services.values()]
        return ServerList(
            servers=servers, ready=sum(s.state == "ready" for s in servers), total=len(servers)
        )

    @server.tool(name="gateway_server_detail", annotations=_READ_ONLY, tags={"admin"})
    def server_detail(
        name: ServerName,
        stderr_lines: Annotated[int, Field(ge=0, le=1000)] = 50,
        replica: Annotated[int | None, Field(
            description="whose stderr to show (default: the first ready replica)")] = None,
    ) -> ServerDetail:
        """One server in depth: capabilities, instructions, exposed names, stderr tail, config."""
        service = find(name)
        upstream = service.primary() if replica is None else find_replica(name, replica)[1]
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
        base = status_of(service).model_dump()
        return ServerDetail(
            **base,
            server_info=upstream.server_info.model_dump(mode="json", exclude_none=True)
            if upstream.server_info else None,
            capabilities=upstream.capabilities.model_dump(mode="json", exclude_none=True)
            if upstream.capabilities else None,
            instructions=upstream.instructions,
            stderr_tail=upstream.stderr.tail(stderr_lines),
            exposed=exposed,
            config=service.config.redacted(),
        )

    async def settle(service: Service, *, since_attempts: int | None) -> ServerStatus:
        timeout = service.connect_timeout + 5

        def done() -> bool:
            if since_attempts is None:
                return service.state is UpstreamState.DISABLED
            return service.attempts >= since_attempts + len(service.replicas)

        await service.wait_until(done, within=timeout)
        return status_of(service)

    @server.tool(name="gateway_reconnect_server", annotations=_IDEMPOTENT, tags={"admin"})
    async def reconnect_server(
        name: ServerName,
    ) -> ServerStatus:
        """Drop every session of the server and connect again (restarts stdio processes, and
        clears a 'failed' state). Returns the status after the new attempts."""
        service = find(name)
        before = service.attempts
        service.reconnect()
        status = await settle(service, since_attempts=before)
        await gateway.audit("reconnect_server", name, None, status.state)
        return status

    @server.tool(name="gateway_enable_server", annotations=_IDEMPOTENT, tags={"admin"})
    async def enable_server(
        name: ServerName,
    ) -> ServerStatus:
        """Enable a disabled server: connect it and expose its components again."""
        service = find(name)
        if service.state is not UpstreamState.DISABLED:
            return status_of(service)
        before = service.attempts
        service.set_enabled(True)
        status = await settle(service, since_attempts=before)
        await gateway.persist_enabled(name, True)
        await gateway.audit("enable_server", name, None, status.state)
        return status

    @server.tool(name="gateway_disable_server", annotations=_DESTRUCTIVE, tags={"admin"})
    async def disable_server(
        name: ServerName,
    ) -> ServerStatus:
        """Disable a server: stop it (its processes for stdio) and remove its components from
        every connected host until it is enabled again. In-flight calls to it fail."""
        service = find(name)
        service.set_enabled(False)
        status = await settle(service, since_attempts=None)
        await gateway.persist_enabled(name, False)
        await gateway.audit("disable_server", name, None, status.state)
        return status

    @server.tool(name="gateway_health", annotations=_READ_ONLY, tags={"admin"})
    def health() -> HealthReport:
        """Health of every server and replica: status, circuit breaker, calls in flight,
        EWMA latency, success rate, restarts, last error."""
        servers = [status_of(s) for s in manager.services.values()]
        return HealthReport(servers=servers, total=len(servers),
                            healthy=sum(s.health == "HEALTHY" for s in servers))

    @server.tool(name="gateway_reset_breaker", annotations=_IDEMPOTENT, tags={"admin"})
    async def reset_breaker(
        name: ServerName,
        replica: Annotated[int | None, Field(description="one replica; default: all")] = None,
    ) -> ServerStatus:
        """Close the circuit breaker of a replica (or all), letting calls through again."""
        service = find(name)
        targets = service.replicas if replica is None else [find_replica(name, replica)[1]]
        for upstream in targets:
            upstream.breaker.reset()
        await gateway.audit("reset_breaker", name, {"replica": replica})
        return status_of(service)

    @server.tool(name="gateway_restart_replica", annotations=_IDEMPOTENT, tags={"admin"})
    async def restart_replica(
        name: ServerName,
        replica: Annotated[int, Field(ge=0, description="replica index (0 for single)")],
    ) -> ReplicaStatus:
        """Restart one replica (its process for stdio); the others keep serving."""
        service, upstream = find_replica(name, replica)
        before = upstream.attempts
        upstream.reconnect()
        await upstream.wait_until(lambda: upstream.attempts > before,
                                  within=upstream.connect_timeout + 5)
        await gateway.audit("restart_replica", upstream.label, None, str(upstream.state))
        return replica_status(service, upstream)

    @server.tool(name="gateway_drain_replica", annotations=_IDEMPOTENT, tags={"admin"})
    async def drain_replica(
        name: ServerName,
        replica: Annotated[int, Field(ge=0, description="replica index")],
        drain: Annotated[bool, Field(description="false puts it back in the pool")] = True,
    ) -> ReplicaStatus:
        """Take a replica out of the balancing pool (new calls avoid it; calls in flight
        finish), or put it back. Waits for its in-flight calls to finish (bounded)."""
        service, upstream = find_replica(name, replica)
        if drain:
            service.draining.add(replica)
            await upstream.wait_until(lambda: upstream.active == 0,
                                      within=upstream.call_timeout)
        else:
            service.draining.discard(replica)
        await gateway.audit("drain_replica", upstream.label, {"drain": drain})
        return replica_status(service, upstream)

    @server.tool(name="gateway_health_history", annotations=_READ_ONLY, tags={"admin"})
    async def health_history(
        name: Annotated[str | None, Field(description="only this server")] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        before_id: Annotated[int | None, Field(description="from a previous page")] = None,
    ) -> dict[str, Any]:
        """State and health transitions of servers and replicas, newest first."""
        await gateway.health_flushed(within=2)
        rows = await gateway.require_store().health_records(server=name, limit=limit,
                                                            before_id=before_id)
        return {"records": [asdict(r) for r in rows],
                "next_before_id": rows[-1].id if len(rows) == limit else None}

    @server.tool(name="gateway_audit", annotations=_READ_ONLY, tags={"admin"})
    async def audit_log(
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        before_id: Annotated[int | None, Field(description="from a previous page")] = None,
    ) -> dict[str, Any]:
        """Who changed what through the admin tools, newest first."""
        rows = await gateway.require_store().audit(limit=limit, before_id=before_id)
        return {"entries": [asdict(r) for r in rows],
                "next_before_id": rows[-1].id if len(rows) == limit else None}

    def store_of() -> tuple[Store, Recorder]:
        store = gateway.require_store()
        assert gateway.recorder is not None
        return store, gateway.recorder

    @server.tool(name="gateway_calls", annotations=_READ_ONLY, tags={"admin"})
    async def calls(
        server: Annotated[str | None, Field(description="only this server")] = None,
        tool: Annotated[str | None, Field(description="only this exposed name")] = None,
        status: Annotated[Literal["success", "error", "timeout", "rejected"] | None,
                          Field(description="only this outcome")] = None,
        since_minutes: Annotated[float | None, Field(gt=0)] = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 20,
        cursor: Annotated[str | None, Field(description="from a previous page")] = None,
        oldest_first: bool = False,
    ) -> CallPage:
        """The latest calls through the gateway (newest first), filtered and paged."""
        store, recorder = store_of()
        await recorder.flushed(within=2)
        since = None if since_minutes is None else time.time() - since_minutes * 60
        try:
            rows, next_cursor = await store.invocations(
                since=since, server=server, tool=tool, status=status, limit=limit,
                cursor=cursor, newest_first=not oldest_first)
        except StorageError as exc:
            raise ToolError(str(exc)) from exc
        return CallPage(calls=[CallRecord(**{k: getattr(r, k) for k in CallRecord.model_fields})
                               for r in rows], next_cursor=next_cursor)

    @server.tool(name="gateway_stats", annotations=_READ_ONLY, tags={"admin"})
    async def stats(
        group_by: Literal["none", "server", "tool"] = "none",
        since_minutes: Annotated[float, Field(gt=0, le=60 * 24 * 365)] = 60,
        server: Annotated[str | None, Field(description="only this server")] = None,
    ) -> StatsReport:
        """Call counts, success rates and latency (min/avg/max, p50/p95/p99) over a window,
        with the previous window of the same length for the trend."""
        store, recorder = store_of()
        await recorder.flushed(within=2)
        now = time.time()
        window = since_minutes * 60
        by = None if group_by == "none" else group_by
        current = await store.stats(since=now - window, server=server, group_by=by)
        previous = await store.stats(since=now - 2 * window, until=now - window,
                                     server=server, group_by=by)
        groups = []
        for key, agg in sorted(current.items()):
            before = previous.get(key)
            groups.append(GroupStats(
                key=key, count=agg.count, errors=agg.errors, success_rate=agg.success_rate,
                min_ms=agg.min_ms, avg_ms=agg.avg_ms, max_ms=agg.max_ms, p50_ms=agg.p50_ms,
                p95_ms=agg.p95_ms, p99_ms=agg.p99_ms,
                previous_count=before.count if before else 0,
                previous_p50_ms=before.p50_ms if before else None,
            ))
        inflight = {name: sum(r.active for r in s.replicas)
                    for name, s in manager.services.items()}
        return StatsReport(window_minutes=since_minutes, groups=groups, inflight=inflight,
                           recorder=recorder.stats())

    return {
        "gateway_health_history",
        "gateway_audit",
        "gateway_calls",
        "gateway_stats",
        "gateway_list_servers",
        "gateway_server_detail",
        "gateway_reconnect_server",
        "gateway_enable_server",
        "gateway_disable_server",
        "gateway_health",
        "gateway_reset_breaker",
        "gateway_restart_replica",
        "gateway_drain_replica",
    }
