"""Gateway: the FastMCP server that fronts every upstream (library mode entry point).

``Gateway(config)`` builds one FastMCP server with the ``GatewayProvider`` (the upstream
catalog; its lifespan runs the manager), the control plane (``admin.control``: reload,
route rules, audit, health history) and the admin operations as the ``gateway_*`` tools,
and what FastMCP does not forward by itself: ``list_changed`` to hosts of both eras,
resource subscriptions and ``resources/updated``, and ``completion/complete``.

Run it with ``await gateway.run_async(...)`` (stdio, streamable HTTP or SSE), or
use ``gateway.server`` in-process, e.g. ``fastmcp.Client(gateway.server)``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.models import InitializationOptions
from mcp.server.request_state import RequestStateSecurity
from mcp.server.stdio import stdio_server

from fast_mcp_gateway._compat import RoundStates, lifespan, low_level_server
from fast_mcp_gateway._version import GATEWAY_NAME, __version__
from fast_mcp_gateway.admin.context import LIBRARY, signal_actor
from fast_mcp_gateway.admin.control import ControlPlane
from fast_mcp_gateway.admin.listed import add_listed_tools, load_specs, mode_allows
from fast_mcp_gateway.admin.pin_worker import follow_pins
from fast_mcp_gateway.admin.report import ChangeReport
from fast_mcp_gateway.admin.scope import guard_admin_tools
from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.config.library import file_settings, library_settings
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import (
    GatewaySettings,
    Transport,
    bind_refusal,
    default_spool_dir,
)
from fast_mcp_gateway.errors import BackgroundTaskFailed, ConfigError
from fast_mcp_gateway.front.background import background
from fast_mcp_gateway.front.early import EarlyAnswer, Handover
from fast_mcp_gateway.front.host_requests import HostRequests
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.front.lane import StdioLane
from fast_mcp_gateway.front.lineage import OpeningAnswers
from fast_mcp_gateway.front.listing import ListCache
from fast_mcp_gateway.front.mrtr import Parking
from fast_mcp_gateway.front.profiles import check_profile, profile_servers
from fast_mcp_gateway.front.provider import GatewayProvider
from fast_mcp_gateway.front.reloaded import options_reloaded, routes_applied
from fast_mcp_gateway.front.server import (
    CallerStanding,
    Deferred,
    GatewayServer,
    StartupGate,
    track_current_host,
)
from fast_mcp_gateway.front.stdio import stdio_streams
from fast_mcp_gateway.front.task_ids import TaskIds
from fast_mcp_gateway.routing.lifecycle import stop_service
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.readiness import Readiness, wait_ready
from fast_mcp_gateway.routing.rules import RouteTable
from fast_mcp_gateway.store import Store, open_or_defer
from fast_mcp_gateway.store.deferred import UNREAD, DeferredStore
from fast_mcp_gateway.store.spool import Spool, spool_target
from fast_mcp_gateway.telemetry.recorder import Recorder
from fast_mcp_gateway.ui.feeds import wired_bus
from fast_mcp_gateway.upstream.processes import kill_early
from fast_mcp_gateway.upstream.replica import (
    DEFAULT_RESTART,
    RestartPolicy,
    TransportFactory,
    default_transport,
)

if TYPE_CHECKING:  # the HTTP stack and prometheus are loaded when HTTP is served
    import socket

    from fast_mcp_gateway.http.app import GatewayApp, GroupSource
    from fast_mcp_gateway.telemetry.metrics import GatewayMetrics

logger = logging.getLogger(__name__)


class Gateway:
    """One FastMCP server in front of the configured upstream servers."""

    def __init__(
        self,
        config: GatewayConfig,
        settings: GatewaySettings | None = None,
        *,
        transport_factory: TransportFactory = default_transport,
        restart: RestartPolicy = DEFAULT_RESTART,
        name: str = GATEWAY_NAME,
        answer_first: bool = False,
        early: EarlyAnswer | None = None,
    ) -> None:
        s = self.settings = library_settings(config, settings)
        self.manager = UpstreamManager(
            config, connect_timeout=s.connect_timeout, call_timeout=s.call_timeout,
            transport_factory=transport_factory, startup_concurrency=s.startup_concurrency,
            restart=restart, redact_keys=s.redact_keys)
        self.hub = FrontHub()
        # A host that lists the catalog is a host to tell when it changes.
        self.provider = GatewayProvider(self.manager, on_listed=lambda: track_current_host(
            self.hub, self.provider))
        check_profile(self.settings.profile, config.options)
        self.provider.profile = self.manager.build_log.profile = self.settings.profile
        self.provider.failed = self._background_failed  # the manager's task, too
        # A stop waits (bounded) for admin operations in flight before the servers stop.
        self.provider.before_stop = self._admin_ops_ended
        self._http_server: Any = None  # uvicorn.Server while serving HTTP/SSE
        self._stop_stdio: anyio.CancelScope | None = None  # while serving stdio
        # A failed background task: serving stops, ``run_async`` raises it.
        self.failure: BackgroundTaskFailed | None = None
        self._init_options: InitializationOptions | None = None  # stdio's, once serving
        self.control = ControlPlane(config, self.settings, self.manager,
                                    apply_routes=self._apply_routes)
        self.provider.invalid = lambda: self.control.invalid_servers
        # Started without its store: a runtime registration's name is unknown so far.
        self.provider.pipeline.unread = lambda: (
            UNREAD if isinstance(self.control.store, DeferredStore) else "")
        # Alerts read the store and the supervisors' states; a state change is evaluated
        # at once.  ``alerts.on_transition`` is where in-process subscribers hook in.
        self.alerts = AlertEngine(
            lambda: self.control.config.alerts,
            lambda: {name: str(s.state) for name, s in self.manager.services.items()},
            lambda: self.control.store, instance_id=self.settings.instance_id)
        self.control.alerts = self.alerts
        self.manager.on_transition(self.alerts.poke)
        keys = [key.get_secret_value() for key in self.settings.request_state_keys]
        self.server = GatewayServer(
            name,
            # Shared keys: a host's next asking round may reach another gateway (else
            # FastMCP's default, a key of this process's own).  The express lanes seal
            # and open with the same (``RoundStates.of``).
            request_state_security=RequestStateSecurity(keys=keys) if keys else None,
            instructions=self.provider.instructions(),
            version=__version__,
            providers=[self.provider],
            lifespan=self._lifespan,
            # Relay upstream schemas as sent: inlining $refs would drop $defs.
            dereference_schemas=False,
        )
        self.server.use_provider(self.provider)
        self.provider.results.stamp = lambda: low_level_server(self.server).server_info_stamp
        if keys and self.server.tasks is not None:  # task ids any instance serves
            self.server.tasks.ids = TaskIds(keys, self.settings.instance_id)
        # The admin tools (behind search too in search exposure: the provider holds them
        # for search_tools) are hidden from non-admins now; they are listed from their
        # definitions (admin/listed.py: each is built on its first call), added after the
        # initialize answer in a stdio ``serve`` (``answer_first``).  All are added; lists
        # and search show what the current gateway.admin allows (a reload changes it).
        specs = load_specs()
        allowed = self.provider.own_shown = mode_allows(self.control, specs)
        self.admin_tool_names = guard_admin_tools(
            self.server, frozenset(spec["name"] for spec in specs),
            lambda: self.provider.pipeline.resolve_principal(), self.provider.lists_own_tool,
            allowed)
        self.provider.own_names = self.admin_tool_names  # an admin's typo is told the closest
        # A reload's gateway.admin or auth: what hosts may list (front/reloaded.py).
        self.control.on_options.append(functools.partial(options_reloaded, self.hub,
                                                         self.provider))
        self.manager.reserve_names(self.admin_tool_names)
        self.started = Deferred(add_listed_tools(
            self.server, self.control, lambda: self.provider.pipeline.resolve_principal(),
            lambda tool: self.provider.own.__setitem__(tool.name, tool), specs),
            then=self.provider.invalidate)  # a search index built meanwhile lacks them
        self._answer_first = False  # the stdio front runs ``started`` after its answer
        # stdio ``serve``: the host's first line, read (and perhaps answered) while the
        # server stack was imported; the stdio front reads it again (front/early.py).
        self._early = early
        if not answer_first:
            self.started.run_now()
        self.manager.on_change(self.hub.changed)
        # Composed from the servers' own: new hosts get the current servers' text.
        self.manager.on_change(lambda _: self._refresh_instructions())
        self.manager.on_transition(lambda *_: self._refresh_instructions())
        # A restricted token or a profile: the instructions of its servers alone; and
        # every opening answer names this gateway, never to aggregate itself (loops.py).
        self.server.add_middleware(OpeningAnswers(self.manager, self.provider.caller_servers,
                                                  early).install(self.server, self.settings))
        self.server.add_middleware(CallerStanding(self.hub, self.provider))
        self._metrics: GatewayMetrics | None = None  # made on first use (``metrics``)
        # Hosts wait at most startup_wait for the first connects (lists, and the lifespan
        # in library mode); whatever connects later is announced with list_changed.
        self.startup = StartupGate(self.manager, self.settings.startup_wait,
                                   lookup_wait=self.settings.call_timeout)
        self.server.gate = self.startup
        self.manager.names.deferred = True   # until the gate opens (routing/bindings.py)
        self.manager.startup_hold = self.settings.startup_wait
        self.events = wired_bus(self.manager, self.provider.pipeline.observers, self.alerts)
        from fast_mcp_gateway.front.sign_in_notice import SignInNotices
        from fast_mcp_gateway.upstream.sign_in import SignIns  # auth: oauth, outside requests

        self.sign_ins = SignIns(self.settings, lambda: self.control.store, self.manager)
        self.sign_in_notices = SignInNotices(self.hub, self.manager)  # a stdio host told
        s = self.settings  # MRTR: handshake-era upstreams' pushed requests, to 2026 hosts
        self.parking = Parking(s.ask_timeout, instance=s.instance_id, store=lambda: self.store,
                               db=s.db, record_calls=s.record_calls)
        self.parking.roots = self.manager.sole_host   # roots outside calls, and first
        self.manager.sole_host.ask_within = self.settings.ask_timeout
        self.provider.pipeline.parking = self.parking
        self.manager.on_resource_updated(self.hub.resource_updated)
        self.manager.on_removed(self.hub.server_removed)
        self.manager.on_log(self.hub.log)
        self.host_requests = HostRequests(self.manager, self.provider, self.hub,
                                          self.startup)
        self.host_requests.install(self.server)

    def _refresh_instructions(self) -> None:
        self.server.instructions = text = self.provider.instructions()
        if self._init_options is not None:  # stdio: what the host's initialize is told
            self._init_options.instructions = text

    @classmethod
    def from_file(cls, path: str | Path, settings: GatewaySettings | None = None) -> Gateway:
        """A gateway of the file at ``path`` (``load_config(path, partial=True)``), the
        file ``reload_config`` re-reads (``settings.config``)."""
        path, settings = file_settings(path, settings)   # TypeError for another type
        return cls(load_config(path, partial=True), settings)

    @property
    def config(self) -> GatewayConfig:
        """The running configuration (as of the last successful reload)."""
        return self.control.config

    @property
    def store(self) -> Store | None:
        """The open store while serving with call logging on, else ``None``."""
        return self.control.store

    @property
    def recorder(self) -> Recorder | None:
        return self.control.recorder

    @property
    def metrics(self) -> GatewayMetrics:
        """The Prometheus metrics (``/metrics``), made on first use: from then on they see
        every call through the pipeline (full path and express lane).  Stdio mode has no
        reader for them and never loads prometheus-client."""
        if self._metrics is None:
            from fast_mcp_gateway.http.metrics import feed, snapshot_of
            from fast_mcp_gateway.telemetry.metrics import GatewayMetrics

            self._metrics = GatewayMetrics()
            self._metrics.collect_snapshots(snapshot_of(
                self.manager, lambda: self.recorder, lambda: self.control.store_lost,
                self.provider.unknown_calls, lambda: self.control.invalid_servers,
                self.alerts.webhook.counts))
            feed(self._metrics, self.provider.pipeline.observers, self.manager)
        return self._metrics

    def _apply_routes(self, table: RouteTable) -> None:
        routes_applied(self.hub, self.provider, table)

    @asynccontextmanager
    async def _lifespan(self, server: FastMCP[Any]) -> AsyncIterator[dict[str, Any]]:
        self.provider.pipeline.stopping = False  # a run after request_stop(): not stopping
        self.sign_ins.bind()  # its tasks' (another Gateway made since set its own)
        if not self._answer_first:
            await self.started.run()
        tasks: list[Any] = [self.hub.run, self.host_requests.mover.run, self.startup.run,
                            self.parking.run, functools.partial(follow_pins, self.control),
                            self.sign_ins.run, self.sign_in_notices.run]
        s = self.settings
        store: Store | None = None
        recorder: Recorder | None = None
        if s.db is not None and s.record_calls:
            store = await open_or_defer(s.db)  # unreachable: started without, opened later
            spool = Spool(s.spool_dir or default_spool_dir(), spool_target(s.db))
            recorder = Recorder(store, retention_seconds=s.retention_days * 86400,
                                retention_rows=s.retention_rows, redact_keys=s.redact_keys,
                                instance_id=s.instance_id, spool=spool,
                                drain_timeout=s.shutdown_flush_timeout)
            self.provider.pipeline.recorder = recorder  # calls recorded
            self.provider.invalidate()
            tasks += [recorder.run, functools.partial(spool.run, store)]  # earlier spills
            await self.control.attach(store, recorder)  # a store away: opened later
        tasks += [*self.control.tasks(), self.alerts.run]
        try:
            async with background(*tasks, failed=self._background_failed):
                try:
                    yield {}
                finally:
                    if recorder is not None:
                        # A clean stop loses nothing: wait for the writer (shielded, so a
                        # cancelled serve still flushes), or with the store away spill what
                        # it holds; stopping it then drains the rest.  One budget for all.
                        await recorder.stopping(s.shutdown_flush_timeout,
                                                store_down=self.control.store_down)
        finally:
            if store is not None:  # from now on an operation's audit is spilled at once
                unfinished = self.control.unfinished()  # still running: spilled as such
                self.control.detach()
                self.provider.pipeline.recorder = None
                if recorder is not None and recorder.spool is not None and unfinished:
                    recorder.spool.hold_audit(unfinished, f"{len(unfinished)} admin "
                                              "operation(s) still running as it closed")
            if recorder is not None:
                if recorder.spool is not None:  # what the stop spilled: one file, one line
                    recorder.spool.write()
                level = logging.WARNING if recorder.dropped else logging.INFO
                logger.log(level, "call log closed: %d record(s) written, %d spilled, %d "
                           "dropped, %d failed", recorder.written, recorder.spilled,
                           recorder.dropped, recorder.failed_writes)
            if store is not None:
                await store.close()

    def _background_failed(self, task: str, error: Exception) -> None:
        """A background task failed, ending them all (call records, alerts, the change
        feed, config reloads): stop serving rather than answer on without them, so that
        a supervisor restarts the gateway (``run_async`` raises ``self.failure``)."""
        self.failure = BackgroundTaskFailed(task, error)
        self.request_stop()
        if self._stop_stdio is not None:
            self._stop_stdio.cancel()

    # -- running ------------------------------------------------------------------

    def http_app(self, transport: Transport = "http") -> GatewayApp:
        """The Starlette app for HTTP/SSE mode: MCP (rebinding-guarded), the REST API
        ``/api/v1``, ``/health``, ``/ready`` and ``/metrics``, with one lifespan; see
        ``http/app.py``.  From now on every call, list and admin tool is for the principal
        of its HTTP request (``app.access``)."""
        # /health answers at once, /ready says "starting" (lists wait at the start-up gate)
        self.manager.startup_hold = 0
        from fast_mcp_gateway.http.app import build_app
        from fast_mcp_gateway.http.health import health_group
        from fast_mcp_gateway.http.metrics import metrics_group
        from fast_mcp_gateway.ui.app import dashboard_group, favicon_group

        auth = self.config.options.auth
        groups: list[GroupSource] = [
            *health_group(self.control, self.startup),
            metrics_group(self.metrics, public=auth is None or auth.metrics_public,
                          host_checked=auth is None),
            dashboard_group(self.control, self.events,
                            secure_cookies=(self.settings.public_url or "").startswith("https:")),
            favicon_group()]
        from fast_mcp_gateway.http.express_lanes import express_lanes

        low = low_level_server(self.server)
        lane = express_lanes(self.server, self.provider, lambda: low.server_info_stamp,
                             RoundStates.of(self.server), self.settings.http_express_lane)
        app = build_app(self.server, self.control, self.settings, transport, groups=groups,
                        lane=lane, before_sessions_end=self._admin_ops_ended)
        app.state.startup_gate = self.startup  # for embedders that wait for first connects
        self.provider.pipeline.resolve_principal = app.access.current
        self.provider.pipeline.standing = app.access.standing
        return app

    async def reload_config(self) -> ChangeReport:
        """Re-read the config file; restart only what changed; keep everything on error
        (see ``ControlPlane.reload_config``; audited as the in-process actor)."""
        return await self.control.reload_config(LIBRARY)

    async def reload_on_signal(self, name: str) -> ChangeReport:
        """``reload_config`` on signal ``name``, audited as ``signal:<name>`` and logged."""
        return await self.control.reload_logged(signal_actor(name))

    async def wait_ready(self, within: float | None = 30.0) -> Readiness:
        """Wait (at most ``within`` s) for every upstream's first connect attempt; say
        which servers are ready, failed (why), still starting, disabled, invalid."""
        return await wait_ready(self.manager, within, self.control.invalid_servers)

    async def _admin_ops_ended(self) -> None:
        """A stop's bounded wait for admin operations in flight (``admin/in_flight.py``);
        the servers are stopped after it, which ends what those still running wait on (a
        first connect).  Over HTTP/SSE it runs as the app's lifespan begins to end, before
        the MCP sessions do: an admin tool's operation (shielded) held the session
        manager's exit, and the stop reached this wait only at the hard exit, 15 s on."""
        if await self.control.in_flight.ended():
            for service in list(self.manager.services.values()):
                stop_service(service)

    def kill_upstreams(self) -> None:
        """Terminate every stdio upstream's process group now (for signal handlers)."""
        self.provider.pipeline.stopping = True  # calls cut now: the stop's, not the host's
        for service in self.manager.services.values():
            service.kill()
        kill_early()  # started by ``serve`` before the gateway, not adopted yet

    async def _run_stdio(self, dashboard: socket.socket | None = None) -> None:
        """FastMCP's ``run_stdio_async``, but over threadless streams when possible.

        See ``stdio.py``: a pipe's lines are read and written on the event loop rather
        than through a worker thread per line, write and flush.
        """
        # Served: the lifespan does not wait for upstreams; the gate holds lists instead.
        self.manager.startup_hold = 0
        # ``serve --profile`` over stdio: the process is the profile, so the servers outside
        # it are not started (nor seen by its admin tools); over HTTP each has its endpoint.
        if (only := profile_servers(self.settings.profile, self.config.options)) is not None:
            self.manager.restrict(only)
        early = self._early.finish() if self._early is not None else Handover()
        async with stdio_streams(early.preread) as streams:
            if streams is None:  # a terminal or a file: the SDK's threaded streams
                async with anyio.create_task_group() as tg:
                    self._stop_stdio = tg.cancel_scope
                    if self.settings.dashboard is not None:
                        from fast_mcp_gateway.ui.standalone import serve_dashboard

                        await tg.start(functools.partial(
                            serve_dashboard, self.control, self.events,
                            self.settings.dashboard, sock=dashboard))
                    await self.server.run_async(transport="stdio", show_banner=False)
                    tg.cancel_scope.cancel()
                self._stop_stdio = None
                return
            reader, writer = streams
            self._answer_first = True  # started: after the answer, before the next line
            front = self.started.hold(reader, writer, early.answered)
            front.on_end = self._admin_ops_ended  # the host left: as at a stop
            low = low_level_server(self.server)
            lane = StdioLane(self.provider, lambda: low.server_info_stamp,
                             enabled=self.settings.express_lane, states=RoundStates.of(self.server),
                             lists=ListCache(self.server, self.provider),
                             lists_open=self.started.and_done(self.startup.opened))
            token = set_transport("stdio")
            # The one host: asked for roots an upstream wants outside any call.
            self.manager.sole_host.front = lane.host_front
            try:
                # pinned fastmcp 4.x: the same two steps run_stdio_async takes
                async with lifespan(self.server), anyio.create_task_group() as tg:
                    self._stop_stdio = tg.cancel_scope
                    await tg.start(functools.partial(lane.run, writer, low))
                    tg.start_soon(self.started.run_after, self.startup.opened)
                    if self.settings.dashboard is not None:
                        from fast_mcp_gateway.ui.standalone import serve_dashboard

                        await tg.start(functools.partial(
                            serve_dashboard, self.control, self.events,
                            self.settings.dashboard, sock=dashboard))
                    reader.intercept = lane.intercept
                    async with stdio_server(cast(Any, front), cast(Any, front)) as (read, write):
                        self._init_options = low.create_initialization_options()
                        await low.run(read, write, self._init_options)
                    tg.cancel_scope.cancel()
            finally:
                self._answer_first = False
                self._stop_stdio = None
                self.manager.sole_host.front = None
                reset_transport(token)

    async def run_async(self, transport: Transport | None = None,
                        sockets: list[socket.socket] | None = None,
                        dashboard: socket.socket | None = None) -> None:
        """Serve until the host goes away: stdio (default), streamable HTTP or SSE
        (on ``sockets`` when given, bound already: ``cli/serve.listen``).  Over stdio
        ``settings.dashboard`` is served beside it, on ``dashboard`` when given (bound
        already: ``cli/serve.listen_dashboard``).  A failed background task stops it:
        ``BackgroundTaskFailed`` is raised then."""
        self.failure = None  # a run again: the last one's failure was raised by it
        try:
            await self._serve(transport or self.settings.transport, sockets, dashboard)
        except Exception:
            if self.failure is None:
                raise  # else what the failed task's end raised on the way out: its own
        if self.failure is not None:
            raise self.failure

    async def _serve(self, transport: Transport, sockets: list[socket.socket] | None,
                     dashboard: socket.socket | None) -> None:
        if transport == "stdio":
            await self._run_stdio(dashboard)
            return
        refusal = bind_refusal(self.settings, transport=transport,
                               authenticated=self.config.options.auth is not None)
        if refusal is not None:  # library mode: no CLI refused it first
            raise ConfigError.single("GatewaySettings", None, "host", refusal)
        from fast_mcp_gateway.http.serving import uvicorn_server
        # uvicorn handles SIGINT/SIGTERM itself (cancelled, its lifespan logs a traceback)
        self._http_server = uvicorn_server(self.http_app(transport), self.settings,
                                           self.parking.stop)
        try:
            await self._http_server.serve(sockets=sockets)
        finally:
            self._http_server = None

    def request_stop(self) -> None:
        """Ask an HTTP/SSE gateway to stop gracefully (as SIGTERM does)."""
        self.provider.pipeline.stopping = True  # calls cut now: the stop's, not the host's
        if self._http_server is not None:
            self._http_server.should_exit = True
            self.events.close()  # live streams end now rather than hold the stop
