"""The mcp-gateway command: check, and serve driven by real MCP clients over stdio."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests import procs
from tests.fixtures import SERVERS, until

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fast_mcp_gateway"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_check_passes_on_the_repo_config() -> None:
    result = run_cli("check", "--config", "servers.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["server", "transport", "status"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["notes"][1:3] == ["stdio", "ok"] and rows["clock"][2] == "ok"
    assert "2/2 servers ok" in result.stdout


def test_check_reports_a_broken_server_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(
        f"servers:\n  broken:\n    command: {sys.executable}\n"
        f"    args: [{json.dumps(str(SERVERS / 'exit_at_start.py'))}]\n"
        "  missing:\n    command: /nonexistent/mcp-server\n"
    )
    result = run_cli("check", "--config", str(config), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    rows = {row["server"]: row for row in report["servers"]}
    # The table's words (lower case; README: "check"), not "FAILED".
    assert rows["broken"]["status"] == rows["missing"]["status"] == "failed"
    assert "WEATHER_API_KEY is not set" in rows["broken"]["error"]
    assert "command not found" in rows["missing"]["error"]


def test_an_invalid_config_exits_2_with_a_located_message(tmp_path: Path) -> None:
    """An error of the whole file (here ``gateway:``) refuses it, every problem listed;
    one server's alone leaves that server out (tests/test_invalid_entries.py)."""
    config = tmp_path / "servers.yaml"
    config.write_text("gateway:\n  admn: full\nservers:\n  x:\n    comand: python\n")
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}, field 'gateway.admn': unknown field; did you mean 'admin'?" \
        in result.stderr
    assert f"{config}: server 'x', field 'comand': unknown field; did you mean 'command'?" \
        in result.stderr


def test_stdout_carries_only_protocol() -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "clock_add", "arguments": {"a": 1, "b": 2}}},
    ]
    proc = subprocess.Popen([*CLI, "serve", "--config", "servers.yaml"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    replies = []
    try:
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if "id" in message:
                # Skip notifications (a server connecting after the start-up wait is
                # announced with list_changed): the reply is the next line with an id.
                while "id" not in (reply := json.loads(proc.stdout.readline())):
                    assert reply["method"].startswith("notifications/"), reply
                replies.append(reply)
    finally:
        rest, err = proc.communicate(timeout=30)  # closes stdin: the gateway then exits
    assert rest.strip() == "", f"stray stdout: {rest!r}"
    assert [r["id"] for r in replies] == [1, 2, 3]
    names = {t["name"] for t in replies[1]["result"]["tools"]}
    assert {"notes_add_note", "clock_now", "gateway_list_servers"} <= names
    assert replies[2]["result"]["structuredContent"] == {"result": 3.0}
    # The server count in one line (no runtime registrations: the store adds none).
    assert "starting 2 upstream(s) from servers.yaml over stdio (event loop: " in err, err
    assert "serving 2 upstream(s)" not in err, err


def test_sigterm_stops_the_gateway_and_every_upstream_process() -> None:
    proc = subprocess.Popen([*CLI, "serve", "--config", "servers.yaml"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "gateway_list_servers", "arguments": {}}},
        ):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if "id" in message:
                reply = json.loads(proc.stdout.readline())
        pids = [s["pid"] for s in reply["result"]["structuredContent"]["servers"]]
        assert len(pids) == 2 and all(isinstance(p, int) for p in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert not procs.wait_gone_pids(pids, timeout=10), "upstreams outlived the gateway"


def test_logs_and_stats_read_what_serve_recorded(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    proc = subprocess.Popen([*CLI, "serve", "--config", "servers.yaml", "--db", str(db)],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
           "params": {"name": "clock_add", "arguments": {"a": i, "b": 1}}} for i in range(3)),
        {"jsonrpc": "2.0", "id": 20, "method": "tools/call",
         "params": {"name": "notes_delete_note", "arguments": {"note_id": 999}}},
    ]
    try:
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if "id" in message:
                proc.stdout.readline()
    finally:
        proc.communicate(timeout=30)  # stdin closes: the gateway flushes and exits
    logs = run_cli("logs", "--db", str(db))
    assert logs.returncode == 0, logs.stdout + logs.stderr
    lines = logs.stdout.splitlines()
    assert lines[0].split()[:5] == ["time", "status", "ms", "server", "exposed"]
    assert sum("clock_add" in line and "success" in line for line in lines) == 3
    assert any("notes_delete_note" in line and "no note with id 999" in line for line in lines)
    errors = run_cli("logs", "--db", str(db), "--status", "error", "--json")
    (record,) = [json.loads(line) for line in errors.stdout.splitlines()]
    assert record["exposed"] == "notes_delete_note"
    stats = run_cli("stats", "--db", str(db), "--by", "tool", "--since", "1h")
    assert stats.returncode == 0
    rows = {line.split()[0]: line.split() for line in stats.stdout.splitlines()[2:4]}
    assert rows["clock_add"][1:3] == ["3", "0"] and rows["notes_delete_note"][1:3] == ["1", "1"]
    missing = run_cli("logs", "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no store at" in missing.stderr and not missing.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_serve_end_to_end_with_a_real_client(mode: str) -> None:
    # The SDK's stdio client scrubs the environment: the start-up wait goes as a flag.
    transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve",
                                                "--startup-wait", "600",
                                                "--config", str(REPO / "servers.yaml")],
                               cwd=str(REPO), keep_alive=False)
    async with Client(transport, mode=mode) as client:
        tools = {t.name for t in await client.list_tools()}
        assert {"notes_list_notes", "clock_countdown"} <= tools
        note = (await client.call_tool("notes_add_note", {"title": "from test"})).structured_content
        assert note["title"] == "from test"
        (read,) = await client.read_resource(f"notes://notes/note/{note['id']}")
        assert "# from test" in read.text
        progress: list[float] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append(p)

        await client.call_tool("clock_countdown", {"steps": 3}, progress_handler=on_progress)
        await until(lambda: len(progress) >= 3)  # the handler runs as its own task
        assert progress == [1, 2, 3]


@pytest.mark.anyio
async def test_servers_shows_the_file_merged_with_runtime_registrations(tmp_path: Path) -> None:
    from fast_mcp_gateway.config.registrations import TOMBSTONE
    from fast_mcp_gateway.store import open_store

    db = tmp_path / "g.db"
    store = await open_store(db)
    await store.put_server("extra", {"url": "http://127.0.0.1:9000/mcp"}, True)
    await store.put_server("notes", TOMBSTONE, False)
    await store.put_server("clock", None, False)
    await store.close()
    result = run_cli("servers", "--config", "servers.yaml", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["server"]: r for r in json.loads(result.stdout)["servers"]}
    assert rows["extra"]["source"] == "runtime" and rows["extra"]["transport"] == "http"
    assert rows["notes"]["source"] == "file, removed at runtime"
    assert rows["clock"]["enabled"] is False


@pytest.mark.anyio
async def test_servers_json_is_typed_and_whole(tmp_path: Path) -> None:
    """``servers --json`` said "enabled": "yes", "replicas": "1" and cut the target at 70
    characters, as its table does: a program read a string for a flag and lost the end
    of a long command or URL."""
    from fast_mcp_gateway.store import open_store

    url = "http://127.0.0.1:9000/" + "a-long-path/" * 10 + "mcp"
    db = tmp_path / "g.db"
    store = await open_store(db)
    await store.put_server("extra", {"url": url, "replicas": 2}, True)
    await store.close()
    result = run_cli("servers", "--config", "servers.yaml", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["server"]: r for r in json.loads(result.stdout)["servers"]}
    assert rows["extra"]["enabled"] is True and rows["extra"]["replicas"] == 2
    assert rows["extra"]["target"] == url
    table = run_cli("servers", "--config", "servers.yaml", "--db", str(db)).stdout
    line = next(x for x in table.splitlines() if x.startswith("extra "))
    assert line.split()[3:5] == ["yes", "2"] and url[:70] in line and url not in line
