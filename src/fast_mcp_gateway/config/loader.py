"""Reading ``servers.yaml`` or a Claude-Desktop ``mcpServers`` file into a ``GatewayConfig``.

Entry points, all raising ``ConfigError`` (never another exception) for bad input:

* ``load_config(path)``: the operator's file.  UTF-8, UTF-8 with BOM, UTF-16/32 with BOM (what
  Windows Notepad writes) are read; binary files, undecodable text, huge files and very deep
  nesting are one-line errors naming the file (the bytes and the YAML or JSON are read by
  ``document``).
* ``parse_config_text`` / ``parse_config``: the same from text or from parsed data.
* ``parse_import`` and ``parse_registration``: runtime registrations (admin tools, REST,
  imports).  They take ``env_allow``: such input may only use ``${VAR}`` for variables the
  operator listed in ``gateway.env_allow`` (a registration must not be able to read any
  environment variable of the gateway and send it to a URL of its choosing).

Interpolation (see ``interpolation``), the Claude-Desktop shape and every check are applied
alike; validation collects every problem and raises one ``ConfigError`` whose issues each
name the file, the server and the field, and say how to fix it.

``partial=True`` (what ``serve``, ``Gateway.from_file``, a reload and ``check`` read the
operator's file with) is how a host's config behaves: an error *confined to one server's
entry* (``confined``: anything under ``servers.<name>`` / ``mcpServers.<name>`` -- an
unknown key, a wrong type, an unset ``${VAR}``, an invalid value) leaves that server out,
in ``GatewayConfig.invalid`` with its message, and the others load.  Everything else (the
document, ``gateway:`` -- ``auth`` above all: never skipped --, ``alerts:``, unknown
top-level keys, two servers sharing a namespace) still refuses the whole file, with every
problem found listed.
"""

from __future__ import annotations

import os
import re
import sys
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fast_mcp_gateway.config.alerts_file import parse_alerts
from fast_mcp_gateway.config.auth import expand_auth
from fast_mcp_gateway.config.checks import (
    check_document,
    check_server,
    explain,
    field_path,
    suggest,
)
from fast_mcp_gateway.config.claude_entry import CLAUDE_TYPES, from_claude
from fast_mcp_gateway.config.document import MAX_CONFIG_BYTES, decode_config, read_document
from fast_mcp_gateway.config.interpolation import INTERPOLATED_FIELDS, interpolate
from fast_mcp_gateway.config.names import overlong_name, shown_name
from fast_mcp_gateway.config.schema import (
    INTERNAL_FIELDS,
    NAME_CHARS,
    GatewayConfig,
    GatewayOptions,
    InvalidServer,
    ServerConfig,
)
from fast_mcp_gateway.config.timeouts import Timeouts, timeouts_problem
from fast_mcp_gateway.config.upstream_tls import placed
from fast_mcp_gateway.errors import ConfigError, ConfigIssue
from fast_mcp_gateway.telemetry.redaction import mask_secrets

# Beyond this, more lines hide the first problems instead of helping.
MAX_ISSUES = 50


# id(config) -> (the file's absolute path, its (mtime in ns, size) as read), while the
# config lives (``weakref.finalize`` drops it, so an id is never found reused).
_read_stamps: dict[int, tuple[str, tuple[int, int]]] = {}


def read_stamp(config: GatewayConfig, path: str | Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of the config file ``path`` as ``load_config`` read it to
    make ``config`` (None: ``config`` was not read from ``path``: ``parse_config``'s).
    The config watcher's baseline: ``serve`` reads the file before the server stack is
    imported, and an edit made meanwhile is one to reload -- even if another reader of
    the file (a second gateway in the process, a check) took it in since."""
    noted = _read_stamps.get(id(config))
    return noted[1] if noted is not None and noted[0] == os.path.abspath(path) else None


def _note_read(config: GatewayConfig, path: Path, stamp: tuple[int, int]) -> GatewayConfig:
    key = id(config)
    _read_stamps[key] = (os.path.abspath(path), stamp)
    weakref.finalize(config, _read_stamps.pop, key, None)
    return config


def load_config(path: str | Path, environ: Mapping[str, str] | None = None, *,
                partial: bool = False) -> GatewayConfig:
    """Read, interpolate and validate the operator's config file (ours or Claude Desktop's);
    ``partial``: a server whose entry alone is invalid is left out (see the module
    docstring), not the file refused."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as file:
            st = os.fstat(file.fileno())  # before the read: an edit during it is newer
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError.single(source, None, None, "file not found; check the path given "
                                 "with --config (or $MCP_GATEWAY_CONFIG; in library code, "
                                 "to load_config or Gateway.from_file)") from None
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
    return _note_read(parse_config_text(decode_config(data, source), source=source,
                                        environ=environ, partial=partial,
                                        folder=path.absolute().parent),
                      path, (st.st_mtime_ns, st.st_size))


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def parse_config_text(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
    env_allow: Sequence[str] | None = None, partial: bool = False,
    folder: Path | None = None,
) -> GatewayConfig:
    """Parse and validate YAML or JSON config text (an empty text is an empty config)."""
    data = read_document(text, source)
    return parse_config({} if data is None else data, source=source, environ=environ,
                        env_allow=env_allow, partial=partial, folder=folder)


def parse_config(
    data: Any, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
    env_allow: Sequence[str] | None = None, partial: bool = False,
    folder: Path | None = None,
) -> GatewayConfig:
    """Validate an already-parsed mapping into a ``GatewayConfig``.

    ``env_allow=None`` is the operator's file: every variable may be interpolated.  A
    sequence restricts ``${VAR}`` to matching variables (``GATEWAY_PYTHON`` is always allowed).
    ``partial``: errors confined to one server's entry leave it out (``config.invalid``).
    ``folder``: the config file's, which its relative ``tls:`` paths are read from
    (without it, from the working directory).
    """
    return _Validation(source, environ, env_allow, partial=partial,
                       folder=folder).run(data).config


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
    result = _Validation(source, environ, tuple(env_allow), check_names=False,
                         runtime=True).run(data)
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
    return _Validation(source, environ, tuple(env_allow), check_names=False,
                       runtime=True).run(data).config.servers[name]


@dataclass
class _Result:
    config: GatewayConfig
    entries: dict[str, dict[str, Any]]


_TOP_KEYS = ["gateway", "servers", "alerts"]
_INTERNAL_HINTS = {
    "name": "unknown field: a server's name is its key under 'servers:' (rename the key)",
    "secrets": "unknown field: write secrets as ${VAR} in env, headers, args or url; the "
               "gateway masks them by itself",
}


class _Validation:
    """One validation run: collects issues, raises them together."""

    def __init__(self, source: str, environ: Mapping[str, str] | None,
                 env_allow: Sequence[str] | None, *, check_names: bool = True,
                 partial: bool = False, folder: Path | None = None,
                 runtime: bool = False) -> None:
        self.source = source
        self.partial = partial
        # Where relative ``tls:`` paths are read from: the config file's folder; a
        # runtime registration (``runtime``) has none, and gives absolute paths.
        self.folder, self.runtime = folder, runtime
        # Off for runtime registrations: a new name is checked by the admin operation
        # (``admin/registering.check_new_name``), and one stored before a limit keeps working.
        self.check_names = check_names
        self.env = dict(os.environ if environ is None else environ)
        self.env.setdefault("GATEWAY_PYTHON", sys.executable)
        self.env_allow = env_allow
        self.issues: list[ConfigIssue] = []
        # Server name -> the issues confined to its entry (a subset of ``issues``).
        self.bad: dict[str, list[ConfigIssue]] = {}
        self.gateway_timeouts = Timeouts()  # the file's gateway.timeouts, once read

    def fail(self, server: str | None, field: str | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, server, field, message))

    def confine(self, name: str, since: int) -> bool:
        """Whether server ``name``'s entry had problems since issue ``since``: those are
        confined to it (see ``confined``)."""
        found = self.issues[since:]
        if found:
            self.bad.setdefault(name, []).extend(found)
        return bool(found)

    def refuse(self) -> bool:
        """Whether the problems found so far refuse the whole file: any at all, or (partial)
        any not confined to one server's entry."""
        if not self.partial:
            return bool(self.issues)
        confined_ = {id(issue) for issues in self.bad.values() for issue in issues}
        return any(id(issue) not in confined_ for issue in self.issues)

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
        names = _server_names(data)
        for issue in self.issues:
            if (name := confined(issue, names)) is not None:
                self.bad.setdefault(name, []).append(issue)
        if self.refuse():
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
        self.gateway_timeouts = options.timeouts

        if raw_servers is None:
            raw_servers = {}
        if not isinstance(raw_servers, dict):
            key = "mcpServers" if claude else "servers"
            self.fail(None, key, "must be a mapping of server name to server settings")
            raise self.stop()
        servers: dict[str, ServerConfig] = {}
        entries: dict[str, dict[str, Any]] = {}
        for name, raw in raw_servers.items():
            if name in self.bad:  # its entry is invalid already (check_document)
                continue
            since = len(self.issues)
            entry = self.entry(name, raw, claude)
            server = self.server(name, entry, claude) if entry is not None else None
            if self.confine(name, since) or server is None or entry is None:
                continue
            servers[name] = server
            entries[name] = entry
        self.check_namespaces(servers)
        alerts = parse_alerts(data.get("alerts"), self.env, raw_servers, lambda f, m: self.fail(
            None, f, m), explain, field_path)
        if self.refuse():
            raise self.stop()
        invalid = {name: invalid_entry(name, raw_servers[name], claude,
                                  str(ConfigError(self.bad[name])))
                   for name in raw_servers if name in self.bad}  # in file order
        return _Result(GatewayConfig(options=options, servers=servers, source=self.source,
                                     alerts=alerts, invalid=invalid), entries)

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
        if self.check_names and (problem := overlong_name(name)) is not None:
            self.fail(shown_name(name), None, problem + " (rename its key)")
            return None
        if not isinstance(raw, dict):
            self.fail(name, None, "must be a mapping of settings (command/args or url), not "
                                  f"{_kind(raw)}")
            return None
        if claude:
            return from_claude(name, raw, self.source, self.fail)
        bad = [key for key in raw if key in INTERNAL_FIELDS]
        for key in bad:
            self.fail(name, key, _INTERNAL_HINTS[key])
        return None if bad else dict(raw)

    def server(self, name: str, entry: dict[str, Any], claude: bool = False
               ) -> ServerConfig | None:
        before = len(self.issues)
        secrets: set[str] = set()
        values = self.interpolated(entry, secrets, name, "")
        if isinstance(instances := values.get("instances"), list):
            # Each replica given explicitly reaches a process or a connection as well.
            values["instances"] = [
                self.interpolated(item, secrets, name, f"instances[{i}].")
                if isinstance(item, dict) else item for i, item in enumerate(instances)]
        if values.get("tls") is not None:
            values["tls"] = placed(values["tls"], self.folder, self.runtime,
                                   lambda f, m: self.fail(name, f, mask_secrets(m, secrets)))
        if len(self.issues) > before:
            return None
        try:
            server = ServerConfig.model_validate(
                {**values, "name": name, "secrets": frozenset(secrets)})
        except ValidationError as exc:
            for err in exc.errors():  # a ${VAR}'s value is not in the words (a tls: path)
                self.fail(name, field_path(err["loc"]) or None,
                          mask_secrets(explain(err, ServerConfig), secrets))
            return None
        problem = check_server(server, self.source)
        if problem:
            self.fail(name, problem[0], mask_secrets(problem[1], secrets))
            return None
        own, shared = server.timeouts, self.gateway_timeouts
        if (wrong := timeouts_problem(own.call, own.max_total, shared.call,
                                      shared.max_total)) is not None:
            self.fail(name, "timeouts.max_total", wrong)
            return None
        return server.read_from(claude)

    def interpolated(self, entry: dict[str, Any], secrets: set[str], name: str,
                     where: str) -> dict[str, Any]:
        """``entry`` (server ``name``'s, or one of its ``instances`` at ``where``) with
        its ``INTERPOLATED_FIELDS`` expanded; each problem named at ``where`` + field."""
        values = dict(entry)
        for field in INTERPOLATED_FIELDS:
            if values.get(field) is not None:
                values[field] = interpolate(values[field], field, self.env, self.env_allow,
                                            secrets, lambda f, m: self.fail(name, where + f, m))
        return values

    def check_namespaces(self, servers: dict[str, ServerConfig]) -> None:
        """A namespace too long is its server's own problem (confined); two servers with
        one namespace are the file's (which one is wrong is for the operator to say)."""
        seen: dict[str, str] = {}
        for server in list(servers.values()):
            if self.check_names and server.namespace is not None and (
                    long := overlong_name(server.namespace, "namespace")):
                self.fail(server.name, "namespace", long)
                self.confine(server.name, len(self.issues) - 1)
                del servers[server.name]
                continue
            ns = server.effective_namespace
            if ns and ns in seen:
                self.fail(server.name, "namespace",
                          f"namespace '{ns}' is already used by server '{seen[ns]}'; give one "
                          "of them another 'namespace:'")
            seen.setdefault(ns, server.name)


def confined(issue: ConfigIssue, servers: Collection[str]) -> str | None:
    """The server whose entry alone ``issue`` is about (one of the file's ``servers``
    names), or None: a problem of the whole file.  The one rule of what a partial load
    skips; ``_Validation`` applies it as it goes (an entry's own checks are confined to
    it, the namespaces shared by two servers and the top-level sections are not)."""
    return issue.server if issue.server is not None and issue.server in servers else None


def _server_names(data: dict[Any, Any]) -> frozenset[str]:
    raw = data.get("mcpServers", data.get("servers"))
    return frozenset(k for k in raw if isinstance(k, str)) if isinstance(raw, dict) else \
        frozenset()


def invalid_entry(name: str, raw: Any, claude: bool, error: str,
                  enabled: bool | None = None) -> InvalidServer:
    """What the operator is shown of a server left out: its namespace, transport and
    ``enabled`` (unless given: a stored registration's) as far as its entry tells (a
    host's tool call is answered with its error).  An invalid entry is not disabled:
    only an entry saying ``enabled: false`` (Claude's ``disabled: true``) is."""
    entry = raw if isinstance(raw, dict) else {}
    if enabled is None:
        enabled = (entry.get("disabled") is not True if claude
                   else entry.get("enabled") is not False)
    namespace = entry.get("namespace")
    if claude or not isinstance(namespace, str) or not NAME_CHARS.match(namespace):
        namespace = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    kind = entry.get("type", entry.get("transport"))
    transport = (CLAUDE_TYPES.get(kind, "unknown") if isinstance(kind, str)
                 else "stdio" if "command" in entry
                 else ("sse" if str(entry["url"]).rstrip("/").endswith("/sse") else "http")
                 if "url" in entry else "unknown")
    return InvalidServer(name=name, namespace=namespace, transport=transport, error=error,
                         enabled=enabled)


def _kind(value: Any) -> str:
    names = {str: "text", list: "a list", int: "a number", float: "a number", bool: "true/false"}
    return names.get(type(value), type(value).__name__)
