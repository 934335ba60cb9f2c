"""A gateway and a store that is away: at start, while serving, and at stop.

Each test runs a real ``mcp-gateway serve`` over HTTP on 127.0.0.1 (or the gateway in
process) against a real PostgreSQL of its own, which the test stops and starts, or a
real SQLite file; each failed on the code it was written against.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.store import AuditEntry, HealthRecord, Invocation, open_store
from fast_mcp_gateway.store.outage import PoolFloor, from_gateway_pool
from fast_mcp_gateway.store.postgres_schema import SCHEMA_VERSION
from fast_mcp_gateway.store.spool import BATCH, Spool, spool_target
from tests.fixtures import alpha_server, make_gateway, memory_entry, until
from tests.pg import PgCluster, free_port, running_cluster
from tests.test_rest import OPS, demo

pytestmark = pytest.mark.anyio
BEARER = {"Authorization": f"Bearer {OPS}"}
CONFIG = ("gateway:\n  auth:\n    tokens:\n"
          f"      - {{name: ops, token: {OPS}, scopes: [admin]}}\n"
          "servers:\n  notes:\n    command: ${GATEWAY_PYTHON}\n"
          "    args: [\"-m\", \"fast_mcp_gateway.demo.notes\"]\n")


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this test's own: the test stops it."""
    with running_cluster() as cluster:
        yield cluster


class Serve:
    """``mcp-gateway serve`` over HTTP in a process of its own, its stderr in a file."""

    def __init__(self, tmp_path: Path, db: str) -> None:
        config = tmp_path / "servers.yaml"
        config.write_text(CONFIG)
        self.data = tmp_path / "data"  # XDG_DATA_HOME: never the real one
        self.log = tmp_path / f"gateway-{free_port()}.log"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
                 "--transport", "http", "--port", str(port), "--db", db,
                 "--instance-id", "gw-1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={**{k: v for k, v in os.environ.items() if k != "MCP_GATEWAY_SPOOL_DIR"},
                     "XDG_DATA_HOME": str(self.data)})  # the default spool folder, in it

    @property
    def text(self) -> str:
        return self.log.read_text()

    async def said(self, text: str, within: float = 60) -> None:
        await until(lambda: text in self.text or self.proc.poll() is not None, within)
        assert text in self.text, self.text

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def serving(tmp_path: Path, db: str) -> Iterator[Serve]:
    gateway = Serve(tmp_path, db)
    try:
        yield gateway
    finally:
        gateway.kill()


async def readiness(http: httpx2.AsyncClient, base: str, status: str) -> dict[str, Any]:
    """/ready's body once its status is ``status``."""
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        body = (await http.get(f"{base}/ready")).json()
        return body["status"] == status

    with anyio.fail_after(120):
        while not await reached():  # noqa: ASYNC110 - another process: no event tells us
            await anyio.sleep(0.1)
    return body


async def test_serve_starts_while_postgresql_is_down_and_takes_the_store_when_it_is_back(
        own_cluster: PgCluster, tmp_path: Path) -> None:
    """A gateway started while PostgreSQL was down exited 2 ("cannot open the store:
    ... unreachable") -- after a host reboot that brought it up before the database,
    it never came up at all, while a running one serves through the same outage.  It
    starts now, serving its file's upstreams; says so in one line (never the password);
    is 'degraded' with the store 'unreachable'; answers store-backed requests 503
    store_unavailable and holds the call records; and once the database answers, runs
    its runtime registrations, writes the held records and is 'ready'.  Meanwhile a call
    of a runtime server's tool says the registrations are unread (it was "Unknown tool",
    offering a file server's name if one was close)."""
    url = own_cluster.create_database()
    store = await open_store(url)
    try:  # a runtime registration, from before: it runs once the store is back
        await store.put_server("clock", demo("clock"), True)
    finally:
        await store.close()
    await anyio.to_thread.run_sync(own_cluster.stop)
    with serving(tmp_path, url.replace("postgres@", "postgres:s3cret@")) as gateway:
        await gateway.said("started without the store")
        async with httpx2.AsyncClient(timeout=30) as http:
            body = await readiness(http, gateway.base, "degraded")
            assert body["store"] == "unreachable", body
            async with Client(f"{gateway.base}/mcp", auth=OPS) as host:
                names = {t.name for t in await host.list_tools()}
                assert "notes_add_note" in names and not any(
                    n.startswith("clock_") for n in names), names
                added = await host.call_tool("notes_add_note", {"title": "held"})
                assert not added.is_error
                # The runtime server's tool is unknown here so far, and the answer says
                # why (it offered only another name: "did you mean ...?").
                with pytest.raises(ToolError, match="has not read the servers registered "
                                                    "at runtime yet"):
                    await host.call_tool("clock_now", {})
            unread = await http.get(f"{gateway.base}/api/v1/servers/clock", headers=BEARER)
            assert unread.status_code == 404, unread.text  # and why (was "no server ...")
            assert "has not read the servers registered at runtime yet" in unread.text
            calls = await http.get(f"{gateway.base}/api/v1/logs/invocations", headers=BEARER)
            assert calls.status_code == 503, calls.text
            assert calls.json()["error"]["code"] == "store_unavailable", calls.text
            assert "unreachable" in calls.text and "s3cret" not in calls.text

            await anyio.to_thread.run_sync(own_cluster.start)
            await readiness(http, gateway.base, "ready")
            async with Client(f"{gateway.base}/mcp", auth=OPS) as host:
                await gateway.said("store back after")
                assert "runtime registrations and route rules apply now" in gateway.text
                names = {t.name for t in await host.list_tools()}
                assert "clock_now" in names, names  # the runtime registration runs
            calls = await http.get(f"{gateway.base}/api/v1/logs/invocations?tool=notes_add_note",
                                   headers=BEARER)
            assert calls.status_code == 200, calls.text
            assert len(calls.json()["calls"]) == 1, calls.text  # the held record
        assert gateway.stop() == 0, gateway.text
    text = gateway.text
    assert text.count("started without the store") == 1, text
    assert "s3cret" not in text and "Traceback" not in text, text


def count_spilled(folder: Path) -> tuple[int, int]:
    """Call records and health transitions in the spool files of ``folder`` (their first
    lines say how many)."""
    heads = [json.loads(p.open().readline()) for p in folder.glob("held-*.jsonl")]
    return sum(h["calls"] for h in heads), sum(h["health"] for h in heads)


async def stop_with_the_store_away(db: str, spool: Path, away: Callable[[], object],
                                   caplog: pytest.LogCaptureFixture) -> float:
    """A gateway on ``db`` takes two calls (and sees a transition) once ``away()`` made
    its store unreachable, then stops (the default flush budget: 30 s); how long the
    stop took."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=db, spool_dir=spool, instance_id="gw-spill")
    async with Client(gateway.server) as host:
        await anyio.to_thread.run_sync(away)
        for n in range(2):
            await host.call_tool("alpha_add", {"a": n, "b": 1})
        recorder = gateway.recorder
        assert recorder is not None
        await until(lambda: recorder.store_unavailable, 120)
        gateway.control.health_log.record("alpha", "alpha", "failed", "ready -> failed")
        started = time.monotonic()
    took = time.monotonic() - started
    assert recorder.spilled == 2 and recorder.dropped == 0, recorder.stats()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping:")]
    assert len(said) == 1, said
    # ... and its transitions: the one meanwhile, alpha's 'ready -> stopped' at stop
    # (and its 'starting -> ready', if the store went before it was written).
    calls, transitions = count_spilled(spool)
    assert calls == 2 and transitions >= 2, (calls, transitions)
    assert (f"spilled 2 call record(s) and {transitions} health transition(s) "
            f"to {spool}/held-") in said[0], said
    return took


async def calls_after_replay(db: str, spool: Path) -> list[Any]:
    """Start a gateway on ``db`` again: the spilled records are replayed (the spool
    emptied); the calls the store then holds."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=db, spool_dir=spool, instance_id="gw-next")
    async with Client(gateway.server) as host:
        await until(lambda: not list(spool.glob("held-*.jsonl")), 120)
        assert gateway.store is not None
        history = await gateway.store.health_records(server="alpha", limit=50)
        assert [r.detail for r in history if r.status == "failed"] == ["ready -> failed"]
        return list((await host.call_tool("gateway_calls", {"tool": "alpha_add"})).data.calls)


async def test_a_stop_with_postgresql_down_spills_the_held_records_and_the_next_start_writes_them(
        own_cluster: PgCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM with PostgreSQL down spent the whole flush budget (30 s: an
    orchestrator's whole grace period) waiting for the store, then dropped what it held
    ("call log closed: ... 2 dropped").  It spills them to the spool folder at once,
    says how many and where, and the next start writes them into the store."""
    url = own_cluster.create_database()
    spool = tmp_path / "spool"
    took = await stop_with_the_store_away(url, spool, own_cluster.stop, caplog)
    assert took < 15, took  # not the 30 s budget
    assert os.stat(spool).st_mode & 0o077 == 0  # the records' folder is the owner's
    await anyio.to_thread.run_sync(own_cluster.start)
    calls = await calls_after_replay(url, spool)
    assert sorted(c.instance_id for c in calls) == ["gw-spill", "gw-spill"], calls


async def test_a_stop_with_the_sqlite_file_locked_spills_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The same with SQLite: a file whose write lock another process holds (a sqlite3
    shell's open transaction, a backup) past the busy timeout."""
    db = tmp_path / "g.db"
    spool = tmp_path / "spool"
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        took = await stop_with_the_store_away(
            str(db), spool, lambda: other.execute("BEGIN IMMEDIATE"), caplog)
        assert took < 15, took
    finally:
        other.execute("ROLLBACK")
        other.close()
    calls = await calls_after_replay(str(db), spool)
    assert len(calls) == 2, calls


async def test_a_replay_cut_short_duplicates_nothing(tmp_path: Path) -> None:
    """A gateway killed while it replayed (a batch committed, the file not yet removed)
    replays the whole file again at its next start: no record and no count twice."""
    db = tmp_path / "g.db"
    spool = Spool(tmp_path / "spool", spool_target(db))
    now = time.time()
    records = [Invocation(id=f"r{n}", trace_id="t", client="c", kind="tool",
                          exposed="alpha_add", server="alpha", original="add",
                          started_at=now - 60 + n / 1000, duration_ms=2.0,
                          status="success", instance_id="gw-1")
               for n in range(1200)]
    health = [HealthRecord(at=now - 30 + n, server="alpha", replica="alpha",
                           status="failed" if n % 2 else "ready", detail=f"step {n}",
                           instance_id="gw-1") for n in range(4)]
    audit = [AuditEntry(id=0, at=now - 20 + n, actor="config-file", action="reload_config",
                        target="servers.yaml", arguments=None, result=f"reload {n}",
                        instance_id="gw-1") for n in range(3)]
    spool.hold_calls(records)
    spool.hold_health(health)
    spool.hold_audit(audit)
    assert spool.write() is not None and not spool.holding
    store = await open_store(db)
    try:
        await store.add_invocations(records[:BATCH])  # written before the kill
        await store.add_health_records(health[:3])
        await store.add_audit("config-file", "reload_config", "servers.yaml", None,
                              "reload 0", "gw-1", at=audit[0].at)
        assert await spool.replay(lambda: store) == len(records) + len(health) + len(audit)
        assert spool.files() == []
        assert (await store.stats())[""].count == len(records)
        assert await store.count("invocations") == len(records)  # type: ignore[attr-defined]
        stored = await store.health_records(server="alpha", limit=50)
        assert sorted(r.detail or "" for r in stored) == [f"step {n}" for n in range(4)]
        assert sorted((e.at, e.result) for e in await store.audit()) == [
            (e.at, e.result) for e in audit]  # the reloads' times, each once
    finally:
        await store.close()


async def test_an_outage_is_two_lines_of_the_gateway_not_one_per_reconnect(
        own_cluster: PgCluster, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL down: asyncpg's pool logged "Failed to restore the pool connection
    floor; retrying" with a traceback at every reconnect (1, 2, 4 ... 60 s: hundreds of
    lines in a night's outage), in its own words, beside the recorder's and the change
    feed's lines.  Now: one line when it goes (what, since when, what the gateway does
    meanwhile), one when it is back, however many reconnects happen between."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")  # "store back" is INFO
    url = own_cluster.create_database()
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=url)

    def gateway_says(start: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "fast_mcp_gateway.store" and r.getMessage().startswith(start)]

    def floor_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "pool connection floor" in r.getMessage()]

    asyncpg = pytest.importorskip("asyncpg")
    # An application's own pool beside the gateway's: its lines are its own business.
    theirs = await asyncpg.create_pool(url, min_size=1, max_size=1)
    async with Client(gateway.server) as host:
        floor = next(f for f in logging.getLogger("asyncpg.pool").filters
                     if isinstance(f, PoolFloor))
        before = floor.quieted
        await anyio.to_thread.run_sync(own_cluster.stop)
        await until(lambda: floor.quieted >= before + 2, 120)  # asyncpg retried twice
        await until(floor_lines, 120)  # the other pool's retry, said
        theirs.terminate()
        assert not any(from_gateway_pool(r.exc_info[1]) for r in floor_lines()
                       if r.exc_info), "a line of the gateway's own pool"
        await host.call_tool("alpha_add", {"a": 1, "b": 2})  # a record held meanwhile
        recorder = gateway.recorder
        assert recorder is not None
        await until(lambda: recorder.store_unavailable, 120)
        # A transition meanwhile: the health history lost it ("could not write health
        # records", a line per batch); it is held and written once the store is back.
        gateway.control.health_log.record("alpha", "alpha", "failed", "ready -> failed")
        await anyio.to_thread.run_sync(own_cluster.start)
        await until(lambda: gateway_says("store back after"), 120)
        assert await recorder.flushed(60)
        assert await gateway.control.health_flushed(60)
        assert gateway.store is not None
        history = await gateway.store.health_records(server="alpha", limit=20)
        assert [r.detail for r in history if r.status == "failed"] == ["ready -> failed"]
    assert not [r for r in caplog.records if "could not write health records" in r.getMessage()
                or ("pool connection floor" in r.getMessage() and r.exc_info
                    and from_gateway_pool(r.exc_info[1]))]
    went = gateway_says("store unreachable since")
    assert len(went) == 1 and "UTC" in went[0] and "is unreachable" in went[0], went
    assert "holds the call records" in went[0] and "503 store_unavailable" in went[0]
    assert len(gateway_says("store back after")) == 1


async def test_a_gateway_started_before_its_new_database_migrates_it_when_it_answers(
        own_cluster: PgCluster, tmp_path: Path) -> None:
    """In process (library mode) too, and with a database nothing migrated yet: the
    lifespan raised the store's StoreUnavailable and no host could connect.  It serves
    meanwhile, and the store it opens once PostgreSQL answers is migrated and takes the
    record of a call made before."""
    url = own_cluster.create_database()  # empty: no gateway table yet
    await anyio.to_thread.run_sync(own_cluster.stop)
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=url, spool_dir=tmp_path / "spool")
    async with Client(gateway.server) as host:
        assert gateway.control.store_down
        refused = await host.call_tool_mcp("gateway_calls", {})
        assert refused.isError and "is unreachable" in str(refused.content), refused
        await host.call_tool("alpha_add", {"a": 1, "b": 2})
        await anyio.to_thread.run_sync(own_cluster.start)
        await until(lambda: not gateway.control.store_down, 120)
        recorder = gateway.recorder
        assert recorder is not None and await recorder.flushed(60)
        calls = (await host.call_tool("gateway_calls", {"tool": "alpha_add"})).data.calls
        assert len(calls) == 1, calls
        # alpha's start, while the store was away, is in its history now.
        assert await gateway.control.health_flushed(60)
        assert gateway.store is not None
        history = await gateway.store.health_records(server="alpha", limit=20)
        assert "starting -> ready" in [r.detail for r in history], history
    store = await open_store(url)
    try:
        assert await store.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_sigterm_with_postgresql_down_stops_at_once_and_the_next_serve_writes_the_rest(
        own_cluster: PgCluster, tmp_path: Path) -> None:
    """A real `serve`, started and stopped (SIGTERM) while PostgreSQL is down: it exits
    0 at once, its call record spilled to its data folder; the next `serve`, with the
    database up, writes it and empties the spool."""
    url = own_cluster.create_database()
    await anyio.to_thread.run_sync(own_cluster.stop)
    with serving(tmp_path, url) as gateway:
        await gateway.said("started without the store")
        async with Client(f"{gateway.base}/mcp", auth=OPS) as host:
            await host.call_tool("notes_add_note", {"title": "spilled"})
        started = time.monotonic()
        assert gateway.stop() == 0, gateway.text
        assert time.monotonic() - started < 15, gateway.text  # not the 30 s budget
    spool = gateway.data / "fast-mcp-gateway" / "spool"
    assert "spilled 1 call record(s)" in gateway.text and str(spool) in gateway.text
    assert count_spilled(spool)[0] == 1
    await anyio.to_thread.run_sync(own_cluster.start)
    with serving(tmp_path, url) as again:
        await again.said("removed the file")
        async with httpx2.AsyncClient(timeout=30) as http:
            calls = await http.get(f"{again.base}/api/v1/logs/invocations?tool=notes_add_note",
                                   headers=BEARER)
        assert len(calls.json()["calls"]) == 1, calls.text
        assert again.stop() == 0
    assert not list(spool.glob("held-*"))


async def test_records_wait_for_a_full_sqlite_disk_instead_of_being_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A SQLite file whose disk filled up (or that was made read-only) while the gateway
    ran: each batch of call records was 'could not write N call records: database or
    disk is full' and gone.  Freeing the space fixes the same write, so the records are
    held meanwhile, as for a locked file or an unreachable database, and written then.
    (A full disk is made here by capping the file's size: PRAGMA max_page_count.)"""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=str(tmp_path / "g.db"))
    async with Client(gateway.server) as host:
        store, recorder = gateway.store, gateway.recorder
        assert store is not None and recorder is not None
        db = store._db._db  # type: ignore[attr-defined]  # the aiosqlite connection
        (pages,) = await (await db.execute("PRAGMA page_count")).fetchone()
        await db.execute(f"PRAGMA max_page_count = {pages}")
        for n in range(20):  # more than the free room in the last pages
            await host.call_tool("alpha_fail", {"message": "x" * 2000 + str(n)},
                                 raise_on_error=False)
        await until(lambda: recorder.store_unavailable, 60)
        assert gateway.control.store_down  # /ready: degraded
        await db.execute("PRAGMA max_page_count = 1073741823")  # space freed
        assert await recorder.flushed(60)
        assert recorder.failed_writes == 0 and recorder.written == 20, recorder.stats()
    said = [r.getMessage() for r in caplog.records if r.name == "fast_mcp_gateway.store"]
    assert said and "database or disk is full" in said[0] and "free space" in said[0], said
