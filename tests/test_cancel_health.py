"""A host giving up on its calls says nothing about the upstream.

Found with the TypeScript SDK's client over HTTP: a host that aborted five calls of
server-everything's long-running tool (``AbortSignal``) opened the server's circuit
breaker, and every caller was refused "circuit open" for the next 30 s; two aborts made
its health UNHEALTHY.  Each cancellation was counted as a failed request.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import BreakerState, HealthStatus
from tests.fixtures import (
    cancel_once_started,
    interactive_server,
    make_gateway,
    memory_entry,
    until,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_host_cancellations_do_not_open_the_breaker(mode: str) -> None:
    events: dict[str, Any] = {}
    entry = memory_entry("inter", protocol="legacy",
                         circuit_breaker={"failure_threshold": 2},
                         health={"min_samples": 1})
    gateway = make_gateway({"inter": entry}, {"inter": interactive_server(events)})
    async with Client(gateway.server, mode=mode) as client:  # type: ignore[arg-type]
        replica = gateway.manager.get("inter").replicas[0]
        for _ in range(3):  # more than the breaker's threshold
            await cancel_once_started(client, events, within=10)
            with anyio.fail_after(10):
                await events["cancelled"].wait()  # the upstream was told, and stopped
            await until(lambda: replica.statistics().inflight == 0)
            stats = replica.statistics()
            assert stats.breaker is BreakerState.CLOSED and stats.breaker_trips == 0
            assert stats.health is not HealthStatus.UNHEALTHY and stats.samples == 0
        result = await client.call_tool_mcp("inter_grow", {"name": "after"})
        assert not result.is_error, result.content
