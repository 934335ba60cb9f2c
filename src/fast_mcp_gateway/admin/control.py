"""The control plane: what runs, from the config file plus the store's registrations.

``ControlPlane`` is the gateway's ``AdminContext``.  It owns the running configuration
(``config``; ``reload_config`` replaces it), the store while one is open (``attach`` /
``detach``), route rules (loaded into the call path through ``apply_routes``), the audit
sink, the health history writer and the config file watcher.  It knows no transport:
``Gateway`` builds it first and only then adapts the admin operations to MCP over it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from fast_mcp_gateway.admin.context import LIBRARY, Actor, require_store
from fast_mcp_gateway.admin.health_log import HealthLog
from fast_mcp_gateway.admin.models import ChangeReport
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.registrations import merge
from fast_mcp_gateway.config.schema import GatewayConfig, GatewayOptions, ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.rules import Route, RouteTable
from fast_mcp_gateway.store import Store
from fast_mcp_gateway.telemetry.recorder import Recorder, dumps_arguments
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

Task = Callable[..., Any]  # a background task: ``await task(task_status=...)``


class ControlPlane:
    """The gateway's control plane and the ``AdminContext`` admin operations run over."""

    def __init__(self, config: GatewayConfig, settings: GatewaySettings,
                 manager: UpstreamManager, *,
                 apply_routes: Callable[[RouteTable], None]) -> None:
        self.config = config
        self.settings = settings
        self.manager = manager
        self.store: Store | None = None  # open while serving, when call logging is on
        self.recorder: Recorder | None = None
        self._apply_routes = apply_routes
        self._reload_lock = anyio.Lock()
        self.reloads = ChangeSignal()  # notified after every reload attempt
        self.last_reload: ChangeReport | None = None
        self.health_log = HealthLog(lambda: self.store)
        manager.on_transition(self.health_log.record)

    @property
    def options(self) -> GatewayOptions:
        return self.config.options

    @property
    def file_servers(self) -> Mapping[str, ServerConfig]:
        return self.config.servers

    # -- the store's lifetime -------------------------------------------------------

    async def attach(self, store: Store, recorder: Recorder) -> None:
        """Take the opened store: its route rules and runtime registrations apply now."""
        self.store, self.recorder = store, recorder
        await self.load_routes()
        registrations = await store.servers()
        if registrations:
            desired, problems = merge(dict(self.config.servers), registrations,
                                    self.config.options.env_allow)
            for problem in problems:
                logger.warning("ignoring a runtime registration: %s", problem)
            self.manager.configure(desired)

    def detach(self) -> None:
        """Forget the store (it is about to close); history and audit stop recording."""
        self.store = self.recorder = None

    def tasks(self) -> list[Task]:
        """The background tasks to run while serving (after ``attach``, if at all)."""
        tasks: list[Task] = []
        if self.store is not None:
            tasks.append(self.health_log.run)
        interval = self.settings.reload_interval
        if self.settings.config is not None and interval > 0:
            tasks.append(functools.partial(self.watch_config, interval))
        return tasks

    async def health_flushed(self, within: float = 5.0) -> bool:
        return await self.health_log.flushed(within)

    # -- the AdminContext's writes --------------------------------------------------

    async def load_routes(self) -> None:
        rows = await require_store(self).routes()
        self._apply_routes(RouteTable(
            Route(id=r.id, pattern=r.pattern, match=r.match, target=r.target,
                  priority=r.priority) for r in rows))

    async def audit(self, actor: Actor, action: str, target: str | None,
                    arguments: Any = None, result: str | None = None) -> None:
        if self.store is None:
            return
        await self.store.add_audit(actor.id, action, target,
                                   None if arguments is None else dumps_arguments(
                                       arguments, frozenset(), self.settings.redact_keys),
                                   result)

    # -- reloading the config file ----------------------------------------------------

    async def reload_config(self, actor: Actor = LIBRARY) -> ChangeReport:
        """Re-read the config file; restart only what changed; keep everything on error.

        Runtime registrations still override the file (``merge``); the report is kept
        in ``last_reload`` and ``reloads`` is notified after every attempt.
        """
        async with self._reload_lock:
            path = self.settings.config
            if path is None:
                return ChangeReport(error="the gateway was not started from a config file")
            try:
                new = load_config(path)
            except ConfigError as exc:
                await self.audit(actor, "reload_config", str(path), None, f"rejected: {exc}")
                return self._reloaded(ChangeReport(error=str(exc)))
            registrations = await self.store.servers() if self.store is not None else []
            desired, problems = merge(dict(new.servers), registrations, new.options.env_allow)
            for problem in problems:
                logger.warning("ignoring a runtime registration: %s", problem)
            self.config = new
            report = ChangeReport.model_validate(await self.manager.reconcile(desired))
            await self.audit(actor, "reload_config", str(path), None,
                             report.model_dump_json(exclude={"error"}))
            return self._reloaded(report)

    def _reloaded(self, report: ChangeReport) -> ChangeReport:
        self.last_reload = report
        self.reloads.notify()
        return report

    async def watch_config(self, interval: float, *,
                           task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                           ) -> None:
        """Reload when the config file's modification time or size changes."""
        path = self.settings.config

        async def stamp() -> tuple[float, int] | None:
            if path is None:
                return None
            try:
                st = await anyio.Path(path).stat()
            except OSError:
                return None
            return st.st_mtime_ns, st.st_size

        # The baseline is taken before reporting started: an edit made right after
        # start-up must count as a change.
        last = await stamp()
        task_status.started()
        if path is None or interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            now = await stamp()
            if now is not None and now != last:
                last = now
                report = await self.reload_config(LIBRARY)
                if report.error:
                    logger.error("config reload rejected, keeping the running config: %s",
                                 report.error)
                else:
                    logger.info("config reloaded: %s", report.model_dump(exclude={"error"}))
