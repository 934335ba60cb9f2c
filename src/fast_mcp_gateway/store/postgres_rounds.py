"""Rounds of parked calls handed between gateway instances on one PostgreSQL store.

A 2026-07-28 host's round may reach another instance than the one whose upstream call
waits for its answers (``front/crossing.py``).  Each message is a row of
``parked_rounds``: a round for the instance holding the question (``kind='round'``),
or that instance's reply for the one that received the round (``'reply'``), its
payload a JSON text of any size (``NOTIFY`` carries only ``kind:id``: a payload may
exceed its 8000 bytes).  ``NOTIFY`` on the addressee's channel (``channel``) says a
row is there.  The one taking a row deletes it (``DELETE ... RETURNING``), so a
message is taken at most once, and a round withdrawn (``take`` by its sender) cannot
be taken by the holder after.  Rows older than ``KEEP_SECONDS`` (a sender gone
before its reply came) are deleted by listening instances as they read the rounds left
(``waiting``: on listening, then every ``crossing.CHECK_SECONDS``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

from fast_mcp_gateway.store.postgres_feed import application, load_asyncpg

CHANNEL_PREFIX = "mcp_gateway_rounds_"
KEEP_SECONDS = 3600.0
INSTANCE_LEASE = "instance:"  # admin/instance_lease.PREFIX: each instance holds its own


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
                " VALUES ($1, $2, $3, $4, $5, $6)", key, kind, to, sender, payload, time.time())
            await conn.execute("SELECT pg_notify($1, $2)", channel(to), f"{kind}:{key}")

    async def tell(self, to: str, kind: str, key: str) -> None:
        """Only a notification (no row): ``cancel`` of a round ``to`` took."""
        async with self._connection() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel(to), f"{kind}:{key}")

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
            await conn.execute("DELETE FROM parked_rounds WHERE at < $1",
                               time.time() - KEEP_SECONDS)
            rows = await conn.fetch("SELECT id FROM parked_rounds WHERE addressee = $1"
                                    " AND kind = 'round' ORDER BY at", to)
        return [str(r[0]) for r in rows]

    async def state(self, key: str, holder: str) -> tuple[bool, bool, float | None]:
        """For a round posted to ``holder``: whether it is still there (not taken),
        whether its reply is, and when the holder's instance lease ends (None: none)."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT EXISTS (SELECT 1 FROM parked_rounds WHERE id = $1 AND kind = 'round'),"
                " EXISTS (SELECT 1 FROM parked_rounds WHERE id = $1 AND kind = 'reply'),"
                " (SELECT expires_at FROM leases WHERE name = $2)",
                key, INSTANCE_LEASE + holder)
        return bool(row[0]), bool(row[1]), None if row[2] is None else float(row[2])

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


def rounds_of(store: object) -> PgRounds | None:
    """The rounds of ``store`` if it is (or a deferred store opened as) PostgreSQL."""
    from fast_mcp_gateway.store.postgres import PostgresStore

    store = getattr(store, "opened", None) or store  # store/deferred.py, once opened
    if not isinstance(store, PostgresStore):
        return None
    return PgRounds(store._written, store._conn, store._url, store._timeout)
