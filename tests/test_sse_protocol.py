"""An SSE server's own ``protocol: 2026-07-28`` is refused (``config/eras.py``).

SSE speaks only the handshake era: such an entry was accepted and its session opened
in the handshake era all the same, the reason only in ``protocol_reason``.  It is an
invalid entry now, with the same words at load, reload, registration, in
``mcp-gateway check``, REST and the dashboard; a gateway-wide default is not refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import alpha_server, beta_server, memory_entry, serve_http
from tests.test_invalid_entries import AUTH, OPS, _gateway
from tests.test_ui import _login

MODERN = "2026-07-28"
FIX = ("and SSE speaks only the handshake era; remove 'protocol' (its sessions open in "
       "the handshake era), or reach the server over streamable HTTP ('transport: http' "
       "with its streamable HTTP URL, e.g. .../mcp)")
SSE = {"url": "http://127.0.0.1:9/events", "transport": "sse", "protocol": MODERN}
WORDS = f"server 'old', field 'protocol': '{MODERN}' cannot apply: it has 'transport: sse', {FIX}"


@pytest.mark.parametrize(("entry", "which"), [
    (SSE, "it has 'transport: sse'"),
    ({"url": "http://127.0.0.1:9/sse", "protocol": MODERN},
     "it has a URL ending in /sse (read as SSE)"),
    ({"instances": [{"url": "http://127.0.0.1:9/mcp"},
                    {"url": "http://127.0.0.1:9/x", "transport": "sse"}], "protocol": MODERN},
     "instances[1] has 'transport: sse'"),
])
def test_an_sse_entry_of_its_own_2026_protocol_is_refused_naming_the_fix(
        entry: dict[str, Any], which: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"servers": {"old": entry}}, source="servers.yaml")
    assert str(refused.value) == (
        f"servers.yaml: server 'old', field 'protocol': '{MODERN}' cannot apply: {which}, {FIX}")


def test_a_gateway_wide_2026_default_is_not_refused_for_sse_servers() -> None:
    """The default applies to the servers that do not set one; an SSE server keeps the
    handshake era under it (its transport's), and its own legacy/auto are fine."""
    config = parse_config({"gateway": {"protocol": MODERN}, "servers": {
        "old": {"url": "http://127.0.0.1:9/sse"}, "new": {"url": "http://127.0.0.1:9/mcp"},
        "said": {**SSE, "protocol": "legacy"}, "auto": {**SSE, "protocol": "auto"},
        "http": {**SSE, "transport": "http"}}}, source="servers.yaml")
    assert config.options.protocol == MODERN
    assert {n: s.protocol for n, s in config.servers.items()} == {
        "old": None, "new": None, "said": "legacy", "auto": "auto", "http": MODERN}


@pytest.mark.anyio
async def test_check_rest_and_the_dashboard_say_the_same_words(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"gateway": {"auth": AUTH},
                                  "servers": {"old": SSE, "good": memory_entry("good")}}))
    checked = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", "check", "--no-db", "--json", "--config",
         str(config)], capture_output=True, text=True, timeout=120, cwd=tmp_path))
    assert checked.returncode == 1, checked.stderr
    rows = {r["server"]: r for r in json.loads(checked.stdout)["servers"]}
    assert rows["old"]["status"] == "invalid" and WORDS in rows["old"]["error"]
    gateway = _gateway(config, {"good": beta_server()})
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        listed = {s["name"]: s for s in (await http.get("/api/v1/servers")).json()["servers"]}
        assert listed["good"]["state"] == "ready"
        assert listed["old"]["state"] == "invalid" and listed["old"]["transport"] == "sse"
        assert listed["old"]["last_error"] == rows["old"]["error"]
        one = (await http.get("/api/v1/servers/old")).json()
        assert one["config_error"] == rows["old"]["error"]
        await _login(http, base, OPS)
        shown = WORDS.replace("'", "&#39;")  # as the templates escape it
        assert shown in (await http.get("/ui/")).text
        page = await http.get("/ui/servers/old")
        assert page.status_code == 200 and shown in page.text


@pytest.mark.anyio
async def test_a_registration_is_refused_with_the_same_words(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"gateway": {"auth": AUTH},
                                  "servers": {"good": memory_entry("good")}}))
    gateway = _gateway(config, {"good": beta_server()}, db=str(tmp_path / "gw.db"))
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        answer = await http.post("/api/v1/servers", json={"name": "old", "config": SSE})
        assert answer.status_code == 422, answer.text
        assert WORDS in answer.text
        assert "old" not in gateway.manager.services


@pytest.mark.anyio
async def test_a_reload_keeps_the_server_on_its_last_valid_entry(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    alpha, old = memory_entry("alpha"), memory_entry("old")
    config.write_text(json.dumps({"servers": {"alpha": alpha, "old": old}}))
    gateway = _gateway(config, {"alpha": alpha_server(), "old": beta_server()})
    async with Client(gateway.server) as client:
        config.write_text(json.dumps({"servers": {"alpha": alpha, "old": {
            **old, "transport": "sse", "protocol": MODERN}}}))
        report = await gateway.control.reload_config()
        assert report.error is None, report.error
        assert WORDS in report.invalid["old"]
        assert (await client.call_tool("old_add", {"a": 1, "b": 2})).data == 1003
