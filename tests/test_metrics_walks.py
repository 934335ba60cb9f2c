"""Back-to-back scrapes of ``/metrics`` walk the stdio servers' processes once.

The walk of ``/proc`` that gives ``mcp_gateway_upstream_resident_memory_bytes`` runs on
the event loop (~0.42 ms per process) and ran at every scrape: with ``metrics_public``
anyone who could reach the port could make the gateway repeat it without bound.  Each
server's walk is now reused for ``MAX_AGE`` seconds while its processes are the same
(``telemetry/processes.ResidentMemory``, on a clock the test moves).  A real gateway
served on 127.0.0.1, real stdio replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.http.metrics import snapshot_of
from fast_mcp_gateway.telemetry.processes import MAX_AGE, ResidentMemory, resident_bytes
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_ops_metrics import samples

pytestmark = pytest.mark.anyio
MEMORY = "mcp_gateway_upstream_resident_memory_bytes", frozenset(
    {("mcp_gateway_server", "svc")})
PROCESSES = "mcp_gateway_upstream_processes", frozenset({("mcp_gateway_server", "svc")})


async def test_scrapes_reuse_a_recent_walk_and_walk_again_when_it_is_old(
        tmp_path: Path) -> None:
    gateway = make_gateway({"svc": stdio_entry("replica.py", replicas=2)})
    now = [1000.0]
    walked: list[int | None] = []

    def walk(pids: Iterable[int]) -> int | None:
        walked.append(resident_bytes(pids))
        return walked[-1]

    memory = ResidentMemory(clock=lambda: now[0], walk=walk)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        gateway.metrics.collect_snapshots(snapshot_of(gateway.manager,
                                                      lambda: gateway.recorder,
                                                      memory=memory))

        async def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            answer = await http.get("/metrics")
            assert answer.status_code == 200, answer.text
            return samples(answer.text)

        first = await scrape()
        assert len(walked) == 1 and first[PROCESSES] == 2.0
        assert walked[0] is not None and first[MEMORY] == walked[0] > 1 << 20
        for _ in range(5):  # a scraper hammering the port: no walk
            assert (await scrape())[MEMORY] == walked[0]
        now[0] += MAX_AGE - 0.1
        await scrape()
        assert len(walked) == 1 and memory.walks == 1

        now[0] += 0.2  # older than MAX_AGE: walked again, its value reported
        again = await scrape()
        assert len(walked) == 2 and again[MEMORY] == walked[1]

        # Other processes (a replica disabled) are walked at once: the count and the
        # memory beside it agree, whatever the age of the last walk.
        service = gateway.manager.get("svc")
        gone = service.replicas[1]
        gone.set_enabled(False)
        assert await service.wait_until(
            lambda: gone.state is UpstreamState.DISABLED and gone.pid is None, within=30)
        fewer = await scrape()
        assert len(walked) == 3 and fewer[PROCESSES] == 1.0
        assert fewer[MEMORY] == walked[2]
