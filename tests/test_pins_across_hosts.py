"""Forgetting pins while gateways of other hosts run on the store (PostgreSQL, SQLite).

A forget of a server's pins (``gateway_forget_pins``, ``DELETE /api/v1/pins/{name}``,
``mcp-gateway pins forget``) must be refused while another running gateway configures
the server.  It read the config file each other gateway's instance lease names: one of
another host (or built in code, naming no file) could not be read, so every forget was
refused while it ran -- two gateways on two hosts refused each other's forgets for ever.
Now each running gateway says in its lease which servers its config file configures
(``Lease.servers``, schema SQLite 13 / PostgreSQL 12), at once after a reload, and a
forget is refused for those names only, naming the gateway and its host.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest

from fast_mcp_gateway.admin.instance_lease import PREFIX, keep_instance_id
from fast_mcp_gateway.admin.pins import configured_elsewhere
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.store import Store, open_store
from fast_mcp_gateway.store.records import PinRecord
from fast_mcp_gateway.upstream.signals import ChangeSignal
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_rest import AUTH, OPS

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    return str(request.getfixturevalue("pg_url"))


def _row(server: str) -> PinRecord:
    return PinRecord(server=server, kind="tool", name="lookup", digest="d",
                     definition=json.dumps({"name": "lookup"}), status="approved",
                     actor="first use", at=1.0)


async def _until(condition: Any) -> None:
    """Wait (bounded) until ``await condition()`` holds: each look a store query."""
    with anyio.fail_after(30):
        while not await condition():
            await anyio.lowlevel.checkpoint()


async def test_a_gateway_of_another_host_refuses_only_the_servers_it_configures(
        store_url: str) -> None:
    """Gateway B of another host configures 'sh': forgetting 'sh' is refused, naming
    B and its host; 'gone', which B does not configure, is forgotten (refused on the
    old code: B's file "cannot be read here").  B's reload dropping 'sh' says so to
    the store at once, and 'sh' may be forgotten then."""
    mine = "/nowhere/servers.yaml"
    holder = f"host not-{socket.gethostname()} pid 7 config /srv/b/servers.yaml #b0b0b0"
    configs = [parse_config({"servers": {
        "sh": {"url": "http://127.0.0.1:9/mcp"}, "b1": {"url": "http://127.0.0.1:9/b"}}},
        source="/srv/b/servers.yaml")]
    reloaded = ChangeSignal()
    tried = anyio.Event()
    store: Store = await open_store(store_url)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_instance_id, lambda: store, "b", holder, tried,
                          lambda: configs[-1], reloaded)
            await tried.wait()
            said = await configured_elsewhere(store, "sh", None, mine)
            assert said is not None and "server 'sh' is configured in /srv/b/servers.yaml " \
                f"of another gateway running on this store, on host not-{socket.gethostname()}" \
                in said, said
            assert "remove the server from that file there first" in said, said
            assert await configured_elsewhere(store, "gone", None, mine) is None

            configs.append(parse_config({"servers": {"b1": {"url": "http://127.0.0.1:9/b"}}},
                                        source="/srv/b/servers.yaml"))
            reloaded.notify()  # B reloaded its file: 'sh' is gone from it

            async def dropped() -> bool:
                lease = await store.lease(f"{PREFIX}b")
                return lease is not None and lease.servers == frozenset({"b1"})

            await _until(dropped)  # at once, not at the next renewal (10 s)
            assert await configured_elsewhere(store, "sh", None, mine) is None
            tg.cancel_scope.cancel()
        assert await store.lease(f"{PREFIX}b") is None  # released at its stop
    finally:
        await store.close()


async def test_two_running_gateways_forget_what_neither_configures(
        store_url: str, tmp_path: Path) -> None:
    """Two real gateways on one store, neither with a config file the other can read
    (built in code, as on two hosts): each refused every forget while the other ran.
    Now A forgets 'gone' (neither configures it), and refuses 'sh', which B configures;
    so does the CLI, given A's file."""
    servers_yaml = tmp_path / "servers.yaml"
    servers_yaml.write_text(json.dumps({"servers": {"alpha": {"url": "http://127.0.0.1:9"}}}))
    store = await open_store(store_url)
    try:
        await store.put_pins([_row("sh"), _row("gone"), _row("gone2")])
    finally:
        await store.close()
    a = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                     db=store_url, instance_id="a", options={"auth": AUTH})
    b = make_gateway({"sh": memory_entry("sh")}, {"sh": alpha_server()},
                     db=store_url, instance_id="b")
    async with serve_http(b.http_app()), serve_http(a.http_app()) as base, \
            httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=60,
                               headers={"Authorization": f"Bearer {OPS}"}) as rest:
        await a.control.lease_tried.wait()
        await b.control.lease_tried.wait()
        forgotten = await rest.delete("/pins/gone")
        assert forgotten.status_code == 200, forgotten.text
        refused = await rest.delete("/pins/sh")
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]["message"]
        assert "server 'sh' is configured in test of another gateway running on this " \
            f"store, on host {socket.gethostname()}" in message, message

        def cli(server: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "fast_mcp_gateway", "pins", "forget", server,
                 "--db", store_url, "--config", str(servers_yaml)],
                capture_output=True, text=True, timeout=60, cwd=tmp_path)

        done = await anyio.to_thread.run_sync(cli, "sh")
        assert done.returncode == 2 and "server 'sh' is configured in test" in done.stderr, \
            done.stderr
        done = await anyio.to_thread.run_sync(cli, "gone2")
        assert done.returncode == 0, done.stderr
    store = await open_store(store_url)
    try:
        assert sorted({r.server for r in await store.pins()} & {"sh", "gone", "gone2"}) \
            == ["sh"]
    finally:
        await store.close()


OLD_LEASE_SQLITE = (  # the statement of a gateway of schema 10-12 (sqlite_schema.LEASE)
    "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
    " expires_at = excluded.expires_at"
    " WHERE leases.holder = excluded.holder OR leases.expires_at < ?4 RETURNING holder")


async def test_a_version_12_sqlite_file_gets_the_servers_of_its_leases(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 13 adds ``leases.servers``: a lease a version-12 gateway holds stays
    and says no servers (its config file is read as before); a lease held now says
    them; and a version-12 gateway taking over a lease (its statement leaves the column
    alone) is not read as saying the servers of the holder before it."""
    from fast_mcp_gateway.store import sqlite_schema
    from fast_mcp_gateway.store.sqlite import SQLiteStore
    from tests.fixtures import as_schema_version

    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # a file exactly as version 12 left it
        as_schema_version(patch, 12)
        old = await SQLiteStore.open(path)
        await old._db.returning(OLD_LEASE_SQLITE, (f"{PREFIX}old", "host h pid 1 #a", 9e9, 0))
        await old.close()
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == sqlite_schema.SCHEMA_VERSION >= 13
        kept = await store.lease(f"{PREFIX}old")
        assert kept is not None and kept.holder == "host h pid 1 #a" and kept.servers is None
        assert await store.hold_lease(f"{PREFIX}new", "host h pid 2 #b", 60, ["sh", "b"])
        held = await store.lease(f"{PREFIX}new")
        assert held is not None and held.servers == frozenset({"sh", "b"})
        # It ran out; a gateway of version 12 takes it: its servers are not said.
        assert await store.hold_lease(f"{PREFIX}gone", "host h pid 3 #c", -1, ["sh"])
        assert await store._db.returning(OLD_LEASE_SQLITE,
                                         (f"{PREFIX}gone", "host h pid 4 #d", 9.5e9, 9e9))
        taken = await store.lease(f"{PREFIX}gone")
        assert taken is not None and taken.holder == "host h pid 4 #d"
        assert taken.servers is None
    finally:
        await store.close()


async def test_a_version_11_database_gets_the_servers_of_its_leases(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on SQLite, PostgreSQL's migration 12."""
    from fast_mcp_gateway.store import postgres_schema as schema
    from fast_mcp_gateway.store.postgres import PostgresStore

    old_lease = ("INSERT INTO leases AS l (name, holder, expires_at) VALUES ($1, $2, $3)"
                 " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                 " expires_at = excluded.expires_at"
                 " WHERE l.holder = excluded.holder OR l.expires_at < $4 RETURNING holder")
    with monkeypatch.context() as old:  # a database exactly as version 11 left it
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:11])
        old.setattr(schema, "SCHEMA_VERSION", 11)
        store = await PostgresStore.open(pg_url)
        async with store._conn() as conn:
            await conn.fetchval(old_lease, f"{PREFIX}old", "host h pid 1 #a", 9e9, 0.0)
        assert await store.schema_version() == 11
        await store.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION >= 12
        kept = await store.lease(f"{PREFIX}old")
        assert kept is not None and kept.holder == "host h pid 1 #a" and kept.servers is None
        assert await store.hold_lease(f"{PREFIX}new", "host h pid 2 #b", 60, ["sh", "b"])
        assert [(x.name, x.servers) for x in await store.leases(PREFIX)] == [
            (f"{PREFIX}new", frozenset({"sh", "b"})), (f"{PREFIX}old", None)]
        assert await store.hold_lease(f"{PREFIX}gone", "host h pid 3 #c", -1, ["sh"])
        async with store._conn() as conn:
            assert await conn.fetchval(old_lease, f"{PREFIX}gone", "host h pid 4 #d", 9.5e9,
                                       9e9) == "host h pid 4 #d"
        taken = await store.lease(f"{PREFIX}gone")
        assert taken is not None and taken.servers is None
    finally:
        await store.close()
