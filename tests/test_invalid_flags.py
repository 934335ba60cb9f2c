"""Enabling or disabling a server whose config file entry is invalid: it was refused
("its entry is invalid ... correct the entry") although the dashboard's note told the
operator to enable it, and a server disabled at runtime then stayed off once corrected
with no way to turn it back on beforehand.  With a store the flag is recorded, shown at
once, and applies once the entry is corrected, and the answer's ``note`` says so -- on
REST, the admin tools and the dashboard alike.  Without a store the refusal names the
entry's error and how to choose the flag in the entry itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.store import SQLiteStore
from tests.fixtures import beta_server, memory_entry, serve_http
from tests.test_invalid_entries import AUTH, OPS, _gateway, _stored_retired_registration
from tests.test_ui import _csrf, _login

pytestmark = pytest.mark.anyio
HEADERS = {"Authorization": f"Bearer {OPS}"}
BROKEN = {"comand": "x"}  # the loader: field 'comand' ... did you mean 'command'?


def _write(config: Path, bad: dict[str, Any]) -> None:
    config.write_text(json.dumps({"gateway": {"auth": AUTH}, "servers": {"bad": bad}}))


async def _stored_flag(db: Path) -> bool | None:
    store = await SQLiteStore.open(db)
    try:
        rows = {r.name: r for r in await store.servers()}
    finally:
        await store.close()
    return rows["bad"].enabled if "bad" in rows else None


async def test_the_flag_of_an_invalid_entry_is_recorded_and_applies_once_corrected(
        tmp_path: Path) -> None:
    config, db = tmp_path / "servers.yaml", tmp_path / "gateway.db"
    _write(config, BROKEN)
    gateway = _gateway(config, {"bad": beta_server()}, db=str(db))
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30, headers=HEADERS) as http:
        # REST: disabled, recorded, shown at once; the note says what it means.
        off = await http.put("/api/v1/servers/bad/disable")
        assert off.status_code == 200, off.text
        body = off.json()
        assert (body["state"], body["enabled"]) == ("invalid", False)
        assert body["note"].startswith("recorded: server 'bad' is disabled; it stays "
                                       "stopped once its entry is corrected, until it is "
                                       "enabled (gateway_enable_server)")
        assert "field 'comand'" in body["note"]
        assert await _stored_flag(db) is False
        listed = (await http.get("/api/v1/servers")).json()["servers"]
        assert [(s["name"], s["enabled"], s["note"]) for s in listed] == [
            ("bad", False, None)]
        # The admin tool: enabled again, the same words.
        async with Client(f"{base}/mcp", auth=OPS) as client:
            on = (await client.call_tool("gateway_enable_server",
                                         {"name": "bad"})).structured_content
        assert on is not None and (on["state"], on["enabled"]) == ("invalid", True)
        assert on["note"].startswith("recorded: server 'bad' is enabled, but it is not "
                                     "started while its entry is invalid (")
        assert "it starts once the entry is corrected" in on["note"]
        assert await _stored_flag(db) is True
        # The dashboard: the button that applies, its flash, the note of the state.
        await _login(http, base, OPS)
        page = (await http.get("/ui/servers/bad")).text
        assert 'id="invalid-flag"' in page and 'name="action" value="disable"' in page
        done = await http.post("/ui/servers/bad/action", data={
            "csrf_token": _csrf(page), "action": "disable", "confirm": "yes"})
        assert done.status_code == 200, done.text
        assert "Recorded: server &#39;bad&#39; is disabled; it stays stopped" in done.text
        assert "once the entry is corrected it stays stopped until enabled" in done.text
        assert 'name="action" value="enable"' in done.text
        assert await _stored_flag(db) is False
        audit = (await http.get("/api/v1/logs/audit")).json()
        done_actions = [(e["action"], e["target"], e["result"]) for e in audit["entries"]
                        if e["target"] == "bad"]
        assert done_actions[:3] == [("disable_server", "bad", "invalid"),  # newest first
                                    ("enable_server", "bad", "invalid"),
                                    ("disable_server", "bad", "invalid")]
        # Corrected: it comes up as recorded (disabled), and enabling it starts it.
        _write(config, memory_entry("bad"))
        report = await gateway.control.reload_config()
        assert report.invalid == {} and report.error is None, report
        row = (await http.get("/api/v1/servers/bad")).json()
        assert (row["state"], row["enabled"]) == ("disabled", False)
        started = (await http.put("/api/v1/servers/bad/enable")).json()
        assert (started["state"], started["enabled"], started["note"]) == (
            "ready", True, None)


async def test_without_a_store_the_refusal_says_how_to_set_the_flag_in_the_entry(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    _write(config, {**BROKEN, "enabled": False})
    gateway = _gateway(config, {})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30, headers=HEADERS) as http:
        refused = await http.put("/api/v1/servers/bad/enable")
        assert refused.status_code == 404
        message = refused.json()["error"]["message"]
        for words in ("server 'bad' is not running: its entry is invalid (",
                      "field 'comand'", "this gateway has no store to keep an enabled flag",
                      "correct the entry, with 'enabled: true' in it, and save the file"):
            assert words in message, (words, message)
        async with Client(f"{base}/mcp", auth=OPS) as client:
            with pytest.raises(ToolError, match="with 'enabled: false' in it"):
                await client.call_tool("gateway_disable_server", {"name": "bad"})
        await _login(http, base, OPS)
        page = (await http.get("/ui/servers/bad")).text
        assert 'id="invalid-flag"' not in page
        assert "and disabled by it (enabled: false)" in page
        assert "remove its 'enabled: false'" in page


async def test_a_stored_registrations_flag_is_kept_on_its_row_and_said_so(
        tmp_path: Path) -> None:
    """A registration whose stored settings no longer validate keeps its settings when
    disabled (the flag on its row); the note says that correcting it with
    gateway_update_server sets the flag from the settings sent."""
    db = await _stored_retired_registration(tmp_path)
    config = tmp_path / "servers.yaml"
    _write(config, memory_entry("bad"))
    gateway = _gateway(config, {"bad": beta_server()}, db=str(db))
    async with Client(gateway.server) as client:
        off = (await client.call_tool("gateway_disable_server",
                                      {"name": "old"})).structured_content
        assert off is not None and (off["state"], off["enabled"]) == ("invalid", False)
        assert off["note"].startswith("recorded: server 'old' is disabled, but its stored "
                                      "settings are invalid (")
        assert off["note"].endswith("correcting them with gateway_update_server sets the "
                                    "flag from the settings sent (send 'enabled: false' to "
                                    "keep this one)")
    store = await SQLiteStore.open(db)
    try:
        [row] = [r for r in await store.servers() if r.name == "old"]
    finally:
        await store.close()
    assert row.enabled is False and row.config is not None and row.config["retired"] == 1
