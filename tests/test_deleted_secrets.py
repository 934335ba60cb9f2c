"""A registration taken back leaves no copy of its secrets in the SQLite store's files.

SQLite leaves a deleted row's bytes in the page's free space and the page's old images
in the WAL: ``grep -a`` found an env value of an add whose server failed to start, and
the old value of a rotated key, in ``gateway.db-wal`` while the gateway ran.  The store
zeroes deleted content (``secure_delete``) and empties the WAL after each change of a
registration (``wal_checkpoint(TRUNCATE)``)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.store.sqlite import SQLiteStore
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio
ADMIN = "mgw_admin-deleted-secrets-5b1d"


def holding(db: Path, secret: str) -> list[str]:
    """The store's files (the database, its -wal, -shm) whose bytes hold ``secret``."""
    return sorted(p.name for p in db.parent.glob(db.name + "*")
                  if secret.encode() in p.read_bytes())


async def test_an_add_taken_back_leaves_no_secret_in_the_store_files(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()}, db=db,
                           options={"auth": {"tokens": [
                               {"name": "ops", "token": ADMIN, "scopes": ["admin"]}]}})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(
            base_url=f"{base}/api/v1", timeout=60,
            headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        bad = {"name": "bad2", "config": {"command": sys.executable,
                                          "args": ["-c", "raise SystemExit(3)"],
                                          "env": {"API_KEY": "envlit-7777"}}}
        refused = await http.post("/servers", json=bad)
        assert refused.status_code == 422, refused.text
        assert (await http.get("/servers/bad2")).status_code == 404
        # A server added, then removed: its secret goes with it too.
        kept = {"name": "kept", "config": {**memory_entry("alpha"),
                                           "headers": {"X-Api-Key": "hdrlit-8888"}}}
        assert (await http.post("/servers", json=kept)).status_code == 201
        assert holding(db, "hdrlit-8888")  # stored while registered (the check can see)
        assert (await http.delete("/servers/kept")).status_code == 200
        assert holding(db, "envlit-7777") == []
        assert holding(db, "hdrlit-8888") == []


async def test_a_replaced_secret_leaves_no_copy(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    store = await SQLiteStore.open(db)
    try:
        await store.put_server("other", {"command": "x", "args": ["y" * 200]}, True)
        await store.put_server("s", {"command": "x", "env": {"KEY": "rotated-1111"}}, True)
        assert holding(db, "rotated-1111")
        await store.put_server("s", {"command": "x", "env": {"KEY": "current-2222"}}, True)
        assert holding(db, "rotated-1111") == []
        await store.delete_server("s")
        assert holding(db, "current-2222") == []
    finally:
        await store.close()
