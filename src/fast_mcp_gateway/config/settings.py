"""Runtime settings read from the environment (``MCP_GATEWAY_*``) and CLI flags.

Settings are built once by the CLI (or by the caller in library mode) and passed
down; nothing here is read at import time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fast_mcp_gateway.config.origins import allowed_host, allowed_origin, public_url

Transport = Literal["stdio", "http", "sse"]
SDK_MAX_BODY = 4 * 1024 * 1024
"""The MCP SDK's request-body limit (``transport_security.DEFAULT_MAX_REQUEST_BODY_SIZE``;
a test holds them equal): ``http_max_body_bytes``'s default, and SSE's fixed limit."""
DEFAULT_REDACT_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey",
                       "authorization", "auth", "cookie", "credential", "private_key")


class GatewaySettings(BaseSettings):
    """Process-wide settings; per-server values in ``servers.yaml`` override the defaults."""

    model_config = SettingsConfigDict(env_prefix="MCP_GATEWAY_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)  # a URL, a key: secrets

    config: Path | None = Field(default=None, description="servers.yaml or mcpServers file")
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    path: str = "/mcp"
    # NoDecode: the environment gives 'a.example,b.example' (or a JSON list), see below.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra Host header values accepted in HTTP mode (DNS-rebinding guard)",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str | None = Field(
        default=None,
        description="the URL hosts reach the gateway at (behind a proxy or TLS terminator), "
                    "e.g. https://mcp.example.com; named in the OAuth protected-resource "
                    "metadata. Default: http://<host>:<port>")
    allow_unauthenticated_admin: bool = Field(
        default=False,
        description="HTTP mode without gateway.auth: let anyone who reaches the port use the "
                    "admin operations (REST mutations, gateway_* tools); loopback only")
    dashboard: str | None = Field(
        default=None, description="stdio mode: serve the dashboard beside stdio at this "
                                  "loopback HOST:PORT (the CLI's --dashboard; default off)")
    connect_timeout: float = Field(
        default=10.0, gt=0,
        description="seconds an upstream may take to connect before its progress is checked: "
                    "a live process still working gets more time; an idle one is restarted "
                    "with a doubled deadline")
    startup_wait: float = Field(
        default=2.0, ge=0, le=3600,
        description="seconds a host's first lists wait for the upstreams' first connect "
                    "attempts; servers connecting later are announced with list_changed")
    call_timeout: float = Field(default=30.0, gt=0)
    health_timeout: float = Field(default=5.0, gt=0)
    ask_timeout: float = Field(
        default=120.0, gt=0, le=86_400,
        description="seconds a question put to a 2026-07-28 host for a handshake-era "
                    "upstream (an InputRequiredResult) waits for the host to call again; "
                    "then the upstream call is cancelled (the call timeout still applies)")
    startup_concurrency: int | None = Field(
        default=None, ge=1, le=256,
        description="concurrent upstream connects; default 4 per CPU core (at least 4)",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description="the event loop serve runs on: uvloop (cheaper per loop turn, so less "
                    "gateway CPU per call), asyncio, or auto (uvloop when installed)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="stderr's log lines: text, or json (one object per "
                                    "line: time, level, logger, message, pid, instance, "
                                    "exception) for a log shipper")
    db: str | None = Field(
        default=None, description="the store: a SQLite file path or a URL, e.g. "
                                  "postgresql://user@host/db to share one state between "
                                  "gateways (the CLI defaults it to "
                                  "$XDG_DATA_HOME/fast-mcp-gateway/gateway.db)")
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1,
        description="names this gateway in call records, health history and audit rows "
                    "(default hostname-pid; one per gateway on a shared store)")
    profile: str | None = Field(
        default=None, description="serve only this profile of gateway.profiles (stdio: "
                                  "one Claude Desktop entry per profile)")
    record_calls: bool = True
    express_lane: bool = Field(
        default=True, description="stdio: relay upstream tools/call as JSON past the server "
                                  "stack (see lane.py); false sends every call the full path")
    http_express_lane: bool = Field(
        default=True, description="HTTP: serve 2026-07-28 tools/call POSTs of upstream tools "
                                  "as JSON in front of the server stack (see http/lane.py), "
                                  "and a handshake-era session's (http/session_lane.py); "
                                  "false sends every request the full path")
    reload_interval: float = Field(
        default=2.0, ge=0, description="seconds between checks of the config file; 0: off")
    shutdown_flush_timeout: float = Field(
        default=30.0, gt=0, le=3600,
        description="seconds a graceful stop may spend writing queued call records")
    stop_grace: float = Field(
        default=5.0, gt=0, le=600,
        description="seconds a stop gives HTTP requests in flight, then admin operations "
                    "in flight, before it cuts them and stops the servers (over HTTP the "
                    "hard exit comes after three of them, the first in whole seconds); "
                    "rolling restarts with calls longer than it: README, 'Rolling "
                    "restarts'")
    spool_dir: Path | None = Field(
        default=None,
        description="folder where a stop with the store unreachable spills the call "
                    "records held for it, written into the store at the next start "
                    "(default: the spool folder beside the default store, "
                    "$XDG_DATA_HOME/fast-mcp-gateway/spool)")
    session_idle_timeout: float = Field(
        default=1800.0, gt=0, le=86_400 * 7,
        description="HTTP: seconds an MCP session may stay idle (no request in flight, no "
                    "open stream) before it is closed and its memory freed")
    header_timeout: float = Field(
        default=30.0, gt=0, le=3600,
        description="HTTP: seconds a connection may take to send a request's headers (also "
                    "the idle limit between requests) before it is closed")
    http_max_body_bytes: int = Field(
        default=SDK_MAX_BODY, ge=4096, le=64 * 1024 * 1024,
        description="HTTP (streamable): the largest request body, in bytes, the MCP endpoint "
                    "reads for one JSON-RPC message, on the express lane and the full path "
                    "alike; a larger one is refused with 413 saying so (default 4 MiB, the MCP "
                    "SDK's; at most 64 MiB: each request in flight may hold its body in "
                    "memory; SSE keeps the SDK's 4 MiB)")
    retention_days: float = Field(default=7.0, gt=0)
    retention_rows: int = Field(default=1_000_000, ge=1000)
    redact_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REDACT_KEYS),
        description="argument keys (substring, any case) whose values are stored as ***")

    request_state_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="secrets (comma-separated, each at least 32 bytes) sealing the "
                    "requestState of the asking rounds the gateway's server answers: give "
                    "every gateway a host may reach (behind one address, or after a "
                    "restart) the same keys, so that the host's next round may reach any of "
                    "them; an MCP task's id is sealed with them too, so that any of them "
                    "follows it (servers reached by url:). The first seals, every one "
                    "unseals (to rotate: old,new on every "
                    "gateway, then new,old on every one, then new; going straight to new,old "
                    "refuses the rounds an updated gateway sealed on one not updated yet). "
                    "Default: a key of the process's own")
    credential_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="keys (comma-separated, each >= 32 bytes) sealing servers' sign-ins (auth:) "
                    "in the store; the first seals, all open. Required with PostgreSQL (the "
                    "same on every gateway); default: credential.keys beside the SQLite file")
    oauth_callback_port: int = Field(default=8767, ge=1, le=65535, description="the port "
                                     "on 127.0.0.1 a sign-in returns to (open while pending)")

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        """A misspelt keyword (``GatewaySettings(prot=9000)``) is refused with the closest
        name rather than ignored (the environment's ``MCP_GATEWAY_*`` are read by name:
        an unknown one never gets here)."""
        unknown = [key for key in data if key not in cls.model_fields] \
            if isinstance(data, dict) else []
        if unknown:
            import difflib

            def hint(key: str) -> str:
                close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
                return f"'{key}' (did you mean '{close[0]}'?)" if close else f"'{key}'"
            raise ValueError(f"GatewaySettings has no setting {', '.join(map(hint, unknown))}; "
                             f"the settings are: {', '.join(cls.model_fields)}")
        return data

    @property
    def store(self) -> str | None:
        """The store ``serve`` runs with: ``db``, or None without one (``--no-db``, which
        leaves ``$MCP_GATEWAY_DB`` in ``db``, turns ``record_calls`` off).  What ``check``
        loads registrations from and what the loop guard's identity hashes
        (``upstream/loops.served_here``): one answer for one set of settings."""
        return self.db if self.record_calls else None

    @field_validator("allowed_hosts", "allowed_origins", "redact_keys", "request_state_keys",
                     "credential_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any, info: ValidationInfo) -> Any:
        """From the environment: comma-separated names, or a JSON list."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                parts = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"is neither comma-separated names nor a JSON list of "
                                 f"strings ({exc})") from None
        else:
            parts = [part.strip() for part in value.split(",") if part.strip()]
        if info.field_name == "request_state_keys" and not parts:
            # Set but naming no key: most likely a ${VAR} a deployment left empty.  A key
            # of the process's own would then be used in silence, and a host's next round
            # refused wherever it lands but here.
            raise ValueError(
                "set but holds no key; give the keys every gateway shares (comma-"
                "separated), or unset it for a key of this process's own")
        return parts

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        """A Unicode host in the IDNA form browsers send (``config/origins.py``)."""
        return [allowed_host(host) for host in hosts]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        """Each in the form browsers send (``config/origins.py``): ``http://localhost:80``
        is the ``http://localhost`` a browser's Origin says; no origin is refused."""
        return list(dict.fromkeys(allowed_origin(origin) for origin in origins))

    @field_validator("request_state_keys", "credential_keys")
    @classmethod
    def _secret_enough(cls, keys: list[SecretStr]) -> list[SecretStr]:
        seen: set[str] = set()
        for number, key in enumerate(keys, 1):
            value = key.get_secret_value()
            if len(value.encode()) < 32:
                raise ValueError(
                    f"key {number} has {len(value.encode())} bytes; each needs at least 32 "
                    "bytes of secret randomness (make one with: python -c \"import secrets; "
                    "print(secrets.token_urlsafe(32))\")")
            if value in seen:
                raise ValueError(f"key {number} repeats an earlier key")
            seen.add(value)
        return keys

    @field_validator("http_max_body_bytes")
    @classmethod
    def _sse_keeps_the_sdk_limit(cls, value: int, info: ValidationInfo) -> int:
        if value != SDK_MAX_BODY and info.data.get("transport") == "sse":
            raise ValueError(SSE_BODY_LIMIT)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: Any) -> Any:
        """``debug`` is ``DEBUG``: a level is a word, not a spelling."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("event_loop", "log_format", mode="before")
    @classmethod
    def _loop_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("instance_id", mode="before")
    @classmethod
    def _usable_instance_id(cls, value: Any) -> Any:
        """It names the gateway in every record, row and log line about it."""
        if not isinstance(value, str):
            return value
        fix = ("name this gateway, e.g. gw-1 (one name per gateway on a shared store), or "
               "leave --instance-id out for HOSTNAME-PID")
        if not value.strip():
            raise ValueError(f"is empty: {fix}")
        if any(not c.isprintable() for c in value):
            raise ValueError(f"holds a control character (a line break, a tab...): {fix}")
        if len(value) > MAX_INSTANCE_ID:
            raise ValueError(f"has {len(value)} characters, at most "
                             f"{MAX_INSTANCE_ID} characters: {fix}")
        return value

    @field_validator("db", mode="before")
    @classmethod
    def _db_as_text(cls, value: Any) -> Any:
        # A path stays a path; a URL must not go through Path (it collapses "//").
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("db", "host", "spool_dir", "config", mode="before")
    @classmethod
    def _not_blank(cls, value: Any, info: ValidationInfo) -> Any:
        """A variable set but empty (a deployment's ${VAR} left unset) is no value: ``""``
        became the current folder as a store or spool path, and a bind to every address."""
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"is empty; {_BLANK_FIX[info.field_name or '']}")
        return value

    @field_validator("host")
    @classmethod
    def _bind_address(cls, value: str) -> str:
        """An address alone: ``127.0.0.1:8080`` or ``http://127.0.0.1`` was refused as a
        name that does not resolve, or (not loopback) as a bind without authentication.
        ``[::1]`` (as a URL writes it) is ``::1``: bracketed, it did not resolve."""
        address, port = _split_port(value)
        if "/" in value:
            raise ValueError("is a URL, not an address: give the address alone, e.g. "
                             "127.0.0.1, and the port as the port setting (--port, "
                             "MCP_GATEWAY_PORT)")
        if port is not None:
            raise ValueError(f"names a port: give the address alone ({address}) and the "
                             f"port as the port setting (--port {port}, MCP_GATEWAY_PORT)")
        if value.endswith(":") and not _is_address(value):
            raise ValueError(f"ends with ':' but names no port: give the address alone "
                             f"({value.rstrip(':').strip('[]') or '127.0.0.1'}) and the port "
                             "as the port setting (--port, MCP_GATEWAY_PORT)")
        v6_port = _v6_with_port(value)
        if v6_port is not None:
            address, port = v6_port
            raise ValueError(
                f"reads as IPv6 address {address} with port {port} appended (an IPv6 "
                f"address with a port is written [{address}]:{port}): give the address "
                f"alone ({address}) and the port as the port setting (--port {port}, "
                "MCP_GATEWAY_PORT)")
        if value.startswith("[") and value.endswith("]"):  # as in a URL: bound without
            return value[1:-1]
        if value.lower() == "localhost.":  # the root-anchored name: /etc/hosts has no dot
            return value[:-1]
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("must be a URL path starting with /, e.g. /mcp")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("must be the http:// or https:// URL hosts reach the gateway "
                             "at, e.g. https://mcp.example.com")
        return None if value is None else public_url(value)  # a Unicode host: its xn-- form


_BLANK_FIX = {
    "db": "give a SQLite file path or a postgresql:// URL, or unset it for the default "
          "store (or serve --no-db for none)",
    "host": "give the address to listen on, e.g. 127.0.0.1, or unset it",
    "spool_dir": "give a folder, or unset it for the default",
    "config": "give the path of servers.yaml, or unset it for ./servers.yaml"}


MAX_INSTANCE_ID = 128


def startup_limit(configured: int | None) -> int:
    """Concurrent upstream connects: as configured, else 4 per CPU core (at least 4).
    Starting servers costs CPU (an interpreter, imports): too many at once on a small
    machine starve each other past their connect timeout, then crash-loop."""
    return configured or max(4, 4 * (os.cpu_count() or 1))


def default_spool_dir() -> Path:
    """Where a stop with the store away spills call records (``spool_dir``'s default)."""
    return default_db_path().parent / "spool"


def default_db_path() -> Path:
    """Where the CLI keeps the store unless told otherwise (the user's data dir)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fast-mcp-gateway" / "gateway.db"


_SECRET_SETTINGS = frozenset({"db", "request_state_keys", "credential_keys"})


SSE_BODY_LIMIT = (
    "the SSE transport reads at most 4 MiB per message, a limit of the MCP SDK that "
    "FastMCP gives no way to change; leave MCP_GATEWAY_HTTP_MAX_BODY_BYTES unset with "
    "--transport sse, or serve streamable HTTP (--transport http), which honours it")
_FLAGS = {"allowed_hosts": "--allowed-host"}  # where a flag's name is not the field's


def settings_problem(exc: ValidationError, flags: Collection[str] = ()) -> str:
    """A settings error, one clause per problem, naming where the value came from: the
    command-line flag for a setting in ``flags`` (the parser checks only their types,
    not their ranges: ``--port 99999``), else the variable, never the model's field."""
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        # A store URL may carry a password, a key is a secret: their values are never echoed.
        got = "" if name in _SECRET_SETTINGS else f" (got {error.get('input')!r})"
        source = (_FLAGS.get(name, "--" + name.replace("_", "-")) if name in flags
                  else f"MCP_GATEWAY_{name.upper()}")
        what = str(error["msg"]).replace("Input should be", "must be", 1)
        what = what.removeprefix("Value error, ")  # a validator's own words
        allowed = _allowed(name)
        if allowed is not None and error["type"] in _TYPE_OR_RANGE:
            what = f"must be {allowed}"  # the whole range, not pydantic's one bound
        lines.append(f"{source}: {what}{got}")
    return "; ".join(lines) or str(exc)


_TYPE_OR_RANGE = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "float_parsing",
    "int_parsing", "int_from_float", "float_type", "int_type", "bool_parsing", "bool_type",
    "finite_number"})


def _allowed(name: str) -> str | None:
    """What setting ``name`` takes, in words: a number's whole range, a boolean's
    spellings; ``None`` for the others (their errors say it themselves)."""
    field = GatewaySettings.model_fields.get(name)
    if field is None:
        return None
    if field.annotation is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    bounds = [words.format(getattr(m, attr)) for m in field.metadata for attr, words in (
        ("gt", "greater than {}"), ("ge", "at least {}"), ("lt", "less than {}"),
        ("le", "at most {}")) if getattr(m, attr, None) is not None]
    whole = field.annotation is int or int in get_args(field.annotation)
    kind = "a whole number" if whole else "a number"
    return f"{kind} {' and '.join(bounds)}" if bounds else (
        kind if field.annotation in (int, float) or whole else None)


def _split_port(host: str) -> tuple[str, str | None]:
    """``(address, port)`` of ``host:port`` or ``[v6]:port``; an IPv6 address is no port."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host, None
    except ValueError:
        pass
    address, sep, port = host.rpartition(":")
    if not sep or not port.isdigit() or (":" in address and not address.startswith("[")):
        return host, None
    return address.strip("[]"), port


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _v6_with_port(host: str) -> tuple[str, str] | None:
    """``(address, port)`` of a bare IPv6 address with a port after it (``::1:8080``),
    else ``None``.  Also a valid address itself when it starts with ``::`` or ``::1``
    (``::1:8080`` is ``::0.1.128.128``, of the deprecated IPv4-compatible block ``::/96``
    nobody binds to); any other valid address is taken as written."""
    if host.startswith("[") or host.count(":") < 2:
        return None
    address, _, port = host.rpartition(":")
    if not port.isdigit() or not 0 < int(port) <= 65535 or not _is_address(address) \
            or ipaddress.ip_address(address).version != 6:
        return None
    if _is_address(host) and not ipaddress.ip_address(address).packed.startswith(
            bytes(15)):  # :: or ::1 with a port: else an address (2001:db8::1:443)
        return None
    return address, port


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses (127.0.0.0/8, ::1, localhost, and
    ``localhost.``, its root-anchored form)."""
    if host.lower().removesuffix(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


HOW_TO_ADD_A_TOKEN = ("make a token with 'mcp-gateway token new --name ops --scopes admin' "
                      "and paste the printed entry under gateway.auth.tokens in servers.yaml")


def bind_refusal(settings: GatewaySettings, *, authenticated: bool,
                 transport: str | None = None) -> str | None:
    """Why the gateway must not serve as configured, or ``None``: HTTP/SSE without
    ``gateway.auth`` is for this machine only (anyone reaching the port could call
    every tool, or with ``--allow-unauthenticated-admin`` run any command).  ``serve``
    asks first; ``Gateway.run_async`` asks again (library mode: no CLI asked)."""
    if (transport or settings.transport) == "stdio" or authenticated \
            or is_loopback(settings.host):
        return None
    return (f"refusing to listen on {settings.host} without authentication: anyone who can "
            f"reach it could use the gateway. Either {HOW_TO_ADD_A_TOKEN}, or serve on "
            "loopback (--host 127.0.0.1; in library mode GatewaySettings(host=...)).")
