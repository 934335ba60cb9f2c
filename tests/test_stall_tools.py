"""Stalls judged against the tool's own time (``policies/stalls.py``, ``ToolTimes``).

A host giving up three times on a working tool that is just slower than ~5 s and
reports no progress (a 20 s report tool, stopped at 8 s each time by an impatient user)
made the replica suspect, although every other tool of it answered whenever called:
each wait was judged against the replica's latency (its fast tools'), and the tool had
never been seen to answer faster than its host gave up.  Now a call's wait is judged
against what that tool took to answer (on any replica of the server); a tool never seen
to answer, or seen to answer slower than the wait, is no evidence of a hang.  A real
hang -- calls of a tool seen to answer quickly, taken and never answered -- is found as
before.  Real stdio replicas (``servers/hangs.py``), the accounting on a fake clock
(``tests/test_stalled_replicas.py``).
"""

from __future__ import annotations

from pathlib import Path

import mcp_types as types
import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import HealthStatus
from fast_mcp_gateway.upstream.requests import _complete
from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_stalled_replicas import call, fake_clock

pytestmark = pytest.mark.anyio
UNHEALTHY = HealthStatus.UNHEALTHY


async def test_a_slow_tool_given_up_on_is_no_stall(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    async with Client(gateway.server, mode="legacy") as host:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        lone = service.replicas[0]
        watch = lone._stats.stalls
        assert await call(host, lone, now, 0) == [lone.pid]  # its other tool answers
        # ``wait`` is slow (it never answered): stopped at 8 s, three times, nothing
        # else called in between.
        for _ in range(3):
            assert await call(host, lone, now, 8, "svc_wait") == []
        assert watch.total == 0, "a slow tool's calls given up on counted as stalls"
        assert lone.status() is not UNHEALTHY and lone.statistics().stalled is None


async def test_a_quick_error_does_not_make_a_slow_tool_fast(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    async with Client(gateway.server, mode="legacy") as host:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        lone = service.replicas[0]
        # Wrong arguments: an error answered at once says nothing of how long it works.
        refused = await host.call_tool_mcp("svc_wait", {"unknown": 1})
        assert refused.isError
        for _ in range(3):
            assert await call(host, lone, now, 8, "svc_wait") == []
        assert lone._stats.stalls.total == 0
        assert lone.status() is not UNHEALTHY


def test_only_a_complete_answer_tells_a_tools_time() -> None:
    assert _complete({"content": [], "isError": False, "resultType": "complete"})
    assert _complete(types.CallToolResult(content=[]))
    assert _complete(types.ReadResourceResult(contents=[]))
    assert not _complete({"content": [], "isError": True})
    assert not _complete(types.CallToolResult(content=[], is_error=True))
    # A 2026-07-28 round asking for input: the tool's work comes after the answer.
    assert not _complete({"resultType": "input_required", "requestState": "s"})
    assert not _complete(types.InputRequiredResult(request_state="s"))


async def test_a_tool_seen_to_answer_quickly_that_hangs_is_found(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    async with Client(gateway.server, mode="legacy") as host:
        service = gateway.manager.get("svc")
        now = fake_clock(service)
        lone = service.replicas[0]
        assert await call(host, lone, now, 0) == [lone.pid]
        (tmp_path / f"hang-{lone.pid}").touch()
        for _ in range(3):
            assert await call(host, lone, now, 8) == []
        assert lone.status() is UNHEALTHY
        assert lone.statistics().stalled == (
            "stalled: 3 calls cancelled by their hosts after 8 s with no answer (suspect "
            "for 0 s; a trial call in 30 s)")


async def test_a_per_client_servers_sessions_learn_from_each_other(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path), protocol="legacy",
                                               isolation="per_client")})
    service = gateway.manager.get("svc")
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy") as a, \
            Client(f"{base}/mcp", mode="legacy") as b:
        assert (await a.call_tool("svc_work", {})).data  # a's session: ``work`` is quick
        pid = (await b.call_tool("svc_pid", {})).data      # b's own session, not called it
        assert service.clients is not None
        mine = next(u for u in service.clients.upstreams if u.pid == pid)
        now = [1000.0]
        mine._stats.clock = mine._clock = lambda: now[0]
        (tmp_path / f"hang-{pid}").touch()
        for _ in range(3):
            assert await call(b, mine, now, 8) == []
        assert mine._stats.stalls.total == 3, "b's session judged by no time of ``work``"
        assert mine.status() is UNHEALTHY
