"""What an operator sees of a replica suspect of stalling calls (``policies/stalls.py``),
and of a half-open breaker whose trial call is in flight.

A stalled replica was said only in logs and ``gateway_health``: ``/metrics`` had no
count of stalls nor of suspect replicas, the dashboard's server page showed a bare
UNHEALTHY, and the health transition reached the live stream only at the next health
probe or call.  A call refused while a half-open breaker's one trial call ran was told
"circuit open for 31s, next probe in 0.0s": a probe due now, and yet refused.
Real stdio replicas (``servers/hangs.py``), a real gateway served on 127.0.0.1.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.policies import BreakerState
from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_ops_metrics import samples
from tests.test_stalled_replicas import call, fake_clock, lone_hanging, stuck

pytestmark = pytest.mark.anyio
SUSPECT = "stalled: 3 calls cancelled by their hosts after 20 s with no answer"


def _key(name: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({("mcp_gateway_server", "svc"), ("replica", "0")})


@pytest.mark.timeout(120)
async def test_a_suspect_replica_is_counted_shown_and_streamed(tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("hangs.py", str(tmp_path))})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http, \
            Client(gateway.server) as client:
        now = fake_clock(gateway.manager.get("svc"))
        lone = gateway.manager.get("svc").replicas[0]
        assert await call(client, lone, now, 0) == [lone.pid]  # it answered, then hangs
        marker = tmp_path / f"hang-{lone.pid}"
        marker.touch()
        transitions: list[dict[str, Any]] = []

        async def told(*words: str) -> dict[str, Any]:
            """The next transition of the replica whose detail has ``words``."""
            await until(lambda: any(all(w in t["detail"] for w in words)
                                    for t in transitions))
            found = next(t for t in transitions if all(w in t["detail"] for w in words))
            transitions.clear()
            return found

        async with http.stream("GET", "/ui/events") as stream, \
                anyio.create_task_group() as tg:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"

            async def listen() -> None:
                async for line in lines:
                    if line.startswith("data:") and '"kind":"transition"' in line:
                        event = json.loads(line.removeprefix("data:"))
                        if event["replica"] == lone.label:  # "svc": a lone replica
                            transitions.append(event)

            tg.start_soon(listen)
            with gateway.events.subscribe() as bus:
                for _ in range(3):
                    assert await call(client, lone, now, 20) == []
                # Told as the suspicion began (as its call ended): not at the next health
                # probe (30 s away), alert evaluation (10 s) or call.
                published = iter(bus.get_nowait, None)
                assert any(e.kind == "transition" for e in published)
            event = await told("-> UNHEALTHY")
            assert event["status"] == "UNHEALTHY"
            assert event["detail"].endswith(f"-> UNHEALTHY ({SUSPECT})"), event

            stalled = lone.statistics().stalled
            assert stalled == f"{SUSPECT} (suspect for 0 s; a trial call in 30 s)"
            # The server page (and its live part) and the overview's card say it in
            # gateway_health's words.
            for path in ("/ui/servers/svc", "/ui/partials/servers/svc/status", "/ui/"):
                page = (await http.get(path)).text
                shown = [html.unescape(s) for s in re.findall(
                    r'<[a-z]+ class="error small stalled"[^>]*>(.*?)</[a-z]+>', page, re.S)]
                assert len(shown) == 1 and stalled in shown[0], (path, shown)

            text = (await http.get("/metrics")).text
            scrape = samples(text)
            assert scrape[_key("mcp_gateway_upstream_stalls_total")] == 3.0, text
            assert scrape[_key("mcp_gateway_upstream_suspect")] == 1.0, text
            promtool = shutil.which("promtool")
            if promtool is not None:
                lint = await anyio.run_process([promtool, "check", "metrics"],
                                               input=text.encode(), check=False)
                assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

            # The lone replica still takes the calls; its answer clears it, and the
            # transition says why at once.
            marker.unlink()
            assert await call(client, lone, now, 20) == [lone.pid]
            event = await told("no longer suspect")
            assert event["detail"].startswith("health UNHEALTHY -> "), event
            assert event["detail"].endswith(
                " (answered a call again: no longer suspect of stalling)"), event
            tg.cancel_scope.cancel()
        scrape = samples((await http.get("/metrics")).text)
        assert scrape[_key("mcp_gateway_upstream_suspect")] == 0.0
        assert scrape[_key("mcp_gateway_upstream_stalls_total")] == 3.0
        page = (await http.get("/ui/servers/svc")).text
        assert 'class="error small stalled"' not in page


async def test_a_call_refused_while_the_half_open_trial_runs_is_told_so(
        tmp_path: Path) -> None:
    gateway, parts = lone_hanging(tmp_path, retry={"attempts": 1},
                                  circuit_breaker={"failure_threshold": 1, "open_for": 30})
    async with Client(gateway.server) as client:
        _, lone, now = parts(gateway)
        lone.breaker.record_failure(now[0])  # opened (as by a failed call)
        now[0] += 31  # past open_for: one trial call may go
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "svc_wait", {})  # the trial: it runs on
            await until(lambda: stuck(tmp_path) == 1)
            assert lone.breaker.state is BreakerState.HALF_OPEN
            refused = await client.call_tool_mcp("svc_work", {})
            tg.cancel_scope.cancel()
        assert refused.isError
        said = refused.content[0].text
        assert ("svc circuit half-open (opened 31s ago): its trial call is in flight; "
                "other calls are refused until it answers (a success closes the breaker, "
                "a failure opens it again)") in said, said
        assert "next probe in" not in said, said
