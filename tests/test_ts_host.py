"""The TypeScript SDK's client (v2, ``@modelcontextprotocol/client``, installed with the
pinned Inspector) as a real host over streamable HTTP, in front of server-everything on
stdio.  Each scenario failed before its fix:

* ``asks``: one 2026-07-28 host's three concurrent calls that ask were all refused as
  "calls from more than one host" (``tests/test_modern_asks.py``);
* ``aborts``: a host aborting calls (``AbortSignal``) opened the server's breaker for
  every caller (``tests/test_cancel_health.py``);
* ``roots``: a handshake-era host's ``notifications/roots/list_changed`` never reached
  its ``per_client`` session, which kept the old roots (``tests/test_roots_http_hosts.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests import npm_tools
from tests.fixtures import make_gateway, serve_http
from tests.test_ecosystem import everything_entry

pytestmark = pytest.mark.anyio
TOKEN = "mgw_ts-host-6f1d2c9e83a54b07"
SCRIPT = Path(__file__).parent / "hosts" / "ts_host.mjs"
CLIENT = "@modelcontextprotocol/client"


@pytest.fixture(scope="module")
def tools() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not installed: cannot fetch the TypeScript SDK's client")
    if not (npm_tools.package_path(folder, CLIENT) / "package.json").exists():
        pytest.skip(f"{CLIENT} is not installed (it comes with the pinned Inspector)")
    return folder


async def _run(tools: Path, scenario: str, **server: Any) -> dict[str, Any]:
    entry = {**everything_entry(tools), **server}
    gateway = make_gateway({"everything": entry}, options={"auth": {"tokens": [
        {"name": "ts", "token": TOKEN, "scopes": ["tools"]}]}})
    async with serve_http(gateway.http_app("http")) as base:
        done = await anyio.run_process(
            [str(npm_tools.node(tools)), str(SCRIPT), str(npm_tools.package_path(tools, CLIENT)),
             f"{base}/mcp", TOKEN, scenario], check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


async def test_a_2026_host_is_asked_by_each_of_its_concurrent_calls(tools: Path) -> None:
    seen = await _run(tools, "asks")
    assert seen["era"] == "modern"
    elicited, sampled, again = seen["results"]
    assert "Name: ts-host" in elicited and "Name: ts-host" in again, seen
    assert "sampled by ts-host" in sampled, seen


async def test_a_host_aborting_calls_leaves_the_server_usable(tools: Path) -> None:
    seen = await _run(tools, "aborts", circuit_breaker={"failure_threshold": 2})
    assert seen["aborted"] == ["the host gave up"] * 3, seen
    assert seen["after"] == "Echo: still there", seen


async def test_a_handshake_era_hosts_new_roots_reach_its_per_client_session(
        tools: Path) -> None:
    seen = await _run(tools, "roots", isolation="per_client")
    assert "file:///work/old" in seen["before"], seen
    assert seen["asked"] == 2, seen   # within the first call, then at the notification
    assert "file:///work/new" in seen["after"] and "file:///work/old" not in seen["after"], \
        seen
