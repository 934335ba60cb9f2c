"""What an admin operation may use of the gateway: one narrow ``AdminContext``.

Admin operations (``servers``, ``routes``, ``history``, ``inspect``) are plain async
functions ``op(ctx, [actor,] ...)`` over this protocol; they know nothing of MCP, HTTP or
FastMCP.  The gateway's ``ControlPlane`` (``control.py``) implements it; tests pass a
small fake.  Each transport adapter (``mcp_tools.py`` today, REST next) says who is
asking by passing an ``Actor``, and maps the gateway's errors to its own once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import anyio

from fast_mcp_gateway.admin.report import ChangeReport
from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.config.schema import GatewayOptions, InvalidServer, ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.routing.pinning import PinBook
from fast_mcp_gateway.routing.rules import Route, RouteTable
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView
from fast_mcp_gateway.store import Store
from fast_mcp_gateway.telemetry.recorder import Recorder
from fast_mcp_gateway.upstream.signals import ChangeSignal

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """Who asks for an admin operation, as the audit log names them.

    The MCP adapter uses the host's client id (the transport's name, ``"stdio"``,
    ``"http"`` or ``"sse"``, when it has none);
    the config file watcher is ``CONFIG_FILE`` (a reload it made because the file
    changed); a reload a signal asked for is ``signal(name)`` (``signal:SIGHUP``); other
    in-process callers (library code) are ``LIBRARY``.  Authentication will add the
    principal's scopes here.  ``surface`` is where the request came from: error texts
    name that surface's operations (a REST caller is told about ``POST
    /api/v1/servers``, not ``gateway_add_server``).  ``servers`` is the restriction of
    the caller's token (None: none), for the operations that decide by it.
    """

    id: str
    surface: Literal["mcp", "rest"] = "mcp"
    servers: frozenset[str] | None = None

    @property
    def token(self) -> str:
        """The caller's token (or JWT subject) as ``gateway.auth`` names it: ``id``
        without the dashboard's ``dashboard:`` prefix (no token is named that)."""
        return self.id.removeprefix("dashboard:")


LIBRARY = Actor("library")
CONFIG_FILE = Actor("config-file")


def signal_actor(name: str) -> Actor:
    """The actor of what a signal (``"SIGHUP"``) made the gateway do."""
    return Actor(f"signal:{name}")


class Operations(Protocol):
    """The admin operations in flight, as ``finishing`` counts them (``in_flight.py``)."""

    def running(self, actor: Actor, action: str, target: str | None,
                arguments: Any = None) -> AbstractContextManager[None]:
        """Count the block as the operation ``action`` of ``actor`` on ``target``."""
        ...


class Fleet(Protocol):
    """The running servers, as admin operations see them (the routing manager)."""

    @property
    def services(self) -> Mapping[str, Service]: ...

    @property
    def view(self) -> CatalogView: ...

    def get(self, name: str) -> Service:
        """The named service, or ``AdminError`` listing the known names."""
        ...

    async def replace_server(self, server: ServerConfig) -> Service:
        """Start ``server`` (stopping a running one of that name first)."""
        ...

    async def remove_server(self, name: str) -> None: ...

    @property
    def pins(self) -> PinBook:
        """The pinned definitions and open findings (``routing/pinning.py``)."""
        ...

    def refresh_catalog(self) -> None:
        """Rebuild the exposed catalog (after pins changed)."""
        ...


class AdminContext(Protocol):
    """Everything admin operations need from the gateway, and nothing more."""

    @property
    def manager(self) -> Fleet: ...

    @property
    def options(self) -> GatewayOptions:
        """The gateway options of the running config (``env_allow``, ``admin``, ...)."""
        ...

    @property
    def reload_vetoes(self) -> list[Callable[[GatewayOptions, GatewayOptions], str | None]]:
        """Asked ``(running, new)`` options before a config reload applies anything: a
        text refuses the whole reload with it (the running config is kept)."""
        ...

    @property
    def reloads(self) -> ChangeSignal:
        """Notified after every reload attempt of the config file."""
        ...

    @property
    def file_servers(self) -> Mapping[str, ServerConfig]:
        """The servers of the config file as last (re)loaded, before registrations."""
        ...

    @property
    def holder(self) -> str:
        """This gateway as its instance lease's holder (``instance_lease.holder_of``)."""
        ...

    @property
    def invalid_servers(self) -> Mapping[str, InvalidServer]:
        """The config file's servers whose entries are invalid (``admin/invalid.py``)."""
        ...

    def flag_invalid(self, name: str, enabled: bool) -> bool:
        """Show ``enabled``, just stored, for ``name`` among ``invalid_servers``; True
        when ``name`` is a stored registration (its own settings are invalid)."""
        ...

    @property
    def store(self) -> Store | None:
        """The open store, or ``None`` while serving without one (call logging off)."""
        ...

    @property
    def settings(self) -> GatewaySettings:
        """How the gateway was started (its config file and store: a registration must
        not run a gateway that loops back to them)."""
        ...

    @property
    def recorder(self) -> Recorder | None:
        """The call log's batch writer; present exactly when ``store`` is."""
        ...

    @property
    def alerts(self) -> AlertEngine | None:
        """The alert engine (None in contexts built without one)."""
        ...

    @property
    def in_flight(self) -> Operations:
        """The operations running in ``finishing`` now (a stop waits for them)."""
        ...

    @property
    def store_down(self) -> bool:
        """The store cannot be reached now: the recorder holds a batch for it, or the
        change feed lost it (``/ready`` says ``degraded``; ``mcp_gateway_store_up``)."""
        ...

    async def health_flushed(self, within: float) -> bool:
        """Wait (bounded) until every queued health transition is in the store."""
        ...

    async def load_routes(self, written: Route | int | None = None) -> None:
        """Re-read the route rules from the store into the call path; after ``written``
        (this gateway's change: the rule written, or the id deleted), a store that cannot
        be read leaves the rules in force with that change made (``in_force``)."""
        ...

    @property
    def routes(self) -> RouteTable:
        """The route rules in force (as last loaded: ``load_routes``)."""
        ...

    async def reload_config(self, actor: Actor) -> ChangeReport:
        """Re-read the config file; restart only what changed; keep everything on error."""
        ...

    async def audit(self, actor: Actor, action: str, target: str | None,
                    arguments: Any = None, result: str | None = None) -> None:
        """Record that ``actor`` did ``action`` (secrets redacted; a no-op without a
        store).  The action was done: a store that cannot take the entry now holds it
        until it can (``held_audit``), and this never raises for the store -- the
        operation answers what it did, not an error."""
        ...

    async def audit_first(self, actor: Actor, action: str, target: str | None,
                          arguments: Any = None) -> None:
        """Record that ``actor`` is about to do ``action``, before doing it: raises the
        store's ``StorageError`` when it cannot take the entry, and the operation is
        refused (one that must not happen unaudited: ``inspect_call_tool``)."""
        ...


def require_store(ctx: AdminContext, what: str = "call records") -> Store:
    """The open store, or the ``AdminError`` naming ``what`` needs it and how to turn it
    on (``--no-db`` turns the whole store off, not only call logging)."""
    if ctx.store is None:
        raise AdminError(f"{what}: kept in the gateway's store, and this gateway runs "
                         "without one (--no-db, or MCP_GATEWAY_RECORD_CALLS=false): serve "
                         "with a store (--db PATH or MCP_GATEWAY_DB; the CLI uses the "
                         "user's data folder by default)")
    return ctx.store


@contextmanager
def finishing(ctx: AdminContext, actor: Actor, action: str, target: str | None,
              arguments: Any = None) -> Iterator[None]:
    """The scope an admin operation runs in from its store write through its audit:
    not cut by its caller's cancellation (a host cancelling the ``tools/call``, an HTTP
    client gone), which lands at the caller's next checkpoint after it.  Cut there, a
    registration was stored but neither running nor audited (and this gateway skips its
    own changes in the change feed: applied only at a reload or a restart).  Bounded by
    its steps' own bounds: the store's (``BUSY_TIMEOUT_MS``, PostgreSQL's
    ``WRITE_TIMEOUT``), a server's stop (15 s) and first connect attempt
    (``longest_attempt``, which a gateway's stop ends), the audit's one write before it
    is held.  An import runs its adds in one such scope (``servers.import_servers``).

    It counts as ``ctx.in_flight``'s operation ``action`` of ``actor`` on ``target``
    (what its audit entry says): a gateway's stop waits for it, bounded, before it stops
    the servers and closes the store, and spills that entry as unfinished if it is
    still running then (``in_flight``).

    It holds against a cancel scope's cancellation, never asyncio's ``Task.cancel()``
    (uvicorn's, of a request still running past ``timeout_graceful_shutdown`` at a stop):
    a caller that task may cancel runs the operation through ``shieldable``."""
    with ctx.in_flight.running(actor, action, target, arguments), \
            anyio.CancelScope(shield=True):
        yield


async def shieldable(operation: Callable[[], Awaitable[T]]) -> T:
    """``operation()`` in a child task, so that the caller's task cancelled by asyncio's
    ``Task.cancel()`` (uvicorn does so to a request still running past its stop's grace,
    and nothing holds against it) reaches it as a cancel scope's cancellation, which
    ``finishing`` holds against: the operation ends what it stored, and then the caller
    is cancelled.  Its exceptions are raised as they are (no exception group)."""
    outcome: list[T] = []
    failure: list[Exception] = []

    async def run() -> None:
        try:
            outcome.append(await operation())
        except Exception as exc:  # noqa: BLE001 - raised in the caller below, as it is
            failure.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
    if failure:
        raise failure[0]
    return outcome[0]
