"""A replica that hangs calls while it answers pings, found from its hosts giving up.

Hosts often give up before the gateway's call timeout (Claude Desktop's own timeouts, a
user's stop), and a host's cancellation feeds neither health nor the breaker
(``tests/test_cancel_health.py``): a replica that took calls and never answered them,
its health pings passing, was never found, and every call routed there hung too.
Real stdio replicas (``servers/hangs.py``), a real gateway, hosts cancelling through
the SDK client; the replicas' accounting runs on a fake clock the tests move while a
call hangs (``policies/stalls.py``: a stall is a wait of 5 s or more here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import BreakerState, HealthStatus
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.replica import Upstream
from fast_mcp_gateway.upstream.stdio_tap import RawTap
from tests.fixtures import make_gateway, stdio_entry, until

pytestmark = pytest.mark.anyio
UNHEALTHY = HealthStatus.UNHEALTHY


def fake_clock(service: Service) -> list[float]:
    """The replicas' accounting on a clock the test moves: ``now[0]``."""
    now = [1000.0]
    for replica in service.replicas:
        replica._stats.clock = replica._clock = lambda: now[0]
    return now


def stuck(directory: Path) -> int:
    """Calls the test servers took and will not answer, so far."""
    path = directory / "stuck"
    return len(path.read_text().splitlines()) if path.exists() else 0


async def call(client: Client[Any], watched: Upstream, now: list[float], waited: float,
               tool: str = "svc_work", sent: int = 1) -> list[Any]:
    """``sent`` calls of ``tool`` at once; those that hang (on ``watched``) are given up
    on by the host (its task cancelled) ``waited`` seconds of the fake clock after the
    server took them.  The answers of those that were answered."""
    answers: list[Any] = []
    directory = Path(watched.config.args[-1])  # hangs.py DIR
    before = stuck(directory)

    async def one() -> None:
        answers.append((await client.call_tool(tool, {})).data)

    async with anyio.create_task_group() as tg:
        for _ in range(sent):
            tg.start_soon(one)
        await until(lambda: len(answers) + stuck(directory) - before >= sent)
        if len(answers) < sent:
            now[0] += waited
            tg.cancel_scope.cancel()
    await until(lambda: not watched.active)  # its stall (or not) is accounted then
    return answers


async def hang_until_suspect(client: Client[Any], hung: Upstream, now: list[float],
                             directory: Path) -> None:
    """``hung`` hangs every call from now on; calls go round robin (every other one to
    it), each given up on after 20 s, until three stalls made it suspect."""
    (directory / f"hang-{hung.pid}").touch()
    for _ in range(8):
        if hung.status() is HealthStatus.UNHEALTHY:
            return
        await call(client, hung, now, 20)


def lone_hanging(tmp_path: Path, **entry: Any) -> tuple[Any, Callable[[Any], Any]]:
    """A gateway with one ``hangs.py`` replica, and what gives its service, replica and
    a fake clock (the service's own too) once the gateway runs."""
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path), **entry)})

    def parts(gw: Any) -> tuple[Service, Upstream, list[float]]:
        service = gw.manager.get("svc")
        now = fake_clock(service)
        service._clock = lambda: now[0]
        return service, service.replicas[0], now
    return gateway, parts


async def test_a_replica_that_hangs_calls_is_found_and_routed_around(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream")
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path), replicas=2)})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        hung, healthy = service.replicas
        await hang_until_suspect(client, hung, now, tmp_path)
        stats = hung.statistics()
        assert stats.health is UNHEALTHY, "three stalled calls did not make it suspect"
        assert stats.stalled == ("stalled: 3 calls cancelled by their hosts after 20 s "
                                 "with no answer (suspect for 0 s; a trial call in 30 s)")
        assert stats.breaker is BreakerState.CLOSED and stats.samples == 0
        assert any("upstream svc#0: stalled: 3 calls cancelled by their hosts after 20 s "
                   "with no answer" in r.getMessage() and "calls go to the other "
                   "replicas" in r.getMessage() for r in caplog.records)
        report = (await client.call_tool("gateway_health", {})).structured_content
        assert report is not None
        shown = {r["replica"]: r for r in report["servers"][0]["replicas"]}
        assert shown["svc#0"]["health"] == "UNHEALTHY"
        assert shown["svc#0"]["stalled"].startswith("stalled: 3 calls cancelled")
        assert "stalled" not in shown["svc#1"]  # null: left out of the lean answer
        # Every call goes to the healthy replica now: none hangs (one that did would
        # be given up on at once, and answer nothing).
        for _ in range(6):
            assert await call(client, hung, now, 0) == [healthy.pid]

        # Past the wait one call goes as a trial; still hanging, it waits twice as long.
        now[0] += 31
        for _ in range(3):
            if await call(client, hung, now, 20) == []:
                break
        else:
            pytest.fail("no call went to the suspect replica as its trial")
        assert hung.status() is UNHEALTHY
        assert (hung.statistics().stalled or "").endswith("a trial call in 60 s)")
        assert any("its trial call got no answer either" in r.getMessage()
                   for r in caplog.records)

        # It answers again: its next trial clears it, and it takes its share again.
        (tmp_path / f"hang-{hung.pid}").unlink()
        now[0] += 61
        pids: set[int] = set()
        for _ in range(4):
            pids.update(await call(client, hung, now, 20))
        assert pids == {hung.pid, healthy.pid}
        assert hung.statistics().stalled is None and hung.status() is not UNHEALTHY
        assert any("upstream svc#0: answered a call again after" in r.getMessage()
                   for r in caplog.records)


async def test_impatient_hosts_do_not_eject_a_replica_that_answers(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    # Handshake-era hosts: each has a connection (2026-07-28 hosts without credentials
    # have none: all of them are one host to the count, ``requests._host_key``).
    async with Client(gateway.server, mode="legacy") as impatient, \
            Client(gateway.server, mode="legacy") as other:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        lone = service.replicas[0]
        watch = lone._stats.stalls
        # ``work`` answers at once (its time is known), then hangs its calls while
        # ``pid`` goes on answering.
        assert await call(impatient, lone, now, 0) == [lone.pid]
        (tmp_path / f"hang-{lone.pid}").touch()
        # Quick cancellations (1 s, under the 5 s floor): no stall.
        for _ in range(5):
            assert await call(impatient, lone, now, 1) == []
        assert watch.counted == 0 and lone.status() is not UNHEALTHY
        # Long ones, with another host's calls answered in between: the run restarts.
        for _ in range(4):
            assert await call(impatient, lone, now, 20) == []
            assert await call(other, lone, now, 0, "svc_pid") == [lone.pid]
        assert watch.counted == 0 and watch.total == 4 and lone.status() is not UNHEALTHY
        # One host giving up on three stuck calls at once is one stall, not three.
        assert await call(impatient, lone, now, 20, sent=3) == []
        assert watch.counted == 1 and watch.total == 4 + 3
        assert lone.status() is not UNHEALTHY

        # Two more, nothing answered: suspect.  Its only replica still takes the calls
        # (nothing better is there), and the first answer clears it.
        for _ in range(2):
            await call(impatient, lone, now, 20)
        assert lone.status() is UNHEALTHY
        assert (lone.statistics().stalled or "").startswith(
            "stalled: 3 calls cancelled by their hosts after 20 s with no answer")
        assert await call(other, lone, now, 0, "svc_pid") == [lone.pid]
        assert lone.statistics().stalled is None and lone.status() is not UNHEALTHY


async def test_a_host_cancelling_the_half_open_probe_gives_its_slot_back(
        tmp_path: Path) -> None:
    gateway, parts = lone_hanging(tmp_path, circuit_breaker={"failure_threshold": 1})
    async with Client(gateway.server) as client:
        _, lone, now = parts(gateway)
        lone.breaker.record_failure(now[0])        # opened (as by a failed call)
        now[0] += 31                               # past open_for: one probe may go
        assert await call(client, lone, now, 1, "svc_wait") == []  # its host gave up
        # Before, the slot stayed taken: half-open for ever, every call refused.
        assert lone.breaker.state is BreakerState.HALF_OPEN
        assert await call(client, lone, now, 0) == [lone.pid]
        assert lone.breaker.state is BreakerState.CLOSED


async def test_a_call_that_reported_progress_is_no_stall(tmp_path: Path) -> None:
    gateway = make_gateway({"slow": stdio_entry("slow.py", str(tmp_path / "events"))})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("slow")
        now = fake_clock(service)
        lone = service.replicas[0]
        stats = lone._stats

        async def given_up(tool: str, when: Callable[[], bool]) -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, tool, {})
                await until(when)
                now[0] += 20
                tg.cancel_scope.cancel()
            await until(lambda: not lone.active)

        # Both tools are known to answer at once (``policies/stalls.ToolTimes``): a
        # wait of 20 s is far past their time.
        stats.tools.answered("tools/call 'again'", 0.1)
        stats.tools.answered("tools/call 'hang'", 0.1)
        # Progress 1 and 2, then nothing: the replica was working on it.
        heard = stats.heard
        await given_up("slow_again", lambda: stats.heard >= heard + 2)
        assert stats.stalls.total == 0
        # No word at all for as long: a stall.
        await given_up("slow_hang", lambda: lone.active == 1)
        assert stats.stalls.total == 1 and stats.stalls.counted == 1


async def test_the_stdio_taps_tell_of_progress() -> None:
    tap = RawTap()
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    heard: list[int] = []
    tap.heard = lambda: heard.append(1)
    tap.open(write)
    answer: dict[str, Any] = {}

    async def request() -> None:
        answer.update(await tap.request("tools/call", {"name": "x"}, 30, None, 300))

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await until(lambda: written)
        sent = json.loads(written[0])
        token = sent["params"]["_meta"]["progressToken"]  # asked: progress keeps it alive
        progress = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1}}
        assert await tap.take(json.dumps(progress))
        assert heard == [1]
        assert await tap.take(json.dumps({"jsonrpc": "2.0", "id": sent["id"],
                                          "result": {"content": []}}))
    assert answer == {"content": []}
