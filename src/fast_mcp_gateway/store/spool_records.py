"""What a spool file holds (``store/spool.py``): its lines, read whole, or salvaged from
a ``.part`` file a kill cut short, and written into the store.

A spool file is JSON lines.  The first names the store and how many records of each
kind follow (``{"spool": 1, "store": ..., "calls": n, "health": m}``, and ``"audit": k``
in formats 2 and 3); then one line per record, ``{"call": {...}}``, ``{"health": {...}}``
or ``{"audit": {...}}``.  A file holding audit entries is format 3 (its entries carry
their ``uid``; format 2's did not, and are still read), so that a gateway reading only
format 1 (it would misread the audit lines as health transitions) or 1 and 2 (it would
fail on the ``uid``) refuses it in words; one without is format 1, readable by such a
gateway (a downgrade between a stop and a start).

A field a record gained since (``LATER``: a call's ``client_kind``) is written apart, in
the line's ``"extra"`` object: ``{"call": {...}, "extra": {"client_kind": "token"}}``.
An older gateway builds each record from its ``"call"`` object alone, refusing a field it
does not know (0.1.0 as of 0ee0d11: the whole file unreadable at every start, and the
call lines of a ``.part`` dropped as unreadable -- lost); it never reads ``"extra"``,
so it replays the file, without the fields it has no column for (a call record without
``client_kind`` is an admin's only, as the ones it records itself).  In turn this reader
takes from ``"extra"`` the fields it knows and leaves the others (a newer gateway's): a
field goes there only if a gateway may drop it; one that changes what a record means
takes a new format number, which an older gateway refuses in words and leaves to a
newer one.  A ``client_kind`` inside ``"call"`` (files of the versions before) is read.

Written into the store: call records in batches (one transaction each; a record whose
id is stored already is neither stored nor counted again, ``add_invocations``), then
the health transitions and the audit entries the store does not hold yet -- an audit
entry with a ``uid`` is written as it is (the store keeps one entry per uid); for the
others, the same time, server, replica, status and gateway; the same time, actor,
action, target and gateway -- the store's history read back, newest first, to the
oldest one spilled.  So a replay cut short by a crash or an outage is simply run again:
nothing is duplicated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import IO, Any, TypeVar

from fast_mcp_gateway.store.base import Store
from fast_mcp_gateway.store.records import AuditEntry, HealthRecord, Invocation
from fast_mcp_gateway.store.retry import while_unavailable

FORMAT = 1  # call records and health transitions
FORMAT_AUDIT_V2 = 2  # ... and audit entries without their uid (read, no longer written)
FORMAT_AUDIT = 3  # ... and audit entries with their uid
FORMATS = (FORMAT, FORMAT_AUDIT_V2, FORMAT_AUDIT)  # those read
# The fields each record kind gained after its format, written in the line's "extra".
LATER: dict[str, tuple[str, ...]] = {"call": ("client_kind",), "health": (), "audit": ()}
BATCH = 500  # call records per transaction when replaying
PAGE = 500  # history rows read back per query when leaving out those stored

R = TypeVar("R", HealthRecord, AuditEntry)


@dataclasses.dataclass
class Held:
    """Records held for the store, or spilled in a spool file."""

    calls: list[Invocation] = dataclasses.field(default_factory=list)
    health: list[HealthRecord] = dataclasses.field(default_factory=list)
    audit: list[AuditEntry] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.calls) + len(self.health) + len(self.audit)

    def counts(self) -> tuple[int, int, int]:
        return len(self.calls), len(self.health), len(self.audit)

    def lines(self, target: str) -> Iterator[str]:
        """The spool file's lines, for the store named ``target``."""
        head: dict[str, Any] = {"spool": FORMAT_AUDIT if self.audit else FORMAT,
                                "store": target, "calls": len(self.calls),
                                "health": len(self.health)}
        if self.audit:
            head["audit"] = len(self.audit)
        yield json.dumps(head) + "\n"
        for kind, records in (("call", self.calls), ("health", self.health),
                              ("audit", self.audit)):
            for record in records:
                fields = dataclasses.asdict(record)
                later = {name: fields.pop(name) for name in LATER[kind]}
                line: dict[str, Any] = {kind: fields}
                extra = {name: value for name, value in later.items() if value is not None}
                if extra:
                    line["extra"] = extra
                yield json.dumps(line) + "\n"


def counted(calls: int, health: int, audit: int = 0) -> str:
    """``calls``, ``health`` and ``audit`` records in words ("2 call record(s) and ...")."""
    parts = [f"{calls} call record(s)"] if calls or not (health or audit) else []
    if health:
        parts.append(f"{health} health transition(s)")
    if audit:
        parts.append(f"{audit} audit {'entry' if audit == 1 else 'entries'}")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def head_counts(head: Any) -> tuple[int, int, int]:
    """The counts a spool file's first line says (a ``ValueError`` if it says none);
    its format is checked."""
    if not isinstance(head, dict):
        raise ValueError("its first line is not a spool file's")
    if head.get("spool") not in FORMATS:
        raise ValueError(f"spool format {head.get('spool')!r}, this gateway reads "
                         f"{', '.join(map(str, FORMATS[:-1]))} and {FORMATS[-1]}")
    try:
        return int(head["calls"]), int(head["health"]), int(head.get("audit", 0))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"its first line lacks a count: {exc}") from exc


def read(lines: IO[str]) -> Held:
    """A whole spool file's records; a line that does not parse, or counts that differ
    from its first line's, is a ``ValueError`` (or ``KeyError``, ``TypeError``)."""
    meant = head_counts(json.loads(lines.readline()))
    held = Held()
    for line in lines:
        if line.strip():
            _add(held, json.loads(line))
    if held.counts() != meant:
        raise ValueError(f"{counted(*held.counts())} where its first line says "
                         f"{counted(*meant)}")
    return held


def salvage(data: bytes) -> tuple[tuple[int, int, int] | None, Held, int]:
    """What a ``.part`` file holds whole: its first line's counts (None: torn), its
    records, and how many lines are torn or unreadable.  A spool format it does not
    know is raised (a newer gateway's file: left to it)."""
    meant: tuple[int, int, int] | None = None
    held = Held()
    bad = 0
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)  # a line cut short never parses: a JSON object
        except ValueError:
            bad += 1
            continue
        if number == 0 and isinstance(entry, dict) and "spool" in entry:
            meant = head_counts(entry)  # an unknown format is raised
            continue
        try:
            _add(held, entry)
        except (KeyError, TypeError):
            bad += 1
    return meant, held, bad


def _add(held: Held, entry: Any) -> None:
    if "call" in entry:
        held.calls.append(Invocation(**_fields(entry, "call", Invocation)))
    elif "health" in entry:
        held.health.append(HealthRecord(**_fields(entry, "health", HealthRecord)))
    else:
        held.audit.append(AuditEntry(**_fields(entry, "audit", AuditEntry)))


def _fields(entry: Any, kind: str, record: type[Any]) -> dict[str, Any]:
    """A line's record fields: its ``kind`` object's, and those of its ``"extra"`` this
    gateway knows (module docstring)."""
    if not isinstance(entry[kind], dict):
        raise TypeError(f"a {kind} line holds no object")
    fields = dict(entry[kind])
    extra = entry.get("extra")
    if isinstance(extra, dict):
        known = {f.name for f in dataclasses.fields(record)}
        fields.update({name: value for name, value in extra.items()
                       if name in known and name not in fields})
    return fields


async def write_into(store: Callable[[], Store], held: Held) -> None:
    """Write ``held`` into ``store()`` (module docstring), waiting out an outage; the
    store's refusal is raised."""
    for start in range(0, len(held.calls), BATCH):
        chunk = held.calls[start:start + BATCH]

        async def write(chunk: list[Invocation] = chunk) -> None:
            await store().add_invocations(chunk)

        await while_unavailable(write, first=0.5, most=5.0)

    async def write_health() -> None:
        await store().add_health_records(await _not_stored(
            held.health, _health_key, lambda server, before: store().health_records(
                server=server, limit=PAGE, before_id=before), lambda r: r.server))

    async def write_audit() -> None:
        unkeyed = [e for e in held.audit if e.uid is None]  # format 2's
        left = await _not_stored(unkeyed, _audit_key, lambda _, before: store().audit(
            limit=PAGE, before_id=before), lambda _: "") if unkeyed else []
        for entry in held.audit:
            if entry.uid is not None or entry in left:
                await store().add_audit(entry.actor, entry.action, entry.target,
                                        entry.arguments, entry.result, entry.instance_id,
                                        at=entry.at, uid=entry.uid)

    await while_unavailable(write_health, first=0.5, most=5.0)
    await while_unavailable(write_audit, first=0.5, most=5.0)


def _health_key(r: HealthRecord) -> tuple[object, ...]:
    return (r.at, r.server, r.replica, r.status, r.instance_id)


def _audit_key(r: AuditEntry) -> tuple[object, ...]:
    return (r.at, r.actor, r.action, r.target, r.instance_id)


async def _not_stored(records: Sequence[R], key: Callable[[R], tuple[object, ...]],
                      page: Callable[[str, int | None], Awaitable[list[R]]],
                      history: Callable[[R], str]) -> list[R]:
    """``records`` without those the store holds already (a replay cut short after
    they were written): each ``history`` (a server's, or the one audit log) read back
    ``page`` by page, newest first, until a whole page is older than the oldest one of
    ``records`` in it."""
    stored: set[tuple[object, ...]] = set()
    for name in sorted({history(r) for r in records}):
        oldest = min(r.at for r in records if history(r) == name)
        before: int | None = None
        while True:
            rows = await page(name, before)
            stored.update(key(r) for r in rows)
            if len(rows) < PAGE or max(r.at for r in rows) < oldest:
                break
            before = rows[-1].id
    return [r for r in records if key(r) not in stored]
