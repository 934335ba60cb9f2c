"""A host's cancellation reaches the upstream with the host's reason.

A host's ``notifications/cancelled`` carries a ``reason``; the gateway cancelled the
upstream request with words of its own ("cancelled by the caller", "caller cancelled"),
so a server logging why its work stopped logged the gateway's words (fidelity15).  The
upstream (``tests/servers/raw_stdio.py``'s ``wait_cancel``) writes the reason it was
given; raw hosts of both eras on the stdio express lane and the full path.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.fixtures import PY, SERVERS
from tests.test_lane import raw_host

pytestmark = pytest.mark.anyio


async def until_file(path: Path) -> str:
    with anyio.fail_after(30):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110 - another process writes it
            await anyio.sleep(0.02)
    return await anyio.Path(path).read_text()


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_hosts_cancel_reason_reaches_the_upstream(
        tmp_path: Path, era: str, lane: bool) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"raw": {"command": PY, "args": [
        str(SERVERS / "raw_stdio.py")]}}}))
    said = tmp_path / "reason"
    async with raw_host(config, era, lane=lane, listed=("raw_wait_cancel",),
                        env={"MCP_GATEWAY_DB": str(tmp_path / "gateway.db")}) as host:
        await host.send({"jsonrpc": "2.0", "id": 70, "method": "tools/call", "params": {
            "name": "raw_wait_cancel", "arguments": {"path": str(said)},
            "_meta": host._meta()}})
        await until_file(Path(f"{said}.started"))
        await host.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
            "requestId": 70, "reason": "the user pressed stop"}})
        assert await until_file(said) == "the user pressed stop"
        whoami = await host.call("raw_whoami")
        # (the lanes send upstream ids "gw-N"; the full path the SDK's integers)
        assert whoami["content"][0]["text"].startswith("gw-") is lane
