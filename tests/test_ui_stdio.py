"""The stdio dashboard as a user runs it: ``mcp-gateway serve --dashboard`` in a real
process, its login link from stderr, ``mcp-gateway dashboard`` for fresh ones."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx2
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from fast_mcp_gateway.ui.standalone import token_file

CLI = [sys.executable, "-m", "fast_mcp_gateway"]
LINK = re.compile(r"one-time login link: (http://\S+)")


def _lines(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _dashboard_serve(tmp_path: Path) -> subprocess.Popen[str]:
    """``serve --dashboard 127.0.0.1:0`` over pipes, with an empty config."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    return subprocess.Popen([*CLI, "serve", "--config", str(config), "--db",
                             str(tmp_path / "gw.db"), "--dashboard", "127.0.0.1:0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _login_link(stderr: queue.Queue[str]) -> str:
    """The one-time login link the gateway prints on ``stderr`` once it serves."""
    seen: list[str] = []
    while not (found := LINK.search(line := stderr.get(timeout=120))):
        assert line, f"the gateway stopped before serving the dashboard: {seen}"
        seen.append(line)
    return found.group(1)


def test_serve_dashboard_links_are_one_time_and_stdout_stays_clean(tmp_path: Path) -> None:
    proc = _dashboard_serve(tmp_path)
    assert proc.stderr is not None
    try:
        link = _login_link(_lines(proc.stderr))
        base = link.split("/ui/")[0]
        path = token_file()
        assert path.stat().st_mode & 0o777 == 0o600
        assert link.split("token=")[1] not in path.read_text()

        with httpx2.Client(timeout=30, follow_redirects=False) as first:
            entered = first.get(link)
            assert entered.status_code == 303 and "token" not in entered.headers["location"]
            assert first.get(base + "/ui/").status_code == 200
        with httpx2.Client(timeout=30, follow_redirects=False) as second:
            again = second.get(link)  # the printed link, in another browser
            assert again.status_code == 401 and "already used" in again.text
            assert "mcp-gateway dashboard" in again.text
            assert second.get(base + "/ui/").status_code == 303

        fresh = subprocess.run([*CLI, "dashboard"], capture_output=True, text=True,
                               timeout=120, check=True).stdout.strip()
        assert fresh.startswith(base + "/ui/login?token=") and fresh != link
        with httpx2.Client(timeout=30, follow_redirects=False) as third:
            assert third.get(fresh).status_code == 303
            assert third.get(base + "/ui/").status_code == 200
            assert third.get(fresh).status_code == 401  # spent
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()  # the host leaves: the gateway then exits
        rest = proc.stdout.read()
        proc.wait(timeout=60)
    assert rest == "", f"stray stdout: {rest!r}"
    assert not token_file().exists()


def test_dashboard_refuses_a_key_file_others_could_read() -> None:
    """A key file others could read is refused, not used; without one, no dashboard is
    running.  (Apart from the test above, where a running ``serve`` wrote the file:
    each ``mcp-gateway dashboard`` is a process start, 8-13 s on a loaded machine, and
    three took that test past the 60 s per-test timeout.)"""
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 2, "base": "http://127.0.0.1:9/ui",
                                "key": "00" * 32, "pid": os.getpid()}))
    path.chmod(0o644)
    loose = subprocess.run([*CLI, "dashboard"], capture_output=True, text=True, timeout=120)
    assert loose.returncode == 1 and "readable by you only" in loose.stderr
    assert loose.stdout == ""
    path.unlink()
    gone = subprocess.run([*CLI, "dashboard"], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "no dashboard is running" in gone.stderr
    assert "http://HOST:PORT/ui/" in gone.stderr  # where an HTTP gateway's dashboard is


def test_a_second_gateway_on_the_dashboard_port_keeps_its_tools(tmp_path: Path) -> None:
    """Two hosts starting the same ``serve --dashboard`` (Claude Desktop and Claude
    Code): the second found the port taken by the first's dashboard and exited, and its
    host lost every tool.  Now it serves its tools without a dashboard and says whose
    dashboard that is; the first one's stays (its ``dashboard.json`` too)."""
    config = tmp_path / "servers.yaml"
    first = _dashboard_serve(tmp_path)
    second = None
    assert first.stderr is not None and first.stdin is not None
    try:
        base = _login_link(_lines(first.stderr)).split("/ui/")[0]
        port = int(base.rsplit(":", 1)[1])
        second = subprocess.Popen([*CLI, "serve", "--config", str(config), "--db",
                                   str(tmp_path / "gw.db"), "--dashboard", f"127.0.0.1:{port}"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=(tmp_path / "second.err").open("w"), text=True)
        assert second.stdin is not None and second.stdout is not None
        for message in ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                            "protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                            "clientInfo": {"name": "test", "version": "1"}}},
                        {"jsonrpc": "2.0", "method": "notifications/initialized"},
                        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}):
            second.stdin.write(json.dumps(message) + "\n")
        second.stdin.flush()
        answers = _lines(second.stdout)
        while (line := answers.get(timeout=120)) and json.loads(line).get("id") != 2:
            pass
        assert line, "the second gateway stopped instead of serving its tools"
        names = {tool["name"] for tool in json.loads(line)["result"]["tools"]}
        assert "gateway_list_servers" in names
        second.stdin.close()  # its host goes: it stops
        second.wait(timeout=120)
        said = (tmp_path / "second.err").read_text()
        assert f"the dashboard's address 127.0.0.1:{port} is served by another gateway " \
               f"(pid {first.pid}: {base}/ui)" in said, said
        assert "one-time login link" not in said
        assert json.loads(token_file().read_text())["pid"] == first.pid
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)


def test_a_dashboard_port_held_by_another_program_still_stops_serve(tmp_path: Path) -> None:
    """A ``dashboard.json`` naming the port, but its gateway gone (a crash left the
    file) and another program on the port: ``--dashboard`` cannot be honoured, exit 2."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        path = token_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": 2, "base": f"http://127.0.0.1:{port}/ui",
                                    "key": "00" * 32, "pid": int(dead)}))
        path.chmod(0o600)
        done = subprocess.run([*CLI, "serve", "--config", str(config), "--db",
                               str(tmp_path / "gw.db"), "--dashboard", f"127.0.0.1:{port}"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 2, done.stderr
    assert "for the dashboard: the port is in use" in done.stderr


def test_the_dashboard_command_loads_no_server_stack() -> None:
    """``mcp-gateway dashboard`` reads a file and prints a link: importing the standalone
    dashboard server for its file's path (uvicorn, FastMCP's HTTP app, the admin
    context) made each run a process start of 8-13 s under load."""
    probe = ("import sys; import fast_mcp_gateway.cli.dashboard; "
             "print(sorted(m for m in ('uvicorn', 'fast_mcp_gateway.ui.standalone', "
             "'fastmcp.server.http', 'fast_mcp_gateway.admin.context') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
