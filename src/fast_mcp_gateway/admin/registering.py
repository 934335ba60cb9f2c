"""Checks of a runtime registration before it is applied (``servers._register_now``).

A new server's name must be addressable and short enough; it must not be the gateway
itself (a command running it on its store, or a URL of its own address); a token
limited to some servers may not make the gateway run a program it did not run before.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from fast_mcp_gateway.admin.context import Actor, AdminContext
from fast_mcp_gateway.config.checks import nested_gateway_problem
from fast_mcp_gateway.config.names import (
    overlong_name,
    shown_name,
    unaddressable_name,
    unusual_name,
)
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings, is_loopback
from fast_mcp_gateway.errors import ConfigError, Forbidden
from fast_mcp_gateway.telemetry.redaction import mask_text


def check_new_name(name: str, source: str, *, imported: bool = False) -> None:
    """A new server's name is a path segment of the REST API and the dashboard: one with
    a '/' could be added there but never read, changed or removed there again.  It is
    also the prefix of its tools' names: at most ``MAX_SERVER_NAME`` characters, and
    (added, not ``imported``) only ``NEW_NAME_CHARS``.  An import takes a file's keys as
    the config file does (a Claude Desktop "My Server": its namespace ``My_Server``)."""
    if (problem := overlong_name(name)) is not None:
        raise ConfigError.single(source, shown_name(name), None, problem)
    if (problem := unaddressable_name(name)) is not None:
        raise ConfigError.single(source, name, None, problem)
    if not imported and (problem := unusual_name(name)) is not None:
        raise ConfigError.single(source, name, None, problem)


def _origin(url: str) -> tuple[str, str, int]:
    """``url``'s scheme, host (lower case, no trailing dot, an IPv4-mapped address as
    IPv4) and port (the scheme's default when none is written): the forms of one
    address compare equal (``https://Host.:443`` and ``https://host``)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        mapped = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
            host = str(mapped.ipv4_mapped)
    try:
        port = parts.port
    except ValueError:   # not a port number: no address of this gateway's
        port = -1
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it (``/team/mcp`` under ``/team``, not
    ``/teamwork/mcp``)."""
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _serves_itself(url: str, settings: GatewaySettings) -> bool:
    """Whether ``url`` is this HTTP/SSE gateway's own address (any path of its port:
    the MCP endpoint, or something it answers 404 to), as served or as published."""
    if settings.transport == "stdio":
        return False
    scheme, host, port = _origin(url)
    if settings.public_url is not None and (scheme, host, port) == _origin(
            settings.public_url) and _under(urlsplit(url).path, urlsplit(settings.public_url).path):
        return True
    # Another machine's gateway on the same port is a chain, also from a wildcard bind.
    return settings.port != 0 and port == settings.port and (
        is_loopback(host) or host in (settings.host.lower().strip("[]"),
                                      socket.gethostname().lower()))


def check_not_nested(ctx: AdminContext, server: ServerConfig, source: str) -> None:
    own = next((u for u in (server.url, *(i.url for i in server.instances))
                if u is not None and _serves_itself(u, ctx.settings)), None)
    if own is not None:
        raise ConfigError.single(source, server.name, "url", (
            f"{mask_text(own)} is this gateway's own address: it would list its own tools "
            "again under this server's name, and those again, without end; give the URL of "
            "another MCP server"))
    problem = nested_gateway_problem(server, ctx.settings.config, ctx.settings.db)
    if problem is not None:
        if source == "gateway_import_servers":  # a Claude Desktop file lists this gateway
            problem += ("; or leave this entry out of the text imported: it runs this "
                        "gateway, and the file's other servers import without it")
        raise ConfigError.single(source, server.name, "command", problem)


def _programs(server: ServerConfig) -> list[tuple[Any, ...]]:
    """What ``server`` runs on this machine: each stdio target's command line, environment
    and folder (none for an HTTP server)."""
    return [(t.command, t.args, sorted(t.env.items()), t.cwd)
            for t in (server, *server.instances) if t.command]


def check_no_new_command(ctx: AdminContext, actor: Actor, server: ServerConfig) -> None:
    """A token limited to some servers may not make the gateway run a program it did not
    run before: a stdio server is a command run as the gateway's user, which reads the
    gateway's environment (its tokens) and files -- every other server's included."""
    if actor.servers is None or not (programs := _programs(server)):
        return
    running = ctx.manager.services.get(server.name)
    if running is not None and _programs(running.config) == programs:
        return  # the same program (its settings changed, or only re-sent)
    raise Forbidden(
        f"server '{server.name}' would run a command on the gateway's machine, which can "
        "read the gateway's own tokens and files: adding or changing a command (command, "
        "args, env, cwd) needs an admin token without a 'servers' list; the token "
        f"'{actor.token}' may register HTTP servers (url) among its servers")
