"""The store's SQLite file (which holds registered servers' headers and env in clear) and
the data folder are created owner-only; an existing shared file keeps its mode and is
reported with the fix."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from fast_mcp_gateway.store import SQLiteStore
from tests.stdio_gateway import stdio_gateway

SECRET = "Bearer mgw-private-files-3b9e1d"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_gateway_creates_its_default_store_and_data_folder_owner_only(tmp_path: Path
                                                                        ) -> None:
    data = tmp_path / "share"
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    # No --db and no MCP_GATEWAY_DB: the default file in the user's data folder.
    env: dict[str, str | None] = {"XDG_DATA_HOME": str(data), "MCP_GATEWAY_DB": None}
    with stdio_gateway("--config", str(config), env=env, umask=0o022) as gateway:
        # Kept stopped (an add whose server does not start is taken back, and its
        # secret with it: tests/test_deleted_secrets.py).
        gateway.call("gateway_add_server", name="secret", config={
            "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": SECRET},
            "enabled": False})
        folder = data / "fast-mcp-gateway"
        db = folder / "gateway.db"
        assert mode(folder) == 0o700
        assert mode(db) == 0o600
        # WAL mode: the companions exist while the gateway runs, and must not be
        # readable either (they hold the same pages).
        companions = [Path(f"{db}{s}") for s in ("-wal", "-shm")]
        assert all(p.exists() for p in companions)
        assert {p.name: mode(p) for p in companions} == {p.name: 0o600 for p in companions}
        assert SECRET.encode() in db.read_bytes() + companions[0].read_bytes()


@pytest.mark.anyio
async def test_a_db_path_is_created_owner_only_and_a_shared_one_is_left_but_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new-folder" / "g.db"
        store = await SQLiteStore.open(path)
        try:
            await store.put_server("s", {"url": "http://127.0.0.1:9/mcp",
                                         "headers": {"Authorization": SECRET}}, True)
            assert mode(path) == 0o600 and mode(Path(f"{path}-wal")) == 0o600
            assert mode(path.parent) == 0o700
        finally:
            await store.close()

        # A file the user made readable on purpose keeps its mode; the log says so once,
        # naming the file and the fix.
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o644)
        os.chmod(shared, 0o644)
        with caplog.at_level(logging.WARNING, logger="fast_mcp_gateway"):
            store = await SQLiteStore.open(shared)
            await store.close()
        assert mode(shared) == 0o644
        warned = [r.getMessage() for r in caplog.records if str(shared) in r.getMessage()]
        assert len(warned) == 1 and f"chmod 600 {shared}" in warned[0]
        assert "mode 0644" in warned[0]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fast_mcp_gateway"):
            store = await SQLiteStore.open(path)  # an owner-only file: nothing to say
            await store.close()
        assert not caplog.records
    finally:
        os.umask(old)


def test_a_db_naming_some_other_file_gets_no_chmod_advice(tmp_path: Path) -> None:
    """``logs --db /etc/passwd`` (a mistyped --db): the gateway said to ``chmod 600`` the
    file, as it says of a shared store, before finding it is no database at all."""
    import subprocess
    import sys

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n" * 100)
    os.chmod(notes, 0o644)
    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "logs", "--db",
                           str(notes)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "chmod" not in done.stderr, done.stderr
    assert f"{notes}: not a usable gateway database" in done.stderr
    assert mode(notes) == 0o644
