"""The report commands stop quietly when their reader leaves (``mcp-gateway logs | head``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.records import Invocation

CLI = [sys.executable, "-m", "fast_mcp_gateway"]
REPO = Path(__file__).resolve().parents[1]


async def _store_with_calls(db: Path, count: int) -> None:
    store = await open_store(str(db))
    try:
        now = time.time()
        await store.add_invocations(
            Invocation(id=f"{i:032x}", trace_id=f"{i:032x}", client="t", kind="tool",
                       exposed="clock_add", server="clock", original="add",
                       started_at=now - count + i, duration_ms=1.0, status="success")
            for i in range(count))
    finally:
        await store.close()


@pytest.mark.parametrize("command", [["logs", "--json"], ["logs"], ["stats"],
                                     ["servers", "--config", "servers.yaml"],
                                     ["check", "--config", "servers.yaml",
                                      "--log-level", "WARNING"],
                                     ["token", "new", "--name", "ops"]])
def test_a_closed_stdout_ends_the_command_without_a_traceback(
        tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "calls.db"
    anyio.run(_store_with_calls, db, 50)
    # The reader is gone before the first line is written: every write fails (EPIPE),
    # as after `| head -1` has read its line and exited.
    read_end, write_end = os.pipe()
    os.close(read_end)
    db_option = [] if command[0] == "token" else ["--db", str(db)]
    try:
        done = subprocess.run([*CLI, *command, *db_option], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1


async def _add_call(db: Path, i: int, server: str, exposed: str) -> None:
    store = await open_store(str(db))
    try:
        await store.add_invocations([Invocation(
            id=f"{i:032x}", trace_id=f"{i:032x}", client="t", kind="tool", exposed=exposed,
            server=server, original="add", started_at=time.time(), duration_ms=1.0,
            status="success")])
    finally:
        await store.close()


def test_logs_follow_keeps_its_columns(tmp_path: Path) -> None:
    """``logs --follow`` printed each new batch as a table of its own widths (the columns
    moved under the header), and an empty line every second nothing came."""
    db = tmp_path / "calls.db"
    anyio.run(_add_call, db, 1, "a-long-server-name", "a_long_server_name_tool")
    follow = subprocess.Popen([*CLI, "logs", "--follow", "--db", str(db)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert follow.stdout is not None
    try:
        header, _rule, first = (follow.stdout.readline() for _ in range(3))
        assert "a-long-server-name" in first
        anyio.run(_add_call, db, 2, "b", "b_x")
        second = follow.stdout.readline()  # waits for the poll that finds the new call
    finally:
        follow.kill()
        follow.communicate(timeout=30)
    assert second.split()[4:6] == ["b", "b_x"]  # (the time is two words)
    for column in ("status", "server", "exposed", "retries"):
        at = header.index(column)
        assert first[at - 1] == " " and second[at - 1] == " " and second[at] != " ", (
            column, header, second)
    assert header.index("exposed") == second.index("b_x")


async def _add(db: Path, record: Invocation) -> None:
    store = await open_store(str(db))
    try:
        await store.add_invocations([record])
    finally:
        await store.close()


def test_logs_follow_shows_a_tasks_end_written_after_later_calls(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    start = time.time() - 60

    def call(i: int, at: float, kind: str = "tool", exposed: str = "t_quick") -> Invocation:
        return Invocation(id=f"{i:032x}", trace_id=f"{i:032x}", client="t", kind=kind,
                          exposed=exposed, server="t", original="x", started_at=at,
                          duration_ms=1.0, status="success")

    anyio.run(_add, db, call(1, start, exposed="t_long_task"))  # the call creating a task
    anyio.run(_add, db, call(2, start + 1))
    follow = subprocess.Popen([*CLI, "logs", "--follow", "--db", str(db)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert follow.stdout is not None
    try:
        lines = [follow.stdout.readline() for _ in range(4)]  # header, rule, two calls
        assert "t_long_task" in lines[2] and "t_quick" in lines[3]
        anyio.run(_add, db, call(3, start, kind="task", exposed="t_long_task"))  # it ends
        anyio.run(_add, db, call(4, time.time()))
        shown = follow.stdout.readline()  # waits for the poll that finds them
    finally:
        follow.kill()
        follow.communicate(timeout=30)
    assert "t_long_task" in shown, shown


def test_logs_tells_a_tasks_end_from_the_call_that_created_it(tmp_path: Path) -> None:
    """A task's end (kind task) has the creating call's tool, start and trace: without
    a mark, ``logs`` showed it as the same call twice."""
    db = tmp_path / "calls.db"
    at = time.time() - 60

    def record(i: int, kind: str, ms: float) -> Invocation:
        return Invocation(id=f"{i:032x}", trace_id="t" * 32, client="t", kind=kind,
                          exposed="tasker_hold", server="tasker", original="hold",
                          started_at=at, duration_ms=ms, status="success")

    anyio.run(_add, db, record(1, "tool", 2.0))
    anyio.run(_add, db, record(2, "task", 5000.0))
    done = subprocess.run([*CLI, "logs", "--db", str(db)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    rows = {line.split()[3]: line for line in done.stdout.splitlines()[2:]}
    assert "(task)" not in rows["2.0"] and "tasker_hold (task)" in rows["5000.0"], done.stdout


@pytest.mark.parametrize(("command", "said"), [
    (["logs", "--server", "clokc"], "no call of server 'clokc' is recorded (--server); "
                                    "servers with calls: clock"),
    (["logs", "--tool", "clock_ad"], "no call of tool 'clock_ad' is recorded (--tool); "
                                     "tools with calls: clock_add"),
    (["stats", "--server", "clokc"], "no call of server 'clokc' is recorded (--server)"),
])
def test_a_server_or_tool_no_call_had_is_named_with_those_that_have(
        tmp_path: Path, command: list[str], said: str) -> None:
    """A mistyped --server or --tool printed an empty table, nothing more."""
    db = tmp_path / "calls.db"
    anyio.run(_store_with_calls, db, 3)
    done = subprocess.run([*CLI, *command, "--db", str(db)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert said in done.stderr, done.stderr
    right = subprocess.run([*CLI, "logs", "--server", "clock", "--status", "timeout", "--db",
                            str(db)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert right.stderr == "", right.stderr  # a known server with no such call: no word


def test_logs_of_one_gateway_on_a_shared_store(tmp_path: Path) -> None:
    """``logs --instance`` prints the calls that gateway served; one no recent call names
    is told, with the gateways that served them."""
    db = tmp_path / "calls.db"
    now = time.time()
    for i, gateway in enumerate(("gw-a", "gw-b", "gw-a")):
        anyio.run(_add, db, Invocation(
            id=f"{i:032x}", trace_id=f"{i:032x}", client="t", kind="tool",
            exposed=f"clock_{gateway[-1]}{i}", server="clock", original="add",
            started_at=now + i, duration_ms=1.0, status="success", instance_id=gateway))
    mine = subprocess.run([*CLI, "logs", "--json", "--instance", "gw-a", "--db", str(db)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert mine.returncode == 0, mine.stderr
    assert [line.count('"instance_id": "gw-a"') for line in mine.stdout.splitlines()] == [1, 1]
    typo = subprocess.run([*CLI, "logs", "--instance", "gw-c", "--db", str(db)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "none of the latest 3 calls was served by gateway 'gw-c' (--instance)" in typo.stderr
    assert "gateways in them: gw-a, gw-b" in typo.stderr
