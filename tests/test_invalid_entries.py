"""One server's invalid entry in the config file costs that server, not the gateway: it
is not started, shown as ``invalid`` with the loader's message (admin tools, REST,
/ready, metrics, ``check``, a host's unknown-name answer), and every other server runs.
Errors of the whole file (its syntax, ``gateway:`` -- auth above all --, unknown top-level
keys, a namespace two servers share) still refuse it, at start and on reload."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import load_config, parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import (
    FAST_RESTART,
    alpha_server,
    beta_server,
    memory_entry,
    memory_transports,
    serve_http,
    stdio_entry,
)
from tests.test_ui import _csrf, _login

REPO = Path(__file__).resolve().parents[1]
UNSET = "MCP_GATEWAY_TEST_SURELY_UNSET_TOKEN"
OPS = "mgw_ops-invalid-entries-7c1e0b5a"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}


def _gateway(config: Path, memory: dict[str, Any], **settings: Any) -> Gateway:
    """A gateway read from ``config`` as ``serve`` reads it, its upstreams in memory."""
    settings.setdefault("db", None)
    settings.setdefault("startup_wait", 600.0)
    return Gateway(load_config(config, partial=True),
                   GatewaySettings(config=config, connect_timeout=10.0, **settings),
                   transport_factory=memory_transports(memory), restart=FAST_RESTART)


# -- the loader ----------------------------------------------------------------------


def test_a_partial_load_leaves_out_only_the_servers_whose_entries_are_invalid() -> None:
    data = {"mcpServers": {
        "github": {"command": "npx", "args": ["gh"], "env": {"T": f"${{{UNSET}}}"}},
        "typo": {"comand": "x"},
        "wrong": {"command": "x", "cwd": 5},
        "keys": {"command": "x", "env": {1: "a"}},
        "good": {"command": "python3"},
    }}
    config = parse_config(data, source="claude.json", environ={}, partial=True)
    assert list(config.servers) == ["good"]
    assert list(config.invalid) == ["github", "typo", "wrong", "keys"]  # file order
    github = config.invalid["github"]
    assert github.error.startswith("claude.json: server 'github', field 'env.T': environment "
                                   f"variable '{UNSET}' is not set"), github.error
    assert (github.namespace, github.transport) == ("github", "stdio")
    assert "did you mean 'command'?" in config.invalid["typo"].error
    assert "field 'cwd'" in config.invalid["wrong"].error
    assert "put it in quotes" in config.invalid["keys"].error
    with pytest.raises(ConfigError, match="server 'keys'"):  # without partial: as before
        parse_config(data, source="claude.json", environ={})


def test_an_invalid_entry_is_enabled_unless_it_says_otherwise() -> None:
    from fast_mcp_gateway.config.registrations import merge
    from fast_mcp_gateway.store.records import Registration

    data = {"mcpServers": {"on": {"comand": "x"}, "off": {"comand": "x", "disabled": True}}}
    config = parse_config(data, source="claude.json", environ={}, partial=True)
    assert {n: e.enabled for n, e in config.invalid.items()} == {"on": True, "off": False}
    data = {"servers": {"on": {"comand": "x"}, "off": {"comand": "x", "enabled": False}}}
    config = parse_config(data, source="servers.yaml", environ={}, partial=True)
    assert {n: e.enabled for n, e in config.invalid.items()} == {"on": True, "off": False}
    invalid: dict[str, Any] = {}  # a stored registration's own flag
    merge({}, [Registration(name=name, config={"url": "http://127.0.0.1:9/mcp", "retired": 1},
                            enabled=flag, updated_at=0.0)
               for name, flag in [("on", True), ("off", False)]], invalid=invalid)
    assert {n: e.enabled for n, e in invalid.items()} == {"on": True, "off": False}


@pytest.mark.parametrize(("extra", "expected"), [
    ({"gateway": {"auth": {"tokens": 5}}}, "field 'gateway.auth.tokens'"),
    ({"gateway": {"auth": {"tokens": [{"name": "a", "token": f"${{{UNSET}}}"}]}}},
     "field 'gateway.auth.tokens[0].token'"),
    ({"gateway": {"separatr": "_"}}, "field 'gateway.separatr'"),
    ({"sevrers": {}}, "field 'sevrers': unknown top-level key"),
    ({"alerts": {"rules": 5}}, "alerts"),
])
def test_errors_of_the_whole_file_still_refuse_it(extra: dict[str, Any], expected: str) -> None:
    data = {"servers": {"bad": {"comand": "x"}, "good": {"command": "python3"}}, **extra}
    with pytest.raises(ConfigError) as refused:
        parse_config(data, source="servers.yaml", environ={}, partial=True)
    assert expected in str(refused.value)
    assert "field 'comand'" in str(refused.value)  # every problem still listed


def test_two_servers_sharing_a_namespace_refuse_the_file() -> None:
    data = {"servers": {"a-b": {"command": "x"}, "a_b": {"command": "y", "namespace": "a-b"}}}
    with pytest.raises(ConfigError, match="namespace 'a-b' is already used"):
        parse_config(data, partial=True)


def test_a_file_whose_every_entry_is_invalid_loads_with_none_running() -> None:
    config = parse_config({"servers": {"a": {"comand": "x"}}}, partial=True)
    assert not config.servers and list(config.invalid) == ["a"]


# -- at start ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_serve_starts_the_valid_server_and_shows_the_invalid_one(tmp_path: Path) -> None:
    """A Claude Desktop file with an unset variable in one entry: the other runs over
    stdio; the broken one is listed as invalid with the loader's message; a host calling
    its tool is told why."""
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps({"mcpServers": {
        "github": {"command": "npx", "args": ["-y", "gh"],
                   "env": {"GITHUB_TOKEN": f"${{{UNSET}}}"}},
        "well": stdio_entry("well.py"),
    }}))
    transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--no-db",
                                                "--startup-wait", "600",
                                                "--config", str(config)],
                               cwd=str(tmp_path), keep_alive=False)
    async with Client(transport) as client:
        assert (await client.call_tool("well_echo", {"text": "hi"})).data == "hi"
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        rows = {s["name"]: s for s in listed["servers"]}
        assert rows["well"]["state"] == "ready" and rows["well"]["config_error"] is None
        github = rows["github"]
        assert github["state"] == "invalid" and github["transport"] == "stdio"
        assert github["config_error"] == github["last_error"]
        assert github["last_error"].startswith(f"{config}: server 'github', field "
                                               f"'env.GITHUB_TOKEN': environment variable "
                                               f"'{UNSET}' is not set"), github
        assert listed["total"] == 2 and listed["ready"] == 1
        health = (await client.call_tool("gateway_health", {})).structured_content
        assert health is not None
        assert {s["name"]: s["state"] for s in health["servers"]}["github"] == "invalid"
        detail = (await client.call_tool("gateway_server_detail",
                                         {"name": "github"})).structured_content
        assert detail is not None and detail["state"] == "invalid"
        with pytest.raises(ToolError) as refused:
            await client.call_tool("github_create_issue", {})
        text = str(refused.value)
        assert "server 'github' has no tool 'create_issue'" in text, text
        assert "it is invalid, so it was not started" in text and UNSET in text, text


def test_serve_logs_the_invalid_entry_at_error(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  bad: {command: x, replicas: true}\n"
                      f"  good: {json.dumps(memory_entry('good'))}\n")
    with caplog.at_level(logging.ERROR):
        gateway = _gateway(config, {"good": beta_server()})
    assert list(gateway.config.servers) == ["good"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(m.startswith(f"server 'bad' is not started, its entry is invalid: {config}: "
                            "server 'bad', field 'replicas'") for m in errors), errors
    caplog.clear()
    config.write_text("servers:\n  bad: {comand: x}\n")
    with caplog.at_level(logging.ERROR):
        _gateway(config, {})
    assert any("none of the 1 server entries" in r.getMessage() for r in caplog.records)


def test_serve_still_refuses_an_invalid_auth_section(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("gateway:\n  auth: {tokens: [{name: a, token: '${" + UNSET + "}'}]}\n"
                      "servers:\n  bad: {comand: x}\n  good: {command: python3}\n")
    result = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "serve", "--no-db",
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert "field 'gateway.auth.tokens[0].token'" in result.stderr, result.stderr


def test_check_reports_the_invalid_entry_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    well = json.dumps(stdio_entry("well.py"))
    config.write_text(f"servers:\n  bad: {{comand: x}}\n  well: {well}\n")
    result = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "check", "--no-db",
                             "--json", "--config", str(config)], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    rows = {r["server"]: r for r in json.loads(result.stdout)["servers"]}
    assert rows["well"]["status"] == "ok"
    assert rows["bad"]["status"] == "invalid" and "did you mean 'command'?" in rows["bad"]["error"]


@pytest.mark.anyio
async def test_rest_ready_and_metrics_show_the_invalid_server(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"gateway": {"auth": AUTH}, "servers": {
        "bad": {"url": "http://127.0.0.1:9/mcp", "timeouts": {"call": -1}},
        "good": memory_entry("good")}}))
    gateway = _gateway(config, {"good": beta_server()})
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        listed = (await http.get(f"{base}/api/v1/servers", headers=headers)).json()
        rows = {s["name"]: s for s in listed["servers"]}
        assert rows["good"]["state"] == "ready"
        assert rows["bad"]["state"] == "invalid" and rows["bad"]["transport"] == "http"
        assert "field 'timeouts.call'" in rows["bad"]["last_error"]
        one = await http.get(f"{base}/api/v1/servers/bad", headers=headers)
        assert one.status_code == 200, one.text
        assert one.json()["state"] == "invalid"
        assert "field 'timeouts.call'" in one.json()["config_error"]
        ready = await http.get(f"{base}/ready", headers=headers)  # names: to a token
        assert ready.status_code == 200
        assert ready.json()["invalid_servers"] == ["bad"]
        assert "1 server(s) not started" in ready.json()["reason"]
        metrics = (await http.get(f"{base}/metrics", headers=headers)).text
        states = {(s.labels["mcp_gateway_server"], s.labels["state"]): s.value
                  for family in text_string_to_metric_families(metrics)
                  if family.name == "mcp_gateway_upstream_state" for s in family.samples}
        assert states[("bad", "invalid")] == 1 and states[("good", "invalid")] == 0


@pytest.mark.anyio
async def test_an_invalid_entry_is_not_reported_disabled(tmp_path: Path) -> None:
    """An invalid entry was reported ``enabled: false`` (REST, gateway_list_servers,
    gateway_server_detail): it is not disabled.  ``enabled`` is what its entry says
    (true unless ``enabled: false``), on every surface and in the dashboard's note."""
    config = tmp_path / "servers.yaml"
    config.write_text("gateway:\n  auth:\n    tokens:\n      - {name: ops, token: " + OPS
                      + ", scopes: [admin]}\nservers:\n  bad: {comand: x}\n"
                      "  off: {comand: x, enabled: false}\n")
    gateway = _gateway(config, {})
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        for name, enabled in [("bad", True), ("off", False)]:
            one = await http.get(f"{base}/api/v1/servers/{name}", headers=headers)
            assert one.status_code == 200, one.text
            assert (one.json()["state"], one.json()["enabled"]) == ("invalid", enabled)
        listed = (await http.get(f"{base}/api/v1/servers", headers=headers)).json()
        assert {s["name"]: s["enabled"] for s in listed["servers"]} == {
            "bad": True, "off": False}
        schema = (await http.get(f"{base}/api/v1/openapi.json")).json()
        described = schema["components"]["schemas"]["ServerStatus"]["properties"]["enabled"]
        assert "'invalid' is not started either way" in described["description"]
        async with Client(f"{base}/mcp", auth=OPS) as client:
            rows = (await client.call_tool("gateway_list_servers", {"detail": True})
                   ).structured_content
            assert rows is not None
            assert {s["name"]: s["enabled"] for s in rows["servers"]} == {
                "bad": True, "off": False}
            detail = (await client.call_tool("gateway_server_detail",
                                             {"name": "bad"})).structured_content
            assert detail is not None and detail["enabled"] is True
        await _login(http, base, OPS)
        for name, note in [("bad", "invalid (not disabled)"), ("off", "invalid, and disabled")]:
            page = (await http.get(f"{base}/ui/servers/{name}")).text
            assert note in page, page
            assert '<span class="badge">disabled</span>' not in page


@pytest.mark.anyio
async def test_the_dashboard_shows_the_invalid_server_and_its_page(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"bad": {"comand": "x"},
                                              "good": memory_entry("good")}}))
    gateway = _gateway(config, {"good": beta_server()})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        overview = await http.get(f"{base}/ui/")
        assert overview.status_code == 200
        assert 'data-server="bad"' in overview.text and 'data-state="invalid"' in overview.text
        assert "did you mean &#39;command&#39;?" in overview.text
        page = await http.get(f"{base}/ui/servers/bad")
        assert page.status_code == 200, page.text
        assert "invalid" in page.text and "field &#39;comand&#39;" in page.text


@pytest.mark.anyio
async def test_an_invalid_servers_page_and_history_answer_with_a_store(tmp_path: Path) -> None:
    """With a store, the dashboard's page of an invalid server (linked from its card)
    was "Not found: no server named 'bad' (known: good)": its call history asked for a
    server the store had no record of; REST's history reads said the same, and its
    lifecycle actions named no reason.  Its page offered buttons that all answered "Not
    found"; it says how to fix the entry, or links to registering settings in its stead."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"gateway": {"auth": AUTH},
                                  "servers": {"bad": {"comand": "x"},
                                              "good": memory_entry("good")}}))
    gateway = _gateway(config, {"good": beta_server()}, db=str(tmp_path / "gw.db"))
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        await _login(http, base, OPS)
        page = await http.get("/ui/servers/bad")
        assert page.status_code == 200, page.text
        assert "field &#39;comand&#39;" in page.text
        restart = await http.post("/api/v1/servers/bad/restart")
        assert restart.status_code == 404
        assert "server 'bad' is not running: its entry is invalid" in restart.text
        assert "field 'comand'" in restart.text
        # Replacing or removing it said "no server named 'bad'", as of a name never seen.
        put = await http.put("/api/v1/servers/bad", json={"config": {"command": "x"}})
        assert put.status_code == 404
        assert "its entry is invalid" in put.text
        assert "or register settings in its stead: POST /api/v1/servers" in put.text
        delete = await http.delete("/api/v1/servers/bad")
        assert delete.status_code == 404 and "its entry is invalid" in delete.text
        for path in ("/api/v1/logs/invocations?server=bad", "/api/v1/logs/health?server=bad",
                     "/api/v1/stats/servers/bad", "/api/v1/debug/history?server=bad",
                     "/api/v1/servers/bad/tools"):
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
        # Its actions are what can fix it, not buttons that answer "Not found".
        assert 'id="invalid-fix"' in page.text and "Reset breaker" not in page.text
        form = await http.get("/ui/add?name=bad")
        assert 'id="name" name="name" value="bad"' in form.text
        saved = await http.post("/ui/add", data={
            "csrf_token": _csrf(form.text), "name": "bad", "kind": "http",
            "url": "http://127.0.0.1:9/in-memory/good", "replicas": "1", "enabled": "on"})
        assert saved.status_code in (200, 303), saved.text
        assert "bad" in gateway.manager.services


# -- reloads -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reload_keeps_a_broken_entry_running_and_applies_the_rest(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    alpha, beta = memory_entry("alpha"), memory_entry("beta")
    config.write_text(json.dumps({"servers": {"alpha": alpha, "beta": beta}}))
    gateway = _gateway(config, {"alpha": alpha_server(), "beta": beta_server()})
    async with Client(gateway.server) as client:
        # beta's entry breaks; alpha gets a description (applied in place).
        config.write_text(json.dumps({"servers": {
            "alpha": {**alpha, "description": "now described"},
            "beta": {**beta, "replicas": "two"}}}))
        report = await gateway.control.reload_config()
        assert report.error is None, report.error
        assert report.updated == ["alpha"] and "beta" in report.unchanged
        assert "field 'replicas'" in report.invalid["beta"]
        assert (await client.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        rows = {s["name"]: s for s in listed["servers"]}
        assert rows["beta"]["state"] == "ready"
        assert "field 'replicas'" in rows["beta"]["config_error"]
        assert rows["alpha"]["description"] == "now described"
        # A second reload still keeps beta's last valid entry.
        assert (await gateway.control.reload_config()).invalid.keys() == {"beta"}
        assert (await client.call_tool("beta_add", {"a": 2, "b": 2})).data == 1004
        # Fixed: runs as written, no error left.
        config.write_text(json.dumps({"servers": {"alpha": alpha, "beta": beta}}))
        report = await gateway.control.reload_config()
        assert report.invalid == {} and report.error is None
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        assert all(s["config_error"] is None for s in listed["servers"])


@pytest.mark.anyio
async def test_a_reload_starts_a_server_whose_entry_was_fixed(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    beta = memory_entry("beta")
    config.write_text(json.dumps({"servers": {"beta": {**beta, "comand": "x"}}}))
    gateway = _gateway(config, {"beta": beta_server()})
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError, match="it is invalid, so it was not started"):
            await client.call_tool("beta_add", {"a": 1, "b": 2})
        config.write_text(json.dumps({"servers": {"beta": beta}}))
        report = await gateway.control.reload_config()
        assert report.added == ["beta"] and report.invalid == {}, report
        assert (await client.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003


@pytest.mark.anyio
async def test_a_reload_with_an_error_of_the_whole_file_keeps_everything(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    beta = memory_entry("beta")
    config.write_text(json.dumps({"servers": {"beta": beta}}))
    gateway = _gateway(config, {"beta": beta_server()})
    async with Client(gateway.server) as client:
        config.write_text(json.dumps({"gateway": {"auth": {"tokens": 5}},
                                      "servers": {"beta": {**beta, "description": "x"},
                                                  "new": memory_entry("new")}}))
        report = await gateway.control.reload_config()
        assert report.error is not None and "gateway.auth.tokens" in report.error
        assert gateway.config.servers["beta"].description is None
        assert "new" not in gateway.manager.services
        assert (await client.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003


# -- runtime registrations -----------------------------------------------------------


async def _stored_retired_registration(tmp_path: Path) -> Path:
    """A store holding a registration ``old`` an older version wrote (a field since
    removed): it no longer validates."""
    from fast_mcp_gateway.store import SQLiteStore

    db = tmp_path / "gateway.db"
    store = await SQLiteStore.open(db)
    try:
        await store.put_server("old", {"url": "http://127.0.0.1:9/mcp", "retired": 1}, True)
    finally:
        await store.close()
    return db


@pytest.mark.anyio
async def test_a_stored_registration_that_no_longer_validates_is_shown_invalid(
        tmp_path: Path) -> None:
    """A registration an older version stored (here: a field since removed) is skipped,
    the other servers run, and it is listed as invalid with its error."""
    db = await _stored_retired_registration(tmp_path)
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"beta": memory_entry("beta")}}))
    gateway = _gateway(config, {"beta": beta_server()}, db=db)
    async with Client(gateway.server) as client:
        assert (await client.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        old = {s["name"]: s for s in listed["servers"]}["old"]
        assert old["state"] == "invalid" and old["transport"] == "http"
        assert "server 'old', field 'retired'" in old["last_error"], old
        assert "correct it with gateway_update_server" in old["last_error"]
        with pytest.raises(ToolError, match=r"server 'old' is not running: its entry is "
                                            r"invalid, so it was not started \("):
            await client.call_tool("gateway_reconnect_server", {"name": "old"})
        # Corrected (as the error says): it runs and is no longer shown invalid.
        await client.call_tool("gateway_update_server", {
            "name": "old", "config": memory_entry("old")})
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        old = {s["name"]: s for s in listed["servers"]}["old"]
        assert old["state"] != "invalid" and old["config_error"] is None, old
        await client.call_tool("gateway_remove_server", {"name": "old"})
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None and [s["name"] for s in listed["servers"]] == ["beta"]


@pytest.mark.anyio
async def test_removing_a_stored_registration_that_does_not_validate_unlists_it(
        tmp_path: Path) -> None:
    db = await _stored_retired_registration(tmp_path)
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {}}))
    gateway = _gateway(config, {}, db=db)
    async with Client(gateway.server) as client:
        assert list(gateway.control.invalid_servers) == ["old"]
        await client.call_tool("gateway_remove_server", {"name": "old"})
        assert not gateway.control.invalid_servers


@pytest.mark.anyio
async def test_a_profile_gateway_shows_only_its_own_invalid_entries(tmp_path: Path) -> None:
    """``serve --profile``: servers outside the profile are not this gateway's to run
    (nor to list); an invalid one among them was still listed as ``invalid``."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "alpha": memory_entry("alpha"), "mine": {"comand": "x"}, "theirs": {"comand": "y"}}}))
    gateway = _gateway(config, {"alpha": alpha_server()})
    gateway.manager.restrict(["alpha", "mine"])
    async with Client(gateway.server) as client:
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        rows = {s["name"]: s["state"] for s in listed["servers"]}
        assert rows == {"alpha": "ready", "mine": "invalid"}


@pytest.mark.anyio
async def test_an_invalid_entry_shows_the_enabled_flag_the_store_keeps(tmp_path: Path) -> None:
    """A server disabled at runtime whose file entry became invalid was listed ``enabled:
    true`` (the stored flag was ignored while the entry was invalid), yet started disabled
    once corrected: the flag shown is the one that will apply.  One the store removed
    (a tombstone) will not run, corrected or not, and is not listed."""
    from fast_mcp_gateway.store import SQLiteStore
    from fast_mcp_gateway.store.records import TOMBSTONE

    db = tmp_path / "gateway.db"
    store = await SQLiteStore.open(db)
    try:
        await store.put_server("bad", None, False)
        await store.put_server("gone", TOMBSTONE, True)
    finally:
        await store.close()
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"bad": {"comand": "x"},
                                              "gone": {"comand": "x"},
                                              "plain": {"comand": "x"}}}))
    gateway = _gateway(config, {}, db=db)
    async with Client(gateway.server) as client:
        listed = (await client.call_tool("gateway_list_servers", {"detail": True})
                 ).structured_content
        assert listed is not None
        assert [(s["name"], s["state"], s["enabled"]) for s in listed["servers"]] == [
            ("bad", "invalid", False), ("plain", "invalid", True)]
