"""Servers whose entries in the config file are invalid, as the admin views show them.

A partial load (``config/loader.py``) leaves such a server out instead of refusing the
file; operators still see it, in state ``INVALID``, with the loader's message (file,
server, field, fix) as its ``last_error`` and ``config_error``.  A server a reload kept
running on its last valid entry is shown as it runs, with ``config_error`` set.

Enabling or disabling one not running (``flag_invalid``) records the flag in the store,
where it applies once the entry is corrected (a registration carrying only the flag,
as for any file server: ``registrations.as_stored``); the answer is its status with a
``note`` saying so.  Without a store nothing could keep the flag until then: refused,
naming the entry's error and how to choose the flag in the entry itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fast_mcp_gateway.config.names import overlong_name, shown_name
from fast_mcp_gateway.config.registrations import overlong_description
from fast_mcp_gateway.config.schema import (
    MAX_DESCRIPTION,
    GatewayConfig,
    InvalidServer,
    ServerConfig,
)
from fast_mcp_gateway.errors import NotFound

if TYPE_CHECKING:  # the models load with the admin operations, on first use (listed.py)
    from fast_mcp_gateway.admin.context import Actor, AdminContext
    from fast_mcp_gateway.admin.models import ServerDetail, ServerStatus
    from fast_mcp_gateway.routing.service import Service
    from fast_mcp_gateway.store import Registration

logger = logging.getLogger("fast_mcp_gateway.admin.control")  # the control plane's words

INVALID = "invalid"
"""The state of a server not running because its entry in the config file is invalid
(the admin views, REST, the dashboard, ``/ready``, metrics, a host's unknown-name answer)."""


def invalid_of(ctx: AdminContext) -> Mapping[str, InvalidServer]:
    """The config file's invalid entries (none for a context that has no file)."""
    return getattr(ctx, "invalid_servers", None) or {}


def service_of(ctx: AdminContext, name: str) -> Service:
    """The running server ``name``; one not running for its invalid entry is a
    ``NotFound`` saying so and how to fix it (else the manager's unknown-server error)."""
    problem = not_started(ctx, name)
    if problem is not None:
        raise problem
    return ctx.manager.get(name)


def not_started(ctx: AdminContext, name: str, instead: str = "") -> NotFound | None:
    """The ``NotFound`` for ``name`` when it is a server not running for its invalid
    entry, saying why and how to fix it (``instead``: what else the caller can do);
    None for any other name."""
    entry = invalid_of(ctx).get(name)
    if entry is None or name in ctx.manager.services:
        return None
    return NotFound(f"server '{name}' is not running: its entry is invalid, so it was not "
                    f"started ({entry.error}); correct the entry (a saved config file is "
                    f"reloaded){instead}")


def unread(ctx: AdminContext) -> str:
    """What an unknown server's answer adds while this gateway, started without its store,
    has not read the runtime registrations (``store.deferred.UNREAD``): "" once read."""
    from fast_mcp_gateway.store.deferred import UNREAD, DeferredStore

    return UNREAD if isinstance(ctx.store, DeferredStore) else ""


def invalid_status(entry: InvalidServer) -> ServerStatus:
    """A server left out for its invalid entry, as a status row."""
    from fast_mcp_gateway.admin.models import ServerStatus

    return ServerStatus(
        name=entry.name, namespace=entry.namespace, transport=entry.transport,
        state=INVALID, enabled=entry.enabled, protocol_version=None, tools=0, resources=0,
        resource_templates=0, prompts=0, last_error=entry.error, uptime_seconds=None,
        connect_seconds=None, restarts=0, health="UNKNOWN", config_error=entry.error)


def with_invalid(ctx: AdminContext, running: list[ServerStatus]) -> list[ServerStatus]:
    """``running`` with each invalid entry's error on its server (kept running by a
    reload), and a row for each one not running."""
    invalid = invalid_of(ctx)
    if not invalid:
        return running
    shown = [s.model_copy(update={"config_error": invalid[s.name].error})
             if s.name in invalid else s for s in running]
    names = {s.name for s in running}
    return shown + [invalid_status(e) for n, e in invalid.items() if n not in names]


async def flag_invalid(ctx: AdminContext, actor: Actor, name: str,
                       enabled: bool) -> ServerStatus | None:
    """``gateway_enable_server`` / ``gateway_disable_server`` of ``name`` when it is a
    server not running for its invalid entry (module doc); None for any other name."""
    from fast_mcp_gateway.admin.context import finishing

    entry = invalid_of(ctx).get(name)
    if entry is None or name in ctx.manager.services:
        return None
    action, flag = ("enable_server", "true") if enabled else ("disable_server", "false")
    if ctx.store is None:
        raise NotFound(
            f"server '{name}' is not running: its entry is invalid ({entry.error}); this "
            "gateway has no store to keep an enabled flag in until the entry is "
            f"corrected: correct the entry, with 'enabled: {flag}' in it, and save the "
            "file (the gateway reloads it)")
    # Saved first, then shown and audited, as for a running server.
    with finishing(ctx, actor, action, name):
        await ctx.store.set_server_enabled(name, enabled)
        registered = ctx.flag_invalid(name, enabled)
        await ctx.audit(actor, action, name, None, INVALID)
    shown = invalid_of(ctx).get(name, entry.model_copy(update={"enabled": enabled}))
    if registered:  # corrected by gateway_update_server, whose settings carry the flag
        note = (f"recorded: server '{name}' is {'enabled' if enabled else 'disabled'}, but "
                f"its stored settings are invalid ({entry.error}); correcting them with "
                "gateway_update_server sets the flag from the settings sent (send "
                f"'enabled: {flag}' to keep this one)")
    elif enabled:
        note = (f"recorded: server '{name}' is enabled, but it is not started while its "
                f"entry is invalid ({entry.error}); it starts once the entry is corrected "
                "(save the file: the gateway reloads it)")
    else:
        note = (f"recorded: server '{name}' is disabled; it stays stopped once its entry "
                "is corrected, until it is enabled (gateway_enable_server); its entry is "
                f"invalid: {entry.error}")
    return invalid_status(shown).model_copy(update={"note": note})


def invalid_detail(ctx: AdminContext, name: str) -> ServerDetail | None:
    """``gateway_server_detail`` of a server not running for its invalid entry."""
    from fast_mcp_gateway.admin.models import ServerDetail

    entry = invalid_of(ctx).get(name)
    if entry is None or name in ctx.manager.services:
        return None
    return ServerDetail(**invalid_status(entry).model_dump(), server_info=None,
                        capabilities=None, instructions=None, stderr_tail=[], exposed=[],
                        config={})


def log_invalid(config: GatewayConfig, fate: str,
                 kept: Mapping[str, ServerConfig] | None = None) -> None:
    """One ERROR per server whose entry is invalid (the loader's message: file, server,
    field, fix), and a louder one when no server of the file is valid."""
    for name, entry in config.invalid.items():
        how = ("keeps running its last valid entry" if kept is not None and name in kept
               else fate)
        logger.error("server '%s' %s, its entry is invalid: %s", shown_name(name), how,
                     entry.error)
    if config.invalid and not config.servers:
        logger.error("none of the %d server entries in %s is valid: the gateway serves its "
                     "own tools (gateway_list_servers shows each error) and runs no server "
                     "from the file until it is fixed", len(config.invalid), config.source)


def warn_overlong(registrations: list[Registration], runtime: list[str], where: str) -> None:
    """Warn of each ``runtime`` server registered in ``where`` before names and
    descriptions were limited: it runs as before, and is told how to fix it (a namespace
    another server has now: ``clashes.py``)."""
    for name in runtime:
        if (too_long := overlong_name(name)) is not None:
            logger.warning("server '%s', registered at runtime in %s before names were "
                           "limited, runs as before, but %s: remove it "
                           "(gateway_remove_server) and add it again under the new name",
                           shown_name(name), where, too_long)
    for row in registrations:
        if row.name in runtime and (length := overlong_description(row.config)):
            logger.warning("server '%s', registered at runtime in %s before descriptions "
                           "were limited, runs with the first %d of its description's "
                           "%d characters: give it a shorter one (gateway_update_server)",
                           shown_name(row.name), where, MAX_DESCRIPTION, length)
