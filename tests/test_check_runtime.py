"""``check`` tests what ``serve`` runs: the file's servers and the store's runtime
registrations (``--db``, the same default as serve), marked; serve's start-up log counts
both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.cli.reports import merged_servers
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.store import SQLiteStore
from tests.stdio_gateway import CLI, REPO, stdio_gateway


def register(db: Path) -> None:
    async def put() -> None:
        store = await SQLiteStore.open(db)
        try:
            # What POST /api/v1/servers (or gateway_add_server) keeps in the store.
            await store.put_server("extra", {"command": sys.executable,
                                             "args": ["-m", "fast_mcp_gateway.demo.clock"]},
                                   True)
        finally:
            await store.close()

    anyio.run(put)


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "check", "--config", "servers.yaml", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.timeout(180)  # two checks start three servers each on a loaded machine
def test_check_includes_the_stores_registrations_marked_as_such(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    register(db)
    result = check("--db", str(db), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    sources = {row["server"]: (row["source"], row["status"]) for row in report["servers"]}
    assert sources == {"notes": ("file", "ok"), "clock": ("file", "ok"),
                       "extra": ("runtime", "ok")}

    # Without --db: the same default as serve ($MCP_GATEWAY_DB here), and the table says it.
    table = check(env={"MCP_GATEWAY_DB": str(db)})
    assert table.returncode == 0, table.stderr
    assert "3/3 servers ok (servers.yaml + 1 registered at runtime in " in table.stdout
    extra = next(line for line in table.stdout.splitlines() if line.startswith("extra "))
    assert "runtime" in extra.split()



def test_a_missing_store_has_no_registrations_and_is_not_created(tmp_path: Path) -> None:
    empty = tmp_path / "none.db"
    merged = anyio.run(merged_servers, load_config(REPO / "servers.yaml"), str(empty))
    assert set(merged.servers) == {"notes", "clock"} and merged.runtime == []
    assert not empty.exists()


@pytest.mark.timeout(120)
def test_serve_counts_runtime_registrations_at_start(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    register(db)
    with stdio_gateway("--config", "servers.yaml", "--db", str(db)) as gateway:
        listed = gateway.call("gateway_list_servers")
        err = gateway.stop()
    assert {s["name"] for s in listed["servers"]} == {"notes", "clock", "extra"}
    assert (f"serving 3 upstream(s): 2 from servers.yaml, 1 registered at runtime in {db} "
            "(extra; 'mcp-gateway servers' lists them)") in err


def test_check_takes_no_db_as_serve_does_and_opens_no_store(tmp_path: Path) -> None:
    """'check --no-db' was refused ('unrecognized arguments') though 'serve --no-db' runs:
    it checks the file's servers alone and never opens the store (here an unusable one)."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "off": {"command": sys.executable, "args": ["-c", "pass"], "enabled": False}}}))
    broken = tmp_path / "broken.db"
    broken.write_text("not a database\n" * 100)
    env = {**os.environ, "MCP_GATEWAY_DB": str(broken)}
    cli = [*CLI, "check", "--config", str(config), "--json"]
    opened = subprocess.run(cli, capture_output=True, text=True, timeout=120, env=env)
    assert opened.returncode == 2, opened.stdout + opened.stderr  # the store is read...
    done = subprocess.run([*cli, "--no-db"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr  # ...but not with --no-db
    report = json.loads(done.stdout)
    assert report["store"] is None and report["problems"] == []
    assert [(r["server"], r["status"], r["source"]) for r in report["servers"]] == [
        ("off", "disabled", "file")]
    table = subprocess.run([*CLI, "check", "--config", str(config), "--no-db"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert table.returncode == 0, table.stderr
    assert f"0/0 servers ok, 1 disabled ({config}, no store (--no-db))" in table.stdout


@pytest.mark.timeout(120)
def test_check_names_a_file_server_removed_at_runtime(tmp_path: Path) -> None:
    """The file's ``clock`` removed at runtime (``gateway_remove_server``: a tombstone in
    the store) had no row and no word: ``check`` listed the other servers as if the
    file had no ``clock``, and the operator could not tell why it does not run."""
    from fast_mcp_gateway.config.registrations import TOMBSTONE

    db = tmp_path / "gateway.db"

    async def remove() -> None:
        store = await SQLiteStore.open(db)
        try:
            await store.put_server("clock", TOMBSTONE, False)
        finally:
            await store.close()

    anyio.run(remove)
    table = check("--db", str(db))
    assert table.returncode == 0, table.stdout + table.stderr
    said = [line for line in table.stdout.splitlines() if line.startswith("clock: ")]
    assert len(said) == 1, table.stdout
    assert "was removed at runtime (gateway_remove_server" in said[0]
    assert "add it again (gateway_add_server" in said[0]
    report = json.loads(check("--db", str(db), "--json").stdout)
    assert report["removed_at_runtime"] == ["clock"] and report["ok"] is True
    assert {row["server"] for row in report["servers"]} == {"notes"}
