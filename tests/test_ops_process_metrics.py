"""/metrics of a real ``mcp-gateway serve --transport http`` has what every Prometheus
exporter has and dashboards and alerts expect: prometheus_client's process collector
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds``,
``process_max_fds``, ``process_start_time_seconds``), ``python_info`` and
``python_gc_*`` (its private registry had none of them), and each stdio server's
processes and their resident memory; the text passes ``promtool check metrics`` when
promtool is installed.  A real stdio upstream (the demo notes server), a real SQLite
store."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway.telemetry.processes import descendants, resident_bytes
from tests.test_store_outage import BEARER, Serve, serving

pytestmark = pytest.mark.anyio
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def ready(http: httpx2.AsyncClient, gateway: Serve) -> None:
    """Until the gateway answers /ready with 200 (its port opens some way into its
    start)."""
    with anyio.fail_after(120):
        while True:
            assert gateway.proc.poll() is None, gateway.text
            try:
                if (await http.get(f"{gateway.base}/ready")).status_code == 200:
                    return
            except httpx2.ConnectError:
                pass
            await anyio.sleep(0.1)  # another process: no event tells us


def notes(name: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({("mcp_gateway_server", "notes")})


@pytest.mark.timeout(240)
async def test_a_scrape_has_the_process_python_and_upstream_process_metrics(
        tmp_path: Path) -> None:
    with serving(tmp_path, str(tmp_path / "gateway.db")) as gateway:
        async with httpx2.AsyncClient(timeout=30) as http:
            await ready(http, gateway)
            scrape = await http.get(f"{gateway.base}/metrics", headers=BEARER)
            assert scrape.status_code == 200, scrape.text
            text = scrape.text
            got = samples(text)
            for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                         "process_virtual_memory_bytes", "process_open_fds",
                         "process_max_fds", "process_start_time_seconds"):
                assert got.get((name, frozenset()), 0) > 0, (name, text)
            info = [labels for name, labels in got if name == "python_info"]
            assert [dict(labels)["implementation"] for labels in info] == \
                [platform.python_implementation()], text
            assert ("python_gc_collections_total",
                    frozenset({("generation", "0")})) in got, text
            # The notes server: one process running, its memory read from /proc.
            assert got[notes("mcp_gateway_upstream_processes")] == 1.0, text
            assert got[notes("mcp_gateway_upstream_resident_memory_bytes")] > 1 << 20, text
            promtool = shutil.which("promtool")
            if promtool is not None:  # Prometheus's own linter
                lint = await anyio.run_process([promtool, "check", "metrics"],
                                               input=text.encode(), check=False)
                assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

            # Disabled, its process is gone: 0 processes, 0 bytes.
            off = await http.put(f"{gateway.base}/api/v1/servers/notes/disable",
                                 headers=BEARER)
            assert off.status_code == 200, off.text
            with anyio.fail_after(60):
                while True:  # another process: polled
                    got = samples((await http.get(f"{gateway.base}/metrics",
                                                  headers=BEARER)).text)
                    if got[notes("mcp_gateway_upstream_processes")] == 0:
                        break
                    await anyio.sleep(0.1)
            assert got[notes("mcp_gateway_upstream_resident_memory_bytes")] == 0.0


def test_a_servers_memory_counts_its_launchers_children() -> None:
    """``uvx``/``npx``/a shell launch the process that does the work: a server's memory
    is its process's and its descendants' (a shell whose child holds 64 MiB)."""
    child = ("import sys; held = bytearray(64 << 20); held[::4096] = b'x' * (16 << 10); "
             "print('holding', flush=True); sys.stdin.read()")
    launcher = subprocess.Popen(["/bin/sh", "-c", f'"{sys.executable}" -c "{child}"; :'],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None and launcher.stdout.readline() == "holding\n"
        tree = descendants(launcher.pid)
        assert tree[0] == launcher.pid and len(tree) == 2, tree
        shell = int(Path(f"/proc/{launcher.pid}/statm").read_text().split()[1])
        total = resident_bytes([launcher.pid])
        assert total is not None and total >= 64 << 20 > shell * os.sysconf("SC_PAGE_SIZE")
        assert resident_bytes([]) == 0
    finally:
        launcher.communicate("")
