"""UpstreamManager: owns every ``Upstream`` and the merged, namespaced catalog.

It starts all upstreams concurrently (connects bounded by ``startup_concurrency``), waits
for each one's first attempt (bounded), and rebuilds the catalog (``routing/build.py``)
whenever an upstream's catalog or visibility changes.  An exposed name stays the same
while its upstream reconnects, or restarts with a new config (``replace_server``: the
new service offers the old catalog until its first attempt ends); only upstreams that
are ready, starting or reconnecting are exposed (disabled and failed ones leave the
catalog, with ``list_changed``).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import anyio
import mcp_types as types

from fast_mcp_gateway.config.schema import GatewayConfig, ServerConfig
from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS, startup_limit
from fast_mcp_gateway.errors import AdminError, UnknownServer
from fast_mcp_gateway.routing.bindings import NameBook
from fast_mcp_gateway.routing.build import EXPOSED_STATES, BuildLog, build_view
from fast_mcp_gateway.routing.isolation import ClientSessions
from fast_mcp_gateway.routing.lifecycle import (
    first_attempts,
    stop_or_retire,
    stop_service,
    tell_roots_changed,
)
from fast_mcp_gateway.routing.pinning import PinBook
from fast_mcp_gateway.routing.search import META_TOOL_NAMES
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView, changed_kinds
from fast_mcp_gateway.upstream.credentials import without_caller_headers
from fast_mcp_gateway.upstream.era_memory import EraBook
from fast_mcp_gateway.upstream.loops import Lineage
from fast_mcp_gateway.upstream.replica import (
    DEFAULT_RESTART,
    RestartPolicy,
    TransportFactory,
    Upstream,
    UpstreamState,
    default_transport,
)
from fast_mcp_gateway.upstream.roots import SoleHost
from fast_mcp_gateway.upstream.signals import ChangeSignal

T = TypeVar("T")

ChangeKind = str  # "tools" | "resources" | "prompts"
# (server, params, host): ``host`` is the key of the one host a per_client session
# serves (``FrontCall.host``), or None for a shared session's log (every host that asked).
LogListener = Callable[[str, types.LoggingMessageNotificationParams, Any], None]


class UpstreamManager:
    """Starts, supervises and routes to the configured upstream servers."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        connect_timeout: float = 10.0,
        call_timeout: float = 30.0,
        startup_concurrency: int | None = None,
        transport_factory: TransportFactory = default_transport,
        restart: RestartPolicy = DEFAULT_RESTART,
        redact_keys: Iterable[str] | None = None,
    ) -> None:
        self.config = config
        # What a call's credential arguments are found under (its error's echo, RECENT):
        # the setting its call records use, with a store or without.
        self.redact_keys = DEFAULT_REDACT_KEYS if redact_keys is None else tuple(redact_keys)
        self._connect_timeout = config.options.timeouts.connect or connect_timeout
        self._call_timeout = config.options.timeouts.call or call_timeout
        self._transport_factory = transport_factory
        self._restart = restart
        self._limiter = anyio.CapacityLimiter(startup_limit(startup_concurrency))
        self.services: dict[str, Service] = {}
        self._retiring: set[Service] = set()  # removed, stopping once their calls end
        self.view = CatalogView()
        self.build_log = BuildLog()  # what catalog builds told the operator, once each
        self.changed = ChangeSignal()  # notified after every catalog build
        self._listeners: list[Callable[[set[ChangeKind]], None]] = []
        self._resource_listeners: list[Callable[[str, str, str], None]] = []
        self._log_listeners: list[LogListener] = []
        self._transition_listeners: list[Callable[[str, str, str, str | None], None]] = []
        self._removed_listeners: list[Callable[[str], None]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stale = False  # a run() ended: it stopped every session for good
        self._reserved: frozenset[str] = frozenset()
        self.sole_host = SoleHost()  # the stdio gateway's one host (roots outside calls)
        self.pins = PinBook()
        self.names = NameBook()  # exposed name -> its component, for good (bindings.py)
        self.eras = EraBook()  # what ``protocol: auto`` learned, kept in the store
        self.lineage = Lineage()  # who this gateway is, for its opening answers (loops.py)
        self.startup_hold = math.inf  # seconds run() waits for first attempts
        self.only: frozenset[str] | None = None   # servers this process runs (restrict)
        for server in config.servers.values():
            self.services[server.name] = self._make_service(server)

    def _make_service(self, server: ServerConfig) -> Service:
        replicas = server.replica_configs()
        eras = self.eras.bind(server)  # one need per server, whichever replica learns it
        service = Service(server, [
            Upstream(
                # A per-caller server's catalog session has no caller: it lists without
                # the caller's headers (routing/isolation.py).
                without_caller_headers(replica_config),
                connect_timeout=self._connect_timeout, call_timeout=self._call_timeout,
                max_total=self.config.options.timeouts.max_total, listener=self,
                transport_factory=self._transport_factory, restart=self._restart,
                startup_limiter=self._limiter, lineage=self.lineage,
                replica=index,
                replicas=len(replicas),
                weight=weight,
                sole_host=self.sole_host,
                default_protocol=self.config.options.protocol,
                era_memory=eras, redact_keys=self.redact_keys,
            )
            for index, (replica_config, weight) in enumerate(replicas)
        ])
        if server.per_client:
            service.clients = ClientSessions(server, self._make_client, self._spawn,
                                             self._host_log, self.sole_host)
        return service

    def _make_client(self, config: ServerConfig, label: str,
                     declares: dict[str, Any] | None, host: Hashable) -> Upstream:
        """A per_client host's own session (no listener: it feeds no catalog or state;
        its logs between calls stay with it; roots outside calls are its host's)."""
        return Upstream(config, connect_timeout=self._connect_timeout,
                        sole_host=self.sole_host.owned_by(host),
                        call_timeout=self._call_timeout,
                        max_total=self.config.options.timeouts.max_total,
                        transport_factory=self._transport_factory, restart=self._restart,
                        startup_limiter=self._limiter, label=label, lineage=self.lineage,
                        default_protocol=self.config.options.protocol,
                        # The calls run here, so here is where a need is learned.
                        era_memory=self.eras.bind(config), declares=declares,
                        redact_keys=self.redact_keys)

    def _spawn(self, run: Callable[[], Any], name: str) -> None:
        """Start ``run`` in the manager's task group, outside the current request: a
        session opened during a host's call must not inherit that request's context
        (its access token, FastMCP's request variables) for the rest of its life."""
        if self._task_group is None:
            raise AdminError("the gateway is not running")
        tg = self._task_group
        contextvars.Context().run(lambda: tg.start_soon(run, name=name))

    @property
    def running(self) -> bool:
        """``run()`` is under way (the upstreams are supervised)."""
        return self._task_group is not None

    @property
    def replicas(self) -> list[Upstream]:
        """Every replica of every service, in config order."""
        return [r for service in self.services.values() for r in service.replicas]

    async def roots_changed(self) -> None:
        """The stdio host's roots changed: tell every live handshake-era upstream session
        (each then asks ``roots/list``, answered by ``sole_host``), per_client ones too."""
        await tell_roots_changed(self.services.values())

    # -- lifecycle ------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every upstream; report started once each made its first attempt, or
        after ``startup_hold`` seconds (0 when serving: the start-up gate holds hosts).

        Run again, it starts every server anew (``renew``)."""
        self.renew()
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            for upstream in self.replicas:
                tg.start_soon(upstream.run, name=f"upstream:{upstream.label}")
            with anyio.move_on_after(self.startup_hold):
                for upstream in self.replicas:
                    await upstream.wait_first_attempt()
            self._rebuild()
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                for service in [*self.services.values(), *self._retiring]:
                    stop_service(service)
                self._task_group = None
                self._stale = True

    def renew(self) -> None:
        """Once a run ended (library mode: another ``async with Client(gateway.server)``
        after the last one ended, or ``run_async`` again), every server's service made
        anew from its current config for the next run: the last run's end stopped its
        sessions for good (they answered ``stopped`` ever after).  Nothing otherwise.
        What the operator set as it ran stays: a server disabled (or enabled) at runtime,
        which its config does not say, and its drained replicas."""
        if self._stale:
            self._stale = False
            self.services = {name: self._renewed(service)
                             for name, service in self.services.items()}
            self._retiring.clear()
            self._rebuild()

    def _renewed(self, old: Service) -> Service:
        service = self._make_service(old.config)
        if service.enabled != old.enabled:
            service.set_enabled(old.enabled)
        service.draining = set(old.draining)
        return service

    def restrict(self, names: Iterable[str]) -> None:
        """Run only the servers ``names`` (a stdio ``serve --profile``: the profile's),
        now and through every configure, reconcile and runtime registration; the
        others are neither started nor seen by the admin operations.  Before ``run()``."""
        if self._task_group is not None:
            raise AdminError("restrict() is for before the gateway starts")
        self.only = frozenset(names)
        self.services = self.served(self.services)
        self._rebuild()

    def served(self, servers: Mapping[str, T]) -> dict[str, T]:
        """``servers`` this process runs (all of them unless ``restrict`` was called)."""
        only = self.only
        return {n: s for n, s in servers.items() if only is None or n in only}

    def add_server(self, server: ServerConfig) -> Service:
        """Start a new server at runtime (library/admin use)."""
        if server.name in self.services:
            raise AdminError(f"server '{server.name}' already exists")
        if self.only is not None and server.name not in self.only:
            raise AdminError(
                f"server '{server.name}' is outside the profile this gateway serves "
                f"(servers: {', '.join(sorted(self.only)) or 'none'}); a registration is "
                "kept and applies to gateways serving it, but is not started here")
        if self._task_group is None:
            raise AdminError("the gateway is not running")
        service = self._make_service(server)
        self.services[server.name] = service
        _run_replicas(self._task_group, service)
        return service

    async def remove_server(self, name: str, *, release: bool = True) -> None:
        """Drop a server (out of the catalog at once) and stop its replicas: now, waiting
        (bounded) for them to end, or, while they serve calls, once those calls ended.
        ``release``: its exposed names are free again (not for a restart)."""
        service = self.get(name)
        del self.services[name]
        if release:
            self.names.release(name)
        self._rebuild()
        for listener in self._removed_listeners:
            listener(name)
        await stop_or_retire(service, self._task_group, self._retiring)

    async def replace_server(self, server: ServerConfig, *, wait: bool = True) -> Service:
        """Restart a server with a new configuration (or start it, if new); returns once
        each replica made its first connect attempt (bounded by ``longest_attempt``;
        ``wait=False``: at once, the attempts under way).
        A change a running server takes as it runs (``Service.reconfigure``) is applied
        to it instead, and the same service returned; so is a server whose config (and
        running ``enabled``) is ``server`` already: nothing to change, nothing restarted
        (``gateway_reconnect_server`` is the restart)."""
        current = self.services.get(server.name)
        if current is not None and current.runs_as(server):
            return current
        if current is not None and current.reconfigure(server, [
                without_caller_headers(c) for c, _ in server.replica_configs()]):
            self._rebuild()
            return current
        if current is None:
            service = self.add_server(server)
        elif (tg := self._task_group) is None:
            raise AdminError("the gateway is not running")
        else:
            # The new service takes the old one's place at once, offering the catalog
            # hosts saw until its first attempt ends (``Service.catalog``): no list
            # without its tools, no list_changed unless the new catalog differs.
            service = self._make_service(server)
            if current.state in EXPOSED_STATES:
                service.previous = current.catalog
            service.carry(current)  # hosts' subscriptions: replayed on its first session
            self.services[server.name] = service
            self._rebuild()
            # Stopped first: a server may hold something exclusive (a port, a lock).
            await stop_or_retire(current, tg, self._retiring)
            if self.services.get(server.name) is not service or self._task_group is not tg:
                return service  # removed or replaced meanwhile, or the gateway stopped
            _run_replicas(tg, service)
        if wait:
            await first_attempts(service)
        return service

    def configure(self, servers: dict[str, ServerConfig]) -> None:
        """Set the servers before ``run()`` (e.g. merged with runtime registrations)."""
        if self._task_group is not None:
            raise AdminError("configure() is for before the gateway starts; use reconcile()")
        self.services = {name: self._make_service(server)
                         for name, server in self.served(servers).items()}
        self._rebuild()

    async def reconcile(self, desired: dict[str, ServerConfig]) -> dict[str, list[str]]:
        """Make the running servers match ``desired``: start new ones, stop removed ones,
        restart changed ones (or update them as they run); unchanged ones are untouched.
        Returns once every server started made its first connect attempt, all side by
        side (twenty added servers wait as long as the slowest, not the sum)."""
        report: dict[str, list[str]] = {"added": [], "removed": [], "restarted": [],
                                        "updated": [], "unchanged": []}
        desired = self.served(desired)
        for name in [n for n in self.services if n not in desired]:
            await self.remove_server(name)
            report["removed"].append(name)
        starting: list[Service] = []
        for name, server in desired.items():
            current = self.services.get(name)
            if current is None:
                starting.append(self.add_server(server))  # its first attempt runs meanwhile
                report["added"].append(name)
            elif current.config != server:
                replaced = await self.replace_server(server, wait=False)
                report["updated" if replaced is current else "restarted"].append(name)
                if replaced is not current:
                    starting.append(replaced)
            else:
                report["unchanged"].append(name)
        await first_attempts(*starting)
        return report

    def refresh_catalog(self) -> None:
        """Rebuild the exposed catalog now (after pins were approved or loaded)."""
        self._rebuild()

    def bind_names(self) -> None:
        """Keep every name given from now on (the start-up gate opened: hosts see them)."""
        self.names.deferred = False
        self._rebuild()

    @property
    def meta_names(self) -> frozenset[str]:
        """The search meta-tools' names, reserved unless every tool is listed."""
        options = self.config.options
        if options.exposure == "all" and all(p.exposure in (None, "all")
                                             for p in options.profiles.values()):
            return frozenset()
        return META_TOOL_NAMES

    def reserve_names(self, names: set[str] | frozenset[str]) -> None:
        """Tool names the gateway itself uses; upstream tools never take them."""
        self._reserved = frozenset(names)
        self._rebuild()

    def get(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownServer(name, self.services) from None

    # -- change propagation ---------------------------------------------------

    def on_change(self, listener: Callable[[set[ChangeKind]], None]) -> None:
        """Call ``listener(kinds)`` (must not block) when exposed lists change."""
        self._listeners.append(listener)

    def on_resource_updated(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(exposed_uri, server, uri)`` (must not block) on upstream
        resource updates (``uri``: the server's own)."""
        self._resource_listeners.append(listener)

    def on_removed(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(server)`` (must not block) when a server was removed."""
        self._removed_listeners.append(listener)

    def on_log(self, listener: LogListener) -> None:
        """Call ``listener(server, params, host)`` (must not block) for a log an upstream
        sent while no call was in flight on it (logs during a call go to that call's
        host); ``host`` is None for a shared session (module ``LogListener``)."""
        self._log_listeners.append(listener)

    def log(self, upstream: Upstream, params: types.LoggingMessageNotificationParams) -> None:
        self._host_log(upstream.name, params, None)

    def _host_log(self, server: str, params: types.LoggingMessageNotificationParams,
                  host: Any) -> None:
        for listener in self._log_listeners:
            listener(server, params, host)

    def catalog_changed(self, upstream: Upstream) -> None:
        self._rebuild()

    def state_changed(self, upstream: Upstream) -> None:
        self._rebuild()

    def on_transition(self, listener: Callable[[str, str, str, str | None], None]) -> None:
        """Call ``listener(server, replica, status, detail)`` (must not block)."""
        self._transition_listeners.append(listener)

    def transition(self, upstream: Upstream, status: str, detail: str | None) -> None:
        for listener in self._transition_listeners:
            listener(upstream.name, upstream.label, status, detail)

    def observed(self, upstream: Upstream) -> None:
        service = self.services.get(upstream.name)
        if service is not None:
            service.observed()

    def resource_updated(self, upstream: Upstream, uri: str) -> None:
        for exposed, (origin, _) in self.view.resources.items():
            if origin.server == upstream.name and origin.original == uri:
                for listener in self._resource_listeners:
                    listener(exposed, upstream.name, uri)
                return
        # A resource from a template (not listed): named as its template is.
        exposed = self.view.templated_uri(upstream.name, uri,
                                          upstream.config.effective_namespace)
        for listener in self._resource_listeners:
            listener(exposed, upstream.name, uri)

    def _rebuild(self) -> None:
        view = build_view(list(self.services.values()), self.view, names=self.names,
                          pins=self.pins, options=self.config.options,
                          reserved=sorted({*self._reserved, *self.meta_names}))
        self.build_log.built(self.view, view, lambda server: server in self.services and
                             self.services[server].state is UpstreamState.READY,
                             self.config.options)
        changed = changed_kinds(self.view, view)
        self.view = view
        self.changed.notify()
        if changed:
            for listener in self._listeners:
                listener(changed)

    # -- routing ----------------------------------------------------------------

    def route_tool(self, exposed: str) -> tuple[Service, types.Tool] | None:
        entry = self.view.tools.get(exposed)
        if entry is None:
            return None
        return self.services[entry[0].server], entry[1]

    def route_prompt(self, exposed: str) -> tuple[Service, types.Prompt] | None:
        entry = self.view.prompts.get(exposed)
        return None if entry is None else (self.services[entry[0].server], entry[1])


def _run_replicas(tg: anyio.abc.TaskGroup, service: Service) -> None:
    """Run each replica of ``service`` (its session loop) in ``tg``."""
    for upstream in service.replicas:
        tg.start_soon(upstream.run, name=f"upstream:{upstream.label}")
