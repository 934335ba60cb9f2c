"""A server's counts are what hosts see of it: ``mcp-gateway check``, the admin tool
``gateway_list_servers`` (and REST's server list, the same operation) leave out a
task-only tool on a handshake-era session and a tool a rule hides, and say how many
tools are not exposed, by why, in the words the log and a call by name use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx2
import pytest

from tests.fixtures import PY, SERVERS, make_gateway, serve_http, stdio_entry
from tests.stdio_gateway import CLI, stdio_gateway

# The fidelity upstream lists five tools: one runs only as a task (its session is
# handshake-era: hosts never see it), and the rule below hides another.
CONFIG = ("servers:\n  fid:\n"
          f"    command: {json.dumps(PY)}\n"
          f"    args: {json.dumps([str(SERVERS / 'fidelity.py')])}\n"
          "    tools:\n      exclude: [needs_url]\n")
NOT_EXPOSED = {"task-only": 1, "tools.exclude": 1}


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.timeout(120)
def test_the_admin_list_counts_the_tools_hosts_see(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with stdio_gateway("--config", str(config), "--no-db") as gateway:
        listed = gateway.wait_for("gateway_list_servers",
                                  lambda r: r["servers"][0]["state"] == "ready")
        names = gateway.send({"jsonrpc": "2.0", "id": 99, "method": "tools/list"})
        gateway.stop()
    fid = listed["servers"][0]
    assert names is not None
    seen = [t["name"] for t in names["result"]["tools"] if t["name"].startswith("fid_")]
    assert fid["tools"] == len(seen) == 3, (fid, seen)
    assert fid["tools_not_exposed"] == NOT_EXPOSED


@pytest.mark.timeout(120)
def test_check_counts_the_tools_hosts_see_and_says_why_others_are_not(
        tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run = [*CLI, "check", "--config", str(config), "--no-db"]
    report = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=100)
    assert report.returncode == 0, report.stdout + report.stderr
    row = json.loads(report.stdout)["servers"][0]
    assert (row["tools"], row["tools_not_exposed"]) == (3, NOT_EXPOSED)

    table = subprocess.run(run, capture_output=True, text=True, timeout=100)
    assert table.returncode == 0, table.stdout + table.stderr
    assert ("fid: 2 tools not exposed to hosts: 1 runs only as a task (its session is "
            "handshake-era, which has no tasks; 'protocol: 2026-07-28' relays them if the "
            "server speaks it); 1 hidden by its 'tools.exclude' rule") in table.stdout


@pytest.mark.anyio
async def test_the_dashboards_server_page_counts_and_lists_what_hosts_see(
        tmp_path: Path) -> None:
    """Its status part (the admin detail's counts) and its list of tools, over HTTP."""
    gateway = make_gateway({"fid": stdio_entry("fidelity.py", tools={"exclude": ["needs_url"]})},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        service = gateway.manager.services["fid"]
        await service.wait_until(lambda: str(service.state) == "ready", within=60)
        page = (await http.get(base + "/ui/servers/fid")).text
    assert "<dd>3 tools, 1 resources" in page and "<h3>Tools (3)</h3>" in page, page
    assert ("<dt>Tools not exposed</dt><dd>1 run only as tasks (its session is "
            "handshake-era, which has no tasks); 1 hidden by its <code>tools.exclude</code> "
            "rule</dd>") in page
    assert "fid_task_only" not in page
