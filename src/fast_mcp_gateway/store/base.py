"""What a store is: one protocol per concern and one error (the records: records.py).

A backend (``sqlite.SQLiteStore``, ``memory.MemoryStore``, ``postgres.PostgresStore``) implements
every protocol below; ``Store`` combines them, and ``fast_mcp_gateway.store.open_store``
picks the backend from a URL.  The contract suite (tests/test_store_contract.py) runs
against each backend, so a behaviour written here is a behaviour every backend has.

- ``ControlPlaneStore``: runtime server registrations (with their enabled flags) and
  route rules -- the state several gateways must share -- and ``changes``, the feed
  that tells a gateway when they changed.
- ``InvocationStore``: call records, their per-minute and per-hour aggregates, the
  statistics over them, and retention.
- ``AuditStore``, ``HealthStore``, ``InspectionStore``: append-only histories, read
  newest first with id paging (``before_id``).
- ``AlertStore``: runtime alert rules (tombstones delete a servers.yaml rule) and the
  alert history (firing/resolved transitions), paged like the other histories.
- ``PinStore``: pinned tool/prompt/resource definitions, approved and pending.
- ``CredentialStore`` (credentials.py): servers' sign-ins (``auth:``), their secrets sealed.

The protocols exchange the frozen dataclasses of records.py.  Errors a backend meets
(a file it cannot use, a bad cursor) are ``StorageError``; ``StoreUnavailable`` (a
subclass) says the database cannot be reached right now and the same call may succeed
later (a shared database restarting), so a writer may keep its batch and retry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from fast_mcp_gateway.errors import GatewayError
from fast_mcp_gateway.store.credentials import CredentialStore
from fast_mcp_gateway.store.eras import EraStore
from fast_mcp_gateway.store.names import NameStore
from fast_mcp_gateway.store.records import (
    TOMBSTONE,
    AlertEvent,
    AlertRuleRecord,
    AuditEntry,
    ChangeBatch,
    HealthRecord,
    InspectionRecord,
    Invocation,
    Lease,
    PinRecord,
    Registration,
    RouteMatch,
    RouteRecord,
)
from fast_mcp_gateway.store.stats import LatencyStats


class StorageError(GatewayError):
    """The store cannot be opened, checked, migrated, read or written as asked."""


class StoreUnavailable(StorageError):
    """The database cannot be reached now (connection refused, lost or timed out); the
    operation did not happen and may be retried later."""


class PruneSkipped(Exception):
    """``prune`` did not run: another gateway is pruning the same store now (PostgreSQL's
    retention lock, postgres_retention.py); the next retention run tries again."""


# -- protocols -----------------------------------------------------------------------------


class ControlPlaneStore(Protocol):
    """Runtime registrations, enabled flags and route rules, with a change feed.

    ``shared`` is True when several gateways may use the same store at once (their
    changes then appear in each other's feed, ``local=False``), False for a store one
    gateway owns."""

    shared: bool

    async def servers(self) -> list[Registration]:
        """Every registration, by name."""
        ...

    async def put_server(self, name: str, config: dict[str, Any] | None,
                         enabled: bool) -> None:
        """Register (or override) a server; ``config=None`` keeps only the enabled flag."""
        ...

    async def add_server(self, name: str, config: dict[str, Any], enabled: bool) -> bool:
        """Register a server unless one by that name is registered (a row with a config
        other than ``TOMBSTONE``; a bare enabled flag or a tombstone is replaced).  False,
        and nothing changed, when one is.  Atomic across every gateway on the store: of
        two adds of one name at once, one is stored and the other is False."""
        ...

    async def set_server_enabled(self, name: str, enabled: bool) -> None:
        """Set a server's enabled flag, its registration (if any) untouched: one write, so
        an update or removal another gateway makes meanwhile is never reverted (without a
        row, a bare flag is stored, as ``put_server(name, None, enabled)`` would)."""
        ...

    async def delete_server(self, name: str) -> None:
        """Forget a registration (no error when there is none)."""
        ...

    async def routes(self) -> list[RouteRecord]:
        """Every route rule in decision order: priority (highest first), then age."""
        ...

    async def add_route(self, pattern: str, match: RouteMatch, target: str,
                        priority: int) -> int:
        """Store a new rule; returns its id (ids are never reused)."""
        ...

    async def update_route(self, route_id: int, pattern: str, match: RouteMatch,
                           target: str, priority: int) -> bool:
        """Change a rule; False when there is no rule with that id."""
        ...

    async def delete_route(self, route_id: int) -> bool:
        """Delete a rule; False when there is no rule with that id."""
        ...

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        """The mutations after position ``since`` (0: from the start).  With ``wait``,
        blocks up to that many seconds for one when there is none yet (a long poll).
        A backend shared by several gateways reports every writer's mutations; a
        single-process backend reports those made through this object."""
        ...


class InvocationStore(Protocol):
    """Call records, their aggregates, statistics and retention."""

    async def add_invocations(self, rows: Iterable[Invocation]) -> int:
        """Store a batch atomically with its per-minute and per-hour aggregates; returns
        the batch's size.  A record whose id is already stored is not stored again
        (its latency still counts in the aggregates)."""
        ...

    async def invocations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        instance: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
        client: tuple[str, str] | None = None,
    ) -> tuple[list[Invocation], str | None]:
        """A page of records (``since``/``until`` inclusive, ``tool`` = exposed name,
        ``instance`` = the gateway that served them: ``Invocation.instance_id``,
        ``client`` = whose calls: ``(Invocation.client_kind, Invocation.client)``), ordered
        by (started_at, id), and the opaque cursor of the next page (None at the end).
        A cursor that is not one is a ``StorageError`` ("invalid cursor")."""
        ...

    async def invocations_written(
        self, after: int | None, *, server: str | None = None, tool: str | None = None,
        status: str | None = None, instance: str | None = None, limit: int = 1000,
    ) -> tuple[list[Invocation], int]:
        """Records in the order they were written (a call's record is written when it
        ends, not in its start's order), after the position ``after`` an earlier answer
        gave (None: none, only the position now), and the position to ask from next."""
        ...

    async def stats(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, LatencyStats]:
        """Aggregates over [since, until] at minute resolution: ``{"": total}``, or one
        entry per server / exposed tool for ``group_by`` "server" / "tool"; groups
        without calls are absent."""
        ...

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        """Retention: drop records older than ``max_age_seconds`` (with their minute and
        hour aggregates, and audit, health, inspector and alert entries of that age), then the
        oldest records beyond ``max_rows``.  Returns the call records removed;
        ``PruneSkipped`` when another gateway is pruning the same store (PostgreSQL)."""
        ...


class AuditStore(Protocol):
    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None,
                        instance_id: str | None = None, *, at: float | None = None,
                        uid: str | None = None) -> None:
        """Append an entry stamped ``at``, now if None (``instance_id``: the gateway
        that applied it; ``at``: an entry held through an outage keeps its time).  An
        entry whose ``uid`` is stored already is not stored again (written twice: a
        retry after a lost answer, a spool replayed); None: no such check."""
        ...

    async def audit(self, *, limit: int = 50, before_id: int | None = None
                    ) -> list[AuditEntry]:
        """Newest first, older than ``before_id`` when given."""
        ...


class HealthStore(Protocol):
    async def add_health_records(self, rows: Sequence[HealthRecord]) -> None:
        """Append transitions (their ``id`` is ignored: the store assigns one)."""
        ...

    async def health_records(self, *, server: str | None = None, limit: int = 50,
                             before_id: int | None = None) -> list[HealthRecord]:
        """Newest first, optionally one server's, older than ``before_id``."""
        ...


class InspectionStore(Protocol):
    async def add_inspection(self, server: str, replica: str | None, operation: str,
                             target: str | None, arguments: str | None, status: str,
                             duration_ms: float, result: str | None) -> int:
        """Append an operation stamped now; returns its id."""
        ...

    async def inspections(self, *, server: str | None = None, limit: int = 50,
                          before_id: int | None = None) -> list[InspectionRecord]:
        """Newest first, optionally one server's, older than ``before_id``."""
        ...

    async def clear_inspections(self, server: str | None = None) -> int:
        """Delete one server's history (all of it when ``server`` is empty); returns
        the entries removed."""
        ...


class AlertStore(Protocol):
    """Runtime alert rules (over servers.yaml's) and the alert history."""

    async def alert_rules(self) -> list[AlertRuleRecord]:
        """Every runtime rule (tombstones included), by name."""
        ...

    async def put_alert_rule(self, name: str, config: dict[str, Any] | None) -> None:
        """Add or replace a rule; ``config=None`` stores a tombstone."""
        ...

    async def delete_alert_rule(self, name: str) -> bool:
        """Forget a runtime rule (or tombstone); False when there was none."""
        ...

    async def add_alert_events(self, rows: Sequence[AlertEvent]) -> None:
        """Append transitions (their ``id`` is ignored: the store assigns one)."""
        ...

    async def alert_events(self, *, server: str | None = None, rule: str | None = None,
                           limit: int = 50, before_id: int | None = None
                           ) -> list[AlertEvent]:
        """Newest first, optionally one server's and/or one rule's, older than
        ``before_id``."""
        ...

    async def hold_lease(self, name: str, holder: str, ttl: float,
                         servers: Iterable[str] | None = None) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl`` seconds; True when
        ``holder`` has it now (it was free, expired, or already ``holder``'s).  Gateways
        sharing a store use it so that one of them announces what all of them see.
        ``servers`` (an instance lease's: what its config file configures) replaces
        what the lease said, ``Lease.servers``."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """End ``holder``'s lease ``name`` now (a clean stop), so the next gateway takes
        it at once; a lease another holder has is left alone."""
        ...

    async def lease(self, name: str) -> Lease | None:
        """Who holds the lease ``name`` and until when (expired or not); None if nobody."""
        ...

    async def leases(self, prefix: str) -> list[Lease]:
        """Every lease whose name starts with ``prefix`` (expired or not), by name."""
        ...


class PinStore(Protocol):
    async def pins(self, server: str | None = None) -> list[PinRecord]:
        """Every pin row (of one server), by server, kind, name and status."""
        ...

    async def put_pins(self, rows: Sequence[PinRecord]) -> None:
        """Insert or replace rows by (server, kind, name, status), atomically."""
        ...

    async def delete_pins(self, server: str, keys: Sequence[tuple[str, str, str]] | None = None
                          ) -> int:
        """Delete ``server``'s rows with these (kind, name, status) keys (all its rows
        when None); returns the rows removed."""
        ...

    async def forget_pins(self, server: str, actor: str) -> tuple[int, int]:
        """Delete every row of ``server`` and append the audit entry saying so
        (``actor`` did "forget_pins" of ``server``, result ``records.forgotten``) in one
        transaction: both are stored or neither (``mcp-gateway pins forget``, which has
        no held audit to fall back on).  Returns the approved and pending rows removed;
        (0, 0), nothing written, when it has none."""
        ...


class Store(ControlPlaneStore, InvocationStore, AuditStore, HealthStore, InspectionStore,
            AlertStore, PinStore, EraStore, NameStore, CredentialStore, Protocol):
    """Every concern of one backend, and its lifetime."""

    async def close(self) -> None:
        """Release the backend; the object is unusable afterwards."""
        ...


# -- helpers shared by backends --------------------------------------------------------------


ISSUED_CURSOR = re.compile(r"^(-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?\|.+)?$")
"""What ``invocation_cursor`` issues: a time (a float's repr), '|', a call's id."""
NOT_ISSUED = "not a cursor this gateway issued; pass `next_cursor` from a previous page"


def invocation_cursor(row: Invocation) -> str:
    """The cursor of the page after ``row`` (the last of a page)."""
    return f"{row.started_at!r}|{row.id}"


def invocation_page(rows: list[Invocation], limit: int
                    ) -> tuple[list[Invocation], str | None]:
    """A page from ``limit + 1`` fetched rows: the first ``limit``, and the cursor of the
    next page when there was one more (every backend fetches one extra to know)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, invocation_cursor(rows[-1])
    return rows, None


def written_position(last_read: int | None, newest: int, count: int, limit: int) -> int:
    """Where ``invocations_written`` goes on from: after the last record it read, or,
    when it read all there was (fewer than ``limit``), after the newest record written
    before it read (those in between did not match its filters)."""
    if last_read is None:
        return newest
    return last_read if count >= limit else max(last_read, newest)


def parse_cursor(cursor: str) -> tuple[float, str]:
    """(started_at, id) of a cursor from ``invocation_cursor``, or a StorageError."""
    try:
        at, rid = cursor.split("|", 1)
        return float(at), rid
    except ValueError:
        raise StorageError(f"invalid cursor {cursor!r}") from None


VACANT_CONFIGS = ("null", json.dumps(TOMBSTONE))
"""A ``servers`` row's stored config that registers no server (``add_server`` replaces it):
none (only the enabled flag), or the tombstone -- both written with ``json.dumps``."""


PIN_COLUMNS = "server, kind, name, status, digest, definition, actor, at, markers"

PRUNE_BATCH = 5000
"""Rows one transaction of retention (``prune``) deletes at most, in the SQL backends: a
write waiting for the rows' locks (PostgreSQL) or the file's (SQLite) waits one batch,
not the whole prune (postgres_retention.py)."""


def pin_row(r: PinRecord) -> tuple[Any, ...]:
    """A pin as stored, in ``PIN_COLUMNS`` order (markers as JSON)."""
    return (r.server, r.kind, r.name, r.status, r.digest, r.definition, r.actor, r.at,
            json.dumps(r.markers))


def pin_record(row: Sequence[Any]) -> PinRecord:
    server, kind, name, status, dig, definition, actor, at, markers = row
    return PinRecord(server=server, kind=kind, name=name, status=status, digest=dig,
                     definition=definition, actor=actor, at=at, markers=json.loads(markers))
