"""The store contract: every backend (a SQLite file, memory, a real PostgreSQL) must pass
every test here.  Backend-specific behaviour (migrations, WAL, crash safety) is tested
in test_store.py."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import (
    EraNeed,
    HealthRecord,
    Invocation,
    StorageError,
    Store,
    open_store,
)
from fast_mcp_gateway.store.feed import LocalChangeFeed
from fast_mcp_gateway.store.names import NameBinding
from fast_mcp_gateway.store.records import TOMBSTONE, new_uid
from fast_mcp_gateway.store.stats import BUCKETS_MS, bucket_of, percentile_from

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")  # a fresh database on a real server
    else:
        url = f"sqlite://{tmp_path / 'gateway.db'}" if request.param == "sqlite" else "memory://"
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


def inv(i: int, *, server: str = "alpha", tool: str = "alpha_add", at: float = 1_000_000.0,
        ms: float = 10.0, status: str = "success") -> Invocation:
    return Invocation(id=f"id-{i:07d}", trace_id=f"t{i}", client="stdio", kind="tool",
                      exposed=tool, server=server, original=tool.split("_", 1)[-1],
                      started_at=at + i, duration_ms=ms, status=status)


# -- invocations ----------------------------------------------------------------------------


async def test_a_record_reads_back_field_for_field(store: Store) -> None:
    full = Invocation(id="full", trace_id="4bf9", client="host-1", kind="resource",
                      exposed="data://a/b", server="alpha", original="data://b",
                      replica="alpha#1", route=[{"replica": "alpha#0", "outcome": "error"},
                                                {"replica": "alpha#1", "outcome": "success"}],
                      retries=1, started_at=1_000_000.25, duration_ms=12.5, status="success",
                      error=None, arguments='{"a": 1}', request_bytes=10, response_bytes=20,
                      rule="data://*")
    bare = inv(1, status="timeout")
    empty_route = replace(inv(2), id="empty-route", route=[])
    assert await store.add_invocations([full, bare, empty_route]) == 3
    rows, cursor = await store.invocations(limit=10)
    assert cursor is None
    by_id = {r.id: r for r in rows}
    assert by_id["full"] == full and by_id[bare.id] == bare
    assert by_id["empty-route"].route is None  # an empty route is no route
    assert await store.add_invocations([]) == 0


async def test_invocations_filter_page_and_order(store: Store) -> None:
    await store.add_invocations(
        [inv(i, server="alpha" if i % 2 else "beta",
             status="error" if i % 5 == 0 else "success") for i in range(1, 51)])
    page, cursor = await store.invocations(limit=20)
    assert len(page) == 20 and cursor is not None
    assert page[0].id == "id-0000050"  # newest first
    seen = [r.id for r in page]
    while cursor:
        page, cursor = await store.invocations(limit=20, cursor=cursor)
        seen += [r.id for r in page]
    assert seen == [f"id-{i:07d}" for i in range(50, 0, -1)]
    errors, _ = await store.invocations(status="error", server="beta", limit=100)
    assert [r.id for r in errors] == ["id-0000050", "id-0000040", "id-0000030",
                                      "id-0000020", "id-0000010"]
    window, _ = await store.invocations(since=1_000_010, until=1_000_012, newest_first=False)
    assert [r.id for r in window] == ["id-0000010", "id-0000011", "id-0000012"]
    with pytest.raises(StorageError, match="invalid cursor"):
        await store.invocations(cursor="nonsense")
    with pytest.raises(StorageError, match="invalid cursor"):
        await store.invocations(cursor="soon|id-1")


async def test_invocations_of_one_gateway_instance(store: Store) -> None:
    """Gateways sharing a store: the call log of one of them (``instance_id``)."""
    await store.add_invocations([replace(inv(i), instance_id=("gw-a", "gw-b", None)[i % 3])
                                 for i in range(1, 10)])
    mine, _ = await store.invocations(instance="gw-b", newest_first=False)
    assert [r.id for r in mine] == ["id-0000001", "id-0000004", "id-0000007"]
    assert {r.instance_id for r in mine} == {"gw-b"}
    both, _ = await store.invocations(instance="gw-a", server="alpha", limit=2)
    assert [r.id for r in both] == ["id-0000009", "id-0000006"]
    assert (await store.invocations(instance="gw-c"))[0] == []


async def test_invocations_of_one_caller_page_as_its_own(store: Store) -> None:
    """A caller without scope admin reads its own records (``client`` of its kind), in
    full pages; a name of another kind (a JWT's subject alike a token's name, a host's
    client id) or without one (an older gateway's record) is not its."""
    await store.add_invocations([replace(inv(i), client=("alice", "bob", "bob")[i % 3],
                                         client_kind="token") for i in range(1, 10)])
    await store.add_invocations([replace(inv(i), client="alice", client_kind=kind)
                                 for i, kind in ((10, "jwt"), (11, "host"), (12, None))])
    page, cursor = await store.invocations(client=("token", "alice"), limit=2)
    assert [r.id for r in page] == ["id-0000009", "id-0000006"] and cursor is not None
    page, cursor = await store.invocations(client=("token", "alice"), limit=2, cursor=cursor)
    assert [r.id for r in page] == ["id-0000003"] and cursor is None
    assert [r.id for r in (await store.invocations(client=("jwt", "alice")))[0]] == [
        "id-0000010"]
    assert {r.client for r in (await store.invocations(client=("token", "bob")))[0]} == {"bob"}
    assert (await store.invocations(client=("token", "carol"), server="alpha"))[0] == []
    assert len((await store.invocations())[0]) == 12  # an admin's: every kind


async def test_oldest_first_paging_and_the_tool_filter(store: Store) -> None:
    await store.add_invocations(inv(i, tool="alpha_add" if i % 3 else "alpha_sub")
                                for i in range(30))
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.invocations(tool="alpha_sub", limit=4, cursor=cursor,
                                               newest_first=False)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == [f"id-{i:07d}" for i in range(0, 30, 3)]
    # A page exactly at the end says so: no cursor to an empty page.
    page, cursor = await store.invocations(tool="alpha_sub", limit=10)
    assert len(page) == 10 and cursor is None
    # Equal start times are ordered by id, so paging neither skips nor repeats one.
    await store.add_invocations(replace(inv(0), id=f"same-{i}", started_at=5.0)
                                for i in range(5))
    ids: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.invocations(until=5.0, limit=2, cursor=cursor)
        ids += [r.id for r in page]
        if cursor is None:
            break
    assert ids == [f"same-{i}" for i in range(4, -1, -1)]


async def test_a_duplicate_id_is_stored_once_and_counted_once(store: Store) -> None:
    """A batch written twice (the recorder's retry of a write whose COMMIT went through
    but whose answer was lost as the database went away; a spool replayed after a crash)
    was stored once but counted twice: the statistics showed calls that never were."""
    await store.add_invocations([inv(1, ms=5)])
    await store.add_invocations([inv(1, ms=7), inv(2, ms=9), inv(2, ms=11)])
    rows, _ = await store.invocations()
    assert sorted((r.id, r.duration_ms) for r in rows) == [("id-0000001", 5),
                                                            ("id-0000002", 9)]
    stats = (await store.stats())[""]
    assert (stats.count, stats.total_ms) == (2, 14)  # each record once, as stored


async def test_stats_match_the_exact_percentiles_within_a_bucket(store: Store) -> None:
    rng = random.Random(4)
    latencies = [rng.lognormvariate(3, 0.8) for _ in range(5000)]
    for start in range(0, 5000, 1000):
        await store.add_invocations(
            inv(i, ms=latencies[i], tool="alpha_add" if i % 3 else "alpha_sub",
                server="alpha" if i % 2 else "beta",
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
    by_server = await store.stats(group_by="server")
    assert {k: v.count for k, v in by_server.items()} == {"alpha": 2500, "beta": 2500}
    one = await store.stats(server="beta", tool="alpha_sub")
    assert one[""].count == sum(1 for i in range(5000) if i % 2 == 0 and i % 3 == 0)
    assert one[""].max_ms == pytest.approx(max(latencies[i] for i in range(0, 5000, 6)))
    assert await store.stats(server="nobody") == {}
    assert total.as_dict()["success_rate"] == 0.9 and "histogram" not in total.as_dict()


async def test_cancelled_calls_are_filtered_and_counted_apart_from_errors(
    store: Store,
) -> None:
    statuses = ["success"] * 6 + ["error"] * 2 + ["cancelled"] * 3
    # Two batches: the aggregate upserts must add the cancelled counts too.
    await store.add_invocations(inv(i, status=s) for i, s in enumerate(statuses[:5]))
    await store.add_invocations(inv(i, status=s) for i, s in enumerate(statuses) if i >= 5)
    total = (await store.stats())[""]
    assert (total.count, total.errors, total.cancelled) == (11, 2, 3)
    assert total.success_rate == 6 / 8  # over the calls that finished
    rows, _ = await store.invocations(status="cancelled")
    assert sorted(r.id for r in rows) == sorted(
        inv(i).id for i, s in enumerate(statuses) if s == "cancelled")


async def test_windows_mixing_whole_hours_and_partial_edges_count_exactly(store: Store) -> None:
    base = 1_700_000_000 // 3600 * 3600  # an hour boundary
    rows = [inv(i, at=base, ms=1 + i % 50, status="error" if i % 7 == 0 else "success")
            for i in range(0, 4 * 3600, 13)]  # one call every 13 s for 4 hours
    await store.add_invocations(rows)
    for since, until in ((base + 1800, base + 2 * 3600 + 900),   # partial, whole, partial
                         (base + 600, base + 1200),              # inside one hour
                         (base, base + 4 * 3600 - 1),            # whole hours only
                         (base + 3599, base + 3600),             # across one boundary
                         (None, base + 1800),                    # open start
                         (base + 3 * 3600 + 60, None)):          # open end (until now)
        got = (await store.stats(since=since, until=until)).get("")
        # minute resolution: a call counts if its minute is within [since, until]'s minutes
        want = [r for r in rows if (since is None or since // 60 <= r.started_at // 60)
                and (until is None or r.started_at // 60 <= until // 60)]
        assert got is not None and got.count == len(want), (since, until)
        assert got.errors == sum(r.status == "error" for r in want)
        assert got.max_ms == max(r.duration_ms for r in want)
        assert got.min_ms == min(r.duration_ms for r in want)
    assert (await store.stats())[""].count == len(rows)
    assert await store.stats(since=base + 5 * 3600, until=base + 6 * 3600) == {}


async def test_retention_by_age_and_rows(store: Store) -> None:
    await store.add_invocations(inv(i, at=0.0) for i in range(100))
    await store.add_invocations(inv(i, at=10_000.0) for i in range(100, 200))
    removed = await store.prune(max_age_seconds=5000, max_rows=None, now=11_000.0)
    assert removed == 100
    rows, _ = await store.invocations(limit=1000)
    assert len(rows) == 100 and min(r.started_at for r in rows) >= 10_000
    assert (await store.stats())[""].count == 100  # the old minutes and hours went too
    assert await store.prune(max_age_seconds=None, max_rows=30) == 70
    rows, _ = await store.invocations(limit=1000)
    assert len(rows) == 30 and rows[-1].id == "id-0000170"
    assert await store.prune(max_age_seconds=None, max_rows=None) == 0


async def test_retention_by_age_covers_every_history(store: Store) -> None:
    now = time.time()
    await store.add_audit("host", "old", None, None, None)
    await store.add_health_records([HealthRecord(at=now - 7200, server="s", replica="s",
                                                 status="ready")])
    await store.add_inspection("s", None, "tools/list", None, None, "success", 1.0, None)
    # Everything stamped "now" by the store survives an hour's retention ...
    await store.prune(max_age_seconds=3600, max_rows=None, now=now)
    assert len(await store.audit()) == 1 and len(await store.inspections()) == 1
    assert await store.health_records() == []  # ... and an entry two hours old does not
    await store.prune(max_age_seconds=3600, max_rows=None, now=now + 7200)
    assert await store.audit() == [] and await store.inspections() == []


# -- control plane --------------------------------------------------------------------------


async def test_registrations_put_override_and_delete(store: Store) -> None:
    assert await store.servers() == []
    before = time.time()
    await store.put_server("zeta", {"command": "uvx", "args": ["x"], "env": {"K": "${K}"}},
                           True)
    await store.put_server("alpha", None, False)  # only the enabled flag
    rows = await store.servers()
    assert [r.name for r in rows] == ["alpha", "zeta"]
    assert rows[0].config is None and rows[0].enabled is False
    assert rows[1].config == {"command": "uvx", "args": ["x"], "env": {"K": "${K}"}}
    assert rows[1].enabled is True and rows[1].updated_at >= before
    await store.put_server("zeta", {"url": "http://127.0.0.1:9/mcp"}, False)
    (_, zeta) = await store.servers()
    assert zeta.config == {"url": "http://127.0.0.1:9/mcp"} and zeta.enabled is False
    assert zeta.config is not None
    zeta.config["url"] = "changed by the reader"  # a copy: the store keeps its own
    assert (await store.servers())[1].config == {"url": "http://127.0.0.1:9/mcp"}
    await store.delete_server("zeta")
    await store.delete_server("never-registered")
    assert [r.name for r in await store.servers()] == ["alpha"]


async def test_adding_a_registration_never_replaces_one(store: Store) -> None:
    start = await store.changes()
    first, second = {"url": "http://127.0.0.1:9/mcp"}, {"url": "http://127.0.0.1:8/mcp"}
    assert await store.add_server("zeta", first, True)
    assert not await store.add_server("zeta", second, False)  # nothing changed
    (zeta,) = await store.servers()
    assert zeta.config == first and zeta.enabled is True
    # A bare enabled flag or a tombstone is no registration: an add takes its place.
    await store.put_server("alpha", None, False)
    await store.put_server("beta", TOMBSTONE, False)
    assert await store.add_server("alpha", second, True)
    assert await store.add_server("beta", second, False)
    rows = {r.name: r for r in await store.servers()}
    assert (rows["alpha"].config, rows["alpha"].enabled) == (second, True)
    assert (rows["beta"].config, rows["beta"].enabled) == (second, False)
    await store.put_server("zeta", second, False)  # an update still replaces
    assert {r.name: r.config for r in await store.servers()}["zeta"] == second
    batch = await store.changes(start.cursor)
    assert [c.key for c in batch.changes] == ["zeta", "alpha", "beta", "alpha", "beta",
                                             "zeta"]  # the refused add is no change


async def test_an_enabled_flag_is_written_without_touching_the_registration(
        store: Store) -> None:
    """Enable/disable writes the flag alone: an update (or removal) another gateway made
    after this one last read the registration is never reverted."""
    start = await store.changes()
    first, second = {"url": "http://127.0.0.1:9/mcp"}, {"url": "http://127.0.0.1:8/mcp"}
    await store.put_server("zeta", first, True)
    await store.put_server("zeta", second, True)  # another gateway's update
    await store.set_server_enabled("zeta", False)
    await store.set_server_enabled("file-only", False)  # no row: a bare flag
    rows = {r.name: r for r in await store.servers()}
    assert (rows["zeta"].config, rows["zeta"].enabled) == (second, False)
    assert (rows["file-only"].config, rows["file-only"].enabled) == (None, False)
    await store.set_server_enabled("zeta", True)
    assert {r.name: r.enabled for r in await store.servers()}["zeta"] is True
    batch = await store.changes(start.cursor)
    assert [c.key for c in batch.changes] == ["zeta", "zeta", "zeta", "file-only", "zeta"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_stores_adding_one_name_at_once_store_it_once(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two gateways on one SQLite file or one PostgreSQL, each with its own store object:
    of two adds of one name at the same moment exactly one is stored."""
    url = (request.getfixturevalue("pg_url") if backend == "postgres"
           else f"sqlite://{tmp_path / 'gateway.db'}")
    stores = [await open_store(url), await open_store(url)]
    try:
        for round_ in range(20):
            name = f"s{round_}"
            added: dict[int, bool] = {}

            async def add(who: int, name: str = name, added: dict[int, bool] = added
                          ) -> None:
                config = {"url": f"http://127.0.0.1:9/{who}"}
                added[who] = await stores[who].add_server(name, config, True)

            async with anyio.create_task_group() as tg:
                tg.start_soon(add, 0)
                tg.start_soon(add, 1)
            assert sorted(added.values()) == [False, True], added
            winner = next(who for who, ok in added.items() if ok)
            for store in stores:
                row = {r.name: r for r in await store.servers()}[name]
                assert row.config == {"url": f"http://127.0.0.1:9/{winner}"}
    finally:
        for store in stores:
            await store.close()


async def test_routes_crud_in_decision_order(store: Store) -> None:
    assert await store.routes() == []
    first = await store.add_route("alpha_*", "wildcard", "beta", 0)
    second = await store.add_route("alpha_add", "exact", "gamma", 10)
    third = await store.add_route("alpha_", "prefix", "beta", 0)
    assert first < second < third
    routes = await store.routes()
    assert [r.id for r in routes] == [second, first, third]  # priority, then age
    assert (routes[0].pattern, routes[0].match, routes[0].target, routes[0].priority) == (
        "alpha_add", "exact", "gamma", 10)
    assert await store.update_route(first, "alpha_sub", "exact", "gamma", 20)
    assert not await store.update_route(9999, "x", "exact", "y", 0)
    routes = await store.routes()
    assert [r.id for r in routes] == [first, second, third]
    assert (routes[0].pattern, routes[0].target, routes[0].priority) == (
        "alpha_sub", "gamma", 20)
    assert await store.delete_route(second)
    assert not await store.delete_route(second)
    fourth = await store.add_route("new", "exact", "beta", 0)
    assert fourth > third  # ids are never reused
    assert [r.id for r in await store.routes()] == [first, third, fourth]


async def test_the_change_feed_reports_control_plane_mutations(store: Store) -> None:
    start = await store.changes()
    assert start.complete and start.changes == []
    await store.put_server("alpha", {"url": "http://127.0.0.1:9/mcp"}, True)
    route = await store.add_route("alpha_*", "wildcard", "alpha", 0)
    await store.update_route(route, "alpha_*", "wildcard", "alpha", 5)
    assert not await store.update_route(route + 100, "x", "exact", "alpha", 0)  # no change
    await store.delete_route(route)
    await store.delete_server("alpha")
    await store.delete_server("alpha")  # nothing left to delete: no change
    await store.add_invocations([inv(1)])  # not control plane
    await store.add_audit("a", "b", None, None, None)
    batch = await store.changes(start.cursor)
    assert batch.complete
    assert [(c.kind, c.key) for c in batch.changes] == [
        ("server", "alpha"), ("route", str(route)), ("route", str(route)),
        ("route", str(route)), ("server", "alpha")]
    assert [c.seq for c in batch.changes] == sorted(c.seq for c in batch.changes)
    assert all(c.seq > start.cursor for c in batch.changes)
    later = await store.changes(batch.cursor)
    assert later.changes == [] and later.cursor == batch.cursor and later.complete
    # A position this store never gave out (another process's): reload in full.
    assert not (await store.changes(batch.cursor + 1000)).complete


async def test_a_long_poll_returns_when_a_change_lands(store: Store) -> None:
    cursor = (await store.changes()).cursor
    got: list[str] = []
    waiting = anyio.Event()

    async def poll() -> None:
        waiting.set()
        batch = await store.changes(cursor, wait=30)
        got.extend(c.key for c in batch.changes)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await waiting.wait()
            await store.put_server("beta", None, True)
    assert got == ["beta"]
    # Nothing new: a bounded wait ends empty.
    with anyio.fail_after(20):
        batch = await store.changes((await store.changes()).cursor, wait=0.01)
    assert batch.changes == [] and batch.complete


async def test_a_feed_that_no_longer_reaches_back_asks_for_a_reload() -> None:
    feed = LocalChangeFeed(keep=2)
    for name in ("a", "b", "c"):
        feed.note("server", name)
    assert not (await feed.changes(0)).complete
    recent = await feed.changes(1)
    assert recent.complete and [c.key for c in recent.changes] == ["b", "c"]


# -- histories ------------------------------------------------------------------------------


async def test_audit_pages_newest_first(store: Store) -> None:
    before = time.time()
    for i in range(7):
        await store.add_audit("stdio", f"action{i}", f"target{i}" if i % 2 else None,
                              '{"x": 1}' if i == 3 else None, f"result{i}")
    page = await store.audit(limit=3)
    assert [e.action for e in page] == ["action6", "action5", "action4"]
    older = await store.audit(limit=3, before_id=page[-1].id)
    assert [e.action for e in older] == ["action3", "action2", "action1"]
    entry = older[0]
    assert (entry.actor, entry.target, entry.arguments, entry.result) == (
        "stdio", "target3", '{"x": 1}', "result3")
    assert before <= entry.at <= time.time()
    assert [e.action for e in await store.audit(before_id=older[-1].id)] == ["action0"]


async def test_an_audit_entry_written_twice_is_stored_once(store: Store) -> None:
    """An entry's ``uid`` is given when it is made: written again (a retry after a
    COMMIT whose answer was lost, a spool replayed), it is stored once.  Entries without
    one (stored before uids) are never taken for each other."""
    uid = new_uid()
    for _ in range(2):
        await store.add_audit("ada", "reconnect_server", "alpha", None, "ready", "gw-1",
                              at=1000.0, uid=uid)
    await store.add_audit("ada", "reconnect_server", "alpha", None, "ready", "gw-1",
                          at=1000.0, uid=new_uid())  # the same operation done again
    for _ in range(2):
        await store.add_audit("ada", "reconnect_server", "alpha", None, "ready", "gw-1",
                              at=1000.0)
    entries = await store.audit()
    assert len(entries) == 4, entries
    assert entries[-1].uid == uid and entries[-1].at == 1000.0
    assert [e.uid for e in entries[:2]] == [None, None]


async def test_forgetting_a_servers_pins_deletes_and_audits_in_one_write(
        store: Store) -> None:
    """``forget_pins`` (``mcp-gateway pins forget``): the server's rows go and the entry
    saying so is appended, both or neither; a server with no rows writes nothing."""
    from fast_mcp_gateway.store.records import PinRecord

    await store.put_pins([PinRecord(server=s, kind="tool", name="t", digest=st,
                                    definition="{}", status=st, actor="x", at=1.0)
                          for s in ("gone", "kept") for st in ("approved", "pending")])
    assert await store.forget_pins("gone", "cli") == (1, 1)
    assert await store.forget_pins("nobody", "cli") == (0, 0)
    assert [r.server for r in await store.pins()] == ["kept", "kept"]
    assert [(e.actor, e.action, e.target, e.result) for e in await store.audit()] == [
        ("cli", "forget_pins", "gone", "1 approved and 1 pending definition(s) forgotten")]


async def test_health_records_page_per_server(store: Store) -> None:
    await store.add_health_records([
        HealthRecord(at=100.0 + i, server="well" if i % 2 else "alpha",
                     replica="well#0" if i % 2 else "alpha", status=f"s{i}",
                     detail=None if i % 3 else f"d{i}")
        for i in range(10)])
    await store.add_health_records([])
    everything = await store.health_records(limit=100)
    assert [r.status for r in everything] == [f"s{i}" for i in range(9, -1, -1)]
    assert all(r.id is not None for r in everything)
    well = await store.health_records(server="well", limit=2)
    assert [(r.status, r.replica) for r in well] == [("s9", "well#0"), ("s7", "well#0")]
    older = await store.health_records(server="well", limit=10, before_id=well[-1].id)
    assert [r.status for r in older] == ["s5", "s3", "s1"]
    assert older[1].detail == "d3" and older[1].at == 103.0 and older[0].detail is None


async def test_inspections_record_page_and_clear(store: Store) -> None:
    ids = [await store.add_inspection(
        "alpha" if i % 2 else "beta", f"r{i}", "tools/call", f"tool{i}", '{"a": 1}',
        "success" if i % 3 else "failed", 1.5 * i, '{"content": []}' if i % 3 else "boom")
        for i in range(6)]
    assert ids == sorted(ids) and len(set(ids)) == 6
    alpha = await store.inspections(server="alpha", limit=2)
    assert [e.target for e in alpha] == ["tool5", "tool3"]
    entry = alpha[1]
    assert (entry.id, entry.server, entry.replica, entry.operation, entry.arguments,
            entry.status, entry.duration_ms, entry.result) == (
        ids[3], "alpha", "r3", "tools/call", '{"a": 1}', "failed", 4.5, "boom")
    assert [e.target for e in await store.inspections(server="alpha",
                                                      before_id=alpha[-1].id)] == ["tool1"]
    assert await store.clear_inspections("alpha") == 3
    assert [e.server for e in await store.inspections()] == ["beta"] * 3
    assert await store.clear_inspections("nobody") == 0
    assert await store.clear_inspections() == 3
    assert await store.inspections() == []
    assert await store.add_inspection("x", None, "ping", None, None, "success", 0.1,
                                      None) > ids[-1]  # ids are never reused


# -- the shared histogram math --------------------------------------------------------------


def test_buckets_and_percentiles() -> None:
    assert bucket_of(0.0) == 0 and bucket_of(BUCKETS_MS[0]) == 0
    assert bucket_of(BUCKETS_MS[0] + 0.001) == 1
    assert bucket_of(BUCKETS_MS[-1]) == len(BUCKETS_MS) - 1
    assert bucket_of(BUCKETS_MS[-1] + 1) == len(BUCKETS_MS)  # the overflow bucket
    histogram = [0] * (len(BUCKETS_MS) + 1)
    assert percentile_from(histogram, 0.5, None) is None
    histogram[3], histogram[len(BUCKETS_MS)] = 9, 1
    assert percentile_from(histogram, 0.5, 60_000.0) == BUCKETS_MS[3]
    assert percentile_from(histogram, 0.99, 60_000.0) == 60_000.0  # overflow: the max
    assert percentile_from(histogram, 0.5, 0.9) == 0.9  # capped at the max


async def test_a_learned_era_is_kept_one_per_server(store: Store) -> None:
    assert await store.era_needs() == []
    first = EraNeed(server="guard", start="s1", era="2026-07-28",
                    reason="tool 'guarded' asks for input with an InputRequiredResult", at=1.5)
    other = EraNeed(server="asker", start="s2", era="handshake",
                    reason="tool 'ask' asks for input by push (ctx.elicit())", at=2.0)
    await store.put_era_need(first)
    await store.put_era_need(other)
    assert await store.era_needs() == [other, first]  # by server name
    moved = EraNeed(server="guard", start="s3", era="handshake", reason="later", at=3.0)
    await store.put_era_need(moved)  # the server's newer need replaces the older
    assert await store.era_needs() == [other, moved]


def bound(exposed: str, server: str, original: str, base: str | None = None,
          kind: str = "tool") -> NameBinding:
    return NameBinding(kind=kind, exposed=exposed, server=server, original=original,  # type: ignore[arg-type]
                       base=base or exposed, at=1.5)


async def test_a_name_claimed_first_stays_bound_until_its_server_is_released(
        store: Store) -> None:
    """The first claim of an exposed name wins; a component keeps its one name (for one
    base); released, a server's names are free again."""
    assert await store.name_bindings() == []
    mine = bound("a_b_c", "a_b", "c")
    prompt = bound("a_b_c", "a_b", "c", kind="prompt")
    assert await store.claim_names([mine, prompt]) == [prompt, mine]
    theirs = bound("a_b_c", "a", "b_c")
    again = bound("a_b_c_1234abcd", "a_b", "c", base="a_b_c")
    # The name is taken, the component is bound: the claimant learns what holds them.
    assert await store.claim_names([theirs, again]) == [mine]
    assert await store.name_bindings() == [
        bound("a_b_c", "a_b", "c", kind="prompt"), mine]  # by kind, then name
    await store.claim_names([bound("a_b_c_5678abcd", "a", "b_c", base="a_b_c")])
    renamed = bound("x_c", "a_b", "c")  # its namespace changed: a new base replaces it
    await store.claim_names([renamed])
    assert [(b.kind, b.exposed, b.server) for b in await store.name_bindings()] == [
        ("prompt", "a_b_c", "a_b"), ("tool", "a_b_c_5678abcd", "a"), ("tool", "x_c", "a_b")]
    assert await store.release_names("a_b") == 2
    assert await store.name_bindings() == [bound("a_b_c_5678abcd", "a", "b_c", base="a_b_c")]
    await store.claim_names([theirs])   # a's 'b_c' is bound under its base already
    await store.claim_names([bound("a_b_c", "z", "c")])
    assert {b.server for b in await store.name_bindings()} == {"a", "z"}


async def test_a_forgotten_binding_goes_only_while_it_binds_its_name_to_that_component(
        store: Store) -> None:
    """``forget_names`` drops the bindings named (by kind, name, server and original); a
    name bound to another component since, and the other kind's binding, stay."""
    tool, prompt = bound("a_x", "a", "x"), bound("a_x", "a", "x", kind="prompt")
    kept, other = bound("a_y", "a", "y"), bound("b_z", "b", "z")
    await store.claim_names([tool, prompt, kept, other])
    stale = bound("b_z", "a", "z")   # 'b_z' is b's, not a's: nothing to forget
    assert await store.forget_names([tool, stale, bound("a_q", "a", "q")]) == 1
    assert await store.name_bindings() == [prompt, kept, other]
    assert await store.forget_names([]) == 0
    assert await store.forget_names([prompt, kept]) == 2
    assert await store.name_bindings() == [other]


async def test_a_release_or_a_forget_is_a_change_in_the_feed(store: Store) -> None:
    """Another gateway follows them as they are made (``NameBook.sync``): one change per
    server whose bindings went, none when nothing went.  Claims are no change."""
    start = await store.changes()
    await store.claim_names([bound("a_x", "a", "x"), bound("a_y", "a", "y"),
                             bound("b_z", "b", "z"), bound("c_w", "c", "w")])
    assert await store.release_names("a") == 2
    assert await store.release_names("a") == 0
    assert await store.forget_names([bound("b_z", "b", "z"), bound("c_w", "c", "w"),
                                     bound("d_v", "d", "v")]) == 2
    assert await store.forget_names([bound("b_z", "b", "z")]) == 0
    batch = await store.changes(start.cursor)
    assert [(c.kind, c.key) for c in batch.changes] == [
        ("names", "a"), ("names", "b"), ("names", "c")]


async def test_records_are_read_in_the_order_they_were_written(store: Store) -> None:
    """``logs --follow`` reads records as they are written: a call's record is written when
    it ends, so a long call (or a task's end) comes after later calls that ended first."""
    none, start = await store.invocations_written(None)  # only the position now
    assert none == []
    await store.add_invocations([inv(1, at=1_000_010.0), inv(2, at=1_000_020.0)])
    await store.add_invocations([inv(3, at=1_000_000.0, server="beta")])  # ended last
    rows, position = await store.invocations_written(start)
    assert [r.id for r in rows] == [inv(1).id, inv(2).id, inv(3).id]
    assert await store.invocations_written(position) == ([], position)
    await store.add_invocations([inv(4, at=999_000.0), inv(5, at=999_001.0, server="beta")])
    only_beta, _ = await store.invocations_written(position, server="beta")
    assert [r.id for r in only_beta] == [inv(5).id]
    first, middle = await store.invocations_written(start, limit=2)
    assert [r.id for r in first] == [inv(1).id, inv(2).id]
    rest, end = await store.invocations_written(middle, limit=2)
    assert [r.id for r in rest] == [inv(3).id, inv(4).id]
    assert [r.id for r in (await store.invocations_written(end))[0]] == [inv(5).id]
    await store.add_invocations([inv(1, at=1_000_010.0)])  # a duplicate id: not again
    again, _ = await store.invocations_written(position, server="alpha")
    assert [r.id for r in again] == [inv(4).id]
