"""``restarts`` in a server's status counts every time its session was started again,
as its name says: an operator's reconnect (or enable) too, not only the gateway's own
reconnects after a crash.  A reconnect restarted a stdio server's process and left
``restarts`` at 0 in gateway_list_servers and gateway_health."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio


async def test_a_reconnect_counts_as_a_restart(tmp_path: Path) -> None:
    gateway = make_gateway({"well": stdio_entry("well.py")}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:

        async def restarts() -> tuple[int, list[int]]:
            listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                      ).structured_content
            health = (await client.call_tool("gateway_health", {"detail": True})
                      ).structured_content
            (server,) = listed["servers"]
            (entry,) = [s for s in health["servers"] if s["name"] == "well"]
            return server["restarts"], [r["restarts"] for r in entry["replicas"]]

        assert await restarts() == (0, [0])
        pid = (await client.call_tool("well_pid", {})).data
        status = (await client.call_tool("gateway_reconnect_server", {"name": "well"})).data
        assert status.state == "ready"
        assert (await client.call_tool("well_pid", {})).data != pid  # a new process
        assert await restarts() == (1, [1])
