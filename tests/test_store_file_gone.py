"""The SQLite file deleted, its folder removed or another file put in its place while
the gateway runs (review23): SQLite went on writing into the unlinked file, every write
"succeeding" and the store reported up, and all of it was gone at the next start.  Now
the next write opens the file at its path again (created and migrated as at a start)
and goes there, said once; one that cannot be made is ``StoreUnavailable`` (held, tried
again).  Real files, read back with a separate ``sqlite3`` connection."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.base import StoreUnavailable

pytestmark = pytest.mark.anyio


def _audited(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [action for (action,) in db.execute("SELECT action FROM audit ORDER BY id")]


async def test_writes_after_the_file_and_its_folder_are_removed_reach_a_new_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "data"
    path = folder / "g.db"
    store = await open_store(str(path))
    try:
        await store.add_audit("ops", "before", None, None, "ok")
        shutil.rmtree(folder)
        caplog.set_level(logging.WARNING, "fast_mcp_gateway.store")
        await store.add_audit("ops", "after", None, None, "ok")
        await store.put_server("kept", {"url": "http://127.0.0.1:9/mcp"}, True)
        assert path.exists()
        assert _audited(path) == ["after"]
        assert [r.name for r in await store.servers()] == ["kept"]
        said = [r for r in caplog.records if "was deleted while the gateway ran" in r.message]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
    finally:
        await store.close()


async def test_the_file_alone_deleted_leaves_no_old_pages_in_the_new_one(
        tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = await open_store(str(path))
    try:
        await store.add_audit("ops", "before", None, None, "ok")
        path.unlink()  # its -wal and -shm stay, the old file's
        await store.add_audit("ops", "after", None, None, "ok")
        assert _audited(path) == ["after"]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        await store.close()


async def test_another_file_put_in_its_place_is_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "g.db"
    store = await open_store(str(path))
    try:
        restored = await open_store(str(tmp_path / "restored.db"))
        await restored.close()
        caplog.set_level(logging.WARNING, "fast_mcp_gateway.store")
        (tmp_path / "restored.db").replace(path)  # a backup restored by a move
        await store.add_audit("ops", "after", None, None, "ok")
        await store.add_audit("ops", "again", None, None, "ok")
        said = [r for r in caplog.records if "another file was put in its place" in r.message]
        assert len(said) == 1 and "restart it" in said[0].message
    finally:
        await store.close()


async def test_a_file_that_cannot_be_made_again_holds_the_write_until_it_can(
        tmp_path: Path) -> None:
    folder = tmp_path / "data"
    path = folder / "g.db"
    store = await open_store(str(path))
    try:
        shutil.rmtree(folder)
        folder.write_text("not a folder")  # the folder cannot be created
        with pytest.raises(StoreUnavailable, match="deleted while the gateway ran"):
            await store.add_audit("ops", "held", None, None, "ok")
        folder.unlink()
        await store.add_audit("ops", "held", None, None, "ok")  # tried again: made
        assert _audited(path) == ["held"]
    finally:
        await store.close()
