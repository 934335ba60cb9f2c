"""Who may use the ``gateway_*`` tools: scope ``admin``, checked for the current caller.

The caller comes from a principal resolver the gateway injects (HTTP: the verified
token or the anonymous policy; stdio and in-process: ``LOCAL``).  Lists hide the
tools from callers without ``admin``; a call is refused by the tool itself, naming
the missing scope (a filtered lookup could only say "Unknown tool").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import Tool

from fast_mcp_gateway.admin.context import LIBRARY, Actor
from fast_mcp_gateway.config.schema import AdminKind, GatewayOptions
from fast_mcp_gateway.errors import UnknownServer
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.upstream.relay import FrontCall

PrincipalResolver = Callable[[], Principal]
"""The caller of the request being served (read in the request's task)."""

HOW_TO_ADD_A_TOKEN = (
    "this gateway has no authentication configured: add a token with scope 'admin' under "
    "gateway.auth.tokens in servers.yaml (make one with 'mcp-gateway token new --name NAME "
    "--scopes admin') and send it as 'Authorization: Bearer <token>'; or, on loopback "
    "only, start the gateway with --allow-unauthenticated-admin")


CALLER: ContextVar[Principal | None] = ContextVar("admin_caller", default=None)
"""The principal of the admin tool call being served (set by the MCP adapter)."""


def actor() -> Actor:
    """Who is calling an admin tool: the token's or JWT's name, else the host's client id
    (``stdio`` without one), else ``LIBRARY``."""
    caller = CALLER.get()
    if caller is not None and caller.kind in ("token", "jwt"):
        return Actor(caller.name, servers=caller.servers)
    try:
        return Actor(FrontCall.from_context(get_context()).client_id)
    except RuntimeError:
        return LIBRARY


def refusal(principal: Principal, what: str) -> str | None:
    """Why ``principal`` may not use admin tool ``what`` (None: it may)."""
    if principal.has("admin"):
        return None
    if principal.kind == "anonymous":
        return f"tool '{what}' requires scope 'admin'; {HOW_TO_ADD_A_TOKEN}"
    return f"tool '{what}' requires scope 'admin'; {principal.holds}"


# The argument naming the one server each server-scoped admin tool acts on (the alert
# rule tools' 'name' is a rule's: they are ``SCOPED_BY_OPERATION``).
SERVER_ARGUMENT = dict.fromkeys((
    "gateway_reconnect_server", "gateway_enable_server", "gateway_disable_server",
    "gateway_reset_breaker", "gateway_restart_replica", "gateway_drain_replica",
    "gateway_inspect_server", "gateway_inspect_call_tool", "gateway_inspect_read_resource",
    "gateway_inspect_get_prompt", "gateway_inspector_clear", "gateway_add_server",
    "gateway_update_server", "gateway_remove_server", "gateway_server_detail",
    "gateway_sign_in", "gateway_sign_out"), "name") | {
    "gateway_approve_changes": "server", "gateway_forget_pins": "server"}
# The optional argument narrowing a read-only tool to one server (without it the answer
# covers every server, filtered to a restricted admin's by ``views.restricted_view``).
ONE_SERVER_ARGUMENT = {"gateway_health_history": "name", "gateway_inspector_history": "name",
                       "gateway_calls": "server", "gateway_stats": "server",
                       "gateway_pin_status": "server", "gateway_alert_history": "server"}
# Read-only tools whose answer cannot be cut to some servers (REST refuses it too).
EVERY_SERVER = {"gateway_audit": "the audit log covers every server"}
# Changes whose operation decides what a restricted admin may do (on every surface):
# alert rules on its own servers (``admin/alerts.restricted_refusal``).
SCOPED_BY_OPERATION = frozenset({"gateway_add_alert_rule", "gateway_update_alert_rule",
                                 "gateway_delete_alert_rule"})


def beyond_servers(principal: Principal, what: str, read_only: bool,
                   arguments: Mapping[str, Any], known: Iterable[str] = ()) -> str | None:
    """Why an admin restricted to some servers may not call ``what`` so (None: it may).

    It sees, inspects and changes its own servers only, as over REST and on the
    dashboard: another server is worded as one that does not exist, and the read-only
    tools' answers are cut to its servers (``views.restricted_view``; an export holds its
    servers only); what cannot be cut (the audit log) or reaches past one server
    (import, reload, routes) needs a token without a ``servers`` list; alert rules are
    checked by their operations (on its servers: allowed).  ``known`` are the servers
    running: another server is refused as REST refuses it, naming the caller's."""
    if principal.servers is None or what in SCOPED_BY_OPERATION:
        return None

    def unknown(name: str) -> str:
        return str(UnknownServer(name, known).seen_by(principal.may_use, principal.no_server))

    mine = ", ".join(sorted(principal.servers))
    if what in EVERY_SERVER:
        return (f"'{what}': {EVERY_SERVER[what]}: it needs an admin token without a "
                f"'servers' list; {principal.only('see')}")
    if (one := ONE_SERVER_ARGUMENT.get(what)) is not None:
        named = arguments.get(one)
        if named is not None:
            return None if principal.may_use(named) else unknown(named)
        return None
    key = SERVER_ARGUMENT.get(what)
    if key is None:
        return None if read_only else (
            f"'{what}' acts beyond one server: it needs an admin token without a 'servers' "
            f"list; {principal.only('manage')}")
    server = arguments.get(key)
    if server is None:
        return f"'{what}' needs '{key}': this token may only manage its own servers ({mine})"
    if principal.may_use(server):
        return None
    if what == "gateway_add_server":
        return add_refusal(principal, server)
    return unknown(server)  # worded as for a server that does not exist


def add_refusal(principal: Principal, name: str) -> str:
    """Why an admin restricted to other servers may not add server ``name`` (every
    surface's words), and what would let it."""
    return (f"{principal.only('manage')}: adding "
            f"server '{name}' needs an admin token without a 'servers' list, or one whose "
            "list names it")


def narrowed(principal: Principal, what: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with an admin restricted to one server naming it where a read-only
    tool takes one server (so that a page of calls or history is a full page of its own
    server's, as over REST)."""
    one = ONE_SERVER_ARGUMENT.get(what)
    if (one is None or principal.servers is None or len(principal.servers) != 1
            or arguments.get(one) is not None):
        return arguments
    return {**arguments, one: next(iter(principal.servers))}


def turned_off(options: GatewayOptions, kind: AdminKind, what: str) -> str | None:
    """Why ``gateway.admin`` does not allow ``what`` (an admin tool, quoted, or a REST
    endpoint) now (None: it does).  Every tool is registered whatever the mode; lists
    hide what it does not allow (``AdminVisibility``), and a call by name is refused here,
    as the REST API refuses its endpoints, so that a reload's mode holds from the next
    call."""
    if options.allows_admin(kind):
        return None
    return f"{what} is turned off by 'gateway.admin: {options.admin}' in the config file"


class AdminVisibility(Middleware):
    """Hides the ``gateway_*`` tools from callers without scope ``admin``, from everyone
    those that ``gateway.admin`` does not allow now (``allowed(name)``, read on every
    list: a reload's mode shows at the next one), and those that ``listed(name)`` says
    are not listed as themselves (search exposure: found through ``search_tools``
    instead, unless pinned).

    Lists only: a call is checked by the tool itself (``_bind``), which can name the
    missing scope, where a filtered lookup could only say "Unknown tool".
    """

    def __init__(self, names: frozenset[str], resolve: PrincipalResolver,
                 listed: Callable[[str], bool] = lambda name: True,
                 allowed: Callable[[str], bool] = lambda name: True) -> None:
        self.names, self.resolve, self.listed, self.allowed = names, resolve, listed, allowed

    async def on_list_tools(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Sequence[Tool]]) -> Sequence[Tool]:
        tools = await call_next(context)
        admin = self.resolve().has("admin")
        return [t for t in tools if t.name not in self.names
                or (admin and self.allowed(t.name) and self.listed(t.name))]


def guard_admin_tools(server: FastMCP[Any], names: frozenset[str],
                      principal: PrincipalResolver, listed: Callable[[str], bool],
                      allowed: Callable[[str], bool] = lambda name: True) -> frozenset[str]:
    """Hide the admin tools ``names`` (added yet or not) from callers without scope
    ``admin`` and from lists ``allowed`` (the current ``gateway.admin``) or ``listed``
    refuses; returns the names (the catalog reserves them)."""
    server.add_middleware(AdminVisibility(names, principal, listed, allowed))
    return names
