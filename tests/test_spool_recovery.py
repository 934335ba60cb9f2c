"""A spill cut short: the gateway killed while its stop wrote the spool file.

The stop writes a ``.part`` file and renames it once whole; a kill meanwhile (SIGKILL
at the end of an orchestrator's grace period, the OOM killer) left the ``.part``, which
no start read nor named: its records never reached the store, and the file stayed for
ever.  Now the next start with the store recovers the records whole in it (a record is
a line; the last one is torn), says what was recovered and what was lost, writes them
and removes the file -- and leaves a ``.part`` another gateway is writing.  Real spool
files, written by a real process killed in the middle; a real SQLite store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import Store, open_store
from fast_mcp_gateway.store.spool import Spool, spool_target
from tests.test_spool_sharing import spilled

pytestmark = pytest.mark.anyio

KILLED_WRITING = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from fast_mcp_gateway.store import Invocation
    from fast_mcp_gateway.store import spool as spooling

    spool = spooling.Spool(Path(sys.argv[1]), sys.argv[2])
    now = time.time()
    spool.hold_calls([Invocation(id=f"r{n}", trace_id="t", client="c", kind="tool",
                                 exposed="alpha_add", server="alpha", original="add",
                                 started_at=now - 60 + n / 1000, duration_ms=2.0,
                                 status="success", instance_id="gw-1")
                      for n in range(100)])
    dumps, lines = json.dumps, 0

    def dumps_then_die(record):
        global lines
        lines += 1
        if lines == 60:  # 59 lines given to the file's buffer, some 8 KiB of them written
            os.kill(os.getpid(), signal.SIGKILL)
        return dumps(record)

    spooling.json.dumps = dumps_then_die
    spool.write()
""")


def killed_while_spilling(folder: Path, target: str) -> Path:
    """The ``.part`` file a stop killed while it spilled 100 call records left."""
    done = subprocess.run([sys.executable, "-c", KILLED_WRITING, str(folder), target],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    [part] = folder.glob(f"held-{Spool(folder, target).key}-*.jsonl.part")
    return part


@pytest.mark.parametrize("torn", [False, True])
async def test_a_spill_killed_midway_is_recovered_at_the_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, torn: bool) -> None:
    """Killed, the file ends with the last line its buffer wrote whole; ``torn``: cut in
    the middle of a line, as a write cut short by a full disk or a power cut leaves it."""
    db = tmp_path / "g.db"
    folder = tmp_path / "spool"
    spool = Spool(folder, spool_target(db))
    part = killed_while_spilling(folder, spool.target)
    data = part.read_bytes()
    assert data.endswith(b"\n") and 0 < data.count(b"\n") - 1 < 59, data
    if torn:
        os.truncate(part, len(data) - 50)
        data = part.read_bytes()
    whole = data.count(b"\n") - 1  # the lines ended, but the first (the counts)
    store = await open_store(db)
    try:
        assert await spool.replay(lambda: store) == whole
        assert await store.count("invocations") == whole  # type: ignore[attr-defined]
    finally:
        await store.close()
    assert list(folder.iterdir()) == []  # neither the .part nor the file made of it
    [said] = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert said.startswith(f"{part}: a spill cut short at a stop"), said
    assert (f"recovered {whole} call record(s) of the 100 call record(s) it was to hold"
            in said), said
    assert (f"; {'1 torn or unreadable line(s) skipped, ' * torn}lost: {100 - whole} call "
            "record(s); removed the file") in said, said
    assert "removed the file" in said


async def test_a_spill_being_written_is_left_and_two_starts_recover_it_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A ``.part`` another gateway (sharing the spool folder) is writing -- its stop,
    the store away -- is neither recovered nor removed under it; once its writer is
    gone, of two gateways starting at once one recovers it."""
    db = tmp_path / "g.db"
    folder = tmp_path / "spool"
    spilled(Spool(folder, spool_target(db)), 700, 4)
    [done] = folder.iterdir()
    part = done.rename(done.with_name(done.name + ".part"))  # the rename not made yet
    first, second = Spool(folder, spool_target(db)), Spool(folder, spool_target(db))
    stores: list[Store] = [await open_store(db), await open_store(db)]
    try:
        with part.open("rb") as writing:
            fcntl.flock(writing.fileno(), fcntl.LOCK_EX)  # as a writer holds it
            assert await first.replay(lambda: stores[0]) == 0
            assert Spool(folder, spool_target(tmp_path / "other.db")).others() == []
        assert list(folder.iterdir()) == [part]
        written: list[int] = []

        async def start(spool: Spool, store: Store) -> None:
            written.append(await spool.replay(lambda: store))

        async with anyio.create_task_group() as group:
            group.start_soon(start, first, stores[0])
            group.start_soon(start, second, stores[1])
        assert sum(written) == 704 and list(folder.iterdir()) == []
        assert await stores[0].count("invocations") == 700  # type: ignore[attr-defined]
    finally:
        for store in stores:
            await store.close()
    said = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(said) == 1, said
    assert ("recovered 700 call record(s) and 4 health transition(s) of the 700 call "
            "record(s) and 4 health transition(s) it was to hold" in said[0]), said
    assert "; lost: nothing; removed the file" in said[0], said


def test_a_spill_killed_before_its_first_line_is_removed_and_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Killed right after it created the file: nothing to recover; said, and removed.
    Another store's ``.part`` is named at start as its complete files are."""
    caplog.set_level(logging.WARNING)
    folder = tmp_path / "spool"
    spool = Spool(folder, spool_target(tmp_path / "g.db"))
    folder.mkdir()
    empty = folder / f"held-{spool.key}-1-2.jsonl.part"
    empty.write_bytes(b'{"spool": 1, "sto')
    other = killed_while_spilling(folder, spool_target(tmp_path / "other.db"))
    assert spool.recover() == [] and list(folder.iterdir()) == [other]
    spool.name_others()
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"{empty}: a spill cut short at a stop") and
               "recovered none of an unknown number (its first line is torn)" in line
               and "lost: unknown" in line for line in said), said
    assert any(line.startswith(f"{other} holds 100 call record(s) (some of them: a spill "
                               f"cut short at a stop) spilled for {tmp_path / 'other.db'}")
               for line in said), said
