"""Stopping and waiting on a service's sessions (``UpstreamManager``'s lifecycle steps)."""

from __future__ import annotations

import anyio

from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState


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
