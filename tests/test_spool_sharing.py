"""Spool files shared by gateways on one host, and what names their store.

Two gateways of one store on one host (one spool folder, the default) start at once
after a stop that spilled: both replayed the same file, and the one that came second
to remove it failed ("FileNotFoundError"), which ended that gateway (a background
task's failure stops the gateway); each also wrote the health transitions the other
had not stored yet, twice.  And a PostgreSQL URL holding its password as a query
parameter (``?password=...``, which asyncpg and libpq read) kept it in clear in each
spool file's first line and in the start's warning about another store's files.
And a spilled record the store refuses for good (PostgreSQL takes no NUL character,
which an upstream's error text may hold) failed the replay, and so the gateway, at
every start.  Real SQLite files and PostgreSQL; the spool files as a stop writes them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import HealthRecord, Invocation, Store, open_store
from fast_mcp_gateway.store.spool import Spool, spool_target

pytestmark = pytest.mark.anyio


def spilled(spool: Spool, calls: int, transitions: int) -> None:
    now = time.time()
    spool.hold_calls([Invocation(id=f"r{n}", trace_id="t", client="c", kind="tool",
                                 exposed="alpha_add", server="alpha", original="add",
                                 started_at=now - 60 + n / 1000, duration_ms=2.0,
                                 status="success", instance_id="gw-1")
                      for n in range(calls)])
    spool.hold_health([HealthRecord(at=now - 30 + n, server="alpha", replica="alpha",
                                    status="failed" if n % 2 else "ready",
                                    detail=f"step {n}", instance_id="gw-1")
                       for n in range(transitions)])
    assert spool.write() is not None


async def test_two_gateways_replaying_one_spool_file_at_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "g.db"
    folder = tmp_path / "spool"
    spilled(Spool(folder, spool_target(db)), 700, 6)
    first, second = Spool(folder, spool_target(db)), Spool(folder, spool_target(db))
    stores: list[Store] = [await open_store(db), await open_store(db)]
    try:
        async with anyio.create_task_group() as group:  # raised: the gateway stopped
            group.start_soon(first.replay, lambda: stores[0])
            group.start_soon(second.replay, lambda: stores[1])
        assert first.files() == []
        assert await stores[0].count("invocations") == 700  # type: ignore[attr-defined]
        assert (await stores[0].stats())[""].count == 700
        stored = await stores[0].health_records(server="alpha", limit=50)
        assert sorted(r.detail or "" for r in stored) == [f"step {n}" for n in range(6)]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        for store in stores:
            await store.close()


def test_a_password_in_the_query_stays_out_of_spool_files_and_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    url = "postgresql://gw@db.example/gateway?password=s3cret-in-query&sslmode=require"
    target = spool_target(url)
    assert "s3cret" not in target and "db.example/gateway" in target
    # The same store whatever its password (one rotated between a stop and a start).
    assert Spool(tmp_path, target).key == Spool(
        tmp_path, spool_target(url.replace("s3cret-in-query", "rotated"))).key
    assert "s3cret" not in spool_target("postgresql://gw:s3cret@db.example/gateway")
    spilled(Spool(tmp_path, target), 1, 0)
    assert all("s3cret" not in p.read_text() for p in tmp_path.iterdir())
    Spool(tmp_path, spool_target(tmp_path / "other.db")).name_others()
    said = [r.getMessage() for r in caplog.records]
    assert any("db.example/gateway" in line for line in said), said
    assert not [line for line in said if "s3cret" in line]


async def test_a_record_the_store_refuses_fails_no_start(
        tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "spool", spool_target(pg_url))
    spool.hold_calls([Invocation(id="nul", trace_id="t", client="c", kind="tool",
                                 exposed="alpha_add", server="alpha", original="add",
                                 started_at=time.time(), duration_ms=2.0, status="error",
                                 error="upstream said \x00", instance_id="gw-1")])
    kept = spool.write()
    assert kept is not None
    store = await open_store(pg_url)
    try:
        assert await spool.replay(lambda: store) == 0  # raised: the gateway stopped
    finally:
        await store.close()
    assert spool.files() == [kept]  # kept for the operator, who is told
    (said,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(kept) in said and "move the file away" in said, said
