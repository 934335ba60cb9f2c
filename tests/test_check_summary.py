"""``mcp-gateway check`` probes each server as ``serve`` runs it: with the gateway's
``timeouts`` from the file (not only the flags' defaults), and its summary counts
servers, not the rows of their replicas."""

from __future__ import annotations

import json
import socket

import pytest

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.cli.check import run_check
from fast_mcp_gateway.config.settings import GatewaySettings
from tests.fixtures import PY

pytestmark = pytest.mark.anyio


async def test_check_waits_the_files_gateway_timeouts_connect(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A listening socket nobody reads: serve gives up after gateway.timeouts.connect
    (1 s here); check waited the flag's default (10 s) and said so."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        config = parse_config({"gateway": {"timeouts": {"connect": 1}},
                               "servers": {"quiet": {"url": url}}})
        code = await run_check(config, GatewaySettings(), True, None)
    row = json.loads(capsys.readouterr().out)["servers"][0]
    assert code == 1 and row["status"] == "failed", row
    assert "sent no answer to initialize within 1 s (timeouts.connect)" in row["error"], row


@pytest.mark.timeout(120)  # three server processes on a loaded machine
async def test_the_summary_counts_servers_not_replicas(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_config({"servers": {
        "notes": {"command": PY, "args": ["-m", "fast_mcp_gateway.demo.notes"], "replicas": 2},
        "clock": {"command": PY, "args": ["-m", "fast_mcp_gateway.demo.clock"]}}})
    code = await run_check(config, GatewaySettings(), False, None)
    out = capsys.readouterr().out
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["notes#0", "notes#1",
                                                                   "clock"], out
    assert "\n2/2 servers ok, 3 replicas in all (<config>, no store (--no-db))" in out, out


@pytest.mark.timeout(120)
async def test_check_reports_the_rules_that_did_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in a rename or an override of servers.yaml (trial8) did nothing and check
    said nothing of it: only gateway_server_detail's curation.problems listed it."""
    entry = {"command": PY, "args": ["-m", "fast_mcp_gateway.demo.clock"],
             "tools": {"rename": {"nwo": "current"}, "override": {"ad": {"title": "Add"}}}}
    for as_json in (False, True):
        code = await run_check(parse_config({"servers": {"clock": entry}}), GatewaySettings(),
                               as_json, None)
        out = capsys.readouterr().out
        assert code == 0, out
        problems = ["tools.rename: no tool 'nwo' on this server (closest: 'now')",
                    "tools.override: no tool 'ad' on this server (closest: 'add')"]
        if as_json:
            assert json.loads(out)["servers"][0]["curation_problems"] == problems, out
        else:
            assert f"clock: 2 rules did nothing: {'; '.join(problems)}\n" in out, out
