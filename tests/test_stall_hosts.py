"""Stall detection (policies/stalls.py) against the hosts and settings it must not misjudge.

* A 2026-07-28 host without credentials has no connection: each of its full-path
  requests was a host of its own, so its one stop of three stuck calls counted three
  stalls and made a healthy replica suspect at once (the express lane had them all as
  one host already).
* With ``timeouts.max_total`` equal to ``timeouts.call`` progress keeps no call alive;
  it still says the replica is working, yet went unheard: a call that reported progress
  and was given up on counted as a stall.
* A host's cancel gives a half-open probe slot back: only a call that took one may give
  one back, else two probes went to a replica the breaker allows one.

Real stdio replicas, a real gateway, hosts cancelling through the SDK client; the
replicas' accounting on a fake clock (``tests/test_stalled_replicas.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import BreakerState, HealthStatus
from fast_mcp_gateway.upstream.deadline import Deadline
from fast_mcp_gateway.upstream.stdio_tap import RawTap
from tests.fixtures import make_gateway, stdio_entry, until
from tests.test_stalled_replicas import call, fake_clock, lone_hanging, stuck

pytestmark = pytest.mark.anyio


async def test_a_sessionless_hosts_stop_of_calls_together_is_one_stall(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    async with Client(gateway.server) as host:  # 2026-07-28, no credentials: no connection
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        lone = service.replicas[0]
        watch = lone._stats.stalls
        assert await call(host, lone, now, 0) == [lone.pid]  # ``work``'s time is known
        (tmp_path / f"hang-{lone.pid}").touch()
        assert await call(host, lone, now, 20, sent=3) == []
        assert watch.total == 3
        assert watch.counted == 1, "one host's stop of three calls counted as three stalls"
        assert lone.status() is not HealthStatus.UNHEALTHY


async def test_progress_is_heard_when_it_does_not_extend_the_call(tmp_path: Path) -> None:
    gateway = make_gateway({"slow": stdio_entry(
        "slow.py", str(tmp_path / "events"), timeouts={"call": 30.0, "max_total": 30.0})})
    told: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        told.append(value)

    async with Client(gateway.server, progress_handler=progress) as client:
        service = gateway.manager.get("slow")
        now = fake_clock(service)
        lone = service.replicas[0]
        stats = lone._stats
        stats.tools.answered("tools/call 'again'", 0.1)  # known to answer at once
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "slow_again", {})
            await until(lambda: len(told) == 2)  # progress 1 and 2, then it hangs
            now[0] += 20
            tg.cancel_scope.cancel()
        await until(lambda: not lone.active)
        assert stats.stalls.total == 0, "a call that reported progress counted as a stall"


def test_the_deadline_tells_of_progress_it_does_not_extend() -> None:
    heard: list[int] = []

    async def main() -> None:
        import asyncio

        deadline = Deadline(asyncio.get_running_loop(), 30.0, 30.0)  # no extension
        deadline.progressed(lambda: heard.append(1))
        deadline.stop()

    anyio.run(main)
    assert heard == [1]


async def test_the_stdio_tap_tells_of_progress_that_does_not_extend() -> None:
    tap = RawTap()
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    async def to_host(progress: float, total: float | None, message: str | None) -> None:
        pass

    heard: list[int] = []
    tap.heard = lambda: heard.append(1)
    tap.open(write)
    answer: dict[str, Any] = {}

    async def request() -> None:  # the host asked for progress; 30 = max_total: no extension
        answer.update(await tap.request("tools/call", {"name": "x"}, 30, to_host, 30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await until(lambda: written)
        sent = json.loads(written[0])
        token = sent["params"]["_meta"]["progressToken"]
        assert await tap.take(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                          "params": {"progressToken": token, "progress": 1}}))
        assert heard == [1]
        assert await tap.take(json.dumps({"jsonrpc": "2.0", "id": sent["id"],
                                          "result": {"content": []}}))
    assert answer == {"content": []}


async def test_a_cancelled_call_that_took_no_probe_gives_no_slot_back(tmp_path: Path) -> None:
    gateway, parts = lone_hanging(tmp_path, circuit_breaker={"failure_threshold": 1})
    async with Client(gateway.server) as client:
        _, lone, now = parts(gateway)
        early, probe = anyio.CancelScope(), anyio.CancelScope()

        async def held(scope: anyio.CancelScope) -> None:
            with scope:
                await client.call_tool("svc_wait", {})

        async with anyio.create_task_group() as tg:
            tg.start_soon(held, early)                 # taken while the breaker is closed
            await until(lambda: stuck(tmp_path) == 1)
            lone.breaker.record_failure(now[0])        # opened (as by another call)
            now[0] += 31                               # past open_for: one probe may go
            tg.start_soon(held, probe)
            await until(lambda: stuck(tmp_path) == 2)
            assert lone.breaker.state is BreakerState.HALF_OPEN
            assert not lone.breaker.would_allow(now[0])
            early.cancel()                             # its host gives up on the early call
            await until(lambda: lone.active == 1)
            assert not lone.breaker.would_allow(now[0]), \
                "the early call gave back the probe's slot: a second probe may go"
            probe.cancel()                             # the probe's host gives up: its slot
            await until(lambda: not lone.active)
        assert lone.breaker.state is BreakerState.HALF_OPEN
        assert lone.breaker.would_allow(now[0])
