"""A call's record status says what happened to it: ``rejected`` only if it was never sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.replica import RestartPolicy
from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio

# The crashed replicas stay down for the rest of the test: the third attempt finds none.
NO_RESTART = RestartPolicy(initial=600.0, maximum=600.0, jitter=0.0, crash_limit=3,
                           crash_window=30.0)


async def test_a_call_that_crashed_every_replica_is_an_error_not_rejected(
        tmp_path: Path) -> None:
    gateway = make_gateway(
        {"crashy": stdio_entry("well.py", replicas=2, idempotent_tools=["crash"],
                               retry={"attempts": 3})},
        db=tmp_path / "g.db", restart=NO_RESTART)
    async with Client(gateway.server) as client:
        failed = await client.call_tool_mcp("crashy_crash", {})
        assert failed.is_error
        calls = (await client.call_tool("gateway_calls", {"limit": 5})).structured_content
    (record,) = [c for c in calls["calls"] if c["exposed"] == "crashy_crash"]
    # Both replicas were sent the call and crashed.  A third attempt (retry: 3) may
    # still find one of them marked ready, before its supervisor saw the crash (a loaded
    # machine): it is then refused unsent ('connect') or breaks again ('error').
    outcomes = [step["outcome"] for step in record["route"]]
    assert outcomes[:2] == ["error", "error"], outcomes
    assert set(outcomes[2:]) <= {"connect", "error"}, outcomes
    assert {step["replica"] for step in record["route"][:2]} == {"crashy#0", "crashy#1"}
    assert record["status"] == "error", record


async def test_a_call_no_replica_could_take_stays_rejected(tmp_path: Path) -> None:
    gateway = make_gateway({"crashy": stdio_entry("well.py", retry={"attempts": 3})},
                           db=tmp_path / "g.db", restart=NO_RESTART)
    async with Client(gateway.server) as client:
        assert (await client.call_tool_mcp("crashy_crash", {})).is_error
        # The one replica is down now: the next call is never sent.
        assert (await client.call_tool_mcp("crashy_echo", {"text": "hi"})).is_error
        calls = (await client.call_tool("gateway_calls", {"limit": 5})).structured_content
    statuses = {c["exposed"]: c["status"] for c in calls["calls"]}
    assert statuses == {"crashy_crash": "error", "crashy_echo": "rejected"}, calls
