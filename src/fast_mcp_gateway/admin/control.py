"""The control plane: what runs, from the config file plus the store's registrations.

``ControlPlane`` is the gateway's ``AdminContext``.  It owns the running configuration
(``config``; ``reload_config`` replaces it), the store while one is open (``attach`` /
``detach``), route rules (loaded into the call path through ``apply_routes``), the audit
sink, the health history writer and the config file watcher.  It knows no transport:
``Gateway`` builds it first and only then adapts the admin operations to MCP over it.

``follow_changes`` applies what other gateways change in a shared store (PostgreSQL):
it long-polls the store's change feed and, for a change another gateway made, merges
the registrations over this gateway's file again and converges the running servers
(``converge``: start, stop, restart or enable/disable only what differs -- so applying a
change twice is harmless), reloads the route rules, or syncs the exposed-name bindings
another gateway released (``NameBook.sync``).  A full reconcile runs when the
feed cannot say what changed, after the database was unreachable, and every
``RECONCILE_SECONDS`` as the safety net.  Changes made through this gateway are applied
by the admin operation that made them and skipped here.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from fast_mcp_gateway.admin import applied, instance_lease
from fast_mcp_gateway.admin.clashes import NamespaceClashes, runtime_servers
from fast_mcp_gateway.admin.context import CONFIG_FILE, LIBRARY, Actor, require_store
from fast_mcp_gateway.admin.health_log import HealthLog
from fast_mcp_gateway.admin.held_audit import HeldAudit, write_entry
from fast_mcp_gateway.admin.in_flight import UNFINISHED, InFlight
from fast_mcp_gateway.admin.in_force import routes_in_force
from fast_mcp_gateway.admin.invalid import log_invalid, warn_overlong
from fast_mcp_gateway.admin.late_store import connect_later
from fast_mcp_gateway.admin.pin_worker import load_pins
from fast_mcp_gateway.admin.report import ChangeReport
from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.config.auth import RUNTIME_SERVERS, warn_unknown_servers
from fast_mcp_gateway.config.document import blank_file, file_stamp
from fast_mcp_gateway.config.loader import load_config, read_stamp
from fast_mcp_gateway.config.registrations import TOMBSTONE, as_stored, merge, registered
from fast_mcp_gateway.config.schema import (
    GatewayConfig,
    GatewayOptions,
    InvalidServer,
    ServerConfig,
)
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.routing.converge import configure_before_run, converge
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.rules import Route, RouteTable
from fast_mcp_gateway.store import AuditEntry, Registration, StorageError, Store, StoreUnavailable
from fast_mcp_gateway.store.deferred import DeferredStore
from fast_mcp_gateway.store.outage import StoreOutage
from fast_mcp_gateway.store.records import new_uid
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.telemetry.recorder import Recorder, dumps_arguments
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

Task = Callable[..., Any]  # a background task: ``await task(task_status=...)``
RESTART_ONLY = ("separator", "max_name_length", "timeouts", "protocol", "pinning",
                "exposure", "search", "profiles")
"""``gateway:`` options the routing manager and the catalog read from the config they
started with: a reload that changes one reports it (``restart_needed``) and logs it.
(``admin``, ``env_allow`` and ``auth``'s tokens follow a reload; adding ``auth`` to a
gateway started without it is logged on its own.)"""
_REGISTERS = ("add_server", "update_server", "remove_server")  # audited actions
RECONCILE_SECONDS = 30.0  # full reconcile of a shared store, whatever the feed said
POLL_WAIT = 5.0  # one long poll of the change feed (a change ends it at once)


class ControlPlane:
    """The gateway's control plane and the ``AdminContext`` admin operations run over."""

    def __init__(self, config: GatewayConfig, settings: GatewaySettings,
                 manager: UpstreamManager, *,
                 apply_routes: Callable[[RouteTable], None]) -> None:
        self.config, self.settings, self.manager = config, settings, manager
        self.store: Store | None = None  # open while serving, when call logging is on
        self.recorder: Recorder | None = None
        self.alerts: AlertEngine | None = None  # set by the gateway
        self._apply_routes, self.routes = apply_routes, RouteTable()  # rules in force
        self.clashes = NamespaceClashes()  # runtime registrations sharing a namespace
        self._reload_lock = anyio.Lock()
        self.reloads = ChangeSignal()  # notified after every reload attempt
        # Called (old, new) once a reload replaced the options, before servers reconcile.
        self.on_options: list[Callable[[GatewayOptions, GatewayOptions], None]] = []
        # Asked (old, new) before: a text refuses the reload (``AdminContext``).
        self.reload_vetoes: list[Callable[[GatewayOptions, GatewayOptions], str | None]] = []
        self.last_reload: ChangeReport | None = None
        self.applied = applied.AppliedReloads()  # the last reload that changed something
        # The file's (mtime, size) when last read: the watcher reloads only unread edits.
        self._read_stamp: tuple[int, int] | None = None
        # This gateway on the store: its instance lease's holder (``instance_lease``).
        self.holder = instance_lease.holder_of(config.source)
        self.lease_tried = anyio.Event()  # the first attempt to take it is over (tests)
        self.health_log = HealthLog(lambda: self.store, instance_id=settings.instance_id)
        manager.on_transition(self.health_log.record)
        self.held_audit = HeldAudit(lambda: self.store)  # what was done, the store away
        self.in_flight = InFlight(settings.stop_grace)  # what a stop waits for (in_flight.py)
        self._feed_cursor = 0
        self.remote_applied = ChangeSignal()  # notified after applying others' changes
        # The change feed cannot reach the store (an idle gateway knows of an outage so).
        self.store_lost = False
        self.outage = StoreOutage()  # says once when the store goes and when it is back
        self._reload_waits = False  # a watcher's reload waits for an unreachable store
        self._invalid_registrations: dict[str, InvalidServer] = {}  # by ``_merge``
        self._stored_flags: list[Registration] = []  # its rows without a config (``_merge``)
        log_invalid(config, "is not started")

    @property
    def options(self) -> GatewayOptions:
        return self.config.options

    @property
    def store_down(self) -> bool:
        recorder = self.recorder
        return self.store_lost or (recorder is not None and recorder.store_unavailable)

    @property
    def file_servers(self) -> Mapping[str, ServerConfig]:
        return self.config.servers

    @property
    def invalid_servers(self) -> Mapping[str, InvalidServer]:
        """The servers whose entries in the config file (as last read) or runtime
        registrations are invalid: not running, or running the last valid entry a reload
        kept (or the file's entry, for a registration); under ``serve --profile``, the
        profile's only (the others are not this gateway's to run).  An invalid file
        entry shows the enabled flag the store keeps for it (``as_stored``)."""
        return self.manager.served({**self._invalid_registrations,
                                    **as_stored(self.config.invalid, self._stored_flags)})

    def flag_invalid(self, name: str, enabled: bool) -> bool:
        if (entry := self._invalid_registrations.get(name)) is not None:  # its own row's
            self._invalid_registrations[name] = entry.model_copy(update={"enabled": enabled})
            return True
        # A row with only the flag, as the store has it now (``as_stored``).
        self._stored_flags = [*(r for r in self._stored_flags if r.name != name),
                              Registration(name=name, config=None, enabled=enabled,
                                           updated_at=time.time())]
        return False

    def _merge(self, config: GatewayConfig, registrations: list[Registration]
               ) -> dict[str, ServerConfig]:
        """``merge`` of ``config``'s servers and ``registrations``, each registration
        that no longer validates logged and kept for ``invalid_servers``."""
        invalid: dict[str, InvalidServer] = {}
        desired, problems = merge(dict(config.servers), registrations,
                                  config.options.env_allow, invalid)
        for problem in problems:
            logger.warning("ignoring a runtime registration: %s", problem)
        self._invalid_registrations = invalid
        self._stored_flags = [r for r in registrations if r.config is None or r.config == TOMBSTONE]
        self.clashes.check(config.servers, registrations, desired, self.settings.db)
        return desired

    # -- the store's lifetime -------------------------------------------------------

    async def attach(self, store: Store, recorder: Recorder, *, late: bool = False) -> bool:
        """Take the opened store: its route rules, registrations and pins apply now (``late``:
        to the upstreams running already); a ``DeferredStore`` (started without it) is held
        (its users meet ``StoreUnavailable``) until ``connect_later`` attaches it: False."""
        self.store, self.recorder = store, recorder
        recorder.outage = self.outage
        if recorder.spool is not None:  # what is held goes there at a stop, the store away
            self.health_log.spill = recorder.spool.hold_health
            self.held_audit.spill = recorder.spool.hold_audit
            self.held_audit.late = recorder.spool
        if isinstance(store, DeferredStore):
            self.store_lost = True
            self.outage.lost(store.error, starting=True)
            return False
        try:  # before the upstreams' first connects (upstream/era_memory.py)
            self.manager.eras.load(await store.era_needs())
        except Exception as exc:  # noqa: BLE001 - only a shortcut: each need is learned again
            logger.warning("could not read what servers were learned to need: %s", exc)
        # Before the upstreams' first lists too: a name stays whose it was (bindings.py).
        if self.manager.names.adopt(await store.name_bindings(), late=late) and late:
            self.manager.refresh_catalog()
        # The feed's position first: a change made while loading comes in the feed.
        self._feed_cursor = (await store.changes()).cursor
        await self.load_routes()
        registrations = await store.servers()
        where = mask_text(self.settings.db or "the store")
        await instance_lease.release_unknown_names(
            store, self.holder, self.manager.names,
            {*self.config.servers, *(r.name for r in registrations)}, self.config.source,
            where, self.settings.instance_id, instance_lease.configured(self.config))
        desired = self._merge(self.config, registrations)
        if self.config.tokens_checked_later:  # the CLI's load said nothing of them
            warn_unknown_servers(self.config.options.auth, self.config.servers,
                                 registered(registrations))
        if registrations and late:
            async with self._reload_lock:  # merged with the file as a reload left it
                desired = self._merge(self.config, registrations)
                await converge(self.manager, desired)
        elif registrations:
            self.manager.configure(desired)
        runtime = runtime_servers(self.config.servers, registrations, desired)
        warn_overlong(registrations, runtime, where)
        if runtime or late:  # else serve's start-up line has the count (cli/serve.py)
            logger.info("serving %d upstream(s): %d from %s, %d registered at runtime in %s%s",
                        len(desired), len(desired) - len(runtime), self.config.source,
                        len(runtime), where, f" ({', '.join(sorted(runtime))}; 'mcp-gateway "
                        "servers' lists them)" if runtime else "")
        else:  # ... and this line names the store it opened
            logger.info("store open: no server registered at runtime in %s", where)
        await load_pins(self)
        return True

    def detach(self) -> None:
        """Forget the store (it is about to close); history stops recording; an audit
        entry made from now on is spilled (``HeldAudit.close``)."""
        self.store = self.recorder = None
        self.manager.names.persistent = False
        self.held_audit.close()

    def unfinished(self) -> list[AuditEntry]:  # of the operations running as it closes
        return [self._audit_entry(r.actor, r.action, r.target, r.arguments, UNFINISHED)
                for r in self.in_flight.unspilled()]

    def tasks(self) -> list[Task]:
        """The background tasks to run while serving (after ``attach``, if at all); with
        a store not open yet, the one opening it runs the store's tasks once it did (the
        health history's writer holds its transitions for it meanwhile)."""
        held = [self.health_log.run, self.held_audit.run] if self.store is not None else []
        if isinstance(self.store, DeferredStore):
            tasks = [*held, functools.partial(connect_later, self, self.store)]
        else:
            tasks = held + self.store_tasks()
        interval = self.settings.reload_interval
        if self.settings.config is not None and interval > 0:
            tasks.append(functools.partial(self.watch_config, interval))
        return tasks

    def store_tasks(self) -> list[Task]:
        """The background tasks that use the store (none without one) but the health log."""
        tasks: list[Task] = []
        if self.store is not None:
            tasks += [self.follow_changes,
                      functools.partial(instance_lease.keep_instance_id, lambda: self.store,
                                        self.settings.instance_id, self.holder,
                                        self.lease_tried, lambda: self.config, self.reloads),
                      functools.partial(self.manager.eras.keep, lambda: self.store),
                      functools.partial(self.manager.names.keep, lambda: self.store,
                                        self.manager.refresh_catalog)]
        return tasks

    async def health_flushed(self, within: float = 5.0) -> bool:
        return await self.health_log.flushed(within)

    # -- the AdminContext's writes --------------------------------------------------

    async def load_routes(self, written: Route | int | None = None) -> None:
        store = require_store(self, "route rules")
        self.routes = await routes_in_force(store, lambda: self.routes, written)
        self._apply_routes(self.routes)

    async def audit(self, actor: Actor, action: str, target: str | None,
                    arguments: Any = None, result: str | None = None) -> None:
        """What was done: written, or held while the store cannot take it (``held_audit``)
        -- never the operation's outcome."""
        await self.held_audit.add(self._audit_entry(actor, action, target, arguments, result))

    async def audit_first(self, actor: Actor, action: str, target: str | None,
                          arguments: Any = None) -> None:
        """What is about to be done, written before it is: ``StorageError`` when the
        store cannot take it (the operation is then refused, not made unaudited)."""
        if self.store is not None:
            await write_entry(self.store, self._audit_entry(actor, action, target, arguments))

    def _audit_entry(self, actor: Actor, action: str, target: str | None,
                     arguments: Any = None, result: str | None = None) -> AuditEntry:
        if action in _REGISTERS and target is not None:
            # Every change of a registration is audited: one that did not validate was
            # replaced or removed, and is no longer shown invalid (``invalid_servers``).
            self._invalid_registrations.pop(target, None)
        return AuditEntry(id=0, at=time.time(), actor=actor.id, action=action, target=target,
                          arguments=None if arguments is None else dumps_arguments(
                              arguments, frozenset(), self.settings.redact_keys),
                          result=result, instance_id=self.settings.instance_id,
                          uid=new_uid())

    # -- following a shared store ----------------------------------------------------

    async def follow_changes(self, *, reconcile_every: float = RECONCILE_SECONDS,
                             task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                             ) -> None:
        """Apply other gateways' changes until cancelled (see the module docstring).
        While the store is unreachable it retries with backoff (``store.retry``), then catches
        up from the last position it applied."""
        store = require_store(self, "the change feed between gateways")
        task_status.started()
        last_full = time.monotonic()
        outage = False

        def lost(error: StoreUnavailable, _failures: int) -> None:
            nonlocal outage
            self.store_lost = outage = True
            self.outage.lost(error)  # said once, whoever meets it first

        async def step() -> None:
            nonlocal last_full, outage
            # Back from an outage: read, don't wait for a change (the store is back
            # when it answers; the reconcile is due now).
            batch = await store.changes(self._feed_cursor,
                                        wait=0 if outage and store.shared else POLL_WAIT)
            self.store_lost = False
            remote = [c for c in batch.changes if not c.local]
            if outage:
                self.outage.back("writing what was held" + (
                    "; reconciling with the other gateways' changes" if store.shared else ""))
            if store.shared and (not batch.complete or outage
                                 or time.monotonic() - last_full >= reconcile_every):
                await self.apply_shared(servers=True, routes=True, names=True)
                last_full, outage = time.monotonic(), False
            elif remote:
                await self.apply_shared(servers=any(c.kind == "server" for c in remote),
                                        routes=any(c.kind == "route" for c in remote),
                                        names=any(c.kind == "names" for c in remote))
            self._feed_cursor = batch.cursor

        while True:
            try:
                await while_unavailable(step, first=0.1, most=2.0, before_wait=lost)
            except Exception as exc:  # noqa: BLE001 - following must outlive any one error
                logger.warning("change feed: %s; retrying", exc)
                await anyio.sleep(1.0)

    async def apply_shared(self, *, servers: bool, routes: bool, names: bool = False
                           ) -> list[str]:
        """Re-read the shared registrations, routes and/or name bindings (after the
        servers: a removal here releases its own) and apply them; returns the servers
        acted on."""
        store = self.store
        acted: list[str] = []
        if store is None:
            return acted
        if routes:
            await self.load_routes()
        if servers:
            async with self._reload_lock:
                desired = self._merge(self.config, await store.servers())
                acted = await converge(self.manager, desired)
        if names and self.manager.names.sync(await store.name_bindings(),
                                             self.manager.services):
            self.manager.refresh_catalog()   # the refusals of the names freed
        self.remote_applied.notify()
        return acted

    # -- reloading the config file ----------------------------------------------------

    async def reload_config(self, actor: Actor = LIBRARY) -> ChangeReport:
        """Re-read the config file; restart only what changed; keep everything on error.

        Runtime registrations still override the file (``merge``); the report is kept
        in ``last_reload`` and ``reloads`` is notified after every attempt.  A stop
        waits for it as for any admin operation in flight (a SIGHUP's is not cancelled)."""
        with self.in_flight.running(actor, "reload_config", str(self.settings.config)):
            return await self._reload(actor)

    async def _reload(self, actor: Actor) -> ChangeReport:
        async with self._reload_lock:
            path = self.settings.config
            if path is None:
                return ChangeReport(error="the gateway was not started from a config file")
            previous, self._read_stamp = self._read_stamp, await file_stamp(path)
            try:
                registrations = await self.store.servers() if self.store is not None else []
            except StorageError:
                self._read_stamp = previous  # not read: the watcher tries again
                raise
            # A token may name a server registered at runtime: no "not configured" warning.
            known = RUNTIME_SERVERS.set(registered(registrations))
            try:
                new = load_config(path, partial=True)
            except ConfigError as exc:
                await self._audit_reload(actor, str(path), f"rejected: {exc}")
                return self._reloaded(ChangeReport(error=str(exc)))
            finally:
                RUNTIME_SERVERS.reset(known)
            # As the file was opened (a save since the stat above was read: not unread).
            self._read_stamp = read_stamp(new, path) or self._read_stamp
            if not new.servers and self.config.servers and await blank_file(path):
                # Truncated by a save in progress (an editor writing in place, `cat >`):
                # read as "no servers", it stopped every server until the save ended.
                error = (f"{path}: the file is empty (a save in progress?); keeping the "
                         "running config. To run no servers from it, write 'servers: {}'")
                await self._audit_reload(actor, str(path), f"rejected: {error}")
                return self._reloaded(ChangeReport(error=error))
            new = self._keep_running(new)
            for veto in self.reload_vetoes:  # e.g. gateway.auth added or removed (HTTP)
                if (refused := veto(self.config.options, new.options)) is not None:
                    await self._audit_reload(actor, str(path), f"rejected: {refused}")
                    return self._reloaded(ChangeReport(error=refused))
            desired = self._merge(new, registrations)  # (not for a refused one: it warns)
            old, self.config = self.config, new
            for hook in self.on_options:
                hook(old.options, new.options)
            report = ChangeReport.model_validate(
                await self.manager.reconcile(desired) if self.manager.running
                else configure_before_run(self.manager, desired))
            report.restart_needed = self._restart_needed(new.options)
            report.invalid = {name: entry.error for name, entry in new.invalid.items()}
            report = self.applied.after(actor, report, old.options, new.options, self._read_stamp)
            await self._audit_reload(actor, str(path), report.model_dump_json(exclude={"error"}))
            return self._reloaded(report)

    def _keep_running(self, new: GatewayConfig) -> GatewayConfig:
        """``new``, with each server whose new entry is invalid kept as it runs now (its
        last valid entry: still in ``invalid``, with the error): an edit that breaks one
        entry stops nothing.  Logged at ERROR, as at start."""
        kept = {name: self.config.servers[name] for name in new.invalid
                if name in self.config.servers}
        log_invalid(new, "is not started", kept)
        if not kept:
            return new
        return new.model_copy(update={"servers": {**new.servers, **kept}})

    async def _audit_reload(self, actor: Actor, path: str, result: str) -> None:
        """Audit a reload that happened (or was rejected): a store lost meanwhile holds
        the entry until it is back (``held_audit``), never the reload's report."""
        await self.audit(actor, "reload_config", path, None, result)

    def _restart_needed(self, new: GatewayOptions) -> list[str]:
        """The ``RESTART_ONLY`` options ``new`` sets otherwise than the running gateway
        (the values it started with: a second reload still reports them)."""
        running = self.manager.config.options
        changed = [f"gateway.{name}" for name in RESTART_ONLY
                   if getattr(new, name) != getattr(running, name)]
        if changed:
            logger.warning("%s changed in the config: the gateway runs with the values it "
                           "started with until it is restarted", ", ".join(changed))
        return changed

    async def reload_logged(self, actor: Actor) -> ChangeReport:
        """``reload_config`` for a caller nobody answers (the watcher, a signal), logged.
        One that cannot read the runtime registrations (the store is unreachable) keeps
        the running config; the watcher tries again once the store is back (said once)."""
        try:
            report = await self.reload_config(actor)
        except StorageError as exc:
            if not self._reload_waits:
                logger.error("config reload (%s) waits for the store, keeping the running "
                             "config: %s; the file is read again once the store is back",
                             actor.id, exc)
            self._reload_waits = True
            return ChangeReport(error=str(exc))
        self._reload_waits = False
        if report.error:
            logger.error("config reload (%s) rejected, keeping the running config: %s",
                         actor.id, report.error)
        else:  # an added or restarted server whose first connect failed is named too
            from fast_mcp_gateway.admin.servers import with_outcome  # (on first use)

            report = with_outcome(self, report)
            logger.log(logging.WARNING if report.troubled else logging.INFO,
                       "config reloaded (%s): %s", actor.id, report.summary())
        return report

    def _reloaded(self, report: ChangeReport) -> ChangeReport:
        self.last_reload = report
        self.reloads.notify()
        return report

    async def watch_config(self, interval: float, *,
                           task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                           ) -> None:
        """Reload when the config file's modification time or size changes."""
        path = self.settings.config
        # The baseline is the file as the running config was read from it (an edit made
        # since, while the stack was imported or just after start-up, is a change), or
        # as a reload before this read it (a SIGHUP during start-up: once is enough),
        # else (a config not read from the file: ``parse_config``'s) as it is now.
        self._read_stamp = self._read_stamp or (
            read_stamp(self.config, path) if path is not None else None) or await file_stamp(path)
        task_status.started()
        if path is None or interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            if await self.config_edited():
                await self.reload_logged(CONFIG_FILE)  # audited as the watcher

    async def config_edited(self) -> bool:
        """Whether the config file changed since it was last read: an edit a reload (by
        the watcher, a signal, ``gateway_reload_config``) has not taken in yet."""
        now = await file_stamp(self.settings.config)
        return now is not None and now != self._read_stamp

