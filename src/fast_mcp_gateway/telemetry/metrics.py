"""Prometheus metrics of one gateway, on its own ``CollectorRegistry``.

Two sources, each at its own cost:

* **per call** (``GatewayMetrics.observe``, fed by a call-pipeline observer so that the
  full path and the stdio express lane count alike): the call counter (by ``status``:
  success, error, timeout, rejected, and ``cancelled`` for a call its host cancelled
  or walked away from, which is no error), the duration histogram, retries and
  rate-limit rejections.  A labelled child costs ~14 us to look
  up, so each label combination's children are made once and cached;
* **per scrape** (``SnapshotCollector``): upstream state, health, in-flight calls,
  restarts, breaker state and trips, recorder queue and drops, catalog size, read from
  a ``Snapshot`` the caller builds (from ``Upstream.statistics()``) when scraped: no
  cost on the call path.

Names follow the OpenTelemetry MCP semantic conventions where they exist
(``mcp.server.operation.duration`` -> ``mcp_server_operation_duration_seconds``,
attributes ``mcp.method.name`` and ``gen_ai.tool.name`` as ``mcp_method_name`` and
``gen_ai_tool_name``); the gateway's own are ``mcp_gateway_*`` with the server as
``mcp_gateway_server``.  This module knows no gateway types (telemetry is a leaf):
the HTTP side adapts call outcomes and replica statistics to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# Seconds; MCP calls span a cache hit (~1 ms) to a long tool run (the 30 s call timeout).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)

SERVER = "mcp_gateway_server"
METHOD = "mcp_method_name"
TOOL = "gen_ai_tool_name"

# Every state a replica, its health and its breaker can be in: each is exposed as one
# series per value (1 for the current one), so a dashboard can sum by state.
UPSTREAM_STATES = ("starting", "ready", "reconnecting", "failed", "disabled", "stopped")
HEALTH_STATES = ("HEALTHY", "DEGRADED", "UNHEALTHY", "UNKNOWN")
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """One replica at scrape time (from ``UpstreamStatistics``)."""

    server: str
    replica: int
    state: str
    health: str
    breaker: str
    inflight: int
    restarts: int
    breaker_trips: int


@dataclass(frozen=True, slots=True)
class ClientSample:
    """The per-client sessions of one ``isolation: per_client`` server."""

    server: str
    active: int
    limit: int
    created: int
    reaped: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the scrape-time metrics report."""

    replicas: Sequence[ReplicaSample] = ()
    catalog: dict[str, int] = field(default_factory=dict)  # kind -> exposed items
    recorder_queued: int | None = None  # None: calls are not recorded
    recorder_dropped: int = 0
    clients: Sequence[ClientSample] = ()  # isolation: per_client servers


class SnapshotCollector(Collector):
    """Reads a fresh ``Snapshot`` on each scrape (nothing is kept between scrapes)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []  # do not run collect() at register()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        labels = [SERVER, "replica"]
        up = GaugeMetricFamily("mcp_gateway_upstream_up",
                               "1 if the replica has a ready session, else 0", labels=labels)
        state = GaugeMetricFamily("mcp_gateway_upstream_state",
                                  "1 for the replica's current state, 0 for the others",
                                  labels=[*labels, "state"])
        health = GaugeMetricFamily("mcp_gateway_upstream_health",
                                   "1 for the replica's current health, 0 for the others",
                                   labels=[*labels, "health"])
        breaker = GaugeMetricFamily("mcp_gateway_breaker_state",
                                    "1 for the replica's circuit-breaker state, 0 for the others",
                                    labels=[*labels, "state"])
        inflight = GaugeMetricFamily("mcp_gateway_upstream_in_flight",
                                     "Requests in flight on the replica", labels=labels)
        restarts = CounterMetricFamily("mcp_gateway_upstream_restarts",
                                       "Restarts of the replica's session", labels=labels)
        trips = CounterMetricFamily("mcp_gateway_breaker_trips",
                                    "Times the replica's circuit breaker opened", labels=labels)
        for r in snap.replicas:
            key = [r.server, str(r.replica)]
            up.add_metric(key, 1.0 if r.state == "ready" else 0.0)
            for value in UPSTREAM_STATES:
                state.add_metric([*key, value], 1.0 if r.state == value else 0.0)
            for value in HEALTH_STATES:
                health.add_metric([*key, value], 1.0 if r.health == value else 0.0)
            for value in BREAKER_STATES:
                breaker.add_metric([*key, value], 1.0 if r.breaker == value else 0.0)
            inflight.add_metric(key, float(r.inflight))
            restarts.add_metric(key, float(r.restarts))
            trips.add_metric(key, float(r.breaker_trips))
        yield from (up, state, health, breaker, inflight, restarts, trips)

        if snap.clients:
            active = GaugeMetricFamily("mcp_gateway_client_sessions",
                                       "Per-client upstream sessions open now",
                                       labels=[SERVER])
            limit = GaugeMetricFamily("mcp_gateway_client_sessions_limit",
                                      "max_clients of a per_client server", labels=[SERVER])
            created = CounterMetricFamily("mcp_gateway_client_sessions_created",
                                          "Per-client upstream sessions opened",
                                          labels=[SERVER])
            reaped = CounterMetricFamily("mcp_gateway_client_sessions_ended",
                                         "Per-client upstream sessions ended (host left, "
                                         "idle, failed first connect)", labels=[SERVER])
            for c in snap.clients:
                active.add_metric([c.server], float(c.active))
                limit.add_metric([c.server], float(c.limit))
                created.add_metric([c.server], float(c.created))
                reaped.add_metric([c.server], float(c.reaped))
            yield from (active, limit, created, reaped)

        catalog = GaugeMetricFamily("mcp_gateway_catalog_items",
                                    "Items the gateway exposes, by kind", labels=["kind"])
        for kind, count in sorted(snap.catalog.items()):
            catalog.add_metric([kind], float(count))
        yield catalog
        if snap.recorder_queued is not None:
            yield GaugeMetricFamily("mcp_gateway_recorder_queue_depth",
                                    "Call records waiting to be written",
                                    value=float(snap.recorder_queued))
            yield CounterMetricFamily("mcp_gateway_recorder_dropped",
                                      "Call records dropped because the queue was full",
                                      value=float(snap.recorder_dropped))


_Children = tuple["Counter", "Histogram"]


class GatewayMetrics:
    """The metrics of one gateway: a private registry (never the process-global one, so
    that several gateways in one process, e.g. tests, do not collide)."""

    def __init__(self) -> None:
        # The *_created series double the output for no use to a scraper (global switch).
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=False)
        self.calls = Counter(
            "mcp_gateway_calls", "Calls of upstream tools, resources and prompts by outcome",
            [METHOD, TOOL, SERVER, "status"], registry=self.registry)
        self.duration = Histogram(
            "mcp_server_operation_duration_seconds",
            "Duration of MCP operations the gateway served (OpenTelemetry "
            "mcp.server.operation.duration)",
            [METHOD, TOOL, SERVER], buckets=DURATION_BUCKETS, registry=self.registry)
        self.retries = Counter("mcp_gateway_retries", "Attempts beyond the first, by server",
                               [SERVER], registry=self.registry)
        self.rate_limited = Counter(
            "mcp_gateway_rate_limited", "Calls refused by a server's or tool's rate limit",
            [SERVER, TOOL], registry=self.registry)
        self._children: dict[tuple[str, str, str, str], _Children] = {}
        self._collector: SnapshotCollector | None = None

    def observe(self, method: str, tool: str, server: str, status: str, seconds: float,
                retries: int = 0, rate_limited: bool = False) -> None:
        """One finished call (``tool`` is "" for resources and prompts)."""
        key = (method, tool, server, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.calls.labels(method, tool, server, status),
                self.duration.labels(method, tool, server))
        children[0].inc()
        children[1].observe(seconds)
        if retries:
            self.retries.labels(server).inc(retries)
        if rate_limited:
            self.rate_limited.labels(server, tool).inc()

    def collect_snapshots(self, snapshot: Callable[[], Snapshot]) -> None:
        """Report ``snapshot()`` on every scrape (replaces an earlier source)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = SnapshotCollector(snapshot)
        self.registry.register(self._collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric now."""
        return generate_latest(self.registry)
