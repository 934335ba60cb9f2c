"""One live MCP session to one upstream server, supervised.

``Upstream.run()`` is the supervisor: it connects (spawning the process for stdio),
negotiates the protocol era, fetches the catalog, then holds the session until it
closes (process exit, transport error, reconnect/disable/stop request).  An
unexpected close or a failed connect is retried with exponential backoff and
jitter; ``crash_limit`` failures within ``crash_window`` seconds park the upstream
as ``failed`` until ``reconnect()``.

Every request goes through the one persistent session (never a reconnect per
call) and carries a deadline.  Callbacks from the upstream (logs, sampling,
elicitation, roots, list_changed) run in the session's receive loop, so they
never block: they relay to a ``FrontCall`` or set an event that a task of this
upstream acts on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TextIO, TypeVar

import anyio
import httpx2
import mcp_types as types
from fastmcp.client.transports import (
    ClientTransport,
    SSETransport,
    StreamableHttpTransport,
)
from fastmcp.client.transports.base import TransportOptions
from mcp import ClientSession
from mcp.client._probe import negotiate_auto
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import (
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from fast_mcp_gateway.policies import CircuitBreaker, HealthStatus, HealthThresholds, HealthWindow
from fast_mcp_gateway.upstream.processes import (
    child_with_stderr,
    is_alive,
    pipe_inode,
    signal_group,
)
from fast_mcp_gateway.upstream.relay import FrontCall, InFlight
from fast_mcp_gateway.upstream.signals import ChangeSignal
from fast_mcp_gateway.upstream.stdio_tap import STOP_GRACE, RawTap, TappedStdioTransport

logger = logging.getLogger(__name__)
T = TypeVar("T")

CLIENT_INFO = types.Implementation(name="fast-mcp-gateway", version=__version__)
_TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,
)


class UpstreamState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    DISABLED = "disabled"
    STOPPED = "stopped"


@dataclass
class Catalog:
    """What one upstream offers, as it listed it (original names)."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "tools": len(self.tools),
            "resources": len(self.resources),
            "resource_templates": len(self.templates),
            "prompts": len(self.prompts),
        }


class StderrTail:
    """The last ``maxlen`` lines a stdio upstream wrote to stderr."""

    def __init__(self, maxlen: int) -> None:
        self.lines: deque[str] = deque(maxlen=maxlen)
        self._partial = b""
        self.total_lines = 0

    def feed(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            self._push(raw)
        if len(self._partial) > 65536:  # a runaway line without newline
            self._push(self._partial)
            self._partial = b""

    def flush(self) -> None:
        if self._partial:
            self._push(self._partial)
            self._partial = b""

    def _push(self, raw: bytes) -> None:
        self.lines.append(raw.decode("utf-8", "replace").rstrip("\r"))
        self.total_lines += 1

    def tail(self, n: int = 20) -> list[str]:
        return list(self.lines)[-n:] if n > 0 else []


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between reconnect attempts, and when to stop trying (crash loop)."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    crash_limit: int = 5
    crash_window: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier**attempt)
        return base * (1 + self.jitter * (2 * rng.random() - 1))

    def is_crash_loop(self, failures: deque[float], now: float) -> bool:
        while failures and now - failures[0] > self.crash_window:
            failures.popleft()
        return len(failures) >= self.crash_limit


DEFAULT_RESTART = RestartPolicy()
EWMA_ALPHA = 0.3  # weight of the newest latency sample


class UpstreamListener(Protocol):
    """How an ``Upstream`` tells its owner about changes (must not block)."""

    def catalog_changed(self, upstream: Upstream) -> None: ...

    def state_changed(self, upstream: Upstream) -> None: ...

    def resource_updated(self, upstream: Upstream, uri: str) -> None: ...

    def observed(self, upstream: Upstream) -> None:
        """Anything changed (state, attempt, catalog, health): wake waiters."""
        ...

    def transition(self, upstream: Upstream, status: str, detail: str | None) -> None:
        """A state or health transition worth keeping in the health history."""
        ...


TransportFactory = Callable[[ServerConfig, TextIO | None], ClientTransport]


def default_transport(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
    """Build the fastmcp transport for a configured server (one connection, no keep-alive)."""
    if config.kind == "stdio":
        assert config.command is not None
        return TappedStdioTransport(
            config.command,
            list(config.args),
            env=dict(config.env) or None,
            cwd=config.cwd,
            keep_alive=False,
            log_file=stderr,
        )
    assert config.url is not None
    if config.kind == "sse":
        return SSETransport(config.url, headers=dict(config.headers) or None)
    return StreamableHttpTransport(config.url, headers=dict(config.headers) or None)


class _RelaySession(ClientSession):
    """A session that relays results instead of consuming them.

    ``ClientSession.call_tool`` validates structured content against the tool's
    output schema (listing tools first if needed).  That check belongs to the host,
    which runs it itself; doing it here would turn an upstream's schema bug into a
    gateway error and hide the real response.
    """

    async def validate_tool_result(self, name: str, result: types.CallToolResult) -> None:
        return None


_TRANSPORT_OPTIONS = TransportOptions(session_class=_RelaySession)


def describe_error(exc: BaseException) -> str:
    """A one-line, human explanation of why a connect or request failed."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url}"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect: {exc}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {describe_error(cause)}"
    return text


class Upstream:
    """A supervised, persistent MCP session to one configured server."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        connect_timeout: float = 10.0,
        call_timeout: float = 30.0,
        listener: UpstreamListener | None = None,
        transport_factory: TransportFactory = default_transport,
        restart: RestartPolicy | None = None,
        rng: random.Random | None = None,
        startup_limiter: anyio.CapacityLimiter | None = None,
        replica: int = 0,
        replicas: int = 1,
        weight: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.replica = replica
        self.label = config.name if replicas == 1 else f"{config.name}#{replica}"
        self.weight = weight
        self._clock = clock
        h, b = config.health, config.circuit_breaker
        self.health = HealthWindow(HealthThresholds(
            healthy_success=h.healthy_success, degraded_success=h.degraded_success,
            healthy_latency_ms=h.healthy_latency_ms, degraded_latency_ms=h.degraded_latency_ms,
            window=h.window, heartbeat_timeout=h.heartbeat_timeout, min_samples=h.min_samples,
        ))
        self.breaker = CircuitBreaker(b.failure_threshold, b.window, b.open_for,
                                      b.half_open_probes)
        self.ewma_ms: float | None = None
        self.active = 0  # requests in flight on this replica (all callers)
        self.health_timeout = config.timeouts.health or 5.0
        self.last_status = HealthStatus.UNKNOWN
        self.connect_timeout = config.timeouts.connect or connect_timeout
        self.call_timeout = config.timeouts.call or call_timeout
        self._listener = listener
        self._transport_factory = transport_factory
        self._restart = restart or DEFAULT_RESTART
        self._rng = rng or random.Random()
        self._limiter = startup_limiter
        self._holding_limiter = False

        self.state = UpstreamState.STARTING
        self.last_error: str | None = None
        self.catalog = Catalog()
        self.stderr = StderrTail(config.stderr_lines)
        self.inflight = InFlight()
        self.restarts = 0
        self.connects = 0
        self.attempts = 0
        self.connect_seconds: float | None = None
        self.ready_since: float | None = None  # wall clock
        self.next_retry_at: float | None = None  # wall clock
        self.pid: int | None = None  # the stdio server's process, when known
        self.protocol_version: str | None = None
        self.server_info: types.Implementation | None = None
        self.capabilities: types.ServerCapabilities | None = None
        self.instructions: str | None = None

        self._session: ClientSession | None = None
        self._tap: RawTap | None = None  # the stdio session's raw side door (express lane)
        self._enabled = config.enabled
        self._stopping = False
        self._restart_requested = False
        self._wake = anyio.Event()
        self._attempt_scope: anyio.CancelScope | None = None
        self._first_attempt = anyio.Event()
        self._broken: str | None = None
        self._closed = anyio.Event()
        self._catalog_dirty = anyio.Event()
        self._changed = ChangeSignal()
        # Resource URIs hosts subscribed to: kept across reconnects, replayed on each session.
        self._resource_subs: set[str] = set()
        self._listen_acked: frozenset[str] | None = None  # what the listen stream covers
        self._listen_error: str | None = None
        self._relisten = anyio.Event()

    # -- public state ---------------------------------------------------------

    @property
    def is_modern(self) -> bool:
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def session(self) -> ClientSession | None:
        return self._session if self.state is UpstreamState.READY else None

    def uptime(self) -> float | None:
        return None if self.ready_since is None else time.time() - self.ready_since

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds (checked at each state, attempt, catalog or
        health change); False if it does not within ``within`` seconds."""
        return await self._changed.wait_until(predicate, within)

    def _notify_change(self) -> None:
        self._changed.notify()
        if self._listener is not None:
            self._listener.observed(self)

    def status(self) -> HealthStatus:
        """Health now; a replica without a live session is UNHEALTHY.  Transitions are
        logged once."""
        if self.state is not UpstreamState.READY:
            status = HealthStatus.UNHEALTHY
        else:
            status = self.health.classify(self._clock())
        if status is not self.last_status:
            level = logging.WARNING if status is HealthStatus.UNHEALTHY else logging.INFO
            if self.state is UpstreamState.READY or status is not HealthStatus.UNHEALTHY:
                logger.log(level, "upstream %s: health %s -> %s", self.label,
                           self.last_status, status)
                if self._listener is not None:
                    self._listener.transition(self, str(status),
                                              f"health {self.last_status} -> {status}")
            self.last_status = status
        return status

    async def wait_first_attempt(self) -> None:
        """Return once the first connect attempt succeeded, failed, or was skipped."""
        await self._first_attempt.wait()

    # -- control --------------------------------------------------------------

    def reconnect(self) -> None:
        """Drop the current session (if any) and connect again now, un-parking a failure."""
        self._enabled = True
        self._restart_requested = True
        self._interrupt()

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        self._restart_requested = True
        self._interrupt()

    def stop(self) -> None:
        self._stopping = True
        self._interrupt()

    def _interrupt(self) -> None:
        self._wake.set()
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()

    # -- supervisor -----------------------------------------------------------

    async def run(self) -> None:
        """Supervise the session until ``stop()``; never raises for upstream faults."""
        failures: deque[float] = deque()
        attempt = 0
        try:
            while not self._stopping:
                self._wake = anyio.Event()
                if not self._enabled:
                    self._set_state(UpstreamState.DISABLED)
                    self._first_attempt.set()
                    await self._wake.wait()
                    continue
                self._restart_requested = False
                error: str | None = None
                try:
                    await self._attempt(hold=True)
                except Exception as exc:  # noqa: BLE001 - every upstream fault is contained
                    error = self._explain_failure(exc)
                    self.last_error = error
                    self._attempt_finished()
                else:
                    if self._stopping or self._restart_requested:
                        attempt = 0
                        failures.clear()
                        continue
                    error = self._broken or "connection closed"
                    error = self._explain_failure(None, error)
                finally:
                    self._first_attempt.set()
                if self._stopping:
                    break
                if self._restart_requested:
                    attempt = 0
                    failures.clear()
                    continue
                self.last_error = error
                failures.append(time.monotonic())
                if self._restart.is_crash_loop(failures, time.monotonic()):
                    self.last_error = (
                        f"{error} (gave up after {len(failures)} failures within "
                        f"{self._restart.crash_window:.0f}s; use gateway_reconnect_server)"
                    )
                    self._set_state(UpstreamState.FAILED)
                    failures.clear()
                    await self._wake.wait()
                    attempt = 0
                    continue
                delay = self._restart.delay(attempt, self._rng)
                attempt += 1
                self.next_retry_at = time.time() + delay
                self._set_state(UpstreamState.RECONNECTING)
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                self.next_retry_at = None
                self.restarts += 1
        finally:
            self._set_state(UpstreamState.STOPPED)
            self._first_attempt.set()

    async def probe(self) -> None:
        """Connect once, fetch the catalog, disconnect (for ``mcp-gateway check``)."""
        try:
            await self._attempt(hold=False)
        except Exception as exc:
            self.last_error = self._explain_failure(exc)
            self._set_state(UpstreamState.FAILED)
            raise
        finally:
            self._first_attempt.set()

    def _explain_failure(self, exc: BaseException | None, text: str | None = None) -> str:
        text = text or (describe_error(exc) if exc is not None else "failed")
        tail = self.stderr.tail(5)
        if self.config.kind == "stdio" and tail:
            text += " | stderr: " + " / ".join(line.strip() for line in tail if line.strip())
        return text

    async def _attempt(self, *, hold: bool) -> None:
        if self.state is not UpstreamState.READY:
            self._set_state(
                UpstreamState.STARTING if self.connects == 0 else UpstreamState.RECONNECTING
            )
        self._broken = None
        self._closed = anyio.Event()
        if self._limiter is not None:
            # Bounds concurrent *connects*; waiting here does not eat the connect timeout.
            await self._limiter.acquire()
            self._holding_limiter = True
        started = anyio.current_time()
        stderr_writer: TextIO | None = None
        stderr_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            stderr_inode: int | None = None
            if self.config.kind == "stdio":
                read_fd, write_fd = os.pipe()
                stderr_inode = pipe_inode(read_fd)
                stderr_writer = os.fdopen(write_fd, "w")
                tg.start_soon(self._pump_stderr, read_fd, stderr_done)
            timed_out = False
            transport = self._transport_factory(self.config, stderr_writer)
            try:
                with anyio.CancelScope(deadline=started + self.connect_timeout) as scope:
                    self._attempt_scope = scope
                    if self._stopping or self._restart_requested:
                        scope.cancel()
                    async with transport.connect_session(
                        transport_options=_TRANSPORT_OPTIONS, **self._session_kwargs()
                    ) as session:
                        self._tap = getattr(transport, "tap", None)
                        if stderr_inode is not None:
                            self.pid = child_with_stderr(stderr_inode)
                        if stderr_writer is not None:
                            stderr_writer.close()  # the child holds its own copy now
                            stderr_writer = None
                        await self._negotiate(session, transport)
                        catalog = await self._fetch_catalog(session)
                        scope.deadline = math.inf
                        self._became_ready(session, catalog, anyio.current_time() - started)
                        if hold:
                            is_stdio = self.config.kind == "stdio"
                            await self._serve(session, stderr_done if is_stdio else None)
                timed_out = scope.cancelled_caught and self.state is not UpstreamState.READY
                timed_out = timed_out and not (self._stopping or self._restart_requested)
            finally:
                self._release_limiter()
                self._attempt_scope = None
                self._session = None
                self._tap = None
                if stderr_writer is not None:
                    stderr_writer.close()
                # Leaving connect_session under cancellation interrupts the transport's
                # own teardown (its disconnect awaits a task); finish it here, shielded
                # and bounded, so no subprocess or connection outlives this attempt.
                with anyio.move_on_after(10, shield=True):
                    async with anyio.create_task_group() as closing:
                        if self.pid is not None:
                            closing.start_soon(self._terminate_if_lingering, self.pid)
                        await transport.close()  # type: ignore[no-untyped-call]
                        closing.cancel_scope.cancel()
                self.pid = None
                # Let the dying process's last words arrive, then stop reading.
                with anyio.move_on_after(1.0):
                    await stderr_done.wait() if self.config.kind == "stdio" else None
                tg.cancel_scope.cancel()
        if timed_out:
            raise UpstreamTimeout(
                self.label, f"did not finish connecting within {self.connect_timeout:g}s"
            )

    def _session_kwargs(self) -> dict[str, Any]:
        return {
            "sampling_callback": self._on_sampling,
            "elicitation_callback": self._on_elicitation,
            "list_roots_callback": self._on_list_roots,
            "logging_callback": self._on_log,
            "message_handler": self._on_message,
            "client_info": CLIENT_INFO,
            "log_level": "debug",
        }

    async def _negotiate(self, session: ClientSession, transport: ClientTransport) -> None:
        mode = self.config.protocol
        if mode == "legacy" or transport.legacy_only:
            await session.initialize()
        elif mode == "auto":
            await negotiate_auto(session)
        else:
            await session.discover()
        self.protocol_version = session.protocol_version
        self.server_info = session.server_info
        self.capabilities = session.server_capabilities
        self.instructions = session.instructions

    async def _fetch_catalog(self, session: ClientSession) -> Catalog:
        caps = session.server_capabilities or types.ServerCapabilities()
        catalog = Catalog()
        if caps.tools is not None:
            catalog.tools = await _paginate(session.list_tools, "tools")
        if caps.resources is not None:
            catalog.resources = await _paginate(session.list_resources, "resources")
            catalog.templates = await _paginate(
                session.list_resource_templates, "resource_templates"
            )
        if caps.prompts is not None:
            catalog.prompts = await _paginate(session.list_prompts, "prompts")
        return catalog

    def _attempt_finished(self) -> None:
        self.attempts += 1
        self._notify_change()

    def _release_limiter(self) -> None:
        if self._holding_limiter and self._limiter is not None:
            self._holding_limiter = False
            self._limiter.release()

    def _became_ready(self, session: ClientSession, catalog: Catalog, seconds: float) -> None:
        self._release_limiter()
        # A new session is a new process or connection: what the breaker and the health
        # window learned about the old one (e.g. every in-flight call failing as it
        # died) says nothing about this one.  The breaker guards a live replica that
        # keeps failing; a dead one is the supervisor's business.
        self.breaker.reset()
        self.health = HealthWindow(self.health.thresholds)
        self._session = session
        self.catalog = catalog
        self.connects += 1
        self.connect_seconds = seconds
        self.ready_since = time.time()
        self.last_error = None
        self._set_state(UpstreamState.READY)
        if self._listener is not None:
            self._listener.catalog_changed(self)
        self._first_attempt.set()
        self._attempt_finished()

    async def _serve(self, session: ClientSession, stderr_done: anyio.Event | None) -> None:
        """Hold the session until it closes or a stop/reconnect is requested."""
        async with anyio.create_task_group() as tg:

            async def watch_stderr() -> None:
                assert stderr_done is not None
                await stderr_done.wait()
                self._broken = self._broken or "process exited"
                self._closed.set()

            async def watch_dispatcher() -> None:
                # The SDK has no public "connection closed" event; its dispatcher flag is
                # the authoritative sign for HTTP/SSE/in-memory sessions.
                dispatcher = getattr(session, "_dispatcher", None)
                while not getattr(dispatcher, "_closed", False):  # noqa: ASYNC110
                    await anyio.sleep(0.5)
                self._broken = self._broken or "connection closed"
                self._closed.set()

            if stderr_done is not None:
                tg.start_soon(watch_stderr)
            tg.start_soon(watch_dispatcher)
            tg.start_soon(self._refresh_loop, session)
            tg.start_soon(self._probe_loop, session)
            if self.is_modern:
                tg.start_soon(self._listen_for_changes, session)
            elif self._resource_subs:
                tg.start_soon(self._resubscribe, session)
            await self._closed.wait()
            tg.cancel_scope.cancel()
        if self._broken and not (self._stopping or self._restart_requested):
            logger.warning("upstream %s: %s", self.name, self._broken)

    async def _probe_loop(self, session: ClientSession) -> None:
        """Active health probe every ``health.interval``: ping on handshake-era sessions,
        ``server/discover`` on 2026-07-28 ones (which have no ping)."""
        interval = self.config.health.interval
        while True:
            await anyio.sleep(interval)
            started = self._clock()
            try:
                with anyio.fail_after(self.health_timeout):
                    if self.is_modern:
                        await session.send_discover(self.protocol_version or "")
                    else:
                        await session.send_ping()
            except Exception as exc:  # noqa: BLE001 - a failed probe is a health fact
                self.health.record_probe(self._clock(), False)
                logger.info("upstream %s: health probe failed: %s", self.label,
                            describe_error(exc) or "timed out")
            else:
                self.health.record_probe(self._clock(), True,
                                         (self._clock() - started) * 1000)
            self.status()
            self._notify_change()

    async def _refresh_loop(self, session: ClientSession) -> None:
        while True:
            await self._catalog_dirty.wait()
            self._catalog_dirty = anyio.Event()
            try:
                with anyio.fail_after(self.call_timeout):
                    self.catalog = await self._fetch_catalog(session)
            except Exception as exc:  # noqa: BLE001 - keep the previous catalog
                logger.warning("upstream %s: catalog refresh failed: %s", self.name,
                               describe_error(exc))
                continue
            if self._listener is not None:
                self._listener.catalog_changed(self)
            self._notify_change()

    async def _listen_for_changes(self, session: ClientSession) -> None:
        """On 2026-07-28 sessions, change notifications and resource updates come only on
        a ``subscriptions/listen`` stream; it is reopened whenever the set of subscribed
        resources changes (a stream's filter is fixed when it opens)."""
        from mcp.client.subscriptions import ResourceUpdated, listen

        caps = session.server_capabilities or types.ServerCapabilities()
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        while True:
            self._relisten = anyio.Event()
            uris = frozenset(self._resource_subs)
            if not (tools or prompts or resources or uris):
                await self._relisten.wait()
                continue
            try:
                async with anyio.create_task_group() as tg:

                    async def reopen_when_asked(scope: anyio.CancelScope) -> None:
                        await self._relisten.wait()
                        scope.cancel()

                    tg.start_soon(reopen_when_asked, tg.cancel_scope)
                    async with listen(session, tools_list_changed=tools,
                                      prompts_list_changed=prompts,
                                      resources_list_changed=resources,
                                      resource_subscriptions=sorted(uris)) as subscription:
                        self._listen_acked, self._listen_error = uris, None
                        self._notify_change()
                        async for event in subscription:
                            if isinstance(event, ResourceUpdated):
                                if self._listener is not None:
                                    self._listener.resource_updated(self, str(event.uri))
                            else:
                                self._catalog_dirty.set()
                    tg.cancel_scope.cancel()
            except Exception as exc:  # noqa: BLE001 - the upstream does not offer listen
                self._listen_acked, self._listen_error = None, describe_error(exc)
                self._notify_change()
                logger.debug("upstream %s: no listen stream: %s", self.name, self._listen_error)
                await self._relisten.wait()

    async def _resubscribe(self, session: ClientSession) -> None:
        """Replay hosts' resource subscriptions on a new handshake-era session."""
        for uri in sorted(self._resource_subs):
            try:
                with anyio.fail_after(self.call_timeout):
                    await session.subscribe_resource(uri)
            except Exception as exc:  # noqa: BLE001 - one URI must not stop the others
                logger.warning("upstream %s: could not resubscribe to %s: %s", self.name, uri,
                               describe_error(exc))

    async def _terminate_if_lingering(self, pid: int) -> None:
        """The SDK closes stdin and waits 2 s before it terminates; hosts often kill the
        gateway itself at 2 s.  After a short grace, terminate the server's process group,
        so that neither it nor its children outlive this session."""
        await anyio.sleep(STOP_GRACE)
        if is_alive(pid):
            signal_group(pid)

    def kill(self) -> None:
        """Terminate the stdio server's process group now (gateway shutting down).

        Marks the replica as stopping first: its supervisor must see the process die
        as the end, never as a crash to restart from (that would leave orphans behind a
        gateway that is exiting)."""
        self._stopping = True
        if self.pid is not None:
            signal_group(self.pid)

    async def _pump_stderr(self, fd: int, done: anyio.Event) -> None:
        os.set_blocking(fd, False)
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    break
                self.stderr.feed(data)
        finally:
            self.stderr.flush()
            os.close(fd)
            done.set()

    def _set_state(self, state: UpstreamState) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        if state is not UpstreamState.READY:
            self.ready_since = None if state is not UpstreamState.STOPPED else self.ready_since
        level = logging.WARNING if state in (UpstreamState.FAILED,) else logging.INFO
        logger.log(level, "upstream %s: %s -> %s%s", self.name, previous, state,
                   f" ({self.last_error})" if self.last_error and state != "ready" else "")
        if self._listener is not None:
            self._listener.state_changed(self)
            self._listener.transition(
                self, str(state), f"{previous} -> {state}"
                + (f": {self.last_error}" if self.last_error and state is not
                   UpstreamState.READY else ""))
        self._notify_change()

    # -- requests -------------------------------------------------------------

    async def request(
        self, what: str, front: FrontCall | None, op: Callable[[ClientSession], Awaitable[T]]
    ) -> T:
        """Run ``op`` on the live session, mapping transport faults into ``UpstreamError``.

        Error *responses* from the upstream (``MCPError`` with the upstream's code and
        message) propagate unchanged, so the host sees what the upstream said.
        """
        session = self.session
        if session is None:
            raise UpstreamUnavailable(self.label, self.unavailable_reason())
        started = self._clock()
        self.active += 1
        ok = False
        with self.inflight.track(front):
            try:
                result = await op(session)
                ok = True
                return result
            except MCPError as exc:
                if exc.error.code == types.CONNECTION_CLOSED:
                    self._mark_broken(f"connection closed during {what}")
                    raise UpstreamRequestFailed(
                        self.label, f"connection closed during {what}{self._stderr_hint()}"
                    ) from exc
                if exc.error.code == types.REQUEST_TIMEOUT:
                    raise UpstreamTimeout(
                        self.label, f"{what} did not answer within {self.call_timeout:g}s "
                        "(the request was cancelled upstream)"
                    ) from exc
                ok = True  # an error *response*: the upstream is alive and answering
                raise
            except _TRANSPORT_ERRORS as exc:
                self._mark_broken(f"transport failed during {what}: {describe_error(exc)}")
                raise UpstreamRequestFailed(
                    self.label, f"transport failed during {what}: {describe_error(exc)}"
                ) from exc
            finally:
                self.active -= 1
                self._record(ok, started)

    def _record(self, ok: bool, started: float) -> None:
        now = self._clock()
        latency_ms = (now - started) * 1000
        self.health.record(now, ok, latency_ms)
        if ok:
            self.breaker.record_success(now)
            self.ewma_ms = latency_ms if self.ewma_ms is None else (
                EWMA_ALPHA * latency_ms + (1 - EWMA_ALPHA) * self.ewma_ms)
        else:
            self.breaker.record_failure(now)

    def _stderr_hint(self) -> str:
        tail = [line for line in self.stderr.tail(3) if line.strip()]
        return f"; stderr: {' / '.join(tail)}" if tail and self.config.kind == "stdio" else ""

    def _mark_broken(self, reason: str) -> None:
        self._broken = self._broken or reason
        self._closed.set()

    def unavailable_reason(self) -> str:
        state = self.state
        if state is UpstreamState.DISABLED:
            return "is disabled; enable it with gateway_enable_server"
        if state is UpstreamState.STARTING:
            return "is still starting"
        if state is UpstreamState.RECONNECTING:
            retry = ""
            if self.next_retry_at is not None:
                retry = f", next attempt in {max(0.0, self.next_retry_at - time.time()):.1f}s"
            return f"is reconnecting ({self.last_error or 'connection lost'}{retry})"
        if state is UpstreamState.FAILED:
            return f"has failed: {self.last_error}"
        return f"is {state}"

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, front: FrontCall | None
    ) -> types.CallToolResult | types.InputRequiredResult:
        progress = front.progress if front is not None and front.session is not None else None

        async def op(session: ClientSession) -> Any:
            return await session.call_tool(  # type: ignore[misc]
                name,
                arguments,
                read_timeout_seconds=self.call_timeout,
                progress_callback=progress,
                meta=front.meta if front else None,  # type: ignore[arg-type]
                input_responses=front.input_responses if front and self.is_modern else None,
                request_state=front.request_state if front and self.is_modern else None,
                allow_input_required=True,
            )

        return await self.request(f"tools/call '{name}'", front, op)

    async def call_tool_raw(
        self, params: dict[str, Any], front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """``tools/call`` with ``params`` as JSON, answered as JSON (the stdio express lane).

        The same session, stamp, timeout, cancellation and bookkeeping as
        ``call_tool``; only the typed result models are skipped (their validation and
        re-encoding cost more than the rest of a relayed call).  ``params`` is sent as
        given after this session's own ``_meta`` stamp (era, client info, capabilities).
        """
        name = params["name"]

        async def op(session: ClientSession) -> dict[str, Any]:
            # A copy per attempt: the stamp writes into _meta, and a retry may go to a
            # replica of another era.
            data: dict[str, Any] = {"method": "tools/call", "params": {
                **params, "_meta": dict(params.get("_meta") or {})}}
            opts: CallOptions = {"timeout": self.call_timeout}
            session._stamp(data, opts)  # the negotiated era's envelope, as send_request does
            tap = self._tap
            if tap is not None:  # stdio: beside the session, on the same pipe
                return await tap.request("tools/call", data["params"], self.call_timeout,
                                         on_progress)
            opts.setdefault("headers", {}).setdefault(MCP_NAME_HEADER, encode_header_value(name))
            if on_progress is not None:
                opts["on_progress"] = on_progress
            return await session._dispatcher.send_raw_request("tools/call", data["params"], opts)

        return await self.request(f"tools/call '{name}'", front, op)

    async def list_catalog(self) -> Catalog:
        """List everything the upstream offers now (live, not the cached catalog)."""
        return await self._with_timeout("catalog listing", None, self._fetch_catalog)

    async def read_resource(
        self, uri: str, front: FrontCall | None
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        async def op(session: ClientSession) -> Any:
            if self.is_modern and front is not None:
                return await session.read_resource(
                    uri,
                    meta=front.meta,  # type: ignore[arg-type]
                    input_responses=front.input_responses,
                    request_state=front.request_state,
                    allow_input_required=True,
                )
            return await session.read_resource(uri, meta=front.meta if front else None)  # type: ignore[arg-type]

        return await self._with_timeout(f"resources/read '{uri}'", front, op)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, front: FrontCall | None
    ) -> types.GetPromptResult | types.InputRequiredResult:
        async def op(session: ClientSession) -> Any:
            if self.is_modern and front is not None:
                return await session.get_prompt(
                    name,
                    arguments,
                    meta=front.meta,  # type: ignore[arg-type]
                    input_responses=front.input_responses,
                    request_state=front.request_state,
                    allow_input_required=True,
                )
            return await session.get_prompt(name, arguments, meta=front.meta if front else None)  # type: ignore[arg-type]

        return await self._with_timeout(f"prompts/get '{name}'", front, op)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        async def op(session: ClientSession) -> types.CompleteResult:
            return await session.complete(ref, argument, context_arguments=context_arguments)

        return await self._with_timeout("completion/complete", None, op)

    async def subscribe(self, uri: str) -> None:
        """Receive ``resource_updated`` for ``uri`` (now, and after every reconnect)."""
        if self.session is None:
            raise UpstreamUnavailable(self.label, self.unavailable_reason())
        self._resource_subs.add(uri)
        if self.is_modern:
            self._relisten.set()
            acked = await self.wait_until(
                lambda: self._listen_error is not None
                or (self._listen_acked is not None and uri in self._listen_acked),
                within=self.call_timeout,
            )
            if self._listen_error is not None or not acked:
                self._resource_subs.discard(uri)
                raise UpstreamRequestFailed(
                    self.label, f"did not accept a subscription to '{uri}': "
                               f"{self._listen_error or 'no acknowledgement in time'}")
            return

        async def op(session: ClientSession) -> Any:
            return await session.subscribe_resource(uri)

        try:
            await self._with_timeout(f"resources/subscribe '{uri}'", None, op)
        except BaseException:
            self._resource_subs.discard(uri)
            raise

    async def unsubscribe(self, uri: str) -> None:
        self._resource_subs.discard(uri)
        if self.is_modern:
            self._relisten.set()
            return

        async def op(session: ClientSession) -> Any:
            return await session.unsubscribe_resource(uri)

        await self._with_timeout(f"resources/unsubscribe '{uri}'", None, op)

    async def _with_timeout(
        self, what: str, front: FrontCall | None, op: Callable[[ClientSession], Awaitable[T]]
    ) -> T:
        async def bounded(session: ClientSession) -> T:
            try:
                with anyio.fail_after(self.call_timeout):
                    return await op(session)
            except TimeoutError:
                raise MCPError(code=types.REQUEST_TIMEOUT, message="timed out") from None

        return await self.request(what, front, bounded)

    # -- callbacks from the upstream (run in its receive loop: never block) ----

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        caller = self.inflight.sole()
        if caller is not None:
            with contextlib.suppress(Exception):
                await caller.log(params)
            return
        logger.debug("upstream %s log [%s]: %s", self.name, params.level, params.data)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            logger.debug("upstream %s transport notice: %s", self.name, message)
            return
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self._catalog_dirty.set()
        elif (isinstance(message, types.ResourceUpdatedNotification)
              and self._listener is not None):
            self._listener.resource_updated(self, str(message.params.uri))

    def _asker(self, capability: str) -> FrontCall | types.ErrorData:
        caller = self.inflight.sole() or self.inflight.first_able(capability)
        if caller is None or not caller.can_ask(capability):
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"the gateway has no connected host that supports {capability} "
                "for this request",
            )
        return caller

    async def _on_sampling(
        self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> Any:
        caller = self._asker("sampling")
        if isinstance(caller, types.ErrorData):
            return caller
        try:
            return await caller.create_message(params)
        except MCPError as exc:
            return exc.error

    async def _on_elicitation(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> Any:
        caller = self._asker("elicitation")
        if isinstance(caller, types.ErrorData):
            return caller
        try:
            return await caller.elicit(params)
        except MCPError as exc:
            return exc.error

    async def _on_list_roots(self, ctx: ClientRequestContext) -> Any:
        caller = self._asker("roots")
        if isinstance(caller, types.ErrorData):
            return types.ListRootsResult(roots=[])
        try:
            return await caller.list_roots()
        except MCPError as exc:
            return exc.error


async def _paginate(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):  # a server that never stops paging is a bug, not a catalog
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await fetch(params=params)
        items.extend(getattr(result, attr))
        cursor = result.next_cursor
        if not cursor:
            break
    return items
