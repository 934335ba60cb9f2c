"""The ``servers.yaml`` schema, its loader, and the Claude-Desktop ``mcpServers`` import.

Two file shapes are accepted, as YAML or JSON:

* ours: ``{gateway: {...}, servers: {name: {...}}}``
* Claude Desktop / VS Code: ``{mcpServers: {name: {command, args, env} | {url, type, headers}}}``

Both become one frozen ``GatewayConfig``.  Every string in ``command``, ``args``,
``env``, ``cwd``, ``url`` and ``headers`` may use ``${VAR}`` or ``${VAR:-default}``
(``$$`` is a literal ``$``).  ``${GATEWAY_PYTHON}`` always names the interpreter
running the gateway, so servers shipped as Python modules run without a PATH lookup.
Values that came from ``${...}`` are remembered as secrets, for redaction.

Validation collects every problem it finds and raises one ``ConfigError`` whose
issues each name the file, the server and the field, and say how to fix it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fast_mcp_gateway.errors import ConfigError, ConfigIssue
from fast_mcp_gateway.policies.balancing import Strategy

NAME_CHARS = re.compile(r"^[A-Za-z0-9_-]*$")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_INTERPOLATED_FIELDS = ("command", "args", "env", "cwd", "url", "headers")

UpstreamTransport = Literal["stdio", "http", "sse"]
ProtocolMode = Literal["auto", "legacy", "2026-07-28"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Per-server deadlines in seconds; ``None`` falls back to the gateway default."""

    connect: float | None = Field(default=None, gt=0)
    call: float | None = Field(default=None, gt=0)
    health: float | None = Field(default=None, gt=0)


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

    weight: int = Field(default=1, ge=0, le=1000)


class HealthConfig(_Strict):
    """Active probing and the thresholds that classify a replica (see policies.health)."""

    interval: float = Field(default=30.0, gt=0)
    window: float = Field(default=60.0, gt=0)
    healthy_success: float = Field(default=0.95, ge=0, le=1)
    degraded_success: float = Field(default=0.80, ge=0, le=1)
    healthy_latency_ms: float = Field(default=200.0, gt=0)
    degraded_latency_ms: float = Field(default=500.0, gt=0)
    heartbeat_timeout: float = Field(default=60.0, gt=0)
    min_samples: int = Field(default=3, ge=1)


class Backoff(_Strict):
    initial: float = Field(default=0.2, ge=0)
    max: float = Field(default=5.0, ge=0)


class RetryConfig(_Strict):
    """Retries and failover; calls that may have run retry only if idempotent."""

    attempts: int = Field(default=3, ge=1, le=10)
    backoff: Backoff = Backoff()
    on: tuple[Literal["connect", "timeout", "error"], ...] = ("connect", "timeout", "error")


class BreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    window: float = Field(default=30.0, gt=0)
    open_for: float = Field(default=30.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)


class FallbackConfig(_Strict):
    """Serve the last good result of a read-only tool when every replica fails."""

    stale_cache_ttl: float = Field(default=0.0, ge=0, description="seconds; 0 disables")


class RateLimit(_Strict):
    per_second: float = Field(gt=0)
    burst: int | None = Field(default=None, ge=1)


class RateLimitConfig(RateLimit):
    """Token buckets for the whole server and, optionally, per tool (original names)."""

    tools: dict[str, RateLimit] = Field(default_factory=dict)


class ServerConfig(Target):
    """One upstream MCP server, as written in ``servers.yaml``."""

    name: str
    namespace: str | None = None
    enabled: bool = True
    protocol: ProtocolMode = "auto"
    timeouts: Timeouts = Timeouts()
    description: str | None = None
    stderr_lines: int = Field(default=200, ge=1, le=100_000)
    max_message_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024,
        description="largest message a stdio upstream may send (bytes); a larger one "
        "fails the calls in flight and restarts the session",
    )
    replicas: int = Field(default=1, ge=1, le=64)
    instances: tuple[Instance, ...] = ()
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
    # Values that were interpolated from the environment: redacted wherever shown.
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True)

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str | None) -> str | None:
        if value is not None and not NAME_CHARS.match(value):
            raise ValueError(
                f"namespace {value!r} may only contain letters, digits, '_' and '-' "
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
        """The prefix for this server's names: ``namespace`` if set, else its sanitized name."""
        if self.namespace is not None:
            return self.namespace
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.name)

    def redacted(self) -> dict[str, Any]:
        """A JSON-able view with secrets and credential-like env/header values masked."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["name"] = self.name
        for key in ("env", "headers"):
            if key in data:
                data[key] = {k: redact_value(k, v, self.secrets) for k, v in data[key].items()}
        if "args" in data:
            data["args"] = [mask_secrets(a, self.secrets) for a in data["args"]]
        if "url" in data:
            data["url"] = mask_secrets(data["url"], self.secrets)
        for instance in data.get("instances", []):
            for key in ("env", "headers"):
                if key in instance:
                    instance[key] = {k: redact_value(k, v, self.secrets)
                                     for k, v in instance[key].items()}
            if "url" in instance:
                instance["url"] = mask_secrets(instance["url"], self.secrets)
        return data


class GatewayOptions(_Strict):
    """The optional ``gateway:`` section of ``servers.yaml``."""

    separator: str = Field(default="_", min_length=1, max_length=3)
    max_name_length: int = Field(default=64, ge=16, le=256)
    timeouts: Timeouts = Timeouts()

    @field_validator("separator")
    @classmethod
    def _valid_separator(cls, value: str) -> str:
        if not NAME_CHARS.match(value):
            raise ValueError("separator may only contain letters, digits, '_' and '-'")
        return value


class GatewayConfig(_Strict):
    """A validated configuration: gateway options plus servers in file order."""

    options: GatewayOptions = GatewayOptions()
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    source: str = "<config>"


_CREDENTIAL_KEY = re.compile(r"(?i)(token|secret|passw|api[-_]?key|auth|credential|cookie|session)")


def redact_value(key: str, value: str, secrets: frozenset[str]) -> str:
    """Mask a value whose key looks like a credential, or that holds an interpolated secret."""
    if _CREDENTIAL_KEY.search(key) and value:
        return "***"
    return mask_secrets(value, secrets)


def mask_secrets(text: str, secrets: frozenset[str]) -> str:
    """Replace every occurrence of a known secret value inside ``text``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, interpolate and validate a config file (ours or Claude Desktop's)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(source, None, None, "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, None, None, f"cannot read: {exc}")]) from exc
    return parse_config_text(text, source=source, environ=environ)


def parse_config_text(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Parse YAML or JSON text (JSON is YAML, but JSON errors read better from json)."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else _load_yaml(text)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise ConfigError([ConfigIssue(source, None, None, msg)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(source, None, None, f"invalid YAML: {exc}")]) from exc
    if data is None:
        data = {}
    return parse_config(data, source=source, environ=environ)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def parse_config(
    data: Any, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate an already-parsed mapping into a ``GatewayConfig``."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("GATEWAY_PYTHON", sys.executable)
    issues: list[ConfigIssue] = []

    def fail(server: str | None, field: str | None, message: str) -> None:
        issues.append(ConfigIssue(source, server, field, message))

    if not isinstance(data, dict):
        fail(None, None, f"the top level must be a mapping, not {type(data).__name__}")
        raise ConfigError(issues)

    if "mcpServers" in data:
        extra = sorted(set(data) - {"mcpServers"})
        if extra:
            fail(None, extra[0], "a Claude-Desktop file has only the 'mcpServers' key")
        raw_servers = data["mcpServers"]
        claude = True
        raw_options: Any = {}
    else:
        for key in sorted(set(data) - {"gateway", "servers"}):
            fail(None, key, f"unknown top-level key{_suggest(key, ['gateway', 'servers'])}")
        raw_servers = data.get("servers", {})
        raw_options = data.get("gateway", {}) or {}
        claude = False

    options = GatewayOptions()
    try:
        options = GatewayOptions.model_validate(raw_options)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            fail(None, f"gateway.{loc}", _explain(err, GatewayOptions))

    servers: dict[str, ServerConfig] = {}
    if raw_servers is None:
        raw_servers = {}
    if not isinstance(raw_servers, dict):
        key = "mcpServers" if claude else "servers"
        fail(None, key, "must be a mapping of server name to server settings")
        raise ConfigError(issues)

    for name, raw in raw_servers.items():
        name = str(name)
        if not name.strip():
            fail(name, None, "server names must not be empty")
            continue
        if not isinstance(raw, dict):
            fail(name, None, "must be a mapping of settings (command/args or url)")
            continue
        entry = _from_claude(name, raw, fail) if claude else dict(raw)
        if entry is None:
            continue
        secrets: set[str] = set()
        for field in _INTERPOLATED_FIELDS:
            if field in entry and entry[field] is not None:
                entry[field] = _interpolate(entry[field], env, secrets, name, field, fail)
        entry["name"] = name
        entry["secrets"] = frozenset(secrets)
        try:
            server = ServerConfig.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                fail(name, loc or None, _explain(err, ServerConfig))
            continue
        problem = _check_target(server)
        if problem:
            fail(name, problem[0], problem[1])
            continue
        servers[name] = server

    seen: dict[str, str] = {}
    for server in servers.values():
        ns = server.effective_namespace
        if ns and ns in seen:
            fail(
                server.name,
                "namespace",
                f"namespace '{ns}' is already used by server '{seen[ns]}'; give one of them "
                "another 'namespace:'",
            )
        seen.setdefault(ns, server.name)

    if issues:
        raise ConfigError(issues)
    return GatewayConfig(options=options, servers=servers, source=source)


_CLAUDE_KEYS = {"command", "args", "env", "cwd", "url", "type", "transport", "headers"}
# Keys other hosts write into mcpServers entries; they mean nothing to the gateway.
_CLAUDE_IGNORED = {"autoApprove", "alwaysAllow", "timeout", "description", "envFile", "disabled"}


def _from_claude(name: str, raw: dict[str, Any], fail: Any) -> dict[str, Any] | None:
    unknown = sorted(set(raw) - _CLAUDE_KEYS - _CLAUDE_IGNORED)
    if unknown:
        for key in unknown:
            fail(name, key, f"unknown mcpServers key{_suggest(key, sorted(_CLAUDE_KEYS))}")
        return None
    entry = {k: v for k, v in raw.items() if k in _CLAUDE_KEYS - {"type", "transport"}}
    kind = raw.get("type", raw.get("transport"))
    if kind is not None:
        mapped = {"stdio": "stdio", "sse": "sse", "http": "http", "streamable-http": "http",
                  "streamableHttp": "http", "streamable_http": "http"}.get(str(kind))
        if mapped is None:
            fail(name, "type", f"unknown transport type {kind!r}; use stdio, http or sse")
            return None
        entry["transport"] = mapped
    if raw.get("disabled") is True:
        entry["enabled"] = False
    if isinstance(raw.get("description"), str):
        entry["description"] = raw["description"]
    return entry


def _check_target(server: ServerConfig) -> tuple[str, str] | None:
    if server.instances:
        if server.command is not None or server.url is not None:
            return ("instances", "give either 'instances' or a top-level 'command'/'url'")
        if server.replicas != 1:
            return ("replicas", "'replicas' copies one 'command'; with 'instances' list each")
        for i, (replica, _) in enumerate(server.replica_configs()):
            problem = _check_target(replica)
            if problem:
                return (f"instances[{i}].{problem[0]}", problem[1])
        return _check_policies(server)
    if server.command is None and server.url is None:
        return ("command", "needs either 'command' (a local stdio server) or 'url' (a remote one)")
    if server.command is not None and server.url is not None:
        return ("url", "has both 'command' and 'url'; keep the one that reaches the server")
    if server.command is not None and not server.command.strip():
        return ("command", "is empty")
    if server.command is not None and server.transport not in (None, "stdio"):
        return ("transport", f"'{server.transport}' needs a 'url', not a 'command'")
    if server.url is not None:
        if server.transport == "stdio":
            return ("transport", "'stdio' needs a 'command', not a 'url'")
        if not re.match(r"^https?://[^/\s]+", server.url):
            return ("url", f"{server.url!r} is not an http(s) URL")
    if server.command is None and (server.args or server.env or server.cwd):
        return ("args", "args/env/cwd only apply to stdio servers (with 'command')")
    if server.url is None and server.headers:
        return ("headers", "headers only apply to http/sse servers (with 'url')")
    return _check_policies(server)


def _check_policies(server: ServerConfig) -> tuple[str, str] | None:
    key = server.hash_key
    if key is not None and key != "session" and not re.match(r"^arguments\.[^.\s]+$", key):
        return ("hash_key", "use 'arguments.<argument name>' or 'session'")
    if server.balance != "hash" and key is not None:
        return ("hash_key", "only used with 'balance: hash'")
    h = server.health
    if h.degraded_success > h.healthy_success:
        return ("health.degraded_success", "must not exceed health.healthy_success")
    if h.degraded_latency_ms < h.healthy_latency_ms:
        return ("health.degraded_latency_ms", "must not be below health.healthy_latency_ms")
    return None


def _interpolate(
    value: Any, env: dict[str, str], secrets: set[str], server: str, field: str, fail: Any
) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            var, default = match.group(1), match.group(2)
            if var in env:
                if var != "GATEWAY_PYTHON":
                    secrets.add(env[var])
                return env[var]
            if default is not None:
                return default
            fail(
                server,
                field,
                f"environment variable '{var}' is not set; export it, or write "
                f"${{{var}:-default}} to give a fallback",
            )
            return ""

        return _VAR.sub(replace, value)
    if isinstance(value, list):
        return [
            _interpolate(v, env, secrets, server, f"{field}[{i}]", fail)
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, secrets, server, f"{field}.{k}", fail)
            for k, v in value.items()
        }
    return value


def _explain(err: Any, model: type[BaseModel]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        return f"unknown field{_suggest(field, list(model.model_fields))}"
    if kind == "missing":
        return "is required"
    return str(err.get("msg", "is invalid")).removeprefix("Value error, ")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, [c for c in choices if c != "secrets"], n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(choices)}"
