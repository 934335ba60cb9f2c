"""Rounds of parked calls handed between gateway instances on one PostgreSQL store.

A 2026-07-28 host's round may reach another instance than the one whose upstream call
waits for its answers (``front/crossing.py``).  Each message is a row of
``parked_rounds``: a round for the instance holding the question (``kind='round'``),
or that instance's reply for the one that received the round (``'reply'``), its
payload a JSON text of any size (``NOTIFY`` carries only ``kind:id``: a payload may
exceed its 8000 bytes).  ``NOTIFY`` on the addressee's channel (``channel``) says a
row is there.  The one taking a row deletes it (``DELETE ... RETURNING``), so a
message is taken at most once, and a round withdrawn (``take`` by its sender) cannot
be taken by the holder after.  The holder takes a round and leaves in its place, in
the same transaction, a ``'taken'`` row holding its deadline (``take_round``: by then
it replies, or the receiver stops waiting); its reply deletes it (``reply``).  Every
time here (rows' ``at``, that deadline, the holder's lease end) is written and compared
by the database's clock (``CLOCK``), the holder's deadline as what is left of it by its
own clock: gateways' clocks are never compared with each other's (lease30).  While it
serves the round, the call's progress and logs go to the receiver as ``'note'`` rows
(id ``<key>.<n>``, in order), written before the reply.  Rows older than
``KEEP_SECONDS`` (a sender gone before its reply came) are deleted by listening
instances as they read the rounds left (``waiting``: on listening, then every
``crossing.CHECK_SECONDS``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, NamedTuple

from fast_mcp_gateway.store.postgres_feed import application, load_asyncpg
from fast_mcp_gateway.store.postgres_schema import CLOCK

CHANNEL_PREFIX = "mcp_gateway_rounds_"
KEEP_SECONDS = 3600.0
INSTANCE_LEASE = "instance:"  # admin/instance_lease.PREFIX: each instance holds its own


class RoundState(NamedTuple):
    """A round posted to a holder, as its receiver sees it (``PgRounds.state``)."""

    posted: bool  # still there: not taken
    replied: bool  # its reply is there
    noted: bool  # progress or logs of its call are there
    # Seconds left by the database's clock, negative once past:
    until_left: float | None  # taken: to the holder's deadline (None: not, or replied)
    lease_left: float | None  # to the end of the holder's instance lease (None: none)


def channel(instance: str) -> str:
    """The ``LISTEN`` channel of ``instance`` (a digest: any id fits in 63 bytes)."""
    return CHANNEL_PREFIX + hashlib.sha256(instance.encode()).hexdigest()[:32]


class PgRounds:
    """The ``parked_rounds`` messages of one ``PostgresStore`` (module docstring)."""

    def __init__(self, written: Callable[[], AbstractAsyncContextManager[Any]],
                 connect: Callable[[], AbstractAsyncContextManager[Any]],
                 dsn: str, timeout: float) -> None:
        self._written = written  # a shielded, bounded transaction (``PostgresStore``)
        self._connection = connect  # a pooled connection, errors translated
        self._dsn = dsn
        self._timeout = timeout

    async def post(self, kind: str, key: str, to: str, sender: str, payload: str) -> None:
        """Leave a message for instance ``to`` and tell it (at commit)."""
        async with self._written() as conn:
            await conn.execute(
                "INSERT INTO parked_rounds (id, kind, addressee, sender, payload, at)"
                f" VALUES ($1, $2, $3, $4, $5, {CLOCK})", key, kind, to, sender, payload)
            await conn.execute("SELECT pg_notify($1, $2)", channel(to), f"{kind}:{key}")

    async def tell(self, to: str, kind: str, key: str) -> None:
        """Only a notification (no row): ``cancel`` of a round ``to`` took."""
        async with self._connection() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel(to), f"{kind}:{key}")

    async def take_round(self, key: str, to: str, until_of: Callable[[str], float]
                         ) -> tuple[str, str, float] | None:
        """The round's sender, payload and the deadline ``until_of(payload)`` (unix time
        by this gateway's clock) left in its place (a ``'taken'`` row, one transaction,
        as the database's clock now plus what is left of it); None if it is not there."""
        async with self._written() as conn:
            row = await conn.fetchrow(
                "DELETE FROM parked_rounds WHERE id = $1 AND kind = 'round' AND addressee = $2"
                " RETURNING sender, payload", key, to)
            if row is None:
                return None
            sender, payload = str(row[0]), str(row[1])
            until = until_of(payload)
            await conn.execute(
                "INSERT INTO parked_rounds (id, kind, addressee, sender, payload, at)"
                f" VALUES ($1, 'taken', $2, $3, ({CLOCK} + $4::float8)::text, {CLOCK})",
                key, sender, to, until - time.time())
        return sender, payload, until

    async def reply(self, key: str, to: str, sender: str, payload: str) -> None:
        """The holder's reply to a round it took, for ``to``, in place of its deadline."""
        async with self._written() as conn:
            await conn.execute("DELETE FROM parked_rounds WHERE id = $1 AND kind = 'taken'",
                               key)
            await conn.execute(
                "INSERT INTO parked_rounds (id, kind, addressee, sender, payload, at)"
                f" VALUES ($1, 'reply', $2, $3, $4, {CLOCK})", key, to, sender, payload)
            await conn.execute("SELECT pg_notify($1, $2)", channel(to), f"reply:{key}")

    async def note(self, key: str, n: int, to: str, sender: str, payload: str) -> None:
        """The ``n``-th progress or log of the call a round of ``key`` is served to."""
        await self.post("note", f"{key}.{n:09d}", to, sender, payload)

    async def notes(self, key: str, to: str) -> list[str]:
        """The notes of round ``key`` there, in order, deleted."""
        async with self._written() as conn:
            rows = await conn.fetch(  # ids "<key>.<n>": between "<key>." and "<key>/"
                "DELETE FROM parked_rounds WHERE kind = 'note' AND addressee = $3"
                " AND id > $1 AND id < $2 RETURNING id, payload", key + ".", key + "/", to)
        return [str(row[1]) for row in sorted(rows, key=lambda row: str(row[0]))]

    async def clear(self, key: str) -> None:
        """What is left of round ``key`` once its receiver stops waiting (a reply that
        came meanwhile, the holder's deadline, notes), deleted."""
        async with self._written() as conn:
            await conn.execute("DELETE FROM parked_rounds WHERE (id = $1 AND kind <> 'round')"
                               " OR (id > $2 AND id < $3)", key, key + ".", key + "/")

    async def take(self, kind: str, key: str, to: str) -> tuple[str, str] | None:
        """The message's sender and payload, deleted; None if none is there (taken)."""
        async with self._written() as conn:
            row = await conn.fetchrow(
                "DELETE FROM parked_rounds WHERE id = $1 AND kind = $2 AND addressee = $3"
                " RETURNING sender, payload", key, kind, to)
        return None if row is None else (str(row[0]), str(row[1]))

    async def waiting(self, to: str) -> list[str]:
        """The rounds left for ``to`` (a notification missed while it did not listen);
        first, messages nobody took within ``KEEP_SECONDS`` are deleted."""
        async with self._written() as conn:
            await conn.execute(f"DELETE FROM parked_rounds WHERE at < {CLOCK} - $1::float8",
                               KEEP_SECONDS)
            rows = await conn.fetch("SELECT id FROM parked_rounds WHERE addressee = $1"
                                    " AND kind = 'round' ORDER BY at", to)
        return [str(r[0]) for r in rows]

    async def state(self, key: str, holder: str) -> RoundState:
        """Round ``key`` posted to ``holder``, and the holder's lease (``RoundState``)."""
        async with self._connection() as conn:
            row = await conn.fetchrow(  # one statement: one snapshot
                "SELECT EXISTS (SELECT 1 FROM parked_rounds WHERE id = $1 AND kind = 'round'),"
                " EXISTS (SELECT 1 FROM parked_rounds WHERE id = $1 AND kind = 'reply'),"
                " EXISTS (SELECT 1 FROM parked_rounds WHERE kind = 'note'"
                " AND id > $3 AND id < $4),"
                " (SELECT payload FROM parked_rounds WHERE id = $1 AND kind = 'taken'),"
                f" (SELECT expires_at - {CLOCK} FROM leases WHERE name = $2), {CLOCK}",
                key, INSTANCE_LEASE + holder, key + ".", key + "/")
        until = _seconds(row[3])
        return RoundState(bool(row[0]), bool(row[1]), bool(row[2]),
                          None if until is None else until - float(row[5]),
                          None if row[4] is None else float(row[4]))

    @asynccontextmanager
    async def listening(self, instance: str,
                        heard: Callable[[str, str], None],
                        lost: Callable[[], None]) -> AsyncIterator[Callable[[], Any]]:
        """A dedicated connection listening on ``instance``'s channel: ``heard(kind,
        key)`` for each message, ``lost()`` when the connection ends; what it gives
        checks the connection (a query, bounded: raises if it is gone).  Raises
        ``OSError``/asyncpg errors when it cannot connect (the caller tries again)."""
        asyncpg = load_asyncpg()
        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout,
            server_settings=application(self._dsn, "parked rounds"))

        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            kind, _, key = payload.partition(":")
            heard(kind, key)

        try:
            await conn.add_listener(channel(instance), notified)
            conn.add_termination_listener(lambda *_: lost())
            yield lambda: conn.execute("SELECT 1", timeout=self._timeout)
        finally:
            with suppress(Exception):
                await conn.close(timeout=2)


def _seconds(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:  # not a deadline (written by hand): none
        return None


def rounds_of(store: object) -> PgRounds | None:
    """The rounds of ``store`` if it is (or a deferred store opened as) PostgreSQL."""
    from fast_mcp_gateway.store.postgres import PostgresStore

    store = getattr(store, "opened", None) or store  # store/deferred.py, once opened
    if not isinstance(store, PostgresStore):
        return None
    return PgRounds(store._written, store._conn, store._url, store._timeout)
