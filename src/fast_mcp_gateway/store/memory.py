"""The in-memory backend: every store concern in Python structures, for tests and demos.

Behaves as the SQLite backend does -- same ordering, paging cursors, filters, id
assignment (ids are never reused), aggregates and statistics (the same histogram
arithmetic, store/stats.py) and retention -- and loses everything when the process
ends.  Chosen with ``memory://``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from fast_mcp_gateway.store.base import invocation_page, parse_cursor, written_position
from fast_mcp_gateway.store.credentials import MemoryCredentials
from fast_mcp_gateway.store.eras import EraNeed
from fast_mcp_gateway.store.feed import LocalChangeFeed
from fast_mcp_gateway.store.names import NameBinding, claimed
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
    forgotten,
)
from fast_mcp_gateway.store.stats import (
    AggregateKey,
    LatencyStats,
    Resolution,
    aggregate_batch,
    finish,
    group_key,
    merge_into,
    window_parts,
)


class MemoryStore(MemoryCredentials):
    """Every ``Store`` protocol, in memory (see the module docstring)."""

    shared = False  # one process, one gateway

    def __init__(self) -> None:
        super().__init__()
        self._invocations: dict[str, Invocation] = {}
        self._written: dict[str, int] = {}  # the order records were written in
        self._writes = itertools.count(1)
        self._aggregates: dict[Resolution, dict[AggregateKey, LatencyStats]] = {
            "minute": {}, "hour": {}}
        self._servers: dict[str, Registration] = {}
        self._routes: dict[int, RouteRecord] = {}
        self._audit: list[AuditEntry] = []
        self._health: list[HealthRecord] = []
        self._inspections: list[InspectionRecord] = []
        self._alert_rules: dict[str, AlertRuleRecord] = {}
        self._era_needs: dict[str, EraNeed] = {}
        self._names: dict[tuple[str, str], NameBinding] = {}  # (kind, exposed) ->
        self._leases: dict[str, tuple[str, float, frozenset[str] | None]] = {}
        self._alert_events: list[AlertEvent] = []
        self._ids = {name: itertools.count(1)
                     for name in ("routes", "audit", "health", "inspections", "alerts")}
        self._feed = LocalChangeFeed()
        self._pins: dict[tuple[str, str, str, str], PinRecord] = {}

    async def close(self) -> None:
        """Nothing to release; the data stays readable until the object is dropped."""

    # -- invocations --------------------------------------------------------------------

    async def add_invocations(self, rows: Iterable[Invocation]) -> int:
        rows = list(rows)
        fresh: list[Invocation] = []
        for r in rows:
            # As stored by SQLite: an empty route reads back as None, a duplicate id is
            # ignored (and not counted again: a replayed or retried batch adds nothing);
            # copies keep a caller's later mutation of its lists out of the store.
            if r.id not in self._invocations:
                self._invocations[r.id] = replace(
                    r, route=[dict(step) for step in r.route] if r.route else None)
                self._written[r.id] = next(self._writes)
                fresh.append(r)
        minutes, hours = aggregate_batch(fresh)
        batches: tuple[tuple[Resolution, dict[AggregateKey, LatencyStats]], ...] = (
            ("minute", minutes), ("hour", hours))
        for resolution, groups in batches:
            stored = self._aggregates[resolution]
            for key, add in groups.items():
                assert add.min_ms is not None and add.max_ms is not None
                merge_into(stored.setdefault(key, LatencyStats()), add.count, add.errors,
                           add.total_ms, add.min_ms, add.max_ms, add.histogram, add.cancelled)
        return len(rows)

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
        after = parse_cursor(cursor) if cursor else None

        def wanted(r: Invocation) -> bool:
            if after is not None and ((r.started_at, r.id) >= after if newest_first
                                      else (r.started_at, r.id) <= after):
                return False
            return ((since is None or r.started_at >= since)
                    and (until is None or r.started_at <= until)
                    and (server is None or r.server == server)
                    and (tool is None or r.exposed == tool)
                    and (status is None or r.status == status)
                    and (instance is None or r.instance_id == instance)
                    and (client is None or (r.client_kind, r.client) == client))

        rows = sorted(filter(wanted, self._invocations.values()),
                      key=lambda r: (r.started_at, r.id), reverse=newest_first)
        return invocation_page(rows, limit)

    async def invocations_written(
        self, after: int | None, *, server: str | None = None, tool: str | None = None,
        status: str | None = None, instance: str | None = None, limit: int = 1000,
    ) -> tuple[list[Invocation], int]:
        last = max(self._written.values(), default=0)
        if after is None:
            return [], last
        rows = sorted(((seq, self._invocations[rid]) for rid, seq in self._written.items()
                       if seq > after and rid in self._invocations), key=lambda item: item[0])
        rows = [(seq, r) for seq, r in rows
                if (server is None or r.server == server) and (tool is None or r.exposed == tool)
                and (status is None or r.status == status)
                and (instance is None or r.instance_id == instance)][:limit]
        return ([r for _, r in rows],
                written_position(rows[-1][0] if rows else None, last, len(rows), limit))

    async def stats(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, LatencyStats]:
        out: dict[str, LatencyStats] = {}
        for resolution, p_lo, p_hi in window_parts(since, until, time.time()):
            for (period, srv, exposed), agg in self._aggregates[resolution].items():
                if ((p_lo is not None and period < p_lo) or (p_hi is not None and period > p_hi)
                        or (server is not None and srv != server)
                        or (tool is not None and exposed != tool) or not agg.count):
                    continue
                assert agg.min_ms is not None and agg.max_ms is not None
                merge_into(out.setdefault(group_key(group_by, srv, exposed), LatencyStats()),
                           agg.count, agg.errors, agg.total_ms, agg.min_ms, agg.max_ms,
                           agg.histogram, agg.cancelled)
        return finish(out)

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        if max_age_seconds is not None:
            cutoff = now - max_age_seconds
            old = [k for k, r in self._invocations.items() if r.started_at < cutoff]
            for k in old:
                del self._invocations[k]
                self._written.pop(k, None)
            removed += len(old)
            for stored, seconds in ((self._aggregates["minute"], 60),
                                    (self._aggregates["hour"], 3600)):
                period = int(cutoff // seconds)
                for key in [key for key in stored if key[0] < period]:
                    del stored[key]
            self._audit = [e for e in self._audit if e.at >= cutoff]
            self._health = [e for e in self._health if e.at >= cutoff]
            self._inspections = [e for e in self._inspections if e.at >= cutoff]
            self._alert_events = [e for e in self._alert_events if e.at >= cutoff]
        if max_rows is not None and len(self._invocations) > max_rows:
            newest = sorted(self._invocations.values(), key=lambda r: (r.started_at, r.id),
                            reverse=True)
            for r in newest[max_rows:]:
                del self._invocations[r.id]
                self._written.pop(r.id, None)
                removed += 1
        return removed

    # -- control plane ------------------------------------------------------------------

    async def put_server(self, name: str, config: dict[str, Any] | None, enabled: bool) -> None:
        self._servers[name] = Registration(name=name, config=_copy(config), enabled=enabled,
                                           updated_at=time.time())
        self._feed.note("server", name)

    async def add_server(self, name: str, config: dict[str, Any], enabled: bool) -> bool:
        held = self._servers.get(name)
        if held is not None and held.config not in (None, TOMBSTONE):
            return False
        await self.put_server(name, config, enabled)
        return True

    async def set_server_enabled(self, name: str, enabled: bool) -> None:
        held = self._servers.get(name)
        await self.put_server(name, held.config if held is not None else None, enabled)

    async def delete_server(self, name: str) -> None:
        if self._servers.pop(name, None) is not None:
            self._feed.note("server", name)

    async def servers(self) -> list[Registration]:
        return [replace(r, config=_copy(r.config))
                for _, r in sorted(self._servers.items())]

    async def add_route(self, pattern: str, match: RouteMatch, target: str,
                        priority: int) -> int:
        route_id = next(self._ids["routes"])
        self._routes[route_id] = RouteRecord(id=route_id, pattern=pattern, match=match,
                                             priority=priority, target=target,
                                             created_at=time.time())
        self._feed.note("route", route_id)
        return route_id

    async def update_route(self, route_id: int, pattern: str, match: RouteMatch,
                           target: str, priority: int) -> bool:
        route = self._routes.get(route_id)
        if route is None:
            return False
        self._routes[route_id] = replace(route, pattern=pattern, match=match, target=target,
                                         priority=priority)
        self._feed.note("route", route_id)
        return True

    async def delete_route(self, route_id: int) -> bool:
        if self._routes.pop(route_id, None) is None:
            return False
        self._feed.note("route", route_id)
        return True

    async def routes(self) -> list[RouteRecord]:
        return sorted(self._routes.values(), key=lambda r: (-r.priority, r.id))

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        return await self._feed.changes(since, wait=wait)

    # -- histories ----------------------------------------------------------------------

    async def add_health_records(self, rows: Sequence[HealthRecord]) -> None:
        self._health += [replace(r, id=next(self._ids["health"])) for r in rows]

    async def health_records(self, *, server: str | None = None, limit: int = 50,
                             before_id: int | None = None) -> list[HealthRecord]:
        return _page(self._health, server, limit, before_id)

    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None,
                        instance_id: str | None = None, *, at: float | None = None,
                        uid: str | None = None) -> None:
        if uid is not None and any(e.uid == uid for e in self._audit):
            return  # written again (the SQL backends' unique key)
        at = time.time() if at is None else at
        self._audit.append(AuditEntry(id=next(self._ids["audit"]), at=at, actor=actor,
                                      action=action, target=target, arguments=arguments,
                                      result=result, instance_id=instance_id, uid=uid))

    async def audit(self, *, limit: int = 50, before_id: int | None = None
                    ) -> list[AuditEntry]:
        return _page(self._audit, None, limit, before_id)

    async def add_inspection(self, server: str, replica: str | None, operation: str,
                             target: str | None, arguments: str | None, status: str,
                             duration_ms: float, result: str | None) -> int:
        entry = InspectionRecord(id=next(self._ids["inspections"]), at=time.time(),
                                 server=server, replica=replica, operation=operation,
                                 target=target, arguments=arguments, status=status,
                                 duration_ms=duration_ms, result=result)
        self._inspections.append(entry)
        return entry.id

    async def inspections(self, *, server: str | None = None, limit: int = 50,
                          before_id: int | None = None) -> list[InspectionRecord]:
        return _page(self._inspections, server, limit, before_id)

    async def clear_inspections(self, server: str | None = None) -> int:
        before = len(self._inspections)
        self._inspections = [e for e in self._inspections if server and e.server != server]
        return before - len(self._inspections)

    # -- pins -----------------------------------------------------------------------------

    async def pins(self, server: str | None = None) -> list[PinRecord]:
        return [replace(r, markers=list(r.markers)) for _, r in sorted(self._pins.items())
                if server is None or r.server == server]

    async def put_pins(self, rows: Sequence[PinRecord]) -> None:
        for r in rows:
            self._pins[(r.server, r.kind, r.name, r.status)] = replace(
                r, markers=list(r.markers))

    async def delete_pins(self, server: str, keys: Sequence[tuple[str, str, str]] | None = None
                          ) -> int:
        doomed = [k for k in self._pins if k[0] == server
                  and (keys is None or (k[1], k[2], k[3]) in set(keys))]
        for k in doomed:
            del self._pins[k]
        return len(doomed)

    async def forget_pins(self, server: str, actor: str) -> tuple[int, int]:
        approved = sum(r.status == "approved" for r in await self.pins(server))
        removed = await self.delete_pins(server)
        if removed:
            await self.add_audit(actor, "forget_pins", server, None,
                                 forgotten(approved, removed - approved))
        return approved, removed - approved


    # -- alerts -------------------------------------------------------------------------

    async def era_needs(self) -> list[EraNeed]:
        return [need for _, need in sorted(self._era_needs.items())]

    async def put_era_need(self, need: EraNeed) -> None:
        self._era_needs[need.server] = need

    async def name_bindings(self) -> list[NameBinding]:
        return [b for _, b in sorted(self._names.items())]

    async def claim_names(self, claims: Sequence[NameBinding]) -> list[NameBinding]:
        for c in claims:
            mine = [k for k, b in self._names.items()
                    if (b.kind, b.server, b.original) == (c.kind, c.server, c.original)]
            if any(self._names[k].base == c.base for k in mine):
                continue
            for k in mine:
                del self._names[k]
            self._names.setdefault((c.kind, c.exposed), c)
        return claimed(self._names.values(), claims)

    async def release_names(self, server: str) -> int:
        doomed = [k for k, b in self._names.items() if b.server == server]
        for k in doomed:
            del self._names[k]
        self._feed.note_each("names", (server,) if doomed else ())
        return len(doomed)

    async def forget_names(self, bindings: Sequence[NameBinding]) -> int:
        doomed = {(b.kind, b.exposed) for b in bindings
                  if (held := self._names.get((b.kind, b.exposed))) is not None
                  and (held.server, held.original) == (b.server, b.original)}
        self._feed.note_each("names", (self._names[k].server for k in doomed))
        for k in doomed:
            del self._names[k]
        return len(doomed)

    async def alert_rules(self) -> list[AlertRuleRecord]:
        return [replace(r, config=_copy(r.config)) for _, r in sorted(self._alert_rules.items())]

    async def put_alert_rule(self, name: str, config: dict[str, Any] | None) -> None:
        self._alert_rules[name] = AlertRuleRecord(name=name, config=_copy(config),
                                                  updated_at=time.time())

    async def delete_alert_rule(self, name: str) -> bool:
        return self._alert_rules.pop(name, None) is not None

    async def add_alert_events(self, rows: Sequence[AlertEvent]) -> None:
        self._alert_events += [replace(r, id=next(self._ids["alerts"])) for r in rows]

    async def alert_events(self, *, server: str | None = None, rule: str | None = None,
                           limit: int = 50, before_id: int | None = None
                           ) -> list[AlertEvent]:
        return _page(self._alert_events, server, limit, before_id, rule)

    async def hold_lease(self, name: str, holder: str, ttl: float,
                         servers: Iterable[str] | None = None) -> bool:
        now = time.time()
        current = self._leases.get(name)
        if current is None or current[0] == holder or current[1] < now:
            self._leases[name] = (holder, now + ttl,
                                  None if servers is None else frozenset(servers))
            return True
        return False

    async def release_lease(self, name: str, holder: str) -> None:
        if self._leases.get(name, ("", 0.0, None))[0] == holder:
            del self._leases[name]

    async def lease(self, name: str) -> Lease | None:
        current = self._leases.get(name)
        return None if current is None else Lease(name, *current)

    async def leases(self, prefix: str) -> list[Lease]:
        return [Lease(n, *held) for n, held in sorted(self._leases.items())
                if n.startswith(prefix)]


_Entry = TypeVar("_Entry", AuditEntry, HealthRecord, InspectionRecord, AlertEvent)


def _page(entries: list[_Entry], server: str | None, limit: int, before_id: int | None,
          rule: str | None = None) -> list[_Entry]:
    """Newest first (entries are kept in id order), one server's, older than before_id."""
    def newest() -> Iterator[_Entry]:
        for entry in reversed(entries):
            if server is not None and getattr(entry, "server", None) != server:
                continue
            if rule is not None and getattr(entry, "rule", None) != rule:
                continue
            if before_id is not None and (entry.id or 0) >= before_id:
                continue
            yield entry
    return list(itertools.islice(newest(), limit))


def _copy(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of a JSON value, as a round trip through a database gives."""
    return None if config is None else dict(json.loads(json.dumps(config)))
