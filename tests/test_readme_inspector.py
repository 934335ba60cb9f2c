"""The README's Inspector command for an HTTP gateway with tokens works as written.

Without a token the Inspector CLI falls into OAuth ("Interactive OAuth requires a TTY");
the README says to pass the token with ``--header``.  This runs that command (the
pinned Inspector instead of ``npx``, the test's port instead of the default) against a
real ``mcp-gateway serve --transport http`` with a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests import npm_tools

REPO = Path(__file__).resolve().parents[1]
TOKEN = "mgw_readme_inspector_token_0123456789"
CONFIG = """gateway:
  auth:
    tokens:
      - {name: ops, token: "${GW_OPS_TOKEN}", scopes: [admin]}
servers:
  clock:
    command: ${GATEWAY_PYTHON}
    args: ['-m', 'fast_mcp_gateway.demo.clock']
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _readme_command() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", text, re.S)
                if "inspector --cli" in b and "--header" in b]
    words = shlex.split(block.replace("\\\n", " "), comments=True)
    assert words[:4] == ["npx", "-y", "@modelcontextprotocol/inspector", "--cli"], words
    return words[3:]


def _wait_until_up(url: str, proc: subprocess.Popen[str]) -> None:
    with httpx2.Client() as client:
        for _ in range(1200):  # a guard only: each round waits on the process
            assert proc.poll() is None, "the gateway exited"
            try:
                if client.get(url, timeout=5).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):  # exits end the wait
                proc.wait(timeout=0.1)
    raise AssertionError(f"{url} never answered 200")


def test_the_readme_inspector_command_lists_tools_with_a_token(tmp_path: Path) -> None:
    tools = npm_tools.ensure()
    if tools is None:
        pytest.skip("npm is not installed: cannot fetch the Inspector")
    launcher = (npm_tools.package_path(tools, "@modelcontextprotocol/inspector")
                / "clients/launcher/build/index.js")
    config = tmp_path / "servers.yaml"
    config.write_text(CONFIG)
    port = _free_port()
    env = {**os.environ, "GW_OPS_TOKEN": TOKEN,
           "PATH": f"{npm_tools.node(tools).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--transport", "http", "--port", str(port), "--db", str(tmp_path / "g.db")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env, cwd=REPO)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ready", proc)
        args = [a.replace("$GW_OPS_TOKEN", TOKEN).replace(":8765/", f":{port}/")
                for a in _readme_command()]
        done = subprocess.run([str(npm_tools.node(tools)), str(launcher), *args],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        names = {t["name"] for t in json.loads(done.stdout)["tools"]}
        assert {"gateway_list_servers", "clock_add"} <= names
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
