"""What a store is: one protocol per concern, the typed records they exchange, one error.

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

Every record is a frozen dataclass; times are unix seconds.  Errors a backend meets
(a file it cannot use, a bad cursor) are ``StorageError``; ``StoreUnavailable`` (a
subclass) says the database cannot be reached right now and the same call may succeed
later (a shared database restarting), so a writer may keep its batch and retry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fast_mcp_gateway.errors import GatewayError
from fast_mcp_gateway.store.eras import EraStore
from fast_mcp_gateway.store.stats import LatencyStats


class StorageError(GatewayError):
    """The store cannot be opened, checked, migrated, read or written as asked."""


class StoreUnavailable(StorageError):
    """The database cannot be reached now (connection refused, lost or timed out); the
    operation did not happen and may be retried later."""


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Invocation:
    """One call through the gateway, as recorded (fields in the stored column order)."""

    id: str
    trace_id: str
    client: str
    kind: str  # tool | resource | prompt
    exposed: str
    server: str
    original: str
    replica: str | None = None
    route: list[dict[str, str]] | None = None  # [{replica, outcome}] per attempt
    retries: int = 0
    started_at: float
    duration_ms: float
    status: str  # success | error | timeout | rejected | cancelled
    error: str | None = None
    arguments: str | None = None  # JSON, redacted
    request_bytes: int | None = None
    response_bytes: int | None = None
    rule: str | None = None  # the route rule that chose the server
    instance_id: str | None = None  # the gateway instance that served the call


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A server registered (or overridden) at runtime.  ``config`` is the raw entry as
    registered (``${VARS}`` unexpanded), or None when only the enabled flag is stored."""

    name: str
    config: dict[str, Any] | None
    enabled: bool
    updated_at: float


RouteMatch = Literal["exact", "prefix", "wildcard"]


@dataclass(frozen=True, kw_only=True)
class RouteRecord:
    """A stored route rule: calls of matching exposed names go to ``target``."""

    id: int
    pattern: str
    match: RouteMatch
    priority: int
    target: str
    created_at: float


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who changed what through the admin operations."""

    id: int
    at: float
    actor: str
    action: str
    target: str | None
    arguments: str | None  # JSON, redacted
    result: str | None


@dataclass(frozen=True, kw_only=True)
class HealthRecord:
    """A state or health transition of one replica.  ``id`` is None until stored."""

    id: int | None = None
    at: float
    server: str
    replica: str
    status: str
    detail: str | None = None


@dataclass(frozen=True, kw_only=True)
class InspectionRecord:
    """One inspector operation run directly on a replica."""

    id: int
    at: float
    server: str
    replica: str | None
    operation: str
    target: str | None
    arguments: str | None  # JSON, redacted
    status: str
    duration_ms: float
    result: str | None  # JSON (truncated) or the error


@dataclass(frozen=True, kw_only=True)
class AlertRuleRecord:
    """An alert rule added, changed or removed at runtime.  ``config`` is the rule as
    validated (``config.alerts.AlertRule.stored()``), or None for a tombstone: the
    servers.yaml rule of that name is deleted."""

    name: str
    config: dict[str, Any] | None
    updated_at: float


@dataclass(frozen=True, kw_only=True)
class AlertEvent:
    """One alert transition (``state`` firing or resolved).  ``value`` and ``threshold``
    are JSON (a number, a state name, or null); ``id`` is None until stored."""

    id: int | None = None
    at: float
    rule: str
    server: str
    state: str  # firing | resolved
    metric: str
    value: str | None = None
    threshold: str | None = None
    severity: str = "warning"
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class PinRecord:
    """A pinned component definition (``routing/pinning.py``).  ``status`` is
    ``approved`` (first use or an operator's approval; ``actor`` says which) or
    ``pending`` (a definition seen but not approved; ``actor`` is its state: changed,
    new, flagged).  A component has at most one row of each status."""

    server: str
    kind: str                    # tool | prompt | resource | resource_template
    name: str                    # the upstream's own name / URI
    digest: str                  # sha256 of the canonical JSON definition
    definition: str              # that JSON (shown as a diff on approval)
    status: Literal["approved", "pending"]
    actor: str
    at: float
    markers: list[str] = field(default_factory=list)   # injection markers found


ChangeKind = Literal["server", "route"]


@dataclass(frozen=True, kw_only=True)
class Change:
    """One control-plane mutation: ``key`` is the server name or the route id.
    ``local`` is True when the mutation was made through the store object that reports
    it (its writer has applied it already); False when another gateway made it."""

    seq: int
    kind: ChangeKind
    key: str
    at: float
    local: bool = True


@dataclass(frozen=True, kw_only=True)
class ChangeBatch:
    """The answer of ``ControlPlaneStore.changes``.

    ``changes`` are those after the asked position, oldest first; ``cursor`` is the
    position to ask from next time.  ``complete`` is False when the feed no longer
    reaches back to the asked position (or never knew it): the caller must reload the
    registrations and routes in full -- the reconcile every consumer needs anyway."""

    cursor: int
    changes: list[Change] = field(default_factory=list)
    complete: bool = True


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
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[Invocation], str | None]:
        """A page of records (``since``/``until`` inclusive, ``tool`` = exposed name),
        ordered by (started_at, id), and the opaque cursor of the next page (None at
        the end).  A cursor that is not one is a ``StorageError`` ("invalid cursor")."""
        ...

    async def invocations_written(
        self, after: int | None, *, server: str | None = None, tool: str | None = None,
        status: str | None = None, limit: int = 1000,
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
        oldest records beyond ``max_rows``.  Returns the call records removed."""
        ...


class AuditStore(Protocol):
    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None) -> None:
        """Append an entry stamped now."""
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


@dataclass(frozen=True)
class Lease:
    """A lease row: ``holder`` has ``name`` until ``expires_at`` (unix time)."""

    name: str
    holder: str
    expires_at: float


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

    async def hold_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl`` seconds; True when
        ``holder`` has it now (it was free, expired, or already ``holder``'s).  Gateways
        sharing a store use it so that one of them announces what all of them see."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """End ``holder``'s lease ``name`` now (a clean stop), so the next gateway takes
        it at once; a lease another holder has is left alone."""
        ...

    async def lease(self, name: str) -> Lease | None:
        """Who holds the lease ``name`` and until when (expired or not); None if nobody."""
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


class Store(ControlPlaneStore, InvocationStore, AuditStore, HealthStore, InspectionStore,
            AlertStore, PinStore, EraStore, Protocol):
    """Every concern of one backend, and its lifetime."""

    async def close(self) -> None:
        """Release the backend; the object is unusable afterwards."""
        ...


# -- helpers shared by backends --------------------------------------------------------------


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


PIN_COLUMNS = "server, kind, name, status, digest, definition, actor, at, markers"


def pin_row(r: PinRecord) -> tuple[Any, ...]:
    """A pin as stored, in ``PIN_COLUMNS`` order (markers as JSON)."""
    return (r.server, r.kind, r.name, r.status, r.digest, r.definition, r.actor, r.at,
            json.dumps(r.markers))


def pin_record(row: Sequence[Any]) -> PinRecord:
    server, kind, name, status, dig, definition, actor, at, markers = row
    return PinRecord(server=server, kind=kind, name=name, status=status, digest=dig,
                     definition=definition, actor=actor, at=at, markers=json.loads(markers))
