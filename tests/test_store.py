"""The store against a real SQLite file: contract, migrations, crash safety, retention."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fast_mcp_gateway.store import sqlite as store_module
from fast_mcp_gateway.store.sqlite import Invocation, StorageError, Store

pytestmark = pytest.mark.anyio


def inv(i: int, *, server: str = "alpha", tool: str = "alpha_add", at: float = 1_000_000.0,
        ms: float = 10.0, status: str = "success") -> Invocation:
    return Invocation(id=f"id-{i:07d}", trace_id=f"t{i}", client="stdio", kind="tool",
                      exposed=tool, server=server, original=tool.split("_", 1)[-1],
                      started_at=at + i, duration_ms=ms, status=status)


async def test_a_new_file_is_created_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gateway.db"
    store = await Store.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"invocations", "audit", "servers", "routes", "health_records",
            "inspector_history"} <= tables


async def test_memory_is_refused_and_unusable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs a file"):
        await Store.open(":memory:")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=str(garbage)):
        await Store.open(garbage)
    assert garbage.read_bytes().startswith(b"this is not a database")  # never reset
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="schema version 99 is newer"):
        await Store.open(newer)
    # Same version number, different columns (a development build's file): refused by
    # name, not accepted and then failing every write.
    other = tmp_path / "other.db"
    await (await Store.open(other)).close()  # a current file ...
    with sqlite3.connect(other) as db:  # ... whose aggregate table is an older shape
        db.execute("DROP TABLE invocation_minutes")
        db.execute("CREATE TABLE invocation_minutes (minute INTEGER, server TEXT)")
    with pytest.raises(StorageError, match=r"'invocation_minutes' lacks column.*period"):
        await Store.open(other)


async def test_migrations_apply_in_order_and_keep_data(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.db"
    store = await Store.open(path)
    await store.add_invocations([inv(1)])
    await store.close()
    nxt = store_module.SCHEMA_VERSION + 1
    monkeypatch.setattr(store_module, "MIGRATIONS", [
        *store_module.MIGRATIONS,
        (nxt, "ALTER TABLE invocations ADD COLUMN model TEXT; CREATE TABLE extra (x INTEGER)"),
    ])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", nxt)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == nxt
        rows, _ = await store.invocations()
        assert [r["id"] for r in rows] == ["id-0000001"] and "model" in rows[0]
    finally:
        await store.close()


async def test_invocations_filter_page_and_order(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        await store.add_invocations(
            [inv(i, server="alpha" if i % 2 else "beta",
                 status="error" if i % 5 == 0 else "success") for i in range(1, 51)])
        page, cursor = await store.invocations(limit=20)
        assert len(page) == 20 and cursor is not None
        assert page[0]["id"] == "id-0000050"  # newest first
        seen = [r["id"] for r in page]
        while cursor:
            page, cursor = await store.invocations(limit=20, cursor=cursor)
            seen += [r["id"] for r in page]
        assert seen == [f"id-{i:07d}" for i in range(50, 0, -1)]
        errors, _ = await store.invocations(status="error", server="beta", limit=100)
        assert [r["id"] for r in errors] == ["id-0000050", "id-0000040", "id-0000030",
                                             "id-0000020", "id-0000010"]
        window, _ = await store.invocations(since=1_000_010, until=1_000_012,
                                            newest_first=False)
        assert [r["id"] for r in window] == ["id-0000010", "id-0000011", "id-0000012"]
        with pytest.raises(StorageError, match="invalid cursor"):
            await store.invocations(cursor="nonsense")
    finally:
        await store.close()


async def test_stats_match_the_exact_percentiles_within_a_bucket(tmp_path: Path) -> None:
    rng = random.Random(4)
    latencies = [rng.lognormvariate(3, 0.8) for _ in range(5000)]
    store = await Store.open(tmp_path / "g.db")
    try:
        for start in range(0, 5000, 1000):
            await store.add_invocations(
                inv(i, ms=latencies[i], tool="alpha_add" if i % 3 else "alpha_sub",
                    status="error" if i % 10 == 0 else "success")
                for i in range(start, start + 1000))
        total = (await store.stats())[""]
        assert total.count == 5000 and total.errors == 500
        assert total.success_rate == 0.9
        exact = sorted(latencies)
        for q, got in ((0.50, total.p50_ms), (0.95, total.p95_ms), (0.99, total.p99_ms)):
            want = exact[int(q * len(exact)) - 1]
            assert got is not None and want <= got <= want * 1.26, (q, want, got)
        assert total.min_ms == pytest.approx(min(latencies))
        assert total.max_ms == pytest.approx(max(latencies))
        assert total.avg_ms == pytest.approx(sum(latencies) / 5000)
        by_tool = await store.stats(group_by="tool")
        assert set(by_tool) == {"alpha_add", "alpha_sub"}
        assert by_tool["alpha_sub"].count == 1667
    finally:
        await store.close()


async def test_retention_by_age_and_rows(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "g.db")
    try:
        await store.add_invocations(inv(i, at=0.0) for i in range(100))
        await store.add_invocations(inv(i, at=10_000.0) for i in range(100, 200))
        removed = await store.prune(max_age_seconds=5000, max_rows=None, now=11_000.0)
        assert removed == 100 and await store.count("invocations") == 100
        await store.prune(max_age_seconds=None, max_rows=30)
        rows, _ = await store.invocations(limit=1000)
        assert len(rows) == 30 and rows[-1]["id"] == "id-0000170"
    finally:
        await store.close()


WRITER = """
import anyio, sys
from fast_mcp_gateway.store.sqlite import Invocation, Store
async def main():
    store = await Store.open(sys.argv[1])
    batch = 0
    while True:
        await store.add_invocations(
            Invocation(id=f"{batch}-{i}", trace_id="t", client="c", kind="tool", exposed="x",
                       server="s", original="x", started_at=batch, duration_ms=1.0,
                       status="success") for i in range(200))
        batch += 1
        print(batch * 200, flush=True)
anyio.run(main)
"""


def test_a_writer_killed_mid_write_leaves_every_committed_record(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 4000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = db.execute("SELECT COUNT(*) FROM invocations").fetchone()[0]
    assert count >= committed and count % 200 == 0  # whole batches only


async def test_windows_mixing_whole_hours_and_partial_edges_count_exactly(tmp_path: Path) -> None:
    base = 1_700_000_000 // 3600 * 3600  # an hour boundary
    rows = [inv(i, at=base, ms=1 + i % 50, status="error" if i % 7 == 0 else "success")
            for i in range(0, 4 * 3600, 13)]  # one call every 13 s for 4 hours
    store = await Store.open(tmp_path / "g.db")
    try:
        await store.add_invocations(rows)
        for since, until in ((base + 1800, base + 2 * 3600 + 900),   # partial, whole, partial
                             (base + 600, base + 1200),              # inside one hour
                             (base, base + 4 * 3600 - 1),            # whole hours only
                             (base + 3599, base + 3600)):            # across one boundary
            got = (await store.stats(since=since, until=until)).get("")
            # minute resolution: a call counts if its minute is within [since, until]'s minutes
            want = [r for r in rows if since // 60 <= r.started_at // 60 <= until // 60]
            assert got is not None and got.count == len(want), (since - base, until - base)
            assert got.errors == sum(r.status == "error" for r in want)
            assert got.max_ms == max(r.duration_ms for r in want)
        assert (await store.stats())[""].count == len(rows)
    finally:
        await store.close()


async def test_a_version_1_file_is_migrated_to_the_current_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # make a file exactly as version 1 left it
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        patch.setattr(store_module, "SCHEMA_VERSION", 1)
        old = await Store.open(path)
        await old._db.execute(
            "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
            " started_at, duration_ms, status) VALUES ('v1', 't', 'c', 'tool', 'x', 's', 'x',"
            " 1.0, 2.0, 'success')")
        await old.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION >= 2
        rows, _ = await store.invocations()
        assert rows[0]["id"] == "v1" and rows[0]["rule"] is None
        await store.add_invocations([inv(1)])
        assert await store.count("invocations") == 2
    finally:
        await store.close()
