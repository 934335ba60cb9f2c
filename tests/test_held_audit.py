"""A config reload made while the store cannot take its audit entry.

The reload reads the runtime registrations, reads the file and converges the servers;
then the store must take the entry.  A SQLite file another process keeps write-locked
(reads go on: WAL), or a PostgreSQL lost between the two, did not: the reload was done
and logged "not audited, the store is unreachable" -- its entry lost, in a log meant to
say who changed what.  Now the entry is held, stamped when the reload was made, written
once the store is back, and spilled with the call records by a stop before that (the
next start with the store writes it).  Real SQLite files and a real PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.store import (
    AuditEntry,
    Store,
    StoreUnavailable,
    open_store,
    sqlite_connection,
)
from fast_mcp_gateway.store.records import new_uid
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, until
from tests.pg import PgCluster
from tests.test_store_outage import own_cluster

pytestmark = pytest.mark.anyio
__all__ = ["own_cluster"]  # the fixture, used by name


def reloadable(tmp_path: Path, db: str, **settings: Any) -> Gateway:
    """A gateway on ``db`` serving alpha from its config file, which the test then
    edits to add beta (reloaded when asked: no watcher)."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"alpha": memory_entry("alpha")}}))
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           config=config, db=db, reload_interval=0, instance_id="gw-1",
                           **settings)
    config.write_text(json.dumps({"servers": {"alpha": memory_entry("alpha"),
                                              "beta": memory_entry("beta")}}))
    return gateway


class WriteLock:
    """Another process's connection holding the file's write lock (a ``sqlite3``
    shell's open transaction): the gateway reads, its writes wait past the timeout."""

    def __init__(self, db: Path) -> None:
        self.other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    async def take(self) -> None:  # in a thread: the gateway's transaction ends meanwhile
        await anyio.to_thread.run_sync(self.other.execute, "BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.other.in_transaction:
            self.other.execute("ROLLBACK")
        self.other.close()


@asynccontextmanager
async def locked(db: Path) -> AsyncIterator[WriteLock]:
    lock = WriteLock(db)
    try:
        await lock.take()
        yield lock
    finally:
        lock.release()


async def reloads(store: Store) -> list[AuditEntry]:
    return [e for e in await store.audit(limit=50) if e.action == "reload_config"]


async def test_a_reload_while_the_store_refuses_writes_is_audited_once_it_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    gateway = reloadable(tmp_path, str(db))
    async with Client(gateway.server) as host:
        store = gateway.store
        assert store is not None
        async with locked(db):
            made = time.time()
            answer = await host.call_tool("gateway_reload_config", {})
            assert answer.structured_content["added"] == ["beta"], answer
            assert len(gateway.control.held_audit.entries) == 1
            back = time.time()
        assert await gateway.control.held_audit.flushed(60)
        [entry] = await reloads(store)
        assert made <= entry.at <= back, (made, entry.at, back)  # when it was made
        assert (entry.actor, entry.target, entry.instance_id) == (
            "stdio", str(tmp_path / "servers.yaml"), "gw-1")
        assert json.loads(entry.result or "")["added"] == ["beta"]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            and "reload_config" in r.getMessage()]
    assert len(said) == 1 and "held and written once the store is back" in said[0], said
    assert "database's write lock" in said[0], said


async def test_a_reload_audit_held_at_a_stop_is_spilled_and_written_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    spool = tmp_path / "spool"
    gateway = reloadable(tmp_path, str(db), spool_dir=spool)
    lock = WriteLock(db)
    try:
        async with Client(gateway.server):
            await lock.take()
            made = time.time()
            assert (await gateway.control.reload_config()).added == ["beta"]
        # Stopped with the file still locked: the entry is spilled.
        [path] = spool.glob("held-*.jsonl")
        head, *lines = (json.loads(text) for text in path.read_text().splitlines())
        assert (head["spool"], head["audit"]) == (3, 1), head  # format 3: audit entries
        [line] = [line for line in lines if "audit" in line]
        uid = line["audit"]["uid"]  # with the id it was made with
        assert isinstance(uid, str) and len(uid) == 32, line
    finally:
        lock.release()
    again = reloadable(tmp_path, str(db), spool_dir=spool)
    async with Client(again.server):
        await until(lambda: not list(spool.glob("held-*")), 60)
        assert again.store is not None
        [entry] = await reloads(again.store)
        assert entry.actor == "library" and made <= entry.at < made + 60
        assert entry.uid == uid
        assert await again.control.reload_config() is not None  # a second, now stored
        assert len(await reloads(again.store)) == 2


async def test_a_reload_as_postgresql_goes_away_is_audited_when_it_is_back(
        own_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registrations read, PostgreSQL stops while the servers converge: the entry
    waits for it and is written once it answers again."""
    url = own_cluster.create_database()
    gateway = reloadable(tmp_path, url)
    async with Client(gateway.server):
        manager = gateway.control.manager
        reconcile = manager.reconcile

        async def database_stops_meanwhile(desired: Any) -> Any:
            await anyio.to_thread.run_sync(own_cluster.stop)
            return await reconcile(desired)

        monkeypatch.setattr(manager, "reconcile", database_stops_meanwhile)
        assert (await gateway.control.reload_config()).added == ["beta"]
        assert len(gateway.control.held_audit.entries) == 1
        await anyio.to_thread.run_sync(own_cluster.start)
        assert await gateway.control.held_audit.flushed(120)
        assert gateway.store is not None
        assert [e.actor for e in await reloads(gateway.store)] == ["library"]
    store = await open_store(url)
    try:
        assert len(await reloads(store)) == 1
    finally:
        await store.close()


class _Away:
    """A store that cannot take an audit entry (unreachable)."""

    async def add_audit(self, *args: Any, **kwargs: Any) -> None:
        from fast_mcp_gateway.store import StoreUnavailable

        raise StoreUnavailable("the store is away (test)")


async def test_an_entry_held_after_the_writer_stopped_is_spilled_not_left(
        caplog: pytest.LogCaptureFixture) -> None:
    """An operation that outlives the stop's cancellation (``finishing``; a REST change
    uvicorn cancels past its grace, ``admin.context.shieldable``) audits after the held
    entries' writer ended: held then, it was never written nor spilled -- lost, while
    the log said it would be written once the store was back.  Now it goes to the spill
    (the spool, written once the stop's tasks ended) at once."""
    from fast_mcp_gateway.admin.held_audit import HeldAudit

    store: Any = _Away()
    held = HeldAudit(lambda: store)
    spilled: list[AuditEntry] = []
    held.spill = spilled.extend
    async with anyio.create_task_group() as tg:
        await tg.start(held.run)
        tg.cancel_scope.cancel()  # the stop: nothing held, nothing spilled
    entry = AuditEntry(id=0, at=time.time(), actor="ops", action="add_server",
                       target="late", arguments=None, result=None, instance_id=None)
    await held.add(entry)
    assert spilled == [entry] and held.entries == []


class AnswerLost:
    """A real store whose first audit write is made and then answered with an outage,
    as when PostgreSQL's COMMIT succeeds and the connection is lost before its answer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def add_audit(self, *args: Any, **kwargs: Any) -> None:
        await self.store.add_audit(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("the server closed the connection (test: after COMMIT)")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_entry_whose_answer_was_lost_is_stored_once(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The write was made, its answer lost: the entry is held and written again once
    the store answers -- twice in the audit log, the admin change seemingly made twice.
    Now the entry's uid (given when it is made) is the store's unique key: once."""
    from fast_mcp_gateway.admin.held_audit import HeldAudit

    url = request.getfixturevalue("pg_url") if backend == "postgres" else str(
        tmp_path / "g.db")
    store = await open_store(url)
    try:
        lossy = AnswerLost(store)
        held = HeldAudit(lambda: lossy)  # type: ignore[arg-type, return-value]
        entry = AuditEntry(id=0, at=time.time(), actor="ops", action="reconnect_server",
                           target="alpha", arguments=None, result="ready",
                           instance_id="gw-1", uid=new_uid())
        async with anyio.create_task_group() as tg:
            await tg.start(held.run)
            await held.add(entry)
            assert lossy.lost and held.entries == [entry]  # held: the store "went away"
            assert await held.flushed(60)
            tg.cancel_scope.cancel()
        [stored] = await store.audit()
        assert (stored.uid, stored.action, stored.at) == (entry.uid, entry.action, entry.at)
    finally:
        await store.close()


async def test_a_format_2_spool_file_is_still_written_into_the_store(tmp_path: Path) -> None:
    """Audit entries spilled by a gateway before uids (spool format 2, no ``uid``) are
    replayed as before: those the store holds already (same time, actor, action, target
    and gateway) are left out."""
    from fast_mcp_gateway.store.spool import Spool, spool_target

    db = tmp_path / "g.db"
    spool = Spool(tmp_path / "spool", spool_target(db))
    entries = [{"id": 0, "at": 1000.0 + n, "actor": "config-file",
                "action": "reload_config", "target": "servers.yaml", "arguments": None,
                "result": f"reload {n}", "instance_id": "gw-1"} for n in range(2)]
    spool.folder.mkdir(mode=0o700)
    (spool.folder / f"held-{spool.key}-1-1.jsonl").write_text("".join(
        json.dumps(line) + "\n" for line in [
            {"spool": 2, "store": spool.target, "calls": 0, "health": 0, "audit": 2},
            *({"audit": e} for e in entries)]))
    store = await open_store(str(db))
    try:
        await store.add_audit("config-file", "reload_config", "servers.yaml", None,
                              "reload 0", "gw-1", at=1000.0)  # written before a crash
        assert await spool.replay(lambda: store) == 2
        assert spool.files() == []
        assert sorted((e.at, e.result, e.uid) for e in await store.audit()) == [
            (1000.0, "reload 0", None), (1001.0, "reload 1", None)]
    finally:
        await store.close()
