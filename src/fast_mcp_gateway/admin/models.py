"""What admin operations return: the structured results of the ``gateway_*`` tools.

The same models serve every transport (MCP tools today, REST and the dashboard next), so
a field added here shows up everywhere at once; field descriptions become the tools'
output schemas.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# Server management's report lives apart: the gateway needs it at start (report.py).
from fast_mcp_gateway.admin.report import ChangeReport as ChangeReport
from fast_mcp_gateway.upstream.sign_in_status import SignInStatus

# -- servers and replicas -----------------------------------------------------------

RESTARTS = ("times its session was started again since it started with its current "
            "settings (a change of how it is reached or started begins the count again): "
            "by the gateway after a crash or a lost connection (each attempt counted) and "
            "by a reconnect or an enable alike")


State = Literal["starting", "ready", "reconnecting", "signed_out", "failed", "disabled",
                "stopped", "invalid"]
"""A server's states (``UpstreamState``'s, and ``invalid``: not started for its entry)."""


class _Lean(BaseModel):
    """A status that may be shown lean (``lean()``): its fields at their default
    (``LEAN_DEFAULTS``) left out when serialized, as ``gateway_list_servers`` and
    ``gateway_health`` answer unless asked for ``detail``.  A field that says something
    is wrong is never at its default, so it stays."""

    _lean: bool = PrivateAttr(default=False)

    def lean(self) -> Any:
        """A copy shown lean (its replicas too, and its per-client sessions: replicas
        of one host each, up to ``max_clients`` of them)."""
        copy = self.model_copy(deep=True)
        copy._lean = True
        clients = getattr(copy, "client_sessions", None)
        for replica in [*getattr(copy, "replicas", ()),
                        *(clients.sessions if clients is not None else ())]:
            replica._lean = True
        return copy

    # No return annotation: pydantic would take it for the serialized schema (``Any``
    # left the tools' output schemas empty); without one it keeps the model's.
    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if not self._lean or not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if k not in LEAN_LEFT_OUT
                and (k not in LEAN_DEFAULTS or v != LEAN_DEFAULTS[k])}


class ReplicaStatus(_Lean):
    """One replica (one live session) of a server."""

    replica: str
    index: int
    state: str
    health: str = Field(description="HEALTHY, DEGRADED, UNHEALTHY or UNKNOWN (also a "
                                    "disabled server)")
    breaker: str = Field(default="closed", description="closed, open or half_open")
    breaker_retry_in_seconds: float | None = None
    stalled: str | None = Field(default=None, description=(
        "why it is suspected of hanging calls (then its health is UNHEALTHY and other "
        "replicas are preferred): 'stalled: 3 calls cancelled by their hosts after 12 s "
        "with no answer', how long, and when a call goes to it as a trial"))
    inflight: int = 0
    ewma_latency_ms: float | None = None
    success_rate: float | None = Field(default=None, description="over the health window")
    median_latency_ms: float | None = None
    weight: int = 1
    draining: bool = False
    restarts: int = Field(default=0, description=RESTARTS)
    pid: int | None = None
    uptime_seconds: float | None = None
    last_error: str | None = None


class ClientSession(ReplicaStatus):
    """One host's upstream session of an ``isolation: per_client`` server."""

    owner: str | None = Field(default=None, description=(
        "the caller it serves (a token's name, a JWT's subject; null: unauthenticated "
        "hosts); a caller without scope admin is shown its own sessions only"))
    owner_kind: str | None = Field(default=None, description=(
        "what owner names: token or jwt (null: unauthenticated hosts)"))


class ClientSessionsStatus(BaseModel):
    """The per-host upstream sessions of an ``isolation: per_client`` server (the counts
    cover every caller's; ``sessions`` lists a caller without scope admin its own)."""

    active: int = Field(description="sessions open now (one per host session or caller)")
    max_clients: int
    idle_timeout_seconds: float
    created: int = Field(description="sessions opened since the server started")
    ended: int = Field(description="sessions ended: host left, idle, or first connect failed")
    sessions: list[ClientSession] = Field(default_factory=list)


class ServerStatus(_Lean):
    """One upstream server as the gateway sees it now."""

    name: str
    namespace: str
    transport: str
    state: str
    enabled: bool = Field(default=True, description="whether it is to run: false once disabled "
                                      "(gateway_disable_server, 'enabled: false'); state "
                                      "'invalid' is not started either way")
    protocol_version: str | None = None
    protocol: str = Field(default="auto", description="the configured era: auto, legacy "
                                                      "or 2026-07-28")
    protocol_reason: str | None = Field(
        default=None, description="why its session is in its era (what auto decided)")
    tools: int = Field(description="the tools hosts see of it (tools_not_exposed: the "
                                   "others it lists)")
    resources: int
    resource_templates: int
    prompts: int
    tools_not_exposed: dict[str, int] = Field(
        default_factory=dict, description="tools it lists that hosts do not see, by why: "
        "'task-only' (runs only as a task, and its session is handshake-era, which has no "
        "tasks), a rule ('tools.exclude', 'tools.include') or 'pinning' (held until "
        "approved)")
    last_error: str | None = None
    uptime_seconds: float | None = None
    connect_seconds: float | None = None
    restarts: int = Field(default=0, description=RESTARTS + " (its replicas' together)")
    pid: int | None = Field(default=None, description="the stdio server's process id")
    description: str | None = None
    health: str = Field(default="UNKNOWN", description="the best of its replicas' health")
    balance: str = "round_robin"
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    isolation: str = Field(default="shared", description="shared or per_client")
    client_sessions: ClientSessionsStatus | None = Field(
        default=None, description="per_client only: each host's own upstream session")
    config_error: str | None = Field(
        default=None, description="its entry in the config file is invalid (file, field, "
        "fix): state 'invalid' (not started), or it runs its last valid entry")
    sign_in: SignInStatus | None = Field(
        default=None, description="auth: servers only: its sign-in (never a token)")
    note: str | None = Field(
        default=None, description="what the operation that answered with this status did "
        "that its state does not show yet, e.g. an enabled flag recorded for a server "
        "whose entry is invalid, which applies once the entry is corrected")


LEAN_DEFAULTS: dict[str, Any] = {
    "breaker": "closed", "breaker_retry_in_seconds": None, "stalled": None, "inflight": 0,
    "ewma_latency_ms": None, "success_rate": None, "median_latency_ms": None, "weight": 1,
    "draining": False, "restarts": 0, "pid": None, "uptime_seconds": None,
    "last_error": None, "enabled": True, "protocol_version": None, "protocol": "auto",
    "protocol_reason": None, "tools_not_exposed": {}, "connect_seconds": None,
    "description": None, "balance": "round_robin", "isolation": "shared",
    "client_sessions": None, "config_error": None, "note": None, "sign_in": None}
"""What a lean status leaves out: each field at this value (a replica's and a server's
alike); what says something is wrong (an error, an open breaker, a stall, a replica
drained, restarts, a server disabled) is never at it."""
LEAN_LEFT_OUT = frozenset({"protocol_reason"})
"""What a lean status leaves out whatever it says: why a session is in its era (up to
~110 bytes a server, the same for most; ``protocol`` and ``protocol_version`` stay)."""


class ServerList(BaseModel):
    servers: list[ServerStatus]
    ready: int = Field(description="how many servers are ready")
    total: int


class ExposedName(BaseModel):
    kind: str
    exposed: str
    original: str
    renamed_because: str | None = None
    routed_to: str | None = Field(
        default=None, description="a tool a route rule sends to another server: that "
        "server (a caller not allowed it is not shown the tool)")


class HiddenComponent(BaseModel):
    kind: str
    original: str
    rule: str = Field(description="the rule that hides it, e.g. tools.exclude")


class Curation(BaseModel):
    """What the server's tools/resources/prompts rules did to its catalog."""

    hidden: list[HiddenComponent] = Field(default_factory=list)
    renamed: list[ExposedName] = Field(default_factory=list)
    overridden: dict[str, list[str]] = Field(
        default_factory=dict, description="tool -> the fields the host sees overridden")
    problems: list[str] = Field(default_factory=list,
                                description="rules that did nothing, and why")
    pinning: list[dict[str, Any]] = Field(
        default_factory=list, description="definitions changed, new or flagged since they "
                                          "were pinned: {kind, name, state, held, markers, "
                                          "summary}; approve with gateway_approve_changes "
                                          "or POST /api/v1/pins/approve")


class ServerDetail(ServerStatus):
    server_info: dict[str, Any] | None
    capabilities: dict[str, Any] | None
    instructions: str | None
    stderr_tail: list[str]
    exposed: list[ExposedName]
    config: dict[str, Any]
    curation: Curation = Field(default_factory=Curation)


class HealthReport(BaseModel):
    servers: list[ServerStatus]
    healthy: int
    total: int


# -- history and statistics ----------------------------------------------------------


class CallRecord(BaseModel):
    id: str
    trace_id: str
    client: str = Field(description="who called: see client_kind")
    client_kind: str | None = Field(default=None, description=(
        "what client names: token (a static token's name), jwt (a JWT's subject) or "
        "host (a host's client id: stdio, http, sse or the id it sent); null: recorded "
        "before gateways said (shown to admins only)"))
    kind: str
    exposed: str
    server: str
    original: str
    replica: str | None
    retries: int
    route: list[dict[str, str]] | None
    started_at: float = Field(description="unix seconds")
    duration_ms: float
    status: str = Field(description="success, error, timeout, rejected or cancelled")
    error: str | None
    arguments: str | None = Field(description="JSON, with secrets redacted")
    response_bytes: int | None
    rule: str | None = Field(default=None, description="the route rule that chose the server")
    instance_id: str | None = Field(default=None, description=(
        "the gateway that served it (--instance-id; several share a PostgreSQL store)"))


class CallPage(BaseModel):
    calls: list[CallRecord]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class GroupStats(BaseModel):
    key: str = Field(description="server or tool name; '' for everything")
    count: int
    errors: int
    cancelled: int = Field(0, description="calls the host cancelled or walked away from "
                                          "(not errors; left out of success_rate)")
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
    recorder: dict[str, int] = Field(description="records written, dropped, queued; with"
                                     " retention, its runs, failures, skipped runs and"
                                     " records removed (retention_*)")


# -- inspector -----------------------------------------------------------------------


class Listing(BaseModel):
    server: str
    replica: str
    protocol_version: str | None = None
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
