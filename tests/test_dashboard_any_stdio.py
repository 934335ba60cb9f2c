"""``serve --dashboard`` serves the dashboard whatever stdio is: pipes (a host), or a
terminal / a file (a person trying it by hand), where the SDK's threaded streams run."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "fast_mcp_gateway"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.timeout(300)
def test_the_dashboard_runs_when_stdout_is_a_file(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    out = (tmp_path / "stdout.txt").open("w")
    proc = subprocess.Popen([*CLI, "serve", "--config", str(config), "--db",
                             str(tmp_path / "g.db"), "--dashboard", "127.0.0.1:0"],
                            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        url = None
        for line in proc.stderr:          # ends at the URL line, or when the process exits
            if "one-time login link: " in line:
                url = line.split("one-time login link: ")[1].split()[0]
                break
        assert url is not None, "no dashboard URL on stderr"
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(url, timeout=60)
        assert answer.value.code == 303          # logged in: on to the overview
        port = urllib.parse.urlsplit(url).port
        assert answer.value.headers["set-cookie"].startswith(f"mgw_dashboard_{port}=")
        # A WebSocket upgrade is refused as HTTP mode refuses it (http/no_websockets.py),
        # without uvicorn loading a WebSocket library for the app to refuse it.
        where = urllib.parse.urlsplit(url)
        with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
            sock.sendall(b"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            refusal = b""
            while chunk := sock.recv(4096):     # until the server closes the connection
                refusal += chunk
        assert refusal.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert refusal.endswith(b"this server serves no WebSocket.\n")
    finally:
        proc.stdin.close()                        # the host goes: the gateway stops
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            out.close()
    assert (tmp_path / "stdout.txt").read_text() == ""   # nothing but MCP on stdout
