"""Stopping and waiting on a service's sessions (``UpstreamManager``'s lifecycle steps)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable

import anyio

from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState

logger = logging.getLogger(__name__)


def upstreams_of(service: Service) -> list[Upstream]:
    """Every session of ``service``: its replicas and its hosts' own (per_client)."""
    own = service.clients.upstreams if service.clients is not None else []
    return [*service.replicas, *own]


async def tell_roots_changed(services: Iterable[Service]) -> None:
    """Tell every live handshake-era session of ``services`` that its client's roots
    changed (``UpstreamManager.roots_changed``)."""
    await tell_roots_changed_of([u for service in services for u in upstreams_of(service)])


async def tell_roots_changed_of(upstreams: list[Upstream]) -> None:
    for upstream in upstreams:
        try:
            await upstream.roots_changed()
        except Exception as exc:  # noqa: BLE001 - one dead session must not stop the rest
            logger.debug("upstream %s: roots/list_changed not forwarded: %s",
                         upstream.label, exc)


async def tell_host_roots_changed(services: Iterable[Service], host: Hashable) -> None:
    """A handshake-era HTTP host (its connection: ``host``) said its roots changed:
    tell its own per_client sessions, keyed by that connection, and no other (each then
    asks ``roots/list``, answered by asking that host: ``upstream/roots.py``)."""
    own = [s.clients.of_host(host) for s in services if s.clients is not None]
    await tell_roots_changed_of([u for u in own if u is not None])


def stop_service(service: Service) -> None:
    if service.clients is not None:
        service.clients.stop_all()
    for upstream in service.replicas:
        upstream.stop()


async def stop_or_retire(service: Service, tg: anyio.abc.TaskGroup | None,
                         retiring: set[Service]) -> None:
    """Stop a service that left the catalog (removed, or replaced by a restart): now,
    waiting (bounded) for its sessions to end, or, while they serve calls, in a task of
    ``tg`` once those calls ended (``retiring`` holds it meanwhile)."""
    upstreams = upstreams_of(service)
    if tg is not None and any(u.active for u in upstreams):
        # A reload or a removal does not cut off the calls in flight: each still
        # ends within its max_total (its call timeout, pushed out by its progress),
        # and a restarted server takes the new calls.
        calls = sum(u.active for u in upstreams)
        logger.info("upstream %s: its previous session stops once its %d call(s) in "
                    "flight end (within %gs)", service.name, calls,
                    max(u.max_total for u in upstreams))
        retiring.add(service)
        tg.start_soon(_retire, service, retiring, name=f"retire:{service.name}")
        return
    stop_service(service)
    for upstream in upstreams:
        await stopped(upstream)


async def _retire(service: Service, retiring: set[Service]) -> None:
    try:
        for upstream in upstreams_of(service):
            await idle(upstream)
    finally:
        stop_service(service)
        retiring.discard(service)


REQUEST_END_SLACK = 5.0
"""Past a request's own bound: for its cancellation to reach the upstream and end here."""


def longest_request(upstream: Upstream) -> float:
    """The longest a request in flight on ``upstream`` may still take: ``max_total`` (its
    call timeout, pushed out by progress, ``upstream/deadline.py``) and the slack.  What
    waiting for its requests to end waits at most: retiring it, draining it."""
    return upstream.max_total + REQUEST_END_SLACK


async def idle(upstream: Upstream) -> bool:
    """Wait until no request is in flight on ``upstream`` (``longest_request``)."""
    return await upstream.wait_until(lambda: not upstream.active, longest_request(upstream))


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
