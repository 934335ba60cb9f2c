"""One live MCP session to one upstream server, supervised: the ``Upstream`` replica.

``Upstream`` is a facade over parts that each own one concern:

* ``supervisor.Supervisor``: process, connect, era negotiation, hold, restart loop,
  health probe, states;
* ``requests.Requests``: ``tools/call`` (typed and raw), ``resources/read``,
  ``prompts/get``, completions, listings; deadlines and one accounting wrapper;
* ``changes.ChangeTracker``: ``list_changed``, catalog refresh, the resource
  subscriptions kept (replayed on each session) and the 2026-07-28 listen stream;
* ``subscribing.ResourceSubscriptions``: subscribe and unsubscribe on the session;
* ``relay.HostRelay``: logs and asks (sampling, elicitation, roots) relayed to the
  host of the call in flight;
* ``stats.ReplicaAccounting``: health window, breaker, EWMA, in-flight, counters,
  read from outside through ``statistics()`` (a frozen ``UpstreamStatistics``).

Callbacks from the upstream run in the session's receive loop, so they never block:
they relay to a ``FrontCall`` or set an event that a task of this replica acts on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import mcp_types as types
from mcp import ClientSession
from mcp.shared.dispatcher import ProgressFnT

from fast_mcp_gateway.config.schema import ProtocolMode, ServerConfig
from fast_mcp_gateway.config.timeouts import max_total_for
from fast_mcp_gateway.policies import CircuitBreaker, HealthStatus, HealthWindow
from fast_mcp_gateway.policies.balancing import ReplicaView
from fast_mcp_gateway.policies.stalls import ToolTimes
from fast_mcp_gateway.upstream.changes import ChangeTracker
from fast_mcp_gateway.upstream.era_switch import EraSwitch
from fast_mcp_gateway.upstream.loops import Lineage
from fast_mcp_gateway.upstream.model import (
    DEFAULT_RESTART,
    Catalog,
    RestartPolicy,
    StderrTail,
    UpstreamState,
    describe_error,
)
from fast_mcp_gateway.upstream.relay import FrontCall, HostRelay, IdleLog, InFlight
from fast_mcp_gateway.upstream.requests import Requests
from fast_mcp_gateway.upstream.session import CLIENT_INFO, Era, EraMemory
from fast_mcp_gateway.upstream.signals import ChangeSignal
from fast_mcp_gateway.upstream.stats import EWMA_ALPHA, ReplicaAccounting, UpstreamStatistics
from fast_mcp_gateway.upstream.subscribing import ResourceSubscriptions
from fast_mcp_gateway.upstream.supervisor import Supervisor
from fast_mcp_gateway.upstream.transports import TransportFactory, default_transport

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.relay import OutsideCalls

__all__ = [
    "CLIENT_INFO",
    "DEFAULT_RESTART",
    "EWMA_ALPHA",
    "Catalog",
    "RestartPolicy",
    "StderrTail",
    "TransportFactory",
    "Upstream",
    "UpstreamListener",
    "UpstreamState",
    "UpstreamStatistics",
    "default_transport",
    "describe_error",
]


class UpstreamListener(Protocol):
    """How an ``Upstream`` tells its owner about changes (must not block)."""

    def catalog_changed(self, upstream: Upstream) -> None: ...

    def state_changed(self, upstream: Upstream) -> None: ...

    def resource_updated(self, upstream: Upstream, uri: str) -> None: ...

    def observed(self, upstream: Upstream) -> None:
        """Anything changed (state, attempt, catalog, health): wake waiters."""
        ...

    def log(self, upstream: Upstream, params: types.LoggingMessageNotificationParams) -> None:
        """The upstream logged while no call was in flight on it."""
        ...

    def transition(self, upstream: Upstream, status: str, detail: str | None) -> None:
        """A state or health transition worth keeping in the health history."""
        ...


class _Hooks:
    """The replica's side of ``SupervisorHooks`` (kept off ``Upstream``'s public API)."""

    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream

    def session_kwargs(self) -> dict[str, Any]:
        up = self._up
        return {**up._stats.hearing(up._relay.session_callbacks(up._declares)),
                "message_handler": up.inflight.url_asks.handler(up._changes.on_message),
                "client_info": CLIENT_INFO, "log_level": "debug"}

    def serve(self, session: ClientSession, tg: anyio.abc.TaskGroup) -> None:
        self._up._changes.serve(session, tg, self._up.is_modern)

    def state_changed(self, status: str, detail: str) -> None:
        listener = self._up._listener
        if listener is not None:
            listener.state_changed(self._up)
            listener.transition(self._up, status, detail)

    def catalog_changed(self) -> None:
        if self._up._listener is not None:
            self._up._listener.catalog_changed(self._up)

    def notify(self) -> None:
        self._up._notify_change()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        return await self._up._changed.wait_until(predicate, within)


class Upstream:
    """A supervised, persistent MCP session to one configured server (one replica)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        connect_timeout: float = 10.0,
        call_timeout: float = 30.0,
        max_total: float | None = None,
        listener: UpstreamListener | None = None,
        transport_factory: TransportFactory = default_transport,
        restart: RestartPolicy | None = None,
        rng: random.Random | None = None,
        startup_limiter: anyio.CapacityLimiter | None = None,
        replica: int = 0, replicas: int = 1, weight: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sole_host: OutsideCalls | None = None,
        label: str | None = None,
        default_protocol: ProtocolMode = "auto",
        era_memory: EraMemory | None = None,
        declares: dict[str, Any] | None = None, lineage: Lineage | None = None,
        redact_keys: tuple[str, ...] | None = None,  # None: the defaults
    ) -> None:
        self.config = config
        self.name = config.name
        self.replica = replica
        self.label = label or (config.name if replicas == 1 else f"{config.name}#{replica}")
        self.weight = weight
        self.connect_timeout = config.timeouts.connect or connect_timeout
        self.call_timeout = config.timeouts.call or call_timeout
        # A call that keeps reporting progress runs up to this (config/timeouts.py);
        # ``max_total``: gateway.timeouts', the server's own comes first.
        self.max_total = max_total_for(self.call_timeout, config.timeouts.max_total, max_total)
        self._clock = clock
        self._listener = listener
        self._changed = ChangeSignal()
        self.inflight = InFlight()
        self._stats = ReplicaAccounting(config, self.label, clock, self._transition,
                                        alone=replicas == 1)
        self._relay = HostRelay(self.name, self.inflight, self._idle_log, sole_host)
        self._declares = declares   # a per_client session's one host's capabilities
        self._sup = Supervisor(
            config, label=self.label, connect_timeout=self.connect_timeout,
            accounting=self._stats, hooks=_Hooks(self), transport_factory=transport_factory,
            restart=restart or DEFAULT_RESTART, rng=rng or random.Random(),
            limiter=startup_limiter, era=Era(config.protocol or default_protocol, era_memory),
            lineage=lineage)
        self._requests = Requests(self._sup, self._stats, self.inflight, self.call_timeout,
                                  self._changed.notify, self.max_total, self._changed,
                                  redact_keys)
        self._era_switch = EraSwitch(self._sup, self._stats, self._changed,
                                     self._notify_change, self.call_timeout)
        self._changes = ChangeTracker(
            self.label, timeout=self.call_timeout, fetch=self._sup.fetch_catalog,
            on_catalog=self._catalog_refreshed, on_resource_updated=self._resource_updated,
            changed=self._changed, notify=self._notify_change,
        )
        self._subscriptions = ResourceSubscriptions(self.label, self._sup, self._changes,
                                                    self._requests, self.call_timeout)

    # -- what the rest of the gateway reads --------------------------------------------

    def statistics(self) -> UpstreamStatistics:
        """A frozen snapshot of this replica now (status reports, REST, metrics)."""
        stats, sup = self._stats, self._sup
        now = self._clock()
        samples, success, median = stats.health.stats(now)
        opened, retry_in = stats.breaker_timing(now)
        uptime = stats.uptime()
        return UpstreamStatistics(
            label=self.label, replica=self.replica, weight=self.weight, state=sup.state,
            health=self.status(), breaker=stats.breaker.state,
            breaker_open_seconds=opened, breaker_retry_in_seconds=retry_in,
            inflight=stats.active, ewma_latency_ms=stats.ewma_ms, samples=samples,
            success_rate=success, median_latency_ms=median, restarts=stats.restarts,
            connects=stats.connects, attempts=stats.attempts,
            protocol_errors=stats.protocol_errors, uptime_seconds=uptime,
            connect_seconds=stats.connect_seconds,
            next_retry_in_seconds=None if sup.next_retry_at is None
            else max(0.0, sup.next_retry_at - time.time()),
            last_error=sup.last_error, pid=sup.pid, protocol_version=sup.protocol_version,
            protocol_reason=sup.era.reason,
            breaker_trips=stats.breaker.trips, stalled=stats.stalls.describe(now),
            stalls=stats.stalls.total,
        )

    def status(self) -> HealthStatus:
        """Health now; a replica without a live session is UNHEALTHY, a disabled one
        UNKNOWN (an operator turned it off: nothing is wrong with it, and nothing is known
        of it).  Transitions are logged once."""
        state = self._sup.state
        if state is UpstreamState.DISABLED:
            return HealthStatus.UNKNOWN
        return self._stats.status(state is UpstreamState.READY)

    def would_admit(self, now: float) -> bool:
        """Whether the breaker would let a call through at ``now`` (takes no probe slot)."""
        return self._stats.breaker.would_allow(now)

    def trial_due(self) -> bool:
        """Whether a suspect replica's trial call may go now (``StallWatch.due``)."""
        return self._stats.stalls.due(self._stats.clock())

    def admit(self, now: float) -> bool:
        """Whether a call may go through now (takes a half-open probe slot if it may)."""
        return self._stats.breaker.allow(now)

    def reset_breaker(self) -> None:
        """Close the breaker and drop a suspicion of stalling: an operator's word."""
        self._stats.breaker.reset()
        self._stats.stalls.reset()

    def share_tool_times(self, times: ToolTimes) -> None:
        """Judge stalls by ``times``, which the server's other replicas feed too."""
        self._stats.tools = times

    def balancer_view(self) -> ReplicaView:
        return self._stats.view(self.replica, self.weight)

    def is_subscribed(self, uri: str) -> bool:
        """Whether a host subscribed to ``uri`` on this replica."""
        return self._changes.is_subscribed(uri)

    def listening(self, uri: str) -> bool:
        """Whether this 2026-07-28 session's listen stream covers ``uri`` now."""
        return self._changes.listening(uri)

    def subscriptions(self) -> frozenset[str]:
        """The URIs hosts subscribed to on this replica (replayed on each session)."""
        return self._subscriptions.held()

    @property
    def state(self) -> UpstreamState:
        return self._sup.state

    @property
    def last_error(self) -> str | None:
        return self._sup.last_error

    @property
    def catalog(self) -> Catalog:
        return self._sup.catalog

    @property
    def stderr(self) -> StderrTail:
        return self._sup.stderr

    @property
    def pid(self) -> int | None:
        return self._sup.pid

    @property
    def protocol_version(self) -> str | None:
        return self._sup.protocol_version

    @property
    def protocol_mode(self) -> ProtocolMode:
        """The configured era (``auto``, ``legacy``, a 2026 version)."""
        return self._sup.era.mode

    @property
    def server_info(self) -> types.Implementation | None:
        return self._sup.server_info

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        return self._sup.capabilities

    @property
    def instructions(self) -> str | None:
        return self._sup.instructions

    @property
    def is_modern(self) -> bool:
        return self._sup.is_modern

    @property
    def session(self) -> ClientSession | None:
        return self._sup.session

    @property
    def next_retry_at(self) -> float | None:
        return self._sup.next_retry_at

    @property
    def down(self) -> bool:
        return self._sup.down

    # Live accounting, kept for callers not yet on ``statistics()``.
    @property
    def health(self) -> HealthWindow:
        return self._stats.health

    @property
    def breaker(self) -> CircuitBreaker:
        return self._stats.breaker

    @property
    def ewma_ms(self) -> float | None:
        return self._stats.ewma_ms

    @property
    def active(self) -> int:
        return self._stats.active

    @property
    def restarts(self) -> int:
        return self._stats.restarts

    @property
    def connects(self) -> int:
        return self._stats.connects

    @property
    def attempts(self) -> int:
        return self._stats.attempts

    @property
    def longest_attempt(self) -> float:
        return self._sup.longest_attempt

    @property
    def connect_seconds(self) -> float | None:
        return self._stats.connect_seconds

    @property
    def last_status(self) -> HealthStatus:
        return self._stats.last_status

    def uptime(self) -> float | None:
        return self._stats.uptime()

    def unavailable_reason(self) -> str:
        return self._sup.unavailable_reason()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds (checked at each state, attempt, catalog or
        health change); False if it does not within ``within`` seconds."""
        return await self._changed.wait_until(predicate, within)

    async def wait_first_attempt(self) -> None:
        """Return once the first connect attempt succeeded, failed, or was skipped."""
        await self._sup.wait_first_attempt()

    # -- control --------------------------------------------------------------------

    async def run(self) -> None:
        """Supervise the session until ``stop()``; never raises for upstream faults."""
        await self._sup.run()

    async def probe(self) -> None:
        """Connect once, fetch the catalog, disconnect (for ``mcp-gateway check``)."""
        await self._sup.probe()

    def reconnect(self) -> None:
        """Drop the current session (if any) and connect again now, un-parking a failure."""
        self._sup.reconnect()

    def set_enabled(self, enabled: bool) -> None:
        self._sup.set_enabled(enabled)

    def stop(self) -> None:
        self._sup.stop()

    def kill(self) -> None:
        """Terminate the stdio server's process group now (gateway shutting down)."""
        self._sup.kill()

    # -- requests -------------------------------------------------------------------

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        return await self._era_switch.send(
            name, lambda: self._requests.call_tool(name, arguments, front, on_progress),
            front is not None and front.is_modern)

    async def call_tool_raw(
        self, params: dict[str, Any], front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """``tools/call`` as JSON in, JSON out (see ``Requests.call_tool_raw``)."""
        return await self._era_switch.send(
            params["name"], lambda: self._requests.call_tool_raw(params, front, on_progress),
            front is not None and front.is_modern)

    async def request_raw(self, method: str, params: dict[str, Any],
                          front: FrontCall | None) -> dict[str, Any]:
        """Any request as JSON in, JSON out, on this replica's session (the tasks
        extension's ``tasks/*``; see ``Requests.request_raw``)."""
        return await self._requests.request_raw(method, params, front)

    async def list_catalog(self) -> Catalog:
        """List everything the upstream offers now (live, not the cached catalog)."""
        return await self._requests.list_catalog()

    async def read_resource(
        self, uri: str, front: FrontCall | None, on_progress: ProgressFnT | None = None
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        return await self._requests.read_resource(uri, front, on_progress)

    async def get_prompt(self, name: str, arguments: dict[str, str] | None,
                         front: FrontCall | None, on_progress: ProgressFnT | None = None,
                         ) -> types.GetPromptResult | types.InputRequiredResult:
        return await self._requests.get_prompt(name, arguments, front, on_progress)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        return await self._requests.complete(ref, argument, context_arguments)

    async def subscribe(self, uri: str) -> None:
        """Receive ``resource_updated`` for ``uri`` (now, and after every reconnect)."""
        await self._subscriptions.subscribe(uri)

    def keep_subscribed(self, uri: str) -> None:
        """Subscribe to ``uri`` from the next session on: one a replica of a restarted
        server takes over before its first (``Service.carry``)."""
        self._subscriptions.keep(uri)

    async def roots_changed(self) -> None:
        """Tell a handshake-era session that its client's roots changed (the host's did);
        the upstream then asks ``roots/list`` again.  2026-07-28 sessions have no such
        notification: roots are asked within calls there."""
        session = self._sup.session
        if session is None or self.is_modern:
            return
        with anyio.fail_after(self.call_timeout):
            await session.send_notification(types.RootsListChangedNotification())

    async def unsubscribe(self, uri: str) -> None:
        """No longer receive ``resource_updated`` for ``uri``; without a session now, the
        subscription ended with the last one (and is not replayed on the next)."""
        await self._subscriptions.unsubscribe(uri)

    # -- wiring -----------------------------------------------------------------------

    def _catalog_refreshed(self, catalog: Catalog) -> None:
        self._sup.catalog = catalog
        if self._listener is not None:
            self._listener.catalog_changed(self)

    def send_idle_logs_to(self, relay: IdleLog) -> None:
        """Send logs made while no call is in flight to ``relay`` (instead of the
        listener): a per_client session's logs belong to its one host."""
        self._relay.on_idle_log = relay

    async def _idle_log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self._listener is not None:
            self._listener.log(self, params)

    def _resource_updated(self, uri: str) -> None:
        if self._listener is not None:
            self._listener.resource_updated(self, uri)

    def _transition(self, status: str, detail: str) -> None:
        if self._listener is not None:
            self._listener.transition(self, status, detail)

    def _notify_change(self) -> None:
        self._changed.notify()
        if self._listener is not None:
            self._listener.observed(self)
