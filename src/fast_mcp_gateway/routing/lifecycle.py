"""Stopping and waiting on a service's sessions (``UpstreamManager``'s lifecycle steps),
and converging the running servers on a shared store's."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, TypeVar

import anyio

from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState

if TYPE_CHECKING:
    from fast_mcp_gateway.config.schema import ServerConfig
    from fast_mcp_gateway.routing.manager import UpstreamManager

logger = logging.getLogger(__name__)
T = TypeVar("T")


def upstreams_of(service: Service) -> list[Upstream]:
    """Every session of ``service``: its replicas and its hosts' own (per_client)."""
    own = service.clients.upstreams if service.clients is not None else []
    return [*service.replicas, *own]


def stop_service(service: Service) -> None:
    if service.clients is not None:
        service.clients.stop_all()
    for upstream in service.replicas:
        upstream.stop()


async def idle(upstream: Upstream) -> bool:
    """Wait until no request is in flight on ``upstream`` (each ends within its call
    timeout: the bound)."""
    return await upstream.wait_until(lambda: not upstream.active, upstream.call_timeout + 5)


async def stopped(upstream: Upstream, within: float = 15.0) -> bool:
    return await upstream.wait_until(lambda: upstream.state is UpstreamState.STOPPED, within)


async def first_attempts(*services: Service) -> None:
    """Until every replica of ``services`` ended its first connect attempt, side by
    side, each at most as long as one attempt may last (``longest_attempt``: its connect
    window with every extension a server that visibly works is given -- a first
    ``npx`` download outlasts ``timeouts.connect``)."""
    async def first(upstream: Upstream) -> None:
        with anyio.move_on_after(upstream.longest_attempt):
            await upstream.wait_first_attempt()

    async with anyio.create_task_group() as tg:
        for service in services:
            for upstream in service.replicas:
                tg.start_soon(first, upstream)


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
