"""Runtime registrations over ``servers.yaml``: validation, precedence, export.

Precedence, by server name: a runtime registration (made with the admin operations, kept
in the store) overrides the entry of the same name in ``servers.yaml``; a registration
without a config only carries the enabled flag (so disabling a file-defined server
survives restarts).  Removing a file-defined server leaves a ``TOMBSTONE`` registration,
which keeps it stopped until it is re-added.

Pure config logic: no I/O, no store, no MCP.  The gateway, the admin operations and the
CLI's ``servers`` report all decide "what runs" through ``merge``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import yaml

from fast_mcp_gateway.config.loader import invalid_entry, parse_registration
from fast_mcp_gateway.config.names import overlong_name
from fast_mcp_gateway.config.schema import MAX_DESCRIPTION, InvalidServer, ServerConfig
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store.records import TOMBSTONE as TOMBSTONE  # re-exported
from fast_mcp_gateway.store.records import Registration


def parse_server(name: str, raw: dict[str, Any], source: str,
                 env_allow: Sequence[str] = ()) -> ServerConfig:
    """Validate one runtime registration exactly as servers.yaml would, except that
    ``${VAR}`` may only name variables the operator allowed (``gateway.env_allow``):
    a registration arrives through the admin surface, which a prompt-injected model
    or a remote caller can reach, and must not be able to send the gateway's secrets
    anywhere."""
    return parse_registration(name, raw, source=source, env_allow=env_allow)


def merge(file_servers: dict[str, ServerConfig], registrations: Sequence[Registration],
          env_allow: Sequence[str] = (), invalid: dict[str, InvalidServer] | None = None,
          ) -> tuple[dict[str, ServerConfig], list[str]]:
    """The servers to run: the file's, overridden by runtime registrations (by name).

    ``registrations`` are the store's rows (``name``, ``config``, ``enabled``).  A row
    that no longer validates (written by an older version, or ``env_allow`` narrowed
    since) is skipped and described in the returned problems, so one bad registration
    never stops the others; ``invalid``, if given, is filled with it by name, as a
    partial load of the file describes an invalid entry (the file's entry of that name,
    if any, runs instead).  One stored before descriptions were limited runs with its
    description cut to ``MAX_DESCRIPTION`` (``overlong_description``: the control plane
    warns of it at start).
    """
    servers = dict(file_servers)
    problems: list[str] = []
    for row in registrations:
        name, raw, enabled = row.name, row.config, row.enabled
        if raw == TOMBSTONE:
            servers.pop(name, None)
            continue
        if raw is not None and overlong_description(raw) is not None:
            raw = {**raw, "description": raw["description"][:MAX_DESCRIPTION]}
        try:
            server = (parse_server(name, raw, "runtime registration", env_allow) if raw is not None
                      else servers.get(name))
        except ConfigError as exc:
            problems.append(problem := f"{exc} (so it does not run; correct it with "
                            "gateway_update_server, or remove it with gateway_remove_server)")
            if invalid is not None:
                invalid[name] = invalid_entry(name, raw, False, problem, enabled)
            continue
        if server is None:
            continue
        servers[name] = server.model_copy(update={"enabled": enabled})
    return servers, problems


def as_stored(invalid: Mapping[str, InvalidServer], registrations: Sequence[Registration]
              ) -> dict[str, InvalidServer]:
    """The config file's ``invalid`` entries as the store has them: a stored enabled flag
    (a registration without a config) is the one that applies once the entry is
    corrected, so it is the one shown; one a ``TOMBSTONE`` removed is left out (it will
    not run, corrected or not).  A registration with a config runs in its place and is
    not looked at here (``merge``)."""
    rows = {r.name: r for r in registrations if r.config is None or r.config == TOMBSTONE}
    shown: dict[str, InvalidServer] = {}
    for name, entry in invalid.items():
        row = rows.get(name)
        if row is not None and row.config == TOMBSTONE:
            continue
        shown[name] = entry if row is None or row.enabled == entry.enabled \
            else entry.model_copy(update={"enabled": row.enabled})
    return shown


def overlong_description(raw: dict[str, Any] | None) -> int | None:
    """The length of the description of ``raw`` (a stored registration's settings) when
    it is over ``MAX_DESCRIPTION`` (None: it is not).  Only a gateway before the limit
    stored such a row; it runs as before, its description cut to the limit (``merge``):
    refusing it would stop a server that ran for a line of text."""
    text = None if raw is None else raw.get("description")
    return len(text) if isinstance(text, str) and len(text) > MAX_DESCRIPTION else None


def registered(registrations: Sequence[Registration]) -> frozenset[str]:
    """The names ``registrations`` run a server of (not tombstones, not enabled flags)."""
    return frozenset(r.name for r in registrations if r.config not in (None, TOMBSTONE))


def check_namespace(server: ServerConfig, others: Mapping[str, ServerConfig],
                    source: str = "runtime registration",
                    visible: Collection[str] | None = None) -> None:
    """Reject ``server`` when its ``namespace:`` is too long (``MAX_SERVER_NAME``, as a
    name) or another server already uses its namespace; ``visible``: the servers the
    caller may see (None: every one), the only ones the refusal names."""
    if server.namespace is not None and (long := overlong_name(server.namespace, "namespace")):
        raise ConfigError.single(source, server.name, "namespace", long)
    ns = server.effective_namespace
    for other in others.values():
        if other.name != server.name and ns and other.effective_namespace == ns:
            if visible is not None and other.name not in visible:
                raise ConfigError.single(
                    source, server.name, "namespace",
                    f"namespace '{ns}' is already used by another server; give "
                    f"'{server.name}' another 'namespace:'")
            raise ConfigError.single(
                source, server.name, "namespace",
                f"namespace '{ns}' is already used by server '{other.name}'; give one of "
                "them another 'namespace:'")


CLAUDE_KEYS = ("command", "args", "env", "cwd", "url", "headers")
"""The keys of a server an ``mcpServers`` entry carries (with ``type`` and ``disabled``,
made from ``transport`` and ``enabled``)."""
_CARRIED = frozenset((*CLAUDE_KEYS, "name", "transport", "enabled"))


def not_carried(servers: Mapping[str, ServerConfig]) -> dict[str, list[str]]:
    """The keys each server sets that a Claude-Desktop export drops (gateway-only:
    ``isolation``, ``replicas``, ``balance``, ``namespace``...), by server; only servers
    that lose one."""
    dropped = {name: sorted(k for k in server.redacted() if k not in _CARRIED)
               for name, server in servers.items()}
    return {name: keys for name, keys in dropped.items() if keys}


def not_carried_words(dropped: Mapping[str, list[str]]) -> str:
    """What a user moving these servers to Claude Desktop is told it loses."""
    each = "; ".join(f"'{name}': {', '.join(keys)}" for name, keys in dropped.items())
    return (f"not carried into the Claude-Desktop file (mcpServers has no such keys: Claude "
            f"Desktop would run these servers without them): {each}; export as yaml to "
            f"keep every setting")


def export_servers(servers: Mapping[str, ServerConfig], fmt: str) -> str:
    """Servers as our YAML or as a Claude-Desktop mcpServers JSON (secrets redacted)."""
    entries = {}
    for name, server in servers.items():
        data = server.redacted()
        data.pop("name", None)
        entries[name] = data
    if fmt == "yaml":
        return str(yaml.safe_dump({"servers": entries}, sort_keys=False, allow_unicode=True))
    claude: dict[str, Any] = {}
    for name, data in entries.items():
        entry: dict[str, Any] = {k: data[k] for k in CLAUDE_KEYS if k in data}
        if "url" in entry:
            entry["type"] = "sse" if servers[name].kind == "sse" else "http"
        if data.get("enabled") is False:
            entry["disabled"] = True
        claude[name] = entry
    return json.dumps({"mcpServers": claude}, indent=2, ensure_ascii=False)
