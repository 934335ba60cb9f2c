"""Search mode through a real host: the official MCP Inspector CLI (both protocol eras)
drives a gateway serving the search meta-tools, for the whole catalog and for a profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import npm_tools
from tests.test_ecosystem import tools  # noqa: F401 - installs the pinned npm packages

CONFIG = """\
gateway:
  exposure: search
  profiles:
    clockwork: {servers: [clock]}
servers:
  notes: {command: "${GATEWAY_PYTHON}", args: ["-m", "fast_mcp_gateway.demo.notes"]}
  clock: {command: "${GATEWAY_PYTHON}", args: ["-m", "fast_mcp_gateway.demo.clock"]}
"""


@pytest.mark.timeout(300)   # five Inspector runs, each starting a gateway and two servers
@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_the_inspector_searches_and_calls_through_the_meta_tools(
        tools: Path, era: str, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "servers.yaml"
    config.write_text(CONFIG)
    launcher = npm_tools.package_path(tools, "@modelcontextprotocol/inspector") / \
        "clients/launcher/build/index.js"
    env = {**os.environ, "PATH": f"{npm_tools.node(tools).parent}{os.pathsep}{os.environ['PATH']}"}

    def inspect(*args: str, profile: str | None = None, code: int = 0) -> dict[str, object]:
        gateway = [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
                   "--startup-wait", "600", "--no-db", *(["--profile", profile] if profile else [])]
        done = subprocess.run(
            [str(npm_tools.node(tools)), str(launcher), "--cli", "--protocol-era", era,
             "--connect-timeout", "90000", *args,
             "--", *gateway],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )
        assert done.returncode == code, done.stdout + done.stderr
        return json.loads(done.stdout)

    listed = inspect("--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}  # type: ignore[index]
    assert {"search_tools", "call_tool", "call_tools"} <= names
    assert not any(n.startswith(("notes_", "clock_")) for n in names)   # the catalog is hidden
    found = inspect("--method", "tools/call", "--tool-name", "search_tools",
                    "--tool-arg", "query=add two numbers", "k=3")
    cards = found["structuredContent"]["tools"]  # type: ignore[index]
    assert cards[0]["name"] == "clock_add" and "inputSchema" in cards[0]
    added = inspect("--method", "tools/call", "--tool-name", "call_tool",
                    "--tool-arg", "name=clock_add", 'arguments={"a": 2, "b": 3}')
    assert added["structuredContent"] == {"result": 5.0}
    # A profile narrows what search finds, and what call_tool reaches.
    notes = inspect("--method", "tools/call", "--tool-name", "search_tools",
                    "--tool-arg", "query=add a note", profile="clockwork")
    # (the gateway's own tools, server 'gateway', are found in every profile by admins)
    servers = {c["server"] for c in notes["structuredContent"]["tools"]}  # type: ignore[index]
    assert "clock" in servers and servers <= {"clock", "gateway"}
    # The Inspector exits 5 on an isError result.
    refused = inspect("--method", "tools/call", "--tool-name", "call_tool",
                      "--tool-arg", "name=notes_add_note", 'arguments={"title": "x"}',
                      profile="clockwork", code=5)
    assert refused["isError"] is True
    (text,) = [c["text"] for c in refused["content"]]
    assert text.startswith("Unknown tool: 'notes_add_note'"), text
    assert text.endswith("search_tools finds them") and "notes" not in text[30:], text
