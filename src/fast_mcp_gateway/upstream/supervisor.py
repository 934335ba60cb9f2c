"""Supervision of one replica's connection: process, connect, hold, restart.

``Supervisor.run()`` connects (spawning the process for stdio), negotiates the
protocol era, fetches the catalog, then holds the session until it closes (process
exit, transport error, reconnect/disable/stop request; holding.py: the watchers and the
health probe that run meanwhile).  An unexpected close or a failed connect is retried
with exponential backoff and jitter; ``crash_limit`` failures within ``crash_window``
seconds park the replica as ``failed`` until ``reconnect()``.  A timeout or an
``unreachable`` remote is no crash (never parked); nor is a session the server no
longer knows (HTTP 404: ``http_session_end.SessionEnd.forgotten``), which is renewed
at once (``RestartPolicy.renewal_delay``: backing off only when it happens again and
again).

The supervisor knows nothing of requests, asks or subscriptions: the replica that
owns it passes them in through ``SupervisorHooks``.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING, TextIO, cast

import anyio
import anyio.abc
import mcp_types as types
from mcp import ClientSession
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import SignInRequired, UpstreamTimeout
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.failures import (
    connect_timeout_text,
    explain_connect_failure,
    remedy,
    unavailable_text,
)
from fast_mcp_gateway.upstream.holding import HealthProbe, SupervisorHooks, hold, settle
from fast_mcp_gateway.upstream.loops import GatewayLoop, Lineage, open_told
from fast_mcp_gateway.upstream.model import (
    Catalog,
    RestartPolicy,
    StderrTail,
    UpstreamState,
    needs_sign_in,
    unreachable,
)
from fast_mcp_gateway.upstream.processes import (
    CLOSE_WITHIN,
    ConnectWatch,
    CountingSink,
    child_with_stderr,
    claim_early,
    close_finally,
    open_stderr,
    signal_group,
)
from fast_mcp_gateway.upstream.session import (
    CatalogFetcher,
    ConnectFailed,
    Era,
    StepFailed,
    negotiate,
)
from fast_mcp_gateway.upstream.sign_in import wait_signed_in
from fast_mcp_gateway.upstream.stats import ReplicaAccounting
from fast_mcp_gateway.upstream.stdio_tap import STOP_GRACE
from fast_mcp_gateway.upstream.transitions import tell_transition
from fast_mcp_gateway.upstream.transports import TransportFactory, default_transport, fit_transport

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport

    from fast_mcp_gateway.upstream.http_session_end import SessionEnd
    from fast_mcp_gateway.upstream.transports import SideDoor

logger = logging.getLogger(__name__)

_LAST_WORDS = 1.0  # how long a dying stdio server's stderr is read after its session


class Supervisor:
    """The supervised connection of one replica (see the module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        label: str,
        connect_timeout: float,
        accounting: ReplicaAccounting,
        hooks: SupervisorHooks,
        transport_factory: TransportFactory,
        restart: RestartPolicy,
        rng: random.Random,
        limiter: anyio.CapacityLimiter | None,
        era: Era | None = None, lineage: Lineage | None = None,
    ) -> None:
        self.config, self.era = config, era or Era(config.protocol or "auto")
        self.name = config.name
        self.label = label
        self.connect_timeout = connect_timeout
        self.health_timeout = config.timeouts.health or 5.0
        self._stats, self._hooks = accounting, hooks
        self._transport_factory = transport_factory
        self._restart = restart
        self._rng, self._limiter = rng, limiter
        self._holding_limiter = False

        self.state = UpstreamState.STARTING
        self._last_error: str | None = None
        self.catalog = Catalog()
        self.stderr = StderrTail(config.stderr_lines)
        self.next_retry_at: float | None = None  # wall clock
        self.pid: int | None = None  # the stdio server's process, when known
        self.protocol_version: str | None = None
        self.server_info: types.Implementation | None = None
        self.capabilities: types.ServerCapabilities | None = None
        self.instructions: str | None = None
        self._session: ClientSession | None = None
        self._transport: ClientTransport | None = None  # the latest attempt's (its facts)
        self.tap: SideDoor | None = None  # the session's raw side door (express lanes)
        self.end: SessionEnd | None = None  # a streamable-HTTP session's (its 404s)
        self._enabled = config.enabled
        self._stopping = self._restart_requested = False
        self._wake, self._first_attempt, self._closed = anyio.Event(), anyio.Event(), anyio.Event()
        self._attempt_scope: anyio.CancelScope | None = None
        self._broken = self._lost = cast("str | None", None)  # _lost: the server forgot it
        self.fetch_catalog = CatalogFetcher(label)
        self._step = self._notice = cast("str | None", None)  # connect step; skipped error
        self._violations = self._timeouts = 0  # protocol errors (attempt); timeouts in a row
        self._timed_out = self._unreachable = False  # last attempt: at its deadline / no one there
        self._stderr = CountingSink(self.stderr)  # its bytes: progress while connecting
        self._lineage, self._loop = lineage or Lineage(), cast("str | None", None)  # loops.py
        self._signed_out = self._out = cast("SignInRequired | None", None)  # auth: oauth

    # -- state ------------------------------------------------------------------

    @property
    def is_modern(self) -> bool:
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def session(self) -> ClientSession | None:
        """The live session; None once it broke, even before the loop noticed."""
        if self.state is not UpstreamState.READY or self._closed.is_set():
            return None
        return self._session

    @property
    def down(self) -> bool:
        """Whether its last attempts found no one there (refused, unresolvable) or
        timed out: a server that is down, not a session that just ended."""
        return self._unreachable or self._timeouts > 0

    @property
    def longest_attempt(self) -> float:
        """How long a fresh attempt (a reconnect's: its first window) may last: its connect
        deadline with every extension, then its teardown, and a margin for the spawn --
        what a caller waiting for its outcome allows."""
        return ConnectWatch.longest(self.connect_timeout) + CLOSE_WITHIN + _LAST_WORDS + 5

    async def wait_first_attempt(self) -> None:
        await self._first_attempt.wait()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @last_error.setter
    def last_error(self, text: str | None) -> None:  # masked once: every reader gets this
        self._last_error = None if text is None else mask_text(text)

    def unavailable_reason(self) -> str:
        ended = (self._broken or "connection lost") if self._closed.is_set() else None
        return unavailable_text(self.state, self.name, self.last_error, self.next_retry_at,
                                ended)

    def stderr_hint(self) -> str:
        tail = [line for line in self.stderr.tail(3) if line.strip()]
        return f"; stderr: {' / '.join(tail)}" if tail and self.config.kind == "stdio" else ""

    def protocol_error(self, reason: str, fatal: bool) -> None:
        """The stdio reader saw a framing or encoding violation: count it, say so in
        ``last_error``; a fatal one ends the session (then the loop restarts it)."""
        self._stats.protocol_errors += 1
        self._violations += 1
        if self._violations == 1 and not fatal:  # a fatal one is logged as the session ends
            logger.warning("upstream %s: %s", self.label, reason)
        else:
            logger.debug("upstream %s: %s", self.label, reason)
        if fatal:
            self.mark_broken(reason)
        elif self.state is UpstreamState.READY:
            self.last_error = reason
        else:
            self._notice = self._notice or reason  # the first one: the one to quote
        self._hooks.notify()

    def session_lost(self, reason: str) -> None:
        """The server no longer knows the held session: end it (a new one follows)."""
        self._lost = self._lost or reason
        self.mark_broken(reason)

    def signed_out_held(self, required: SignInRequired) -> None:
        """Signed out while its session is held: new requests are refused in its words;
        those in flight finish, then the session ends (``upstream/sign_in.py``)."""
        if self.state is UpstreamState.READY:
            self._out, self.last_error = required, required.detail
            self._set_state(UpstreamState.SIGNED_OUT)
            self.mark_broken(required.detail)

    def mark_broken(self, reason: str) -> None:
        """End the held session (the supervisor reconnects); the first reason wins."""
        self._broken = self._broken or reason
        self._closed.set()

    # -- control ----------------------------------------------------------------

    def reconnect(self) -> None:
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

    def kill(self) -> None:
        """Terminate the process group now (the gateway is exiting).  Marks the replica
        as stopping first: the loop must see the death as the end, never as a crash to
        restart from (that would leave orphans behind an exiting gateway)."""
        self._stopping = True
        if self.pid is not None:
            signal_group(self.pid)

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        failures: deque[float] = deque()
        renewals: deque[float] = deque()  # sessions the server forgot, lately
        attempt = 0
        try:
            while not self._stopping:
                self._wake = anyio.Event()
                if self._restart_requested:  # a fresh start: no backoff, no doubled window
                    attempt, self._timeouts = 0, 0
                    failures.clear()
                if not self._enabled:
                    self._set_state(UpstreamState.DISABLED)
                    self._first_attempt.set()
                    await self._wake.wait()
                    continue
                self._restart_requested, connects = False, self._stats.connects
                error: str | None = None
                lost = False  # the server forgot the session: renewed, no crash
                self._stats.restarts += bool(self._stats.connects or self._stats.attempts)
                try:
                    await self._attempt(hold=True)
                except Exception as exc:  # noqa: BLE001 - every upstream fault is contained
                    if not (self._stopping or self._restart_requested):  # else superseded
                        error = self.last_error = self._loop or self._explain_failure(exc)
                        self._attempt_finished()
                        if self._timed_out:
                            self._timeouts += 1
                else:
                    if not (self._stopping or self._restart_requested):
                        error = self._explain_failure(None, self._broken or "connection closed")
                        lost = self._lost is not None
                finally:
                    self._first_attempt.set()
                if self._stopping:
                    break
                if self._restart_requested:
                    continue
                if (signed_out := self._signed_out) is not None:  # no failure: a wait
                    self.last_error = signed_out.detail
                    self._set_state(UpstreamState.SIGNED_OUT)
                    await wait_signed_in(self.name, signed_out, self._wake)
                    self.last_error = None
                    continue
                if self._loop is not None:  # never retried: it stays a loop (loops.py)
                    self.last_error = self._loop
                    self._set_state(UpstreamState.FAILED)
                    await self._wake.wait()
                    continue
                self.last_error = error
                if not (self._timed_out or self._unreachable or lost):  # no crash
                    failures.append(time.monotonic())
                if self._restart.is_crash_loop(failures, time.monotonic()):
                    self.last_error = (f"{error} (gave up after {len(failures)} failures "
                                       f"within {self._restart.crash_window:.0f}s; restart it: "
                                       f"{remedy('restart', self.name)})")
                    self._set_state(UpstreamState.FAILED)
                    failures.clear()
                    await self._wake.wait()
                    attempt = 0
                    continue
                if self._stats.connects != connects:  # it was up: back off from the start
                    attempt = 0
                if lost:
                    delay = self._restart.renewal_delay(renewals, time.monotonic(), self._rng)
                else:
                    delay = self._restart.delay(attempt, self._rng)
                    attempt += 1
                self.next_retry_at = time.time() + delay
                self._set_state(UpstreamState.RECONNECTING)
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                self.next_retry_at = None
        finally:
            self._set_state(UpstreamState.STOPPED)
            self._first_attempt.set()

    async def probe(self) -> None:
        try:
            await self._attempt(hold=False)
        except Exception as exc:
            error = self._loop or self._explain_failure(exc)
            out = self._signed_out  # a person must sign in: a wait, as ``run`` says
            self.last_error = out.detail if out is not None else error
            self._set_state(UpstreamState.FAILED if out is None else UpstreamState.SIGNED_OUT)
            raise
        finally:
            self._first_attempt.set()

    def _explain_failure(self, exc: BaseException | None, text: str | None = None) -> str:
        self._unreachable = unreachable(exc)
        self._signed_out = needs_sign_in(exc) or self._out
        return explain_connect_failure(
            exc, text, config=self.config, stderr=self.stderr.current(40), step=self._step,
            notice=self._notice, violations=self._violations, transport=self._transport)

    async def _attempt(self, *, hold: bool) -> None:
        if self.state is not UpstreamState.READY:  # an enable starts: no lost session
            self._set_state(UpstreamState.STARTING if self._stats.attempts == 0 or self.state
                            is UpstreamState.DISABLED else UpstreamState.RECONNECTING)
        self._broken = self._lost = self._out = None
        self._closed = anyio.Event()
        self._step, self._notice, self._violations, self._loop = None, None, 0, None
        # Spawn-first: ``serve`` may have started this replica's process already.
        early = (claim_early(self.config) if self._transport_factory is default_transport
                 and not self._stats.attempts else None)
        if self._limiter is not None and early is None:
            # Bounds concurrent *spawns*; waiting here does not eat the connect timeout.
            await self._limiter.acquire()
            self._holding_limiter = True
        stderr_writer: TextIO | None = None
        stderr_done = anyio.Event()
        self._timed_out = False
        watch = ConnectWatch(self.connect_timeout * min(2 ** self._timeouts, 8),
                             lambda: self.pid, lambda: self._stderr.bytes, self.label)
        async with anyio.create_task_group() as tg:
            stderr_inode: int | None = None
            self.pid = early.process.pid if early is not None else None
            if self.config.kind == "stdio":
                stderr_inode, stderr_writer = open_stderr(
                    tg, early.stderr_fd if early else None, self._stderr, stderr_done)
            transport = self._transport = self._transport_factory(self.config, stderr_writer)
            options = fit_transport(transport, self, self._stats.idle, early and early.process)
            started = anyio.current_time()
            try:
                with anyio.CancelScope() as scope:
                    self._attempt_scope = scope
                    if self._stopping or self._restart_requested:
                        scope.cancel()
                    tg.start_soon(watch.run, scope, self._still_connecting)
                    async with transport.connect_session(
                        transport_options=options, **self._hooks.session_kwargs()
                    ) as session:
                        self.tap = getattr(transport, "tap", None)
                        self.end = getattr(transport, "end", None)
                        if self.tap is not None:  # its requests' progress is heard
                            self.tap.heard = self._stats.progressed
                        if stderr_inode is not None:
                            self.pid = child_with_stderr(stderr_inode)
                        if stderr_writer is not None:
                            stderr_writer.close()  # the child holds its own copy now
                            stderr_writer = None
                        catalog = await self._connect(session, transport)
                        watch.stop()
                        self._timeouts = 0
                        self._became_ready(session, catalog, anyio.current_time() - started)
                        if hold:
                            is_stdio = self.config.kind == "stdio"
                            await self._serve(session, stderr_done if is_stdio else None)
                self._timed_out = watch.fired and scope.cancelled_caught and not (
                    self._stopping or self._restart_requested)
            finally:
                self._lineage.forget(id(self))
                watch.stop()
                self._release_limiter()
                self._attempt_scope = None
                self._session = None
                self.tap = self.end = None
                if stderr_writer is not None:
                    stderr_writer.close()
                await close_finally(transport.close, self.pid, STOP_GRACE)
                self.pid = None
                # Let the dying process's last words arrive, then stop reading.
                with anyio.move_on_after(_LAST_WORDS):
                    await stderr_done.wait() if self.config.kind == "stdio" else None
                tg.cancel_scope.cancel()
        if self._timed_out:
            raise UpstreamTimeout(self.label, connect_timeout_text(  # a probe: no retry
                transport, self._step, watch, self.connect_timeout,
                self._timeouts if hold else None))

    def _still_connecting(self, elapsed: float) -> None:
        if self._stats.attempts == 0:  # a retry keeps showing why the last attempt failed
            self.last_error = ConnectWatch.extension_text(elapsed, self._step)
        self._hooks.notify()

    async def _connect(self, session: ClientSession, transport: ClientTransport) -> Catalog:
        """Negotiate the era and list the catalog; ``ConnectFailed`` names the step."""
        fetch = self.fetch_catalog
        try:
            self._step = "initialize"  # its requests and answer tell the gateways (loops.py)
            await open_told(self._lineage, id(self), session,
                            lambda: negotiate(session, transport, self.era), self._check_lineage)
            self.protocol_version = session.protocol_version
            self.server_info = session.server_info
            self.capabilities = session.server_capabilities
            self.instructions = session.instructions
            self._step = "the catalog listing"
            return await fetch(session)
        except StepFailed as exc:
            cause = self.tap.fatal if self.tap is not None else None  # the stdio reader's
            raise ConnectFailed(exc, cause) from exc

    def _check_lineage(self, meta: object) -> None:
        """Refuse a server whose opening answer (or a later ``server/discover``) names
        this gateway among the gateways behind it (``upstream/loops.py``)."""
        self._loop = self._lineage.refusal(id(self), meta, self.config, self.label)
        if self._loop is not None and self._session is not None:  # held: a probe's
            self.mark_broken(self._loop)
        elif self._loop is not None:
            raise GatewayLoop(self._loop)

    def _attempt_finished(self) -> None:
        self._stats.attempts += 1
        self._hooks.notify()

    def _release_limiter(self) -> None:
        if self._holding_limiter and self._limiter is not None:
            self._holding_limiter = False
            self._limiter.release()

    def _became_ready(self, session: ClientSession, catalog: Catalog, seconds: float) -> None:
        self._release_limiter()
        self._stats.new_session(seconds)
        self._session = session
        self.catalog = catalog
        self.last_error = self._notice  # a protocol error skipped while connecting
        self._set_state(UpstreamState.READY)
        self._hooks.catalog_changed()
        self._first_attempt.set()
        self._attempt_finished()

    async def _serve(self, session: ClientSession, stderr_done: anyio.Event | None) -> None:
        """Hold the session until it closes or a stop/reconnect is requested."""
        probe = HealthProbe(
            label=self.label, interval=self.config.health.interval, timeout=self.health_timeout,
            discover=self.protocol_version if self.is_modern else None, accounting=self._stats,
            ready=lambda: self.state is UpstreamState.READY, notify=self._hooks.notify,
            check=self._check_lineage, tell=self._lineage.tells(id(self)))
        await hold(session, ended=self._closed, end=self.mark_broken, stderr_done=stderr_done,
                   probe=probe, serve=self._hooks.serve)
        if self._lost is not None or self._out is not None:  # let those in flight end
            await settle(lambda: self._stats.active > 0, self._hooks.wait_until, bool(self._out))
        if self._broken and not (self._stopping or self._restart_requested):
            # Said once, at WARNING, by the state change that follows (ready ->
            # reconnecting, with the exit code and stderr): not here as well.
            logger.debug("upstream %s: %s", self.label, self._broken)

    def _set_state(self, state: UpstreamState) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        if state is not UpstreamState.READY and state is not UpstreamState.STOPPED:
            self._stats.ready_since = None
        tell_transition(self.label, previous, state, self.last_error, self._hooks)
