"""Spool files across versions: a downgrade between a stop that spilled and a start.

Call records gained ``client_kind`` after 0.1.0 as of 0ee0d11 (the previous release),
and the spool wrote it into each ``"call"`` object; that gateway builds each record
from that object and refuses a field it does not know.  So, run against a spool folder
this gateway had written, it refused the whole file at every start ("cannot replay the
spilled records ... unexpected keyword argument 'client_kind'; move the file away"),
and in a ``.part`` (this gateway killed while it spilled) it dropped every call line as
unreadable and removed the file: the records were lost.  The field is written in the
line's ``"extra"`` now, which that reader never looks at: it replays both, without the
kind.  This gateway reads every shape (files of each version) and leaves an extra it
does not know.  The previous release's own code (``git archive``) replays real spool
files into a real SQLite store in a process of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fast_mcp_gateway.store import HealthRecord, Invocation, open_store
from fast_mcp_gateway.store.spool import Spool, spool_target

pytestmark = pytest.mark.anyio

PREVIOUS_RELEASE = "0ee0d11"  # 0.1.0 before call records kept their caller's kind
REPO = Path(__file__).resolve().parents[1]
KINDS = ("token", "jwt", "host", None)

REPLAY = textwrap.dedent("""
    import json, logging, sys
    from pathlib import Path
    import anyio
    import fast_mcp_gateway
    from fast_mcp_gateway.store import open_store
    from fast_mcp_gateway.store.spool import Spool, spool_target

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    folder, db = Path(sys.argv[1]), sys.argv[2]

    async def main():
        store = await open_store(db)
        try:
            written = await Spool(folder, spool_target(db)).replay(lambda: store)
            page, _ = await store.invocations(limit=500)
        finally:
            await store.close()
        print(json.dumps({"code": fast_mcp_gateway.__file__, "written": written,
                          "calls": sorted(r.id for r in page)}))

    anyio.run(main)
""")


def calls(first: int, count: int) -> list[Invocation]:
    now = time.time()
    return [Invocation(id=f"r{n}", trace_id="t", client="alice", kind="tool",
                       exposed="alpha_add", server="alpha", original="add",
                       started_at=now - 60 + n / 1000, duration_ms=2.0, status="success",
                       instance_id="gw-1", client_kind=KINDS[n % len(KINDS)])
            for n in range(first, first + count)]


def spill(folder: Path, db: str) -> None:
    """What this gateway leaves: a whole spool file (calls of every kind, and health
    transitions) and a ``.part`` a kill cut short in its last line."""
    spool = Spool(folder, spool_target(db))
    spool.hold_calls(calls(0, 8))
    spool.hold_health([HealthRecord(at=time.time(), server="alpha", replica="alpha",
                                    status="ready", detail="up", instance_id="gw-1")])
    assert spool.write() is not None
    spool.hold_calls(calls(8, 8))
    written = spool.write()
    assert written is not None
    text = written.read_bytes()
    part = written.with_name(written.name + ".part")
    part.write_bytes(text[:-30])  # the 16th record torn
    part.chmod(0o600)
    written.unlink()


@pytest.fixture
def previous_release(tmp_path: Path) -> Path:
    """The previous release's source tree (``git archive``), or a skip without git or
    its history (a shallow clone)."""
    git = shutil.which("git")
    if git is None or subprocess.run([git, "-C", str(REPO), "cat-file", "-e",
                                      f"{PREVIOUS_RELEASE}^{{commit}}"],
                                     capture_output=True, check=False).returncode:
        pytest.skip(f"needs git and commit {PREVIOUS_RELEASE} in {REPO}")
    tree = tmp_path / "previous"
    tree.mkdir()
    archive = subprocess.run([git, "-C", str(REPO), "archive", PREVIOUS_RELEASE, "src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree / "src"


def test_the_previous_release_replays_what_this_gateway_spilled(
        tmp_path: Path, previous_release: Path) -> None:
    folder, db = tmp_path / "spool", str(tmp_path / "gateway.db")
    spill(folder, db)
    env = {**os.environ, "PYTHONPATH": str(previous_release)}
    done = subprocess.run([sys.executable, "-c", REPLAY, str(folder), db], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["code"].startswith(str(previous_release)), said  # its code, not ours
    # Every whole record is in the store (only the torn 16th is lost), no file is left.
    assert said["calls"] == sorted(f"r{n}" for n in range(15)), done.stderr
    assert "ERROR" not in done.stderr and "cannot replay" not in done.stderr, done.stderr
    assert list(folder.iterdir()) == [], done.stderr


async def test_this_gateway_reads_each_versions_lines_and_leaves_unknown_extras(
        tmp_path: Path) -> None:
    """Lines without the kind (0ee0d11's), with it in the record (the versions between),
    in ``"extra"`` (this one's), and an extra field of a newer gateway, left out."""
    folder, db = tmp_path / "spool", str(tmp_path / "gateway.db")
    folder.mkdir(mode=0o700)
    spool = Spool(folder, spool_target(db))
    fields = [{k: v for k, v in dataclasses.asdict(r).items() if k != "client_kind"}
              for r in calls(0, 4)]
    lines = [{"call": fields[0]},
             {"call": {**fields[1], "client_kind": "jwt"}},
             {"call": fields[2], "extra": {"client_kind": "host"}},
             {"call": fields[3], "extra": {"client_kind": "token", "from_the_future": 1}}]
    path = folder / f"held-{spool.key}-1-1.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in [
        {"spool": 1, "store": spool_target(db), "calls": 4, "health": 0}, *lines]))
    store = await open_store(db)
    try:
        assert await spool.replay(lambda: store) == 4
        page, _ = await store.invocations(limit=10)
    finally:
        await store.close()
    assert {r.id: r.client_kind for r in page} == {
        "r0": None, "r1": "jwt", "r2": "host", "r3": "token"}
    assert not path.exists()


async def test_what_this_gateway_spills_it_replays_with_each_calls_kind(
        tmp_path: Path) -> None:
    folder, db = tmp_path / "spool", str(tmp_path / "gateway.db")
    spill(folder, db)
    store = await open_store(db)
    try:
        assert await Spool(folder, spool_target(db)).replay(lambda: store) == 15 + 1
        page, _ = await store.invocations(limit=50)
    finally:
        await store.close()
    assert {r.id: r.client_kind for r in page} == {
        f"r{n}": KINDS[n % len(KINDS)] for n in range(15)}
