"""What a library user hands ``Gateway(config, settings)`` (or ``Gateway.from_file(path,
settings)``), checked before anything is built.

A wrong type (a dict, a path, a ``GatewayConfig`` for the settings) would otherwise fail
as an ``AttributeError`` deep inside the assembly; each is a ``TypeError`` naming what was
given and the call that makes the right thing.  A ``GatewayConfig`` built in code rather
than by the loader (``load_config``, ``parse_config``) skipped the loader's checks: the
ones the gateway cannot run without (each server under its own name, a command or a url,
one namespace per server) are made here, as a ``ConfigError`` listing every problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError, ConfigIssue

_FROM_MAPPING = ("parse_config(data) validates a servers.yaml-shaped mapping (or a Claude "
                 "Desktop {'mcpServers': {...}} one) into one")
_FROM_FILE = ("Gateway.from_file(path) reads a servers.yaml or mcpServers file (or "
              "Gateway(load_config(path)))")


def library_settings(config: Any, settings: Any) -> GatewaySettings:
    """``settings`` (or the defaults) once ``config`` and ``settings`` are of the types
    ``Gateway`` takes and ``config``'s servers are runnable; raises otherwise."""
    if not isinstance(config, GatewayConfig):
        kind = type(config).__name__
        if isinstance(config, dict):
            make = _FROM_MAPPING
        elif isinstance(config, str) or hasattr(config, "__fspath__"):
            make = _FROM_FILE
        else:
            make = f"{_FROM_FILE}; {_FROM_MAPPING}"
        raise TypeError(f"Gateway(config) takes a GatewayConfig, not {_a(kind)}: {make}")
    _check_settings(settings, "Gateway(config, settings)")
    issues = [ConfigIssue(config.source, key, field, message)
              for key, field, message in _unrunnable(config)]
    if issues:
        raise ConfigError(issues)
    return settings or GatewaySettings()


def file_settings(path: Any, settings: Any) -> tuple[Path, GatewaySettings]:
    """``Gateway.from_file``'s ``path`` and ``settings`` (their ``config``: that file),
    once they are of the types it takes; a ``TypeError`` naming what was given otherwise
    (a dict for the settings failed as "'dict' object has no attribute 'model_copy'")."""
    if not isinstance(path, str | os.PathLike):
        kind = type(path).__name__
        raise TypeError(f"Gateway.from_file(path) takes a file's path (a str or Path), not "
                        f"{_a(kind)}" + (f"; for a mapping, Gateway(parse_config(data)): "
                                         f"{_FROM_MAPPING}" if isinstance(path, dict) else ""))
    _check_settings(settings, "Gateway.from_file(path, settings)")
    return Path(path), (settings or GatewaySettings()).model_copy(
        update={"config": Path(path)})


def _check_settings(settings: Any, call: str) -> None:
    if settings is not None and not isinstance(settings, GatewaySettings):
        kind = type(settings).__name__
        raise TypeError(f"{call} takes a GatewaySettings as settings, not {_a(kind)}: "
                        "GatewaySettings(port=9000, db=...) (keywords, e.g. "
                        "GatewaySettings(**mapping)), or None for the defaults")


def _unrunnable(config: GatewayConfig) -> list[tuple[str, str | None, str]]:
    found: list[tuple[str, str | None, str]] = []
    namespaces: dict[str, str] = {}
    for key, server in config.servers.items():
        if server.name != key:
            found.append((key, "name", f"is '{server.name}' under the key '{key}': a server is "
                                       f"named by its key; ServerConfig(name='{key}', ...)"))
        if not server.instances and server.command is None and server.url is None:
            found.append((key, "command", "needs either 'command' (a local stdio server) or "
                                          "'url' (a remote one)"))
        namespace = server.effective_namespace
        if namespace and namespace in namespaces:
            found.append((key, "namespace", f"namespace '{namespace}' is already used by "
                                            f"server '{namespaces[namespace]}'; give one of "
                                            "them another namespace"))
        namespaces.setdefault(namespace, key)
    return found


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"
