"""Reading ``servers.yaml`` or a Claude-Desktop ``mcpServers`` file into a ``GatewayConfig``.

Entry points, all raising ``ConfigError`` (never another exception) for bad input:

* ``load_config(path)``: the operator's file.  UTF-8, UTF-8 with BOM, UTF-16/32 with BOM (what
  Windows Notepad writes) are read; binary files, undecodable text, huge files and very deep
  nesting are one-line errors naming the file.
* ``parse_config_text`` / ``parse_config``: the same from text or from parsed data.
* ``parse_import`` and ``parse_registration``: runtime registrations (admin tools, REST,
  imports).  They take ``env_allow``: such input may only use ``${VAR}`` for variables the
  operator listed in ``gateway.env_allow`` (a registration must not be able to read any
  environment variable of the gateway and send it to a URL of its choosing).

Interpolation (see ``interpolation``), the Claude-Desktop shape and every check are applied
alike; validation collects every problem and raises one ``ConfigError`` whose issues each
name the file, the server and the field, and say how to fix it.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fast_mcp_gateway.config.alerts_file import parse_alerts
from fast_mcp_gateway.config.auth import expand_auth
from fast_mcp_gateway.config.checks import (
    MAX_DEPTH,
    check_document,
    check_server,
    explain,
    field_path,
    short,
    suggest,
)
from fast_mcp_gateway.config.interpolation import INTERPOLATED_FIELDS, interpolate
from fast_mcp_gateway.config.schema import (
    INTERNAL_FIELDS,
    GatewayConfig,
    GatewayOptions,
    ServerConfig,
)
from fast_mcp_gateway.errors import ConfigError, ConfigIssue

# A config is a few KB; anything this large is the wrong file.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Beyond this, more lines hide the first problems instead of helping.
MAX_ISSUES = 50

# ---------------------------------------------------------------------------
# Bytes and text
# ---------------------------------------------------------------------------

_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, interpolate and validate the operator's config file (ours or Claude Desktop's)."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError.single(source, None, None, "file not found; check the path given "
                                 "with --config (or $MCP_GATEWAY_CONFIG)") from None
    except IsADirectoryError:
        raise ConfigError.single(source, None, None, "is a directory; give the path of the "
                                 "servers.yaml (or mcpServers JSON) file") from None
    except PermissionError:
        raise ConfigError.single(source, None, None, "permission denied; make the file "
                                 "readable by the user running the gateway") from None
    except OSError as exc:
        raise ConfigError.single(source, None, None,
                                 f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError.single(source, None, None, f"is larger than "
                                 f"{MAX_CONFIG_BYTES // (1024 * 1024)} MiB; is it the right "
                                 "file? A config is YAML or JSON text of a few KB")
    return parse_config_text(decode_config(data, source), source=source, environ=environ)


def decode_config(data: bytes, source: str) -> str:
    """Config bytes as text: a BOM picks the encoding, else UTF-8; binary is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise ConfigError.single(source, None, None, _undecodable(exc, encoding)) from None
    if b"\x00" in data:
        raise ConfigError.single(source, None, None, _BINARY)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(source, None, None, _undecodable(exc, "UTF-8")) from None


_BINARY = ("is not a text file (it contains NUL bytes); a config is YAML or JSON text, saved "
           "as UTF-8")


def _undecodable(exc: UnicodeDecodeError, encoding: str) -> str:
    line = exc.object[:exc.start].count(b"\n") + 1
    return (f"is not valid {encoding} text (byte 0x{exc.object[exc.start]:02x} at line {line}); "
            "save the file as UTF-8")


# ---------------------------------------------------------------------------
# YAML and JSON
# ---------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _ConfigYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (instead of keeping the last) while still
    honouring ``<<:`` merge keys, whose merged keys the mapping's own keys may override."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged_prefix: dict[int, int] = {}

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        own = sum(1 for key, _ in node.value if key.tag != _MERGE_TAG)
        super().flatten_mapping(node)  # type: ignore[no-untyped-call]
        # Merged pairs are put in front; remember how many (a node may be flattened twice).
        self.merged_prefix[id(node)] = (self.merged_prefix.get(id(node), 0)
                                        + len(node.value) - own)


def _construct_mapping(loader: _ConfigYamlLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a mapping, found {node.id}", node.start_mark)
    loader.flatten_mapping(node)
    merged = loader.merged_prefix.get(id(node), 0)
    mapping: dict[Any, Any] = {}
    own: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a name, not a list or mapping", key_node.start_mark)
        if index >= merged:
            if key in own:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)}; keep only one of them",
                    key_node.start_mark)
            own.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)  # type: ignore[no-untyped-call]
    return mapping


_ConfigYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _DuplicateJsonKey(key)
        mapping[key] = value
    return mapping


def read_document(text: str, source: str = "<config>") -> Any:
    """Parse config text, YAML or JSON, to plain data (``None`` when empty).

    JSON is YAML, but a document starting with ``{`` is read as JSON: its errors read better,
    and tab indentation (legal JSON, illegal YAML) works.
    """
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise ConfigError.single(source, None, None, _BINARY)
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError.single(source, None, None, "is too large for a config (over 4 MiB)")
    is_json = text.lstrip().startswith("{")
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=_ConfigYamlLoader)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except _DuplicateJsonKey as exc:
        message = f"duplicate key {short(exc.key)} in a JSON object; keep only one of them"
    except yaml.YAMLError as exc:
        message = _yaml_problem(exc)
    except RecursionError:
        message = f"is nested too deeply (a config needs at most {MAX_DEPTH} levels)"
    except (ValueError, OverflowError) as exc:  # e.g. a 5000-digit number, a bad date
        problem = _one_line(str(exc))
        if "integer string conversion" in problem:
            problem = "a number has thousands of digits; no setting needs more than a few"
        message = f"invalid {'JSON' if is_json else 'YAML'}: {problem}"
    raise ConfigError.single(source, None, None, message)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {_one_line(str(exc))}"
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = exc.problem or exc.context or "syntax error"
    if exc.context and exc.problem:
        problem = f"{problem} ({exc.context})"
    if "constructor for the tag" in problem:
        problem += "; YAML tags (!!python/..., !custom) are not allowed in a config"
    if "recursive node" in problem:
        problem += "; an alias (*name) refers to the mapping or list that defines it"
    if "'\\t'" in problem:
        problem += "; indent with spaces, not tabs"
    return f"invalid YAML{where}: {_one_line(problem)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def parse_config_text(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
    env_allow: Sequence[str] | None = None,
) -> GatewayConfig:
    """Parse and validate YAML or JSON config text (an empty text is an empty config)."""
    data = read_document(text, source)
    return parse_config({} if data is None else data, source=source, environ=environ,
                        env_allow=env_allow)


def parse_config(
    data: Any, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
    env_allow: Sequence[str] | None = None,
) -> GatewayConfig:
    """Validate an already-parsed mapping into a ``GatewayConfig``.

    ``env_allow=None`` is the operator's file: every variable may be interpolated.  A
    sequence restricts ``${VAR}`` to matching variables (``GATEWAY_PYTHON`` is always allowed).
    """
    return _Validation(source, environ, env_allow).run(data).config


@dataclass(frozen=True)
class Imported:
    """A runtime import: the validated servers, and each server's settings as written
    (ours or converted from Claude Desktop's shape, ``${VAR}`` not expanded) for storage."""

    config: GatewayConfig
    entries: dict[str, dict[str, Any]]


def parse_import(
    text: str, *, source: str = "gateway_import_servers", env_allow: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Imported:
    """Validate pasted config text for registration at runtime (see the module docstring)."""
    if not text.strip():
        raise ConfigError.single(source, None, None, "is empty; paste a servers.yaml "
                                 "('servers:' ...) or a Claude Desktop file "
                                 "({\"mcpServers\": ...})")
    data = read_document(text, source)
    if isinstance(data, dict) and "gateway" in data:
        raise ConfigError.single(source, None, "gateway", "gateway options cannot be changed "
                                 "at runtime; remove the 'gateway:' section (edit servers.yaml "
                                 "for those)")
    result = _Validation(source, environ, tuple(env_allow)).run(data)
    if not result.config.servers:
        raise ConfigError.single(source, None, None, "has no servers to import; list them "
                                 "under 'servers:' or 'mcpServers:'")
    return Imported(result.config, result.entries)


def parse_registration(
    name: str, raw: Any, *, source: str, env_allow: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Validate one server registered at runtime exactly as servers.yaml would, with
    interpolation restricted to ``env_allow``."""
    if not isinstance(raw, dict):
        raise ConfigError.single(source, name, None,
                                 "must be a mapping of settings (command/args or url)")
    data = {"servers": {name: raw}}
    return _Validation(source, environ, tuple(env_allow)).run(data).config.servers[name]


@dataclass
class _Result:
    config: GatewayConfig
    entries: dict[str, dict[str, Any]]


_TOP_KEYS = ["gateway", "servers", "alerts"]
_CLAUDE_KEYS = {"command", "args", "env", "cwd", "url", "type", "transport", "headers"}
# Keys other hosts write into mcpServers entries; they mean nothing to the gateway.
_CLAUDE_IGNORED = {"autoApprove", "alwaysAllow", "timeout", "description", "envFile", "disabled"}
_CLAUDE_TYPES = {"stdio": "stdio", "sse": "sse", "http": "http", "streamable-http": "http",
                 "streamableHttp": "http", "streamable_http": "http"}
_INTERNAL_HINTS = {
    "name": "unknown field: a server's name is its key under 'servers:' (rename the key)",
    "secrets": "unknown field: write secrets as ${VAR} in env, headers, args or url; the "
               "gateway masks them by itself",
}


class _Validation:
    """One validation run: collects issues, raises them together."""

    def __init__(self, source: str, environ: Mapping[str, str] | None,
                 env_allow: Sequence[str] | None) -> None:
        self.source = source
        self.env = dict(os.environ if environ is None else environ)
        self.env.setdefault("GATEWAY_PYTHON", sys.executable)
        self.env_allow = env_allow
        self.issues: list[ConfigIssue] = []

    def fail(self, server: str | None, field: str | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, server, field, message))

    def stop(self) -> ConfigError:
        issues = self.issues
        if len(issues) > MAX_ISSUES:
            more = len(issues) - MAX_ISSUES
            issues = [*issues[:MAX_ISSUES],
                      ConfigIssue(self.source, None, None, f"and {more} more problems")]
        return ConfigError(issues)

    def run(self, data: Any) -> _Result:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(None, None, f"the top level must be a mapping (servers: ...), not "
                                  f"{_kind(data)}")
            raise self.stop()
        check_document(data, self.fail)
        if self.issues:
            raise self.stop()

        claude = "mcpServers" in data
        if claude:
            # Claude Desktop keeps its own settings (globalShortcut, ...) next to mcpServers.
            if "servers" in data:
                self.fail(None, "servers", "a file has either 'servers' (servers.yaml) or "
                                           "'mcpServers' (Claude Desktop), not both")
            raw_servers = data["mcpServers"]
        else:
            # x-* keys hold YAML anchors for '<<:' merges (as in docker-compose files).
            for key in [k for k in data if k not in _TOP_KEYS and not k.startswith("x-")]:
                self.fail(None, key, "unknown top-level key"
                          + suggest(key, [*_TOP_KEYS, "mcpServers"]))
            raw_servers = data.get("servers")
        options = self.options(data.get("gateway"))

        if raw_servers is None:
            raw_servers = {}
        if not isinstance(raw_servers, dict):
            key = "mcpServers" if claude else "servers"
            self.fail(None, key, "must be a mapping of server name to server settings")
            raise self.stop()
        servers: dict[str, ServerConfig] = {}
        entries: dict[str, dict[str, Any]] = {}
        for name, raw in raw_servers.items():
            entry = self.entry(name, raw, claude)
            if entry is None:
                continue
            server = self.server(name, entry)
            if server is not None:
                servers[name] = server
                entries[name] = entry
        self.check_namespaces(servers)
        alerts = parse_alerts(data.get("alerts"), self.env, raw_servers, lambda f, m: self.fail(
            None, f, m), explain, field_path)
        if self.issues:
            raise self.stop()
        return _Result(GatewayConfig(options=options, servers=servers, source=self.source,
                                     alerts=alerts), entries)

    def options(self, raw: Any) -> GatewayOptions:
        if isinstance(raw, dict) and isinstance(raw.get("auth"), dict):
            before = len(self.issues)
            raw = {**raw, "auth": self.auth(raw["auth"])}
            if len(self.issues) > before:  # an unset variable: no second, derived complaint
                return GatewayOptions()
        try:
            return GatewayOptions.model_validate({} if raw is None else raw)
        except ValidationError as exc:
            for err in exc.errors():
                path = field_path(err["loc"])
                self.fail(None, f"gateway.{path}" if path else "gateway",
                          explain(err, GatewayOptions))
        return GatewayOptions()

    def auth(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``gateway.auth`` with ``${VAR}`` expanded (the operator's file: any variable)."""
        return expand_auth(raw, lambda value, field: interpolate(
            value, field, self.env, None, set(),
            lambda f, m: self.fail(None, f"gateway.auth.{f}", m)))

    def entry(self, name: str, raw: Any, claude: bool) -> dict[str, Any] | None:
        """The server's settings in our shape, before interpolation; None after a problem."""
        if not name.strip():
            self.fail(None, "mcpServers" if claude else "servers",
                      "has a server with an empty name; give every server a name")
            return None
        if not isinstance(raw, dict):
            self.fail(name, None, "must be a mapping of settings (command/args or url), not "
                                  f"{_kind(raw)}")
            return None
        if claude:
            return self.from_claude(name, raw)
        bad = [key for key in raw if key in INTERNAL_FIELDS]
        for key in bad:
            self.fail(name, key, _INTERNAL_HINTS[key])
        return None if bad else dict(raw)

    def from_claude(self, name: str, raw: dict[str, Any]) -> dict[str, Any] | None:
        unknown = [key for key in raw if key not in _CLAUDE_KEYS | _CLAUDE_IGNORED]
        for key in unknown:
            self.fail(name, key, "unknown mcpServers key" + suggest(key, sorted(_CLAUDE_KEYS)))
        entry = {k: v for k, v in raw.items() if k in _CLAUDE_KEYS - {"type", "transport"}}
        kind = raw.get("type", raw.get("transport"))
        if kind is not None:
            mapped = _CLAUDE_TYPES.get(kind) if isinstance(kind, str) else None
            if mapped is None:
                self.fail(name, "type", f"unknown transport type {short(kind)}; use stdio, "
                                        "http (or streamable-http) or sse")
                return None
            entry["transport"] = mapped
        disabled = raw.get("disabled", False)
        # A string is refused rather than guessed: "false" would read as true in JavaScript.
        if not isinstance(disabled, bool):
            self.fail(name, "disabled", f"must be true or false without quotes, not "
                                        f"{short(disabled)}")
            return None
        if disabled:
            entry["enabled"] = False
        if isinstance(raw.get("description"), str):
            entry["description"] = raw["description"]
        return None if unknown else entry

    def server(self, name: str, entry: dict[str, Any]) -> ServerConfig | None:
        before = len(self.issues)
        values = dict(entry)
        secrets: set[str] = set()
        for field in INTERPOLATED_FIELDS:
            if values.get(field) is not None:
                values[field] = interpolate(values[field], field, self.env, self.env_allow,
                                            secrets, lambda f, m: self.fail(name, f, m))
        if len(self.issues) > before:
            return None
        try:
            server = ServerConfig.model_validate(
                {**values, "name": name, "secrets": frozenset(secrets)})
        except ValidationError as exc:
            for err in exc.errors():
                self.fail(name, field_path(err["loc"]) or None, explain(err, ServerConfig))
            return None
        problem = check_server(server, self.source)
        if problem:
            self.fail(name, problem[0], problem[1])
            return None
        return server

    def check_namespaces(self, servers: dict[str, ServerConfig]) -> None:
        seen: dict[str, str] = {}
        for server in servers.values():
            ns = server.effective_namespace
            if ns and ns in seen:
                self.fail(server.name, "namespace",
                          f"namespace '{ns}' is already used by server '{seen[ns]}'; give one "
                          "of them another 'namespace:'")
            seen.setdefault(ns, server.name)


def _kind(value: Any) -> str:
    names = {str: "text", list: "a list", int: "a number", float: "a number", bool: "true/false"}
    return names.get(type(value), type(value).__name__)
