"""Servers whose entries in the config file are invalid, as the admin views show them.

A partial load (``config/loader.py``) leaves such a server out instead of refusing the
file; operators still see it, in state ``INVALID``, with the loader's message (file,
server, field, fix) as its ``last_error`` and ``config_error``.  A server a reload kept
running on its last valid entry is shown as it runs, with ``config_error`` set.
"""

from __future__ import annotations

from collections.abc import Mapping

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.models import ServerDetail, ServerStatus
from fast_mcp_gateway.config.schema import InvalidServer

INVALID = "invalid"
"""The state of a server not running because its entry in the config file is invalid
(the admin views, REST, the dashboard, ``/ready``, metrics, a host's unknown-name answer)."""


def invalid_of(ctx: AdminContext) -> Mapping[str, InvalidServer]:
    """The config file's invalid entries (none for a context that has no file)."""
    return getattr(ctx, "invalid_servers", None) or {}


def invalid_status(entry: InvalidServer) -> ServerStatus:
    """A server left out for its invalid entry, as a status row."""
    return ServerStatus(
        name=entry.name, namespace=entry.namespace, transport=entry.transport,
        state=INVALID, enabled=False, protocol_version=None, tools=0, resources=0,
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


def invalid_detail(ctx: AdminContext, name: str) -> ServerDetail | None:
    """``gateway_server_detail`` of a server not running for its invalid entry."""
    entry = invalid_of(ctx).get(name)
    if entry is None or name in ctx.manager.services:
        return None
    return ServerDetail(**invalid_status(entry).model_dump(), server_info=None,
                        capabilities=None, instructions=None, stderr_tail=[], exposed=[],
                        config={})
