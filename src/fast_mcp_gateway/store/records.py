"""The typed records the store protocols (base.py) exchange: one frozen dataclass each.

Times are unix seconds.  An ``id`` the backend assigns is None until stored
(``HealthRecord``, ``AlertEvent``).  The SQL backends read and write most records field
by field (``rows.py``: a record's columns are its fields, by name and in field order),
so a field added here is a column each backend's migrations must add.  Pure data: no
I/O, nothing imported beyond the standard library (``new_uid``: random bits).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


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
    # What ``client`` names: token | jwt | host (a host's client id); None: written
    # before gateways recorded it (a caller without admin never sees it: principal.py)
    client_kind: str | None = None


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A server registered (or overridden) at runtime.  ``config`` is the raw entry as
    registered (``${VARS}`` unexpanded), or None when only the enabled flag is stored."""

    name: str
    config: dict[str, Any] | None
    enabled: bool
    updated_at: float


TOMBSTONE: dict[str, Any] = {"removed": True}
"""The ``config`` of a registration that removes the servers.yaml entry of its name.  A
row holding it, or no config (only the enabled flag), registers no server: an add
(``ControlPlaneStore.add_server``) takes its place."""


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
    """Who changed what through the admin operations.  ``uid`` is given when the entry is
    made (``new_uid``): the store keeps one entry per uid, so an entry written again (a
    retry after a COMMIT whose answer was lost, a spool replayed) is stored once.  None
    in entries stored before it existed (SQLite 11, PostgreSQL 10)."""

    id: int
    at: float
    actor: str
    action: str
    target: str | None
    arguments: str | None  # JSON, redacted
    result: str | None
    instance_id: str | None = None  # the gateway instance that applied it
    uid: str | None = None


def forgotten(approved: int, pending: int) -> str:
    """The result of a ``forget_pins`` audit entry."""
    return f"{approved} approved and {pending} pending definition(s) forgotten"


def new_uid() -> str:
    """A fresh ``AuditEntry.uid`` (random, 128 bits)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class HealthRecord:
    """A state or health transition of one replica.  ``id`` is None until stored."""

    id: int | None = None
    at: float
    server: str
    replica: str
    status: str
    detail: str | None = None
    instance_id: str | None = None  # the gateway instance whose replica it is


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


ChangeKind = Literal["server", "route", "names"]
"""What a change is of: a registration (``key``: its name), a route rule (its id), or
exposed-name bindings released or forgotten (``key``: their server)."""


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


@dataclass(frozen=True)
class Lease:
    """A lease row: ``holder`` has ``name`` until ``expires_at``: unix time by this
    gateway's clock, what the store's clock said was left when it was read from now
    (``lease_of``: a lease is written and compared by the store's clock, never by two
    gateways' clocks: lease30).  ``servers``: the server names the holder said its
    config file configures (an instance lease's, ``admin/instance_lease.py``); None
    when it said none (another lease, or a gateway from before they were said)."""

    name: str
    holder: str
    expires_at: float = field(compare=False)  # two reads of one lease: a little apart
    servers: frozenset[str] | None = None


def lease_servers(servers: Iterable[str] | None, holder: str) -> str | None:
    """``servers`` as a lease row stores them: tagged with their holder, so that a row
    an older gateway took over (its statement leaves the column alone) is not read as
    its own (``servers_of``)."""
    return None if servers is None else json.dumps({"holder": holder,
                                                    "servers": sorted(servers)})


def lease_of(row: Sequence[Any]) -> Lease:
    """A lease from its row: name, holder, the seconds left by the store's clock (its
    ``expires_at`` less the store's now: ``LEASE_LEFT``), servers (``lease_servers``)."""
    return Lease(row[0], row[1], time.time() + float(row[2]), servers_of(row[3], row[1]))


def servers_of(stored: str | None, holder: str) -> frozenset[str] | None:
    """The servers a lease row stores (``lease_servers``) if ``holder`` said them."""
    if stored is None:
        return None
    try:
        said = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(said, dict) or said.get("holder") != holder \
            or not isinstance(said.get("servers"), list):
        return None
    return frozenset(str(s) for s in said["servers"])
