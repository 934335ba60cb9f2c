"""An explicit reconnect is a fresh first attempt, and its answer is that attempt's
outcome: a server whose retries timed out had its connect window doubled (up to 8x),
and ``gateway_reconnect_server`` waited only ``timeouts.connect + 5`` seconds -- it
answered ``reconnecting`` with the previous attempt's error while the new one still ran."""

from __future__ import annotations

import pytest
from fastmcp import Client

from tests.fixtures import PY, make_gateway

pytestmark = pytest.mark.anyio

_NEVER_ANSWERS = "import time; time.sleep(1e9)"


async def test_a_reconnect_after_timeouts_answers_a_fresh_attempts_outcome() -> None:
    gateway = make_gateway({"up": {"command": PY, "args": ["-c", _NEVER_ANSWERS],
                                   "timeouts": {"connect": 0.5}}})
    async with Client(gateway.server) as client:
        upstream = gateway.manager.get("up").replicas[0]
        # Three timeouts in a row: the next retry would wait 8 windows (4s).
        assert await upstream.wait_until(
            lambda: "the next attempt waits 4s" in (upstream.last_error or ""), within=120)
        before = upstream.attempts
        status = (await client.call_tool("gateway_reconnect_server", {"name": "up"})).data
        assert upstream.attempts == before + 1  # the answer waited for the new attempt
        assert status.state == "reconnecting"
        # The new attempt had the first window again: its retry is the first doubling.
        assert "the next attempt waits 1s" in status.last_error, status.last_error
