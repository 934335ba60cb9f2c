"""``mcp-gateway servers``: ``--no-db`` as ``serve`` and ``check`` have it, and a store
URL's password never printed."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import anyio

from fast_mcp_gateway.cli.main import _parser
from fast_mcp_gateway.store import open_store

CLI = [sys.executable, "-m", "fast_mcp_gateway"]
REPO = Path(__file__).resolve().parents[1]


def _servers(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "servers", "--config", "servers.yaml", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


async def _register(db: str) -> None:
    store = await open_store(db)
    try:
        await store.put_server("extra", {"url": "http://127.0.0.1:9000/mcp"}, True)
    finally:
        await store.close()


def test_servers_no_db_lists_the_file_alone(tmp_path: Path) -> None:
    """``servers --no-db`` was refused ("did you mean --db?"), though ``serve --no-db``
    runs the file's servers alone and ``check --no-db`` checks them."""
    db = tmp_path / "g.db"
    anyio.run(_register, str(db))
    with_store = json.loads(_servers("--db", str(db), "--json").stdout)
    assert "extra" in {r["server"] for r in with_store["servers"]}
    done = _servers("--no-db", "--json")
    assert done.returncode == 0, done.stderr
    alone = json.loads(done.stdout)
    assert alone["store"] is None
    assert {r["server"] for r in alone["servers"]} == {"notes", "clock"}


def test_servers_json_masks_the_store_urls_password(pg_url: str) -> None:
    """``servers --json`` printed the store's URL as given, password and all (``check``
    masks it)."""
    anyio.run(_register, pg_url)
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)  # the test cluster trusts local users: any password
    with_password = f"{scheme}://{user}:hunter2-secret@{host}"
    done = _servers("--db", with_password, "--json")
    assert done.returncode == 0, done.stderr
    assert "hunter2-secret" not in done.stdout
    assert json.loads(done.stdout)["store"] == f"{scheme}://***@{host}"


def test_every_no_db_says_the_store_is_not_used() -> None:
    """``serve --no-db`` said "do not record calls", though it also leaves out every
    server registered at runtime (and refuses to add one): the whole store is off."""
    (sub,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = dict(sub.choices)
    for name in ("serve", "check", "servers"):
        (no_db,) = [a for a in commands[name]._actions if "--no-db" in a.option_strings]
        assert no_db.help is not None and "servers" in no_db.help, (name, no_db.help)
    pins = commands["pins"]
    (action,) = [a for a in pins._actions if a.dest == "action"]
    assert action.help is not None and "approve" in action.help
