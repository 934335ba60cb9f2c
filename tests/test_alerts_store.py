"""The alert tables on every backend: a real SQLite file, memory, a real PostgreSQL; and the
migration step that adds them to an existing SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator  # noqa: F401
from pathlib import Path

import pytest

from fast_mcp_gateway.store import AlertEvent, Store, open_store
from fast_mcp_gateway.store import sqlite_schema as schema
from tests.test_store_contract import store  # noqa: F401 - every backend, opened

pytestmark = pytest.mark.anyio


def event(i: int, *, rule: str = "r", server: str = "notes", state: str = "firing",
          at: float = 1_000_000.0) -> AlertEvent:
    return AlertEvent(at=at + i, rule=rule, server=server, state=state, metric="p95_ms",
                      value="612.5", threshold="500.0", severity="critical",
                      message=f"event {i}")


async def test_runtime_rules_and_tombstones(store: Store) -> None:  # noqa: F811
    assert await store.alert_rules() == []
    rule = {"name": "slow", "server": "*", "metric": "p95_ms", "threshold": 500.0,
            "window": 300.0, "for": 0.0}
    await store.put_alert_rule("slow", rule)
    await store.put_alert_rule("from-file", None)  # deletes servers.yaml's rule
    rows = await store.alert_rules()
    assert [(r.name, r.config) for r in rows] == [("from-file", None), ("slow", rule)]
    rule["threshold"] = 900.0  # the caller's dict is not the stored one
    assert (await store.alert_rules())[1].config["threshold"] == 500.0
    await store.put_alert_rule("slow", {**rule, "threshold": 250.0})
    assert (await store.alert_rules())[1].config["threshold"] == 250.0
    assert await store.delete_alert_rule("slow") is True
    assert await store.delete_alert_rule("slow") is False
    assert [r.name for r in await store.alert_rules()] == ["from-file"]


async def test_history_reads_back_newest_first_filtered_and_paged(store: Store) -> None:  # noqa: F811
    await store.add_alert_events([event(i, server="notes" if i % 2 else "clock",
                                        rule="a" if i % 3 else "b",
                                        state="firing" if i % 4 else "resolved")
                                  for i in range(1, 21)])
    await store.add_alert_events([])
    page = await store.alert_events(limit=5)
    assert [e.message for e in page] == [f"event {i}" for i in range(20, 15, -1)]
    first = page[0]
    assert (first.rule, first.server, first.state, first.metric, first.value,
            first.threshold, first.severity) == ("a", "clock", "resolved", "p95_ms", "612.5",
                                                 "500.0", "critical")
    assert first.at == 1_000_020.0 and first.id is not None
    older = await store.alert_events(limit=100, before_id=page[-1].id)
    assert [e.message for e in older] == [f"event {i}" for i in range(15, 0, -1)]
    notes_b = await store.alert_events(server="notes", rule="b", limit=100)
    assert [e.message for e in notes_b] == ["event 15", "event 9", "event 3"]


async def test_retention_prunes_old_alert_history(store: Store) -> None:  # noqa: F811
    await store.add_alert_events([event(0, at=1_000.0), event(1, at=2_000_000.0)])
    await store.prune(max_age_seconds=1_000_000, max_rows=None, now=2_000_100.0)
    assert [e.message for e in await store.alert_events()] == ["event 1"]


async def test_an_existing_sqlite_file_gains_the_alert_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for version, script in schema.MIGRATIONS:
        if version <= 3:
            db.executescript(schema._aggregate_tables(script))
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO audit (at, actor, action) VALUES (1, 'ops', 'kept')")
    db.commit()
    db.close()
    store = await open_store(path)  # noqa: F811
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION >= 4  # type: ignore[attr-defined]
        assert [e.action for e in await store.audit()] == ["kept"]
        await store.add_alert_events([event(1)])
        assert await store.count("alert_events") == 1  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_postgres_schema_has_the_alert_step(pg_url: str) -> None:
    store = await open_store(pg_url)  # noqa: F811
    try:
        from fast_mcp_gateway.store import postgres_schema

        assert await store.schema_version() == postgres_schema.SCHEMA_VERSION >= 2  # type: ignore[attr-defined]
        await store.put_alert_rule("x", None)
        assert await store.count("alert_rules") == 1  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_one_holder_of_a_lease_at_a_time(store: Store) -> None:  # noqa: F811
    assert await store.hold_lease("alerts", "gw-a", 60) is True
    assert await store.hold_lease("alerts", "gw-b", 60) is False      # a's is running
    assert await store.hold_lease("alerts", "gw-a", 60) is True       # renewed
    assert await store.hold_lease("other", "gw-b", 60) is True        # leases are by name
    assert await store.hold_lease("other", "gw-a", 60) is False
    # An expired lease (its holder stopped renewing: it died) passes to the next asker.
    assert await store.hold_lease("expiring", "gw-a", -1) is True
    assert await store.hold_lease("expiring", "gw-b", 60) is True
    assert await store.hold_lease("expiring", "gw-a", 60) is False
