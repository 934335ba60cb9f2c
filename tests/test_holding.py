"""The held session's health probe (``upstream/holding.HealthProbe``), on a fake session.

The gateway-level behaviour (a hung replica probed unhealthy, then back) is in
tests/test_resilience.py; here each era's probe request and what a probe records.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from mcp import ClientSession

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.policies.health import HealthStatus
from fast_mcp_gateway.upstream.holding import HealthProbe
from fast_mcp_gateway.upstream.stats import ReplicaAccounting

pytestmark = pytest.mark.anyio


class Session:
    """Answers (or fails) probes; after ``probes`` of them the probe loop is cancelled
    (at its next sleep: the last probe is still recorded)."""

    def __init__(self, scope: anyio.CancelScope, probes: int, fail: bool = False) -> None:
        self.sent: list[tuple[str, str | None]] = []
        self._scope, self._probes, self._fail = scope, probes, fail

    async def _answer(self, method: str, version: str | None) -> None:
        self.sent.append((method, version))
        if len(self.sent) >= self._probes:
            self._scope.cancel()
        if self._fail:
            raise ConnectionError("gone")

    async def send_ping(self) -> None:
        await self._answer("ping", None)

    async def send_discover(self, version: str) -> dict[str, Any]:
        await self._answer("server/discover", version)
        return {}  # the SDK's raw result (its _meta read: upstream/loops.py)


async def _probe(discover: str | None, *, probes: int, fail: bool = False,
                 ready: bool = True) -> tuple[Session, ReplicaAccounting, int]:
    config = parse_config({"servers": {"s": {"command": "x"}}}, source="test").servers["s"]
    accounting = ReplicaAccounting(config, "s")
    woken = 0

    def notify() -> None:
        nonlocal woken
        woken += 1

    with anyio.CancelScope() as scope:
        session = Session(scope, probes, fail)
        probe = HealthProbe(label="s", interval=0, timeout=10, discover=discover,
                            accounting=accounting, ready=lambda: ready, notify=notify)
        await probe.run(cast(ClientSession, cast(Any, session)))
    return session, accounting, woken


async def test_a_legacy_session_is_pinged_and_each_answer_is_a_heartbeat() -> None:
    session, accounting, woken = await _probe(None, probes=3)
    assert session.sent == [("ping", None)] * 3
    assert accounting.health.probe_ok is True
    assert accounting.health.last_heartbeat is not None
    assert accounting.last_status is not HealthStatus.UNHEALTHY
    assert woken == 3  # after each probe, its bookkeeping included


async def test_a_2026_session_is_probed_with_server_discover_in_its_version() -> None:
    session, accounting, _ = await _probe("2026-07-28", probes=2)
    assert session.sent == [("server/discover", "2026-07-28")] * 2
    assert accounting.health.probe_ok is True


async def test_a_failed_probe_makes_a_ready_replica_unhealthy() -> None:
    _, accounting, woken = await _probe(None, probes=2, fail=True)
    assert accounting.health.probe_ok is False
    assert accounting.health.last_heartbeat is None
    assert accounting.last_status is HealthStatus.UNHEALTHY
    assert woken == 2


async def test_a_probe_answered_while_not_ready_leaves_the_replica_unhealthy() -> None:
    _, accounting, _ = await _probe(None, probes=1, ready=False)
    assert accounting.health.probe_ok is True
    assert accounting.last_status is HealthStatus.UNHEALTHY
