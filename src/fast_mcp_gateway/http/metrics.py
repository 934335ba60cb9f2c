"""``GET /metrics``: the gateway's Prometheus metrics (``telemetry/metrics.py``).

This module adapts the gateway to the metrics: ``call_observer`` turns each
``CallOutcome`` of the call pipeline (full path and express lane alike) into one
observation (``feed`` adds it, and drops a removed server's call series), and
``snapshot_of`` reads every replica's ``statistics()``, the catalog, the recorder and the
stdio servers' processes (their memory from ``/proc``, each server's walk reused for a
few seconds: ``ResidentMemory``) at scrape time.

Access: with ``gateway.auth`` set, a scrape needs a bearer token with scope ``tools``
and no ``servers`` restriction (the metrics name every server), unless
``gateway.auth.metrics_public`` is true (a scraper on a trusted network).  Without
``auth`` it is open, like the REST reads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.errors import RateLimited
from fast_mcp_gateway.front.outcomes import CallObserver, CallOutcome
from fast_mcp_gateway.http.access import require
from fast_mcp_gateway.http.advertised import principal_told
from fast_mcp_gateway.http.app import RouteGroup
from fast_mcp_gateway.http.errors import ApiError, forbidden
from fast_mcp_gateway.routing.lifecycle import upstreams_of
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.telemetry.metrics import (
    ClientSample,
    GatewayMetrics,
    ReplicaSample,
    Snapshot,
)
from fast_mcp_gateway.telemetry.processes import ResidentMemory
from fast_mcp_gateway.telemetry.recorder import Recorder


def feed(metrics: GatewayMetrics, observers: list[CallObserver],
         manager: UpstreamManager) -> None:
    """Feed ``metrics`` every call (an observer added to ``observers``, the call
    pipeline's) and have them forget a server's call series when ``manager`` removes
    it: what a scrape lists is bounded by the servers configured, not by every name
    ever served.  A call still running on a server when it was removed, counted as it
    ends, would make its series again (for good, the name never removed twice): a
    call on a server no longer served is not counted (a dict lookup)."""
    count = call_observer(metrics)

    def observe(outcome: CallOutcome) -> None:
        if outcome.call.service.name in manager.services:
            count(outcome)

    observers.append(observe)
    manager.on_removed(metrics.forget)


def call_observer(metrics: GatewayMetrics) -> CallObserver:
    """A pipeline observer feeding ``metrics`` (a few dict lookups per call)."""

    def observe(outcome: CallOutcome) -> None:
        call = outcome.call
        tool = call.exposed if call.kind == "tool" else ""
        metrics.observe(call.method, tool, call.service.name, outcome.status,
                        outcome.duration_ms / 1000, call.path.retries,
                        isinstance(outcome.cause, RateLimited))

    return observe


def snapshot_of(manager: UpstreamManager, recorder: Callable[[], Recorder | None],
                store_lost: Callable[[], bool] = lambda: False,
                unknown_calls: Mapping[str, int] | None = None,
                invalid: Callable[[], Collection[str]] = tuple,
                webhook: Callable[[], Mapping[str, int] | None] = lambda: None,
                memory: ResidentMemory | None = None) -> Callable[[], Snapshot]:
    """What a scrape reports, read when scraped; the store is down while the recorder
    holds its writes or ``store_lost()`` (the change feed cannot reach it);
    ``unknown_calls``: the provider's live tally (``GatewayProvider.unknown_calls``);
    ``invalid()``: the servers whose config entries are invalid (state ``invalid`` when
    not running: one sample, replica 0); ``webhook()``: the alert webhook's counters,
    ``None`` without one; ``memory``: how the stdio servers' memory is read (a fresh
    ``ResidentMemory`` by default)."""
    unknown = unknown_calls if unknown_calls is not None else {}
    resident = memory if memory is not None else ResidentMemory()

    def snapshot() -> Snapshot:
        replicas, clients = [], []
        processes: dict[str, tuple[int, int | None]] = {}
        for name, service in manager.services.items():
            stdio = [u for u in upstreams_of(service) if u.config.kind == "stdio"]
            if stdio or service.config.kind == "stdio":
                pids = [u.pid for u in stdio if u.pid is not None]
                processes[name] = (len(pids), resident(name, pids))
            sessions = service.clients
            if sessions is not None:
                clients.append(ClientSample(name, len(sessions.upstreams),
                                            sessions.config.max_clients, sessions.created,
                                            sessions.reaped))
            for upstream in service.replicas:
                s = upstream.statistics()
                replicas.append(ReplicaSample(
                    server=name, replica=s.replica, state=str(s.state), health=str(s.health),
                    breaker=str(s.breaker), inflight=s.inflight, restarts=s.restarts,
                    breaker_trips=s.breaker_trips, stalls=s.stalls,
                    suspect=s.stalled is not None))
        replicas += [ReplicaSample(server=name, replica=0, state="invalid", health="UNKNOWN",
                                   breaker="closed", inflight=0, restarts=0, breaker_trips=0)
                     for name in invalid() if name not in manager.services]
        view = manager.view
        catalog = {"tools": len(view.tools), "resources": len(view.resources),
                   "resource_templates": len(view.templates), "prompts": len(view.prompts)}
        rec, hook = recorder(), webhook()
        if rec is None:
            return Snapshot(replicas, catalog, clients=clients, unknown_calls=dict(unknown),
                            webhook=hook, version=__version__, processes=processes)
        stats = rec.stats()
        return Snapshot(replicas, catalog, int(stats["queued"]), int(stats["dropped"]),
                        clients=clients, retention=None if rec.retention is None
                        else rec.retention.stats(),
                        store_up=not (rec.store_unavailable or store_lost()),
                        unknown_calls=dict(unknown), webhook=hook, version=__version__,
                        processes=processes)

    return snapshot


def metrics_group(metrics: GatewayMetrics, *, public: bool,
                  host_checked: bool = False) -> RouteGroup:
    """``/metrics`` (prefix-less: scrapers send any Host); ``public`` skips the token;
    ``host_checked`` (a gateway without ``auth``, on loopback) puts it behind the
    Host/Origin guard: a page on a DNS name rebound to 127.0.0.1 must not read it."""

    async def scrape(request: Request) -> Response:
        if not public:
            try:  # any Host: scrapers send theirs
                principal = await principal_told(request.app.access, request)
                require(principal, "tools", "reading the metrics")
                if principal.servers is not None:
                    raise forbidden("tools", "the metrics cover every server; "
                                             f"{principal.only('see')}: use a credential "
                                             "that may see every server, or set "
                                             "gateway.auth.metrics_public: true")
            except ApiError as exc:
                return exc.response()
        return Response(metrics.render(), media_type=metrics.content_type())

    return RouteGroup("metrics", [Route("/metrics", scrape, methods=["GET"])],
                      host_checked=host_checked)
