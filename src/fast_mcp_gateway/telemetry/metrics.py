"""Prometheus metrics of one gateway, rendered on its own ``CollectorRegistry``.

Three sources, each at its own cost:

* **per call** (``GatewayMetrics.observe``, fed by a call-pipeline observer so that the
  full path and the stdio express lane count alike): the call counter (by ``status``:
  success, error, timeout, rejected, and ``cancelled`` for a call its host cancelled
  or walked away from, which is no error), the duration histogram, retries and
  rate-limit rejections.  These are plain tallies per label combination (a dict
  lookup, an increment and a bucket search per call), turned into Prometheus
  metric families when scraped: ``prometheus_client`` (~1 MB resident) is imported
  by the first scrape, never by a gateway nobody scrapes;
* **per scrape** (``snapshot_metrics``): upstream state, health, in-flight calls,
  restarts, breaker state and trips, stalled calls and suspicion (``policies/stalls.py``),
  recorder queue and drops, retention's runs, failures, skipped runs and records
  removed, the alert webhook's deliveries (sent, failed, dropped), retries and queue (an
  operator's Prometheus is what notices the webhook failing: the webhook cannot say so
  itself), the version (``mcp_gateway_build_info``), catalog size, calls of unknown
  names (by kind only: a host makes names up, a label per name would be
  unbounded; they reach no server, so no call metric counts them), each stdio
  server's processes and their resident memory (``telemetry/processes.py``), read from
  a ``Snapshot`` the caller builds (from ``Upstream.statistics()``) when scraped: no
  cost on the call path;
* **the process** (prometheus_client's own collectors, as any Python exporter has):
  ``process_*`` (CPU seconds, resident and virtual memory, open and max file
  descriptors, start time), ``python_info`` and ``python_gc_*``.

Names follow the OpenTelemetry MCP semantic conventions where they exist
(``mcp.server.operation.duration`` -> ``mcp_server_operation_duration_seconds``,
attributes ``mcp.method.name`` and ``gen_ai.tool.name`` as ``mcp_method_name`` and
``gen_ai_tool_name``); the gateway's own are ``mcp_gateway_*`` with the server as
``mcp_gateway_server``.  This module knows no gateway types (telemetry is a leaf):
the HTTP side adapts call outcomes and replica statistics to it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry


# Seconds; MCP calls span a cache hit (~1 ms) to a long tool run (the 30 s call timeout).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)

SERVER = "mcp_gateway_server"
METHOD = "mcp_method_name"
TOOL = "gen_ai_tool_name"

# Every state a replica, its health and its breaker can be in: each is exposed as one
# series per value (1 for the current one), so a dashboard can sum by state.
# ``invalid``: not running, its entry in the config file does not validate.
UPSTREAM_STATES = ("starting", "ready", "reconnecting", "signed_out", "failed", "disabled",
                   "stopped", "invalid")
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
    stalls: int = 0  # stalled calls (policies/stalls.py) since the replica was made
    suspect: bool = False  # suspect of stalling calls now (``stalled`` in its status)


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
    store_up: bool | None = None  # None: no store; False: unreachable
    unknown_calls: Mapping[str, int] = field(default_factory=dict)  # kind -> calls
    retention: Mapping[str, int] | None = None  # Retention.stats(); None: no retention
    webhook: Mapping[str, int] | None = None  # sent/failed/dropped/retries/queued; None: none
    version: str | None = None  # the gateway's, as mcp_gateway_build_info
    # stdio server -> (its processes running now, their resident bytes with their
    # children's: telemetry/processes.py; None where unknown)
    processes: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)


def snapshot_metrics(snap: Snapshot) -> Iterator[Metric]:
    """The scrape-time metrics of ``snap``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
                                   "Sessions of the replica started after its first "
                                   "(a crash's reconnect, an operator's)", labels=labels)
    trips = CounterMetricFamily("mcp_gateway_breaker_trips",
                                "Times the replica's circuit breaker opened", labels=labels)
    stalls = CounterMetricFamily("mcp_gateway_upstream_stalls",
                                 "Calls the replica stalled: given up on by their hosts, "
                                 "or timed out, after a long wait with nothing heard from "
                                 "it", labels=labels)
    suspect = GaugeMetricFamily("mcp_gateway_upstream_suspect",
                                "1 while the replica is suspect of stalling calls (other "
                                "replicas preferred, trial calls), else 0", labels=labels)
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
        stalls.add_metric(key, float(r.stalls))
        suspect.add_metric(key, 1.0 if r.suspect else 0.0)
    yield from (up, state, health, breaker, inflight, restarts, trips, stalls, suspect)

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

    if snap.processes:
        running = GaugeMetricFamily("mcp_gateway_upstream_processes",
                                    "Processes of a stdio server running now (its replicas' "
                                    "and per-client sessions')", labels=[SERVER])
        resident = GaugeMetricFamily("mcp_gateway_upstream_resident_memory_bytes",
                                     "Resident memory of a stdio server's processes and "
                                     "their children (Linux)", labels=[SERVER])
        for server, (count, rss) in sorted(snap.processes.items()):
            running.add_metric([server], float(count))
            if rss is not None:
                resident.add_metric([server], float(rss))
        yield running
        if resident.samples:
            yield resident

    catalog = GaugeMetricFamily("mcp_gateway_catalog_items",
                                "Items the gateway exposes, by kind", labels=["kind"])
    for kind, count in sorted(snap.catalog.items()):
        catalog.add_metric([kind], float(count))
    yield catalog
    unknown = CounterMetricFamily(
        "mcp_gateway_unknown_calls", "Tool calls, prompt gets and resource reads refused "
        "because nothing the caller may use has that name, by kind (not by name)",
        labels=["kind"])
    for kind, count in sorted(snap.unknown_calls.items()):
        unknown.add_metric([kind], float(count))
    yield unknown
    if snap.recorder_queued is not None:
        yield GaugeMetricFamily("mcp_gateway_recorder_queue_depth",
                                "Call records waiting to be written",
                                value=float(snap.recorder_queued))
        yield CounterMetricFamily("mcp_gateway_recorder_dropped",
                                  "Call records dropped because the queue was full",
                                  value=float(snap.recorder_dropped))
    if snap.retention is not None:
        for name, text in _RETENTION:
            yield CounterMetricFamily(f"mcp_gateway_recorder_retention_{name}", text,
                                      value=float(snap.retention[f"retention_{name}"]))
    if snap.webhook is not None:
        hook = snap.webhook
        deliveries = CounterMetricFamily(
            "mcp_gateway_alert_webhook_deliveries", "Alert transitions posted to the "
            "webhook, by outcome: sent, failed (after its attempts), dropped (queue full)",
            labels=["outcome"])
        for outcome in ("sent", "failed", "dropped"):
            deliveries.add_metric([outcome], float(hook[outcome]))
        yield deliveries
        yield CounterMetricFamily("mcp_gateway_alert_webhook_retries",
                                  "Webhook attempts beyond each delivery's first",
                                  value=float(hook["retries"]))
        yield GaugeMetricFamily("mcp_gateway_alert_webhook_queue_depth",
                                "Alert transitions waiting to be posted",
                                value=float(hook["queued"]))
    if snap.version is not None:
        info = GaugeMetricFamily("mcp_gateway_build_info", "The gateway's version (always 1)",
                                 labels=["version"])
        info.add_metric([snap.version], 1.0)
        yield info
    if snap.store_up is not None:
        yield GaugeMetricFamily("mcp_gateway_store_up",
                                "1 while the store is reachable, 0 while it is not (call "
                                "records held for it, or the change feed lost it)",
                                value=float(snap.store_up))


_Tally = list[float]  # [sum, bucket counts (not cumulative)...] of one combination


_RETENTION = (("runs", "Retention runs ended (pruned, failed or skipped)"),
              ("failures", "Retention runs that failed (tried again at the next run)"),
              ("skipped", "Retention runs skipped: another gateway was pruning the "
                          "shared PostgreSQL store"),
              ("removed", "Call records removed by retention"))


class GatewayMetrics:
    """The metrics of one gateway, rendered on a private registry (never the
    process-global one, so that several gateways in one process, e.g. tests, do not
    collide)."""

    def __init__(self) -> None:
        # (method, tool, server, status) -> [calls]; (method, tool, server) -> _Tally.
        self._calls: dict[tuple[str, str, str, str], list[int]] = {}
        self._durations: dict[tuple[str, str, str], _Tally] = {}
        self._retries: dict[str, int] = {}
        self._rate_limited: dict[tuple[str, str], int] = {}
        self._snapshot: Callable[[], Snapshot] | None = None
        self._registry: CollectorRegistry | None = None

    def observe(self, method: str, tool: str, server: str, status: str, seconds: float,
                retries: int = 0, rate_limited: bool = False) -> None:
        """One finished call (``tool`` is "" for resources and prompts)."""
        key = (method, tool, server, status)
        count = self._calls.get(key)
        if count is None:
            count = self._calls[key] = [0]
        count[0] += 1
        tally = self._durations.get(key[:3])
        if tally is None:
            tally = self._durations[key[:3]] = [0.0] * (2 + len(DURATION_BUCKETS))
        tally[0] += seconds  # the count is the +Inf bucket's cumulative count
        # Prometheus buckets are upper bounds (le): a value equal to one falls in it.
        tally[1 + bisect_left(DURATION_BUCKETS, seconds)] += 1
        if retries:
            self._retries[server] = self._retries.get(server, 0) + retries
        if rate_limited:
            self._rate_limited[server, tool] = self._rate_limited.get((server, tool), 0) + 1

    def forget(self, server: str) -> None:
        """Drop ``server``'s call series (it was removed).  Kept, a gateway whose servers
        come and go under new names (runtime registrations, a reload renaming one) grew
        by ~20 series per tool called, per name ever served (the soak test).  A call
        in flight on it when it went must not be observed when it ends (it would make
        its series again, for good): ``http/metrics.feed`` drops it."""
        self._calls = {k: v for k, v in self._calls.items() if k[2] != server}
        self._durations = {k: v for k, v in self._durations.items() if k[2] != server}
        self._retries.pop(server, None)
        self._rate_limited = {k: v for k, v in self._rate_limited.items() if k[0] != server}

    def collect_snapshots(self, snapshot: Callable[[], Snapshot]) -> None:
        """Report ``snapshot()`` on every scrape (replaces an earlier source)."""
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every metric now, as Prometheus metric families (a registry's collector)."""
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        calls = CounterMetricFamily(
            "mcp_gateway_calls", "Calls of upstream tools, resources and prompts by outcome",
            labels=[METHOD, TOOL, SERVER, "status"])
        for key, (count,) in self._calls.items():
            calls.add_metric(list(key), float(count))
        yield calls
        duration = HistogramMetricFamily(
            "mcp_server_operation_duration_seconds",
            "Duration of MCP operations the gateway served (OpenTelemetry "
            "mcp.server.operation.duration)", labels=[METHOD, TOOL, SERVER])
        bounds = [floatToGoString(b)  # type: ignore[no-untyped-call]
                  for b in (*DURATION_BUCKETS, float("inf"))]
        for labels, tally in self._durations.items():
            cumulative, buckets = 0.0, []
            for bound, n in zip(bounds, tally[1:], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            duration.add_metric(list(labels), buckets, tally[0])
        yield duration
        retries = CounterMetricFamily("mcp_gateway_retries",
                                      "Attempts beyond the first, by server", labels=[SERVER])
        for server, n in self._retries.items():
            retries.add_metric([server], float(n))
        yield retries
        limited = CounterMetricFamily("mcp_gateway_rate_limited",
                                      "Calls refused by a server's or tool's rate limit",
                                      labels=[SERVER, TOOL])
        for (server, tool), n in self._rate_limited.items():
            limited.add_metric([server, tool], float(n))
        yield limited
        if self._snapshot is not None:
            yield from snapshot_metrics(self._snapshot())

    @staticmethod
    def content_type() -> str:
        """The media type of ``render``'s text."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return str(CONTENT_TYPE_LATEST)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric now."""
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
            generate_latest,
        )

        if self._registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(self)  # type: ignore[arg-type]
            # What every Python exporter's default registry has: process_* (CPU, memory,
            # file descriptors, start time: read from /proc, Linux only), python_info
            # and python_gc_*.  They describe the process, so several gateways in one
            # process (tests) report the same values.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
            self._registry = registry
        return generate_latest(self._registry)
