"""The stdio dashboard as a user runs it: ``mcp-gateway serve --dashboard`` in a real
process, its login link from stderr, ``mcp-gateway dashboard`` for fresh ones."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx2

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


def test_serve_dashboard_links_are_one_time_and_stdout_stays_clean(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    proc = subprocess.Popen([*CLI, "serve", "--config", str(config), "--db",
                             str(tmp_path / "gw.db"), "--dashboard", "127.0.0.1:0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = _lines(proc.stderr)
    seen: list[str] = []
    try:
        while not (found := LINK.search(line := stderr.get(timeout=120))):
            assert line, f"the gateway stopped before serving the dashboard: {seen}"
            seen.append(line)
        link = found.group(1)
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

        # A key file others could read is refused, not used.
        os.chmod(path, 0o644)
        loose = subprocess.run([*CLI, "dashboard"], capture_output=True, text=True,
                               timeout=120)
        assert loose.returncode == 1 and "readable by you only" in loose.stderr
        assert loose.stdout == ""
        os.chmod(path, 0o600)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()  # the host leaves: the gateway then exits
        rest = proc.stdout.read()
        proc.wait(timeout=60)
    assert rest == "", f"stray stdout: {rest!r}"
    assert not token_file().exists()
    gone = subprocess.run([*CLI, "dashboard"], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "no dashboard is running" in gone.stderr
