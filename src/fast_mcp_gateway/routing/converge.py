"""Converging the running servers on a shared store's (``ControlPlane.apply_shared``),
and a reload's servers before they run (``configure_before_run``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.routing.lifecycle import first_attempts
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.replica import UpstreamState

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def converge(manager: UpstreamManager, desired: Mapping[str, ServerConfig]) -> list[str]:
    """Make the running servers match ``desired`` (a shared store's), touching only what
    differs: a changed config restarts its server, a changed enabled flag only enables or
    disables it (as the admin operation did where it was made).  Idempotent; returns the
    names acted on.  One server that fails does not stop the others.  Returns once the
    servers started made their first connect attempts (side by side)."""
    acted: list[str] = []
    starting: list[Service] = []
    desired = manager.served(desired)   # serve --profile: the profile's servers only
    for name in [n for n in manager.services if n not in desired]:
        acted.append(name)
        await _applied(name, manager.remove_server(name))
    for name, server in desired.items():
        service = manager.services.get(name)
        if service is None or service.config.model_copy(
                update={"enabled": server.enabled}) != server:
            acted.append(name)
            started = await _applied(name, manager.replace_server(server, wait=False))
            if started is not None:
                starting.append(started)
        elif (service.state is UpstreamState.DISABLED) == server.enabled:
            acted.append(name)
            service.set_enabled(server.enabled)
    await first_attempts(*starting)
    return acted


async def _applied(name: str, step: Awaitable[T]) -> T | None:
    try:
        return await step
    except Exception as exc:  # noqa: BLE001 - the next reconcile tries again
        logger.warning("could not apply the shared state of server '%s': %s", name, exc)
        return None


def configure_before_run(manager: UpstreamManager, desired: dict[str, ServerConfig]
                         ) -> dict[str, list[str]]:
    """``reconcile`` before the upstreams run (a SIGHUP while ``serve`` starts, a
    library reload before ``run``): nothing runs to stop or restart yet, so the
    servers are made from ``desired`` and start with the others."""
    desired = manager.served(desired)
    before = {name: service.config for name, service in manager.services.items()}
    manager.configure(desired)
    return {"added": [n for n in desired if n not in before],
            "removed": [n for n in before if n not in desired],
            "restarted": [n for n, s in desired.items() if before.get(n, s) != s],
            "unchanged": [n for n, s in desired.items() if before.get(n) == s]}
