"""The ``servers.yaml`` schema: frozen pydantic models, validated once (see ``loader``).

Two file shapes are accepted, as YAML or JSON (``loader`` turns both into these models):

* ours: ``{gateway: {...}, servers: {name: {...}}}``
* Claude Desktop / VS Code: ``{mcpServers: {name: {command, args, env} | {url, type, headers}}}``

Numbers are strict where a YAML ``true`` or ``"5"`` would be a mistake (``replicas: true`` is an
error, not one replica), floats must be finite, and every integer has bounds, so nothing a user
writes overflows where it is kept.  ``ServerConfig.name`` and ``ServerConfig.secrets`` are filled
by the loader, never read from user input (``INTERNAL_FIELDS``).
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.config.auth import TOKEN_SERVERS_LATER, AuthConfig, warn_unknown_servers
from fast_mcp_gateway.config.curation import (
    CacheRule,
    Exposure,
    Oversize,
    PinningMode,
    Profiles,
    PromptCuration,
    ResourceCuration,
    SearchOptions,
    ToolCuration,
)
from fast_mcp_gateway.config.names import host_safe, shown_name, unaddressable_name
from fast_mcp_gateway.config.numbers import whole_number
from fast_mcp_gateway.config.timeouts import Seconds, Timeouts
from fast_mcp_gateway.config.upstream_auth import UpstreamAuth, credential_problem
from fast_mcp_gateway.config.upstream_tls import TlsSetting
from fast_mcp_gateway.policies.balancing import Strategy
from fast_mcp_gateway.telemetry.redaction import (
    MASK,
    mask_text,
    redact_header,
    redact_value,
    register_config_secrets,
)

NAME_CHARS = re.compile(r"^[A-Za-z0-9_-]*$")
_ENV_PATTERN = re.compile(r"^(\*|[A-Za-z_][A-Za-z0-9_]*\*?"
                          r"|caller\.(?:\*|token|claims\.(?:\*|[A-Za-z0-9_.:/-]+\*?)))$")
# Filled by the loader; a user writing them is a mistake, and they are never suggested.
INTERNAL_FIELDS = frozenset({"name", "secrets"})
# SQLite INTEGER is a signed 64-bit value: larger integers cannot be stored.
STORE_INT_MAX = 2**63 - 1

UpstreamTransport = Literal["stdio", "http", "sse"]

MAX_DESCRIPTION = 4096
"""The longest server ``description:`` accepted where a config enters (a few lines for a
person reading a listing; every admin listing carries it).  A runtime registration stored
before the limit runs with its description cut to it (``config/registrations.py``)."""


def _era_text(value: Any) -> Any:
    # YAML reads an unquoted 2026-07-28 as a date; the version is what was meant.
    return value.isoformat() if isinstance(value, datetime.date) else value


ProtocolMode = Annotated[Literal["auto", "legacy", "2026-07-28"], BeforeValidator(_era_text)]
AdminMode = Literal["full", "read_only", "off"]
AdminKind = Literal["read", "mutate"]
Isolation = Literal["shared", "per_client"]
# ``${caller.token}`` / ``${caller.claims.<name>}`` in an HTTP upstream's headers: the
# calling host's own credential, filled in per caller (see upstream/credentials.py).
CALLER_REFERENCE = re.compile(r"\$\{caller\.(token|claims\.[A-Za-z0-9_.:/-]+)\}")

# Integers kept in the store, for the admin operations' arguments (route ids and priorities):
# validated at the edge so a huge number is a clear error, not a storage failure.
RowId = Annotated[StrictInt, Field(ge=1, le=STORE_INT_MAX, description="a row id (1 or more)"),
                  BeforeValidator(whole_number)]
RoutePriority = Annotated[StrictInt, Field(
    ge=-1_000_000, le=1_000_000, description="higher wins; -1000000..1000000"),
    BeforeValidator(whole_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Target(_Strict):
    """How to reach one server process or endpoint: a stdio command, or a URL."""

    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    transport: UpstreamTransport | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class Instance(Target):
    """One replica of a server given explicitly (remote or mixed replicas)."""

    weight: StrictInt = Field(default=1, ge=0, le=1000)


class HealthConfig(_Strict):
    """Active probing and the thresholds that classify a replica (see policies.health)."""

    interval: Seconds = 30.0
    window: Seconds = 60.0
    healthy_success: StrictFloat = Field(default=0.95, ge=0, le=1)
    degraded_success: StrictFloat = Field(default=0.80, ge=0, le=1)
    healthy_latency_ms: StrictFloat = Field(default=200.0, gt=0, le=86_400_000)
    degraded_latency_ms: StrictFloat = Field(default=500.0, gt=0, le=86_400_000)
    heartbeat_timeout: Seconds = 60.0
    min_samples: StrictInt = Field(default=3, ge=1, le=100_000)


class Backoff(_Strict):
    initial: StrictFloat = Field(default=0.2, ge=0, le=3600)
    max: StrictFloat = Field(default=5.0, ge=0, le=3600)


class RetryConfig(_Strict):
    """Retries and failover; calls that may have run retry only if idempotent."""

    attempts: StrictInt = Field(default=3, ge=1, le=10)
    backoff: Backoff = Backoff()
    on: tuple[Literal["connect", "timeout", "error"], ...] = ("connect", "timeout", "error")


class BreakerConfig(_Strict):
    failure_threshold: StrictInt = Field(default=5, ge=1, le=100_000)
    window: Seconds = 30.0
    open_for: Seconds = 30.0
    half_open_probes: StrictInt = Field(default=1, ge=1, le=1000)


class FallbackConfig(_Strict):
    """Serve the last good result of a read-only tool when every replica fails."""

    stale_cache_ttl: StrictFloat = Field(default=0.0, ge=0, le=86_400 * 365,
                                         description="seconds; 0 disables")


class RateLimit(_Strict):
    per_second: StrictFloat = Field(gt=0, le=1_000_000)
    burst: StrictInt | None = Field(default=None, ge=1, le=1_000_000)


class RateLimitConfig(RateLimit):
    """Token buckets for the whole server and, optionally, per tool (original names)."""

    tools: dict[str, RateLimit] = Field(default_factory=dict)


IN_PLACE = frozenset({
    "description", "tools", "resources", "prompts", "pinning", "idempotent_tools",
    "fallback", "retry", "rate_limit", "balance", "hash_key", "max_result_bytes",
    "oversize", "cache"})
"""The settings a running server takes as it runs (``Service.reconfigure``): how its
catalog is curated and its calls are balanced, limited, retried, cached and checked --
read per call or at each catalog rebuild, never how it is reached, started or named
(``namespace`` stays out: hosts' resource subscriptions carry the old one)."""


class ServerConfig(Target):
    """One upstream MCP server, as written in ``servers.yaml``."""

    name: str
    namespace: str | None = None
    enabled: StrictBool = True
    protocol: ProtocolMode | None = Field(
        default=None, description="the protocol era of its sessions: auto (the cheaper "
        "handshake era unless the server needs 2026-07-28), legacy or 2026-07-28 "
        "(default: gateway.protocol)")
    timeouts: Timeouts = Timeouts()
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION,
        description=f"shown in admin listings; at most {MAX_DESCRIPTION} characters")
    stderr_lines: StrictInt = Field(default=200, ge=1, le=100_000)
    max_message_bytes: StrictInt = Field(
        default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
        description="largest message a stdio or streamable-HTTP upstream may send "
        "(bytes); a larger one fails the calls in flight and restarts the session",
    )
    replicas: StrictInt = Field(default=1, ge=1, le=64)
    instances: tuple[Instance, ...] = ()
    tls: TlsSetting = None  # (after url, command, instances: it is checked against them)
    balance: Strategy = "round_robin"
    hash_key: str | None = Field(
        default=None, description="'arguments.<name>' or 'session' (for balance: hash)"
    )
    health: HealthConfig = HealthConfig()
    retry: RetryConfig = RetryConfig()
    circuit_breaker: BreakerConfig = BreakerConfig()
    fallback: FallbackConfig = FallbackConfig()
    rate_limit: RateLimitConfig | None = None
    idempotent_tools: tuple[str, ...] = ()
    tools: ToolCuration = ToolCuration()
    resources: ResourceCuration = ResourceCuration()
    prompts: PromptCuration = PromptCuration()
    pinning: PinningMode | None = Field(
        default=None, description="off | warn | enforce for this server's tool definitions "
                                  "(default: gateway.pinning)")
    max_result_bytes: StrictInt | None = Field(
        default=None, ge=64, le=1024 * 1024 * 1024,
        description="largest result a call may return to the host (bytes of JSON)")
    oversize: Oversize = Field(
        default="error", description="what an over-size result becomes: error, or truncate "
                                     "(its text cut and marked as truncated)")
    cache: CacheRule | None = Field(
        default=None, description="cache results of every read-only/idempotent tool")
    isolation: Isolation = Field(
        default="shared", description="shared: one upstream session for every host; "
        "per_client: one session (for stdio, one process) per host session, created on "
        "first use and reaped when the host leaves or after idle_timeout")
    max_clients: StrictInt = Field(
        default=32, ge=1, le=10_000,
        description="per_client: most host sessions served at once (one upstream each)")
    idle_timeout: Seconds = Field(
        default=300.0, description="per_client: seconds an unused host session's "
        "upstream session is kept")
    auth: UpstreamAuth | None = Field(
        default=None, description="how the gateway signs in to a url: server "
        "(type: client_credentials; config/upstream_auth.py)")
    # Values that were interpolated from the environment: redacted wherever shown.
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True)
    _mcp_servers_entry: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _register_secrets(self) -> ServerConfig:
        # Every config the process holds feeds the registry: whatever it carries may come
        # back in an upstream's stderr, an error text or a log line, and is masked there.
        targets = [self, *self.instances]
        secret = self.auth.client_secret if self.auth is not None else None
        register_config_secrets(
            [*self.secrets, *([secret] if secret else [])],
            {k: v for t in targets for k, v in t.env.items()},
            {k: v for t in targets for k, v in t.headers.items()},
            [t.url for t in targets if t.url])
        for target in targets:  # one command line each (a shell line in 'command' too)
            register_config_secrets((), {}, {}, (), [target.command or "", *target.args])
        return self

    @model_validator(mode="after")
    def _cacheable(self) -> ServerConfig:
        # What the file itself says about a tool; the upstream's own annotations are
        # checked when its catalog arrives (routing/results.py).
        for tool in self.tools.cache:
            rule = self.tools.override.get(tool)
            notes = (rule.annotations or {}) if rule is not None else {}
            if tool in self.idempotent_tools:
                continue
            if notes.get("readOnlyHint") is False and not notes.get("idempotentHint"):
                raise ValueError(
                    f"tools.cache: '{tool}' is annotated readOnlyHint: false (tools.override) "
                    "and not idempotent; only read-only or idempotent tools may be cached -- "
                    "remove it from tools.cache, or list it in idempotent_tools if repeating "
                    "it is safe")
        return self

    @model_validator(mode="after")
    def _valid_credentials(self) -> ServerConfig:
        if (problem := credential_problem(self)) is not None:
            raise ValueError(problem)
        return self

    def read_from(self, mcp_servers: bool) -> ServerConfig:
        """Marked as read from an ``mcpServers`` entry (``failures`` words its timeouts)."""
        self._mcp_servers_entry = mcp_servers
        return self

    def __eq__(self, other: object) -> bool:  # the mcpServers mark is no setting
        return isinstance(other, ServerConfig) and self.__dict__ == other.__dict__

    @property
    def mcp_servers_entry(self) -> bool:
        """Whether it was read from an ``mcpServers`` (Claude-Desktop) entry."""
        return self._mcp_servers_entry

    @property
    def uses_caller_credentials(self) -> bool:
        """Whether a header takes the calling host's credential (``${caller.*}``)."""
        return any(CALLER_REFERENCE.search(v) for v in self.headers.values())

    def differs_only_in_place(self, other: ServerConfig) -> bool:
        """Whether ``other`` differs from this config, but only in ``IN_PLACE``
        settings: a running server takes it without a new session."""
        keep = {name: getattr(self, name) for name in IN_PLACE}
        return other != self and other.model_copy(update=keep) == self

    @property
    def per_client(self) -> bool:
        """One upstream session per host (``isolation: per_client``, or ``${caller.*}``)."""
        return self.isolation == "per_client" or self.uses_caller_credentials

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str | None) -> str | None:
        if value is not None and not NAME_CHARS.match(value):
            raise ValueError(
                f"namespace {shown_name(value)!r} may only contain letters, digits, '_' and "
                "'-' "
                "(or be \"\" to expose names unprefixed)"
            )
        return value

    def replica_configs(self) -> list[tuple[ServerConfig, int]]:
        """One (config, weight) per replica: ``instances``, or ``replicas`` copies."""
        if not self.instances:
            return [(self, 1)] * self.replicas
        out = []
        for instance in self.instances:
            fields = instance.model_dump(exclude={"weight"}, exclude_defaults=True)
            out.append((self.model_copy(update={
                "command": None, "args": (), "env": {}, "cwd": None, "url": None,
                "transport": None, "headers": {}, "instances": (), **fields,
            }), instance.weight))
        return out

    @property
    def kind(self) -> UpstreamTransport:
        """The transport, inferred from ``command``/``url`` when not given."""
        if self.transport is not None:
            return self.transport
        if self.instances:
            return self.replica_configs()[0][0].kind
        if self.command is not None:
            return "stdio"
        assert self.url is not None
        return "sse" if self.url.rstrip("/").endswith("/sse") else "http"

    @property
    def effective_namespace(self) -> str:
        """The prefix for its names: ``namespace`` if set, else ``host_safe(name)``."""
        if self.namespace is not None:
            return self.namespace
        return host_safe(self.name)

    def redacted(self) -> dict[str, Any]:
        """A JSON-able view with secrets and credential-like env/header values masked."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["name"] = self.name
        for key, redact in (("env", redact_value), ("headers", redact_header)):
            if key in data:
                data[key] = {k: redact(k, v, self.secrets) for k, v in data[key].items()}
        if "args" in data:
            data["args"] = [mask_text(a, self.secrets) for a in data["args"]]
        if "url" in data:
            data["url"] = mask_text(data["url"], self.secrets)
        if "auth" in data and "client_secret" in data["auth"]:
            data["auth"]["client_secret"] = MASK
        for instance in data.get("instances", []):
            for key, redact in (("env", redact_value), ("headers", redact_header)):
                if key in instance:
                    instance[key] = {k: redact(k, v, self.secrets)
                                     for k, v in instance[key].items()}
            if "url" in instance:
                instance["url"] = mask_text(instance["url"], self.secrets)
            if "args" in instance:
                instance["args"] = [mask_text(a, self.secrets) for a in instance["args"]]
        return data


class GatewayOptions(_Strict):
    """The optional ``gateway:`` section of ``servers.yaml``."""

    separator: str = Field(default="_", min_length=1, max_length=3)
    max_name_length: StrictInt = Field(default=64, ge=16, le=256)
    timeouts: Timeouts = Timeouts()
    env_allow: tuple[str, ...] = Field(
        default=(), description="variables runtime registrations may use as ${VAR}: names, "
                                "or prefixes ending in '*', and caller references "
                                "(caller.token, caller.claims.*) they may put in headers "
                                "(servers.yaml itself may use any)")
    admin: AdminMode = Field(
        default="full", description="admin tools: full, read_only (no changes) or off")
    auth: AuthConfig | None = Field(
        default=None, description="bearer tokens and/or JWTs required in HTTP mode")
    exposure: Exposure = Field(
        default="all", description="all (every tool listed), search (meta-tools to search "
                                   "and call) or auto (search above search.auto_threshold_tools)")
    search: SearchOptions = SearchOptions()
    protocol: ProtocolMode = Field(
        default="auto", description="the protocol era of upstream sessions for servers "
        "that do not set 'protocol': auto, legacy or 2026-07-28")
    pinning: PinningMode = Field(
        default="warn", description="tool definitions hashed on first sight: off, warn (log, "
                                    "audit, flag changes) or enforce (hold changed/new ones "
                                    "until approved)")
    profiles: Profiles = Field(
        default_factory=dict, description="named subsets of the catalog: /mcp/p/<name> in "
                                          "HTTP mode, serve --profile <name> in stdio mode")

    @field_validator("separator")
    @classmethod
    def _valid_separator(cls, value: str) -> str:
        if not NAME_CHARS.match(value):
            raise ValueError("separator may only contain letters, digits, '_' and '-'")
        return value

    @field_validator("env_allow")
    @classmethod
    def _valid_env_allow(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not _ENV_PATTERN.match(entry):
                raise ValueError(
                    f"{entry!r} is not a variable name or prefix; write e.g. GITHUB_TOKEN or "
                    "MYAPP_* (letters, digits and '_', an optional trailing '*'), or a "
                    "caller reference: caller.token, caller.claims.<name>, caller.claims.*")
        return value

    def allows_admin(self, kind: AdminKind) -> bool:
        """Whether an admin operation of this kind may run under ``admin:``."""
        return admin_allows(self.admin, kind)


def admin_allows(mode: AdminMode, kind: AdminKind) -> bool:
    """``full`` allows everything, ``read_only`` only reads, ``off`` nothing."""
    return mode == "full" or (mode == "read_only" and kind == "read")


def env_allowed(var: str, allow: Iterable[str]) -> bool:
    """Whether ``${var}`` matches an ``env_allow`` entry (a name, or a prefix ending in ``*``).

    ``GATEWAY_PYTHON`` is always allowed: it names the gateway's own interpreter, no secret.
    A caller reference (``caller.token``, ``caller.claims.<name>``) matches only entries
    that name one (``caller.token``, ``caller.claims.*``): a ``*`` allowing every
    variable does not send every caller's token where a registration says.
    """
    if var == "GATEWAY_PYTHON":
        return True
    caller = var.startswith("caller.")
    return any(fnmatch.fnmatchcase(var, pattern) for pattern in allow
               if pattern.startswith("caller.") == caller)


class InvalidServer(_Strict):
    """A server whose entry in the config file does not validate: not started (or, after
    a reload, still running its last valid config), shown to operators as ``invalid``."""

    name: str
    namespace: str = Field(description="its namespace as far as the entry tells")
    transport: str = Field(description="stdio, http or sse as far as the entry tells, "
                                       "else 'unknown'")
    error: str = Field(description="the loader's message: file, server, field and fix")
    enabled: bool = Field(default=True, description="whether it is to run once valid: "
                          "false only when its entry (a registration: the store) says so")


class GatewayConfig(_Strict):
    """A validated configuration: gateway options plus servers in file order, and the
    servers whose entries are invalid (``invalid``: filled by a partial load only)."""

    options: GatewayOptions = GatewayOptions()
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    invalid: dict[str, InvalidServer] = Field(default_factory=dict)
    alerts: AlertsConfig = AlertsConfig()
    source: str = "<config>"
    # Its tokens' servers are checked once the runtime registrations are known
    # (``ControlPlane.attach``), not at validation (config/auth.TOKEN_SERVERS_LATER).
    _tokens_checked_later: bool = PrivateAttr(default=False)

    @property
    def tokens_checked_later(self) -> bool:
        return self._tokens_checked_later

    @model_validator(mode="after")
    def _token_servers(self) -> GatewayConfig:
        # A warning, not an error: a token may name a server registered at runtime.
        warn_unknown_servers(self.options.auth, {*self.servers, *self.invalid})
        self._tokens_checked_later = TOKEN_SERVERS_LATER.get()
        # A warning too: refusing the name would stop a file that works over MCP today.
        for name in self.servers:
            if (problem := unaddressable_name(name)) is not None:
                logging.getLogger(__name__).warning(
                    "%s: server %r runs (over MCP), but the REST API and the dashboard "
                    "cannot address it: %s (its tools are then named after the new name)",
                    self.source, name, problem)
        return self
