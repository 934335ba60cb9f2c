"""Checks of a runtime registration before it is applied (``servers._register_now``).

A new server's name must be addressable and short enough; it must not be the gateway
itself; a token limited to some servers may not make the gateway run a program it did
not run before.
"""

from __future__ import annotations

from typing import Any

from fast_mcp_gateway.admin.context import Actor, AdminContext
from fast_mcp_gateway.config.checks import nested_gateway_problem
from fast_mcp_gateway.config.names import overlong_name, shown_name, unaddressable_name
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import ConfigError, Forbidden


def check_new_name(name: str, source: str) -> None:
    """A new server's name is a path segment of the REST API and the dashboard: one with
    a '/' could be added there but never read, changed or removed there again.  It is
    also the prefix of its tools' names: at most ``MAX_SERVER_NAME`` characters."""
    if (problem := overlong_name(name)) is not None:
        raise ConfigError.single(source, shown_name(name), None, problem)
    if (problem := unaddressable_name(name)) is not None:
        raise ConfigError.single(source, name, None, problem)


def check_not_nested(ctx: AdminContext, server: ServerConfig, source: str) -> None:
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
