"""A PostgreSQL write whose task is cancelled once it was sent.

asyncpg answers a cancelled query at once with ``CancelledError`` and sends the server a
cancel request on a connection of its own; a statement the server finishes before that
request arrives is done (a COMMIT committed) -- while its caller was told "cancelled".
A registration written so was never applied here (this gateway skips its own changes
in the change feed: only the 30 s reconcile saw it), and an admin operation answered
nothing of what it did.  As SQLite's (``store/sqlite_connection.py``): a write handed to
the server ends and returns what it did, and the cancellation lands at the caller's
next checkpoint; one cancelled before it had a connection never runs.

The window is made wide and certain: the statement's commit waits for an advisory lock
the test holds (a deferred constraint trigger), and the cancel request is held back
until the test let the commit go.  A real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.store.postgres import PostgresStore
from tests.pg import PgCluster

pytestmark = pytest.mark.anyio
COMMIT_LOCK = 424242  # the advisory lock a commit of the tables below waits for


def commits_wait_for_a_lock(cluster: PgCluster, database: str, *tables: str) -> None:
    """Each commit that wrote ``tables`` first takes ``COMMIT_LOCK`` (deferred trigger)."""
    cluster.psql(
        "CREATE FUNCTION wait_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" PERFORM pg_advisory_xact_lock({COMMIT_LOCK}); RETURN NULL; END $$;"
        + "".join(f"CREATE CONSTRAINT TRIGGER wait_at_commit AFTER INSERT OR UPDATE ON {t}"
                  " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION"
                  " wait_at_commit();" for t in tables), database)


async def cancelled_in_commit(store: PostgresStore, write: Callable[[], Awaitable[Any]],
                              monkeypatch: pytest.MonkeyPatch) -> bool:
    """Cancel ``write`` while its commit waits; the commit then goes through before
    asyncpg's cancel request reaches the server.  Whether ``write`` returned."""
    asyncpg = pytest.importorskip("asyncpg")
    holder = await asyncpg.connect(store._url)
    cancel_may_go = anyio.Event()
    send_cancel = asyncpg.connection.Connection._cancel

    async def late_cancel(self: Any, *args: Any) -> None:  # a slow network, say
        await cancel_may_go.wait()
        await send_cancel(self, *args)

    monkeypatch.setattr(asyncpg.connection.Connection, "_cancel", late_cancel)
    returned = False
    caller = anyio.CancelScope()

    async def writing() -> None:
        nonlocal returned
        with caller:
            await write()
            returned = True

    try:
        await holder.execute("SELECT pg_advisory_lock($1)", COMMIT_LOCK)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writing)
            waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                       " AND NOT granted AND objid = $1")
            with anyio.fail_after(60):
                while not await holder.fetchval(waiting, COMMIT_LOCK):  # noqa: ASYNC110 - no event
                    await anyio.sleep(0.02)
            caller.cancel()
            await holder.execute("SELECT pg_advisory_unlock($1)", COMMIT_LOCK)
            busy = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state = 'active'")
            with anyio.fail_after(60):  # the statement ended on the server: then the cancel
                while await holder.fetchval(busy):  # noqa: ASYNC110 - no event
                    await anyio.sleep(0.02)
            cancel_may_go.set()
    finally:
        cancel_may_go.set()
        await holder.close()
    return returned


async def test_a_cancelled_write_that_committed_returns(
        pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_cluster.create_database()
    database = url.rsplit("/", 1)[1]
    store = await PostgresStore.open(url)
    try:
        commits_wait_for_a_lock(pg_cluster, database, "servers", "audit")

        # A change-feed mutation (one transaction, its COMMIT in flight).
        returned = await cancelled_in_commit(store, lambda: (
            store.put_server("beta", {"url": "http://127.0.0.1:9/b"}, True)), monkeypatch)
        stored = [r.name for r in await store.servers()]
        assert (stored, returned) in ((["beta"], True), ([], False)), (stored, returned)

        # A single statement (its own transaction).
        returned = await cancelled_in_commit(store, lambda: (
            store.add_audit("ada", "reconnect_server", "alpha", None, "ready")), monkeypatch)
        written = [e.action for e in await store.audit()]
        assert (written, returned) in ((["reconnect_server"], True), ([], False)), (
            written, returned)

        # The pool is whole: each write above gave its connection back.
        await store.put_server("gamma", {"url": "http://127.0.0.1:9/g"}, True)
        assert "gamma" in [r.name for r in await store.servers()]
    finally:
        await store.close()


async def test_a_write_waiting_on_a_held_lock_gives_up_and_says_who_holds_it(
        pg_cluster: PgCluster) -> None:
    """A write that has its connection is shielded from a cancel, and was bounded only by
    asyncpg's ``command_timeout`` (60 s): with another session holding the change feed's
    lock, ``put_server`` waited a minute, and so did a gateway's stop that cancelled it.
    Now each write gives up after ``WRITE_TIMEOUT``, is not made, and says the store is
    busy and who holds the lock; cancelled, it ends within that bound too."""
    from fast_mcp_gateway.store import StoreUnavailable
    from fast_mcp_gateway.store.postgres_busy import WRITE_TIMEOUT
    from fast_mcp_gateway.store.postgres_schema import FEED_LOCK

    asyncpg = pytest.importorskip("asyncpg")
    url = pg_cluster.create_database()
    store = await PostgresStore.open(url)
    holder = await asyncpg.connect(url, server_settings={"application_name": "ops-psql"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", FEED_LOCK)
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                   " AND NOT granted AND pid <> pg_backend_pid()")
        with anyio.fail_after(WRITE_TIMEOUT + 30), \
                pytest.raises(StoreUnavailable) as raised:
            await store.put_server("beta", {"url": "http://127.0.0.1:9/b"}, True)
        message = str(raised.value)
        assert "the store is busy (locked by pid " in message, message
        assert "application 'ops-psql'" in message and "waited 5s for a lock" in message
        assert "pg_terminate_backend" in message, message

        # A stop cancels a write waiting so: it ends within the bound, not a minute.
        stopping = anyio.CancelScope()
        outcome: list[BaseException | None] = []

        async def writing() -> None:
            with stopping:
                try:
                    await store.put_server("gamma", {"url": "http://127.0.0.1:9/g"}, True)
                except StoreUnavailable as exc:
                    outcome.append(exc)
                else:
                    outcome.append(None)

        with anyio.fail_after(WRITE_TIMEOUT + 30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(writing)
                while not await holder.fetchval(waiting):  # noqa: ASYNC110 - no event
                    await anyio.sleep(0.02)
                stopping.cancel()
        assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable), outcome
        await holder.execute("SELECT pg_advisory_unlock($1)", FEED_LOCK)
        assert [r.name for r in await store.servers()] == []  # neither was made
        await store.put_server("delta", {"url": "http://127.0.0.1:9/d"}, True)  # free again
        assert [r.name for r in await store.servers()] == ["delta"]
    finally:
        await holder.close()
        await store.close()
