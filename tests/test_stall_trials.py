"""A suspect replica's trial calls leave its health alone: one transition into the
suspicion and one out of it, however many trials it takes.

When its trial came due, ``status()`` stopped reading UNHEALTHY so that the balancer
would pick it: a replica still hung logged and recorded two health transitions per
trial (UNHEALTHY -> UNKNOWN, then back to UNHEALTHY as the trial stalled) in the health
history, the logs and the dashboard's live stream.  ``Service.eligible`` now admits a
due trial to a replica that stays UNHEALTHY, as a half-open breaker admits its probe.
Real stdio replicas (``servers/hangs.py``), the accounting on a fake clock
(``tests/test_stalled_replicas.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import HealthStatus
from tests.fixtures import make_gateway, stdio_entry
from tests.test_stalled_replicas import call, fake_clock, hang_until_suspect

pytestmark = pytest.mark.anyio
UNHEALTHY = HealthStatus.UNHEALTHY


async def test_trials_of_a_hung_replica_record_no_transition(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream")
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path), replicas=2)})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        hung, healthy = service.replicas
        told: list[str] = []
        gateway.manager.on_transition(
            lambda _server, replica, _status, detail:
            told.append(detail or "") if replica == hung.label else None)
        await hang_until_suspect(client, hung, now, tmp_path)
        assert hung.status() is UNHEALTHY and told[-1].endswith(
            "-> UNHEALTHY (stalled: 3 calls cancelled by their hosts after 20 s with no "
            "answer)"), told
        told.clear()
        caplog.clear()

        # Two trials, each stalling too: the replica is UNHEALTHY throughout, at every
        # reading (the picks read it), and no transition is told.
        for wait in (31, 61):
            now[0] += wait
            assert hung.status() is UNHEALTHY  # its trial is due: still suspect
            for _ in range(3):
                if await call(client, hung, now, 20) == []:
                    break
            else:
                pytest.fail("no call went to the suspect replica as its trial")
            assert hung.status() is UNHEALTHY
        assert told == [], told
        health = [r.getMessage() for r in caplog.records
                  if r.getMessage().startswith(f"upstream {hung.label}: health ")]
        assert health == [], health
        assert sum("its trial call got no answer either" in r.getMessage()
                   for r in caplog.records) == 2

        # It answers again: its next trial clears it, told once.
        (tmp_path / f"hang-{hung.pid}").unlink()
        now[0] += 121
        pids: set[int] = set()
        for _ in range(4):
            pids.update(await call(client, hung, now, 20))
        assert pids == {hung.pid, healthy.pid}
        assert len(told) == 1 and told[0].startswith("health UNHEALTHY -> ") \
            and told[0].endswith("(answered a call again: no longer suspect of stalling)"), \
            told
