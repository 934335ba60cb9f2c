"""An admin token restricted to some servers (``servers: [...]``) over MCP: the
``gateway_*`` tools let it change only its own servers, as REST and the dashboard do.

Before, only the inspector tools looked at the restriction: the same token that REST
refused ("may only manage the servers notes") could remove, disable or restart any other
server, import servers, reload the file and rewrite routes through the admin tools.
Real HTTP on 127.0.0.1, the demo servers as real stdio subprocesses, a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import yaml
from fastmcp import Client

from tests.test_asks_routing import asker_http, records
from tests.test_rest import OPS, demo, serving

pytestmark = pytest.mark.anyio

NOTES_ADMIN = "mgw_notes-admin-7d41c0b9e2"
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "carol", "token": NOTES_ADMIN, "scopes": ["admin"], "servers": ["notes"]},
]}


async def test_a_restricted_admin_changes_only_its_own_servers(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, base):
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:

            async def refused(tool: str, arguments: dict[str, Any]) -> str:
                result = await carol.call_tool(tool, arguments, raise_on_error=False)
                assert result.is_error, (tool, result.content)
                return str(result.content[0].text)  # type: ignore[union-attr]

            # Another server is out of reach, worded as for one that does not exist, as
            # REST words it: naming the servers this token may use (it said only
            # "unknown server 'clock'", without what to use instead).
            gone = (await api("GET", "/servers/clock", NOTES_ADMIN)).json()["error"]["message"]
            assert gone == "no server named 'clock' (known: notes)"
            for tool in ("gateway_remove_server", "gateway_disable_server",
                         "gateway_reconnect_server"):
                assert await refused(tool, {"name": "clock"}) == gone
                assert await refused(tool, {"name": "nosuch"}) == gone.replace("clock", "nosuch")
            assert await refused(
                "gateway_update_server", {"name": "clock", "config": demo("clock")}) == gone
            # Told what would let it (it said only "may only manage the servers notes").
            adding = ("the token 'carol' may only manage the servers notes: adding server "
                      "'clock2' needs an admin token without a 'servers' list, or one whose "
                      "list names it")
            assert await refused(
                "gateway_add_server", {"name": "clock2", "config": demo("clock")}) == adding
            rest = await api("POST", "/servers", NOTES_ADMIN,
                             json={"name": "clock2", "config": demo("clock")})
            assert rest.status_code == 403 and rest.json()["error"]["message"] == adding
            # What reaches beyond one server needs an unrestricted token.
            for tool, arguments in [
                ("gateway_import_servers", {"content": "servers:\n  zz:\n    command: x\n"}),
                ("gateway_reload_config", {}),
                ("gateway_add_route", {"pattern": "clock_now", "target": "notes"}),
            ]:
                text = await refused(tool, arguments)
                assert "without a 'servers' list" in text and "notes" in text, text

            # Its own server it manages as before.
            restarted = await carol.call_tool("gateway_reconnect_server", {"name": "notes"})
            assert not restarted.is_error

        listed = (await api("GET", "/servers", OPS)).json()["servers"]
        assert {s["name"]: s["state"] for s in listed} == {"notes": "ready", "clock": "ready"}
        assert (await api("GET", "/routes", OPS)).json()["routes"] == []


async def test_a_restricted_admin_manages_alert_rules_on_its_own_servers_only(
        tmp_path: Path) -> None:
    """One rule on every surface (MCP, REST; the dashboard in test_ui_alerts): a token
    restricted to some servers manages the alert rules on those, as it manages the
    servers themselves; a rule on '*' or on another server needs an unrestricted token.
    Before, the MCP tools refused every alert rule while REST took one on its servers."""
    refusal = "may manage alert rules on its own servers only (notes)"
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, base):
        clock_rule = {"name": "clock-down", "server": "clock", "metric": "not_ready"}
        assert (await api("POST", "/alerts/rules", OPS, json=clock_rule)).status_code == 201
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:

            async def call(tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
                result = await carol.call_tool(tool, arguments, raise_on_error=False)
                return result.is_error, str(result.content[0].text)  # type: ignore[union-attr]

            mine = {"name": "notes-down", "server": "notes", "metric": "not_ready"}
            assert await call("gateway_add_alert_rule", {"rule": mine}) == (False, ANY)
            assert (await call("gateway_update_alert_rule", {
                "name": "notes-down", "rule": {**mine, "severity": "critical"}}))[0] is False
            for tool, arguments in [
                ("gateway_add_alert_rule", {"rule": {"name": "all", "metric": "not_ready"}}),
                ("gateway_add_alert_rule", {"rule": {**clock_rule, "name": "clock-2"}}),
                ("gateway_update_alert_rule", {"name": "notes-down", "rule": {
                    **mine, "server": "clock"}}),
            ]:
                failed, text = await call(tool, arguments)
                assert failed and refusal in text, (tool, text)
            # Another server's rule is not listed to it: absent, as REST answers (it was
            # refused "not on server 'clock'", naming the server).
            for tool, arguments in [
                ("gateway_update_alert_rule", {"name": "clock-down", "rule": {
                    **clock_rule, "server": "notes"}}),
                ("gateway_delete_alert_rule", {"name": "clock-down"}),
            ]:
                assert await call(tool, arguments) == (
                    True, "no alert rule named 'clock-down'"), tool
            assert (await call("gateway_delete_alert_rule", {"name": "notes-down"}))[0] is False

        # REST: the same rule, the same words (another server's rule is not shown: 404).
        star = await api("POST", "/alerts/rules", NOTES_ADMIN,
                         json={"name": "all", "metric": "not_ready"})
        assert star.status_code == 403 and refusal in star.json()["error"]["message"]
        other = await api("POST", "/alerts/rules", NOTES_ADMIN,
                          json={**clock_rule, "name": "clock-2"})
        assert other.status_code == 403 and refusal in other.json()["error"]["message"]
        assert (await api("POST", "/alerts/rules", NOTES_ADMIN, json=mine)).status_code == 201
        moved = await api("PUT", "/alerts/rules/notes-down", NOTES_ADMIN,
                          json={**mine, "server": "clock"})
        assert moved.status_code == 403 and refusal in moved.json()["error"]["message"]
        assert (await api("DELETE", "/alerts/rules/clock-down", NOTES_ADMIN)).status_code == 404
        assert (await api("DELETE", "/alerts/rules/notes-down", NOTES_ADMIN)).status_code == 200

        rules = (await api("GET", "/alerts/rules", OPS)).json()["rules"]
        assert [r["rule"]["name"] for r in rules] == ["clock-down"]
        audit = (await api("GET", "/logs/audit", OPS)).json()["entries"]
        assert [(e["actor"], e["action"]) for e in audit if e["target"] == "notes-down"] == [
            ("carol", "delete_alert_rule"), ("carol", "add_alert_rule"),
            ("carol", "delete_alert_rule"), ("carol", "update_alert_rule"),
            ("carol", "add_alert_rule")]


async def test_a_restricted_admin_reads_only_its_own_servers(tmp_path: Path) -> None:
    """The read-only admin tools show a token limited to some servers what REST and the
    dashboard show it: its servers.  Before, gateway_server_detail, gateway_calls,
    gateway_inspector_history, gateway_export_servers, gateway_audit (and every list)
    gave it every other server's status, stderr tail, records and config; the export is
    cut to its servers (it was refused), the audit log, which cannot be, is refused."""
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, base):
        async with Client(f"{base}/mcp", auth=OPS) as ops:  # records on both servers
            await ops.call_tool("clock_add", {"a": 1, "b": 2})
            await ops.call_tool("gateway_inspect_call_tool",
                                {"name": "clock", "tool": "add", "arguments": {"a": 1, "b": 2}})
            route = {"pattern": "clock_now", "target": "clock"}
            assert not (await ops.call_tool("gateway_add_route", route)).is_error
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:

            async def read(tool: str, arguments: dict[str, Any] | None = None) -> str:
                result = await carol.call_tool(tool, arguments or {}, raise_on_error=False)
                text = str(result.structured_content or result.content[0].text)  # type: ignore[union-attr]
                return ("refused: " if result.is_error else "") + text

            for tool, arguments in [("gateway_server_detail", {"name": "clock"}),
                                    ("gateway_calls", {"server": "clock"}),
                                    ("gateway_inspector_history", {"name": "clock"}),
                                    ("gateway_health_history", {"name": "clock"})]:
                assert await read(tool, arguments) == (
                    "refused: no server named 'clock' (known: notes)")
            text = await read("gateway_audit")
            assert text.startswith("refused: ") and "without a 'servers' list" in text
            exported = await carol.call_tool("gateway_export_servers", {})
            assert list(yaml.safe_load(exported.data)["servers"]) == ["notes"], exported
            seen = [await read(tool) for tool in (
                "gateway_list_servers", "gateway_health", "gateway_calls",
                "gateway_inspector_history", "gateway_health_history", "gateway_stats",
                "gateway_list_routes", "gateway_pin_status", "gateway_alerts")]
            assert all(not text.startswith("refused") for text in seen), seen
            assert not [text for text in seen if "clock" in text], seen
            assert "'notes'" in seen[0] and "'notes'" in seen[1]
        # REST says the same (the reference these follow).
        assert (await api("GET", "/servers/clock", NOTES_ADMIN)).status_code == 404


async def test_a_restricted_admin_cannot_make_the_gateway_run_a_new_command(
        tmp_path: Path) -> None:
    """A stdio server is a command run as the gateway's user: one that reads
    /proc/<gateway>/environ has every token of the gateway.  An admin limited to one
    server pointed that server at 'sh -c ...' and read the unrestricted ops token;
    now changing a command needs an unrestricted token.  Settings that leave the program
    as it is, and HTTP servers, stay its to change."""
    stolen = tmp_path / "stolen"
    grab = {"command": "/bin/sh", "args": ["-c", f"cat /proc/$PPID/environ > {stolen}"]}
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, base):
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:
            refused = await carol.call_tool("gateway_update_server",
                                            {"name": "notes", "config": grab},
                                            raise_on_error=False)
            assert refused.is_error
            assert "needs an admin token without a 'servers' list" in str(refused.content)
            changed_args = {**demo("notes"), "args": [*demo("notes")["args"], "--extra"]}
            assert (await carol.call_tool("gateway_update_server", {
                "name": "notes", "config": changed_args}, raise_on_error=False)).is_error
            same = await carol.call_tool("gateway_update_server", {"name": "notes", "config": {
                **demo("notes"), "timeouts": {"call": 20}}}, raise_on_error=False)
            assert not same.is_error, same.content  # the same program: its to tune
        put = await api("PUT", "/servers/notes", NOTES_ADMIN, json={"config": grab})
        assert put.status_code == 403, put.text
        assert "needs an admin token without a 'servers' list" in put.json()["error"]["message"]
        http = await api("PUT", "/servers/notes", NOTES_ADMIN,
                         json={"config": {"url": "http://127.0.0.1:9/mcp"}})
        assert http.status_code == 200, http.text  # no program: as before
        assert (await api("DELETE", "/servers/notes", NOTES_ADMIN)).status_code == 200
        add = await api("POST", "/servers", NOTES_ADMIN, json={"name": "notes", "config": grab})
        assert add.status_code == 403, add.text  # a new command, even under its own name
        assert (await api("POST", "/servers", OPS, json={"name": "notes", "config": demo(
            "notes")})).status_code == 201  # an unrestricted admin runs commands
    assert not stolen.exists()


async def test_a_restricted_admin_sees_only_its_own_servers_through_the_read_only_tools(
        tmp_path: Path) -> None:
    """The read-only ``gateway_*`` tools answered a token restricted to some servers about
    every server: another team's server's settings and stderr (gateway_server_detail), its
    calls with their arguments (gateway_calls), statistics, health history, alert rules,
    routes, the audit log and an export; REST and the dashboard showed it only its own."""
    auth = {"tokens": [*AUTH["tokens"], {"name": "dave", "token": "mgw_dave-two-servers-9c1",
                                         "scopes": ["admin"], "servers": ["notes", "later"]}]}
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": auth}) as (_api, base):
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            await ops.call_tool("clock_add", {"a": 1, "b": 2})
            await ops.call_tool("notes_add_note", {"title": "t", "body": "b"})
            await ops.call_tool("gateway_add_alert_rule", {"rule": {
                "name": "clock-down", "server": "clock", "metric": "not_ready"}})
            await ops.call_tool("gateway_add_route", {"pattern": "clock_now", "target": "clock"})
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:

            async def answer(tool: str, arguments: dict[str, Any] | None = None) -> str:
                result = await carol.call_tool(tool, arguments or {}, raise_on_error=False)
                return str(result.content[0].text)  # type: ignore[union-attr]

            for tool, arguments in [
                ("gateway_list_servers", {}), ("gateway_health", {}), ("gateway_calls", {}),
                ("gateway_stats", {}), ("gateway_stats", {"group_by": "tool"}),
                ("gateway_stats", {"group_by": "server"}), ("gateway_health_history", {}),
                ("gateway_inspector_history", {}), ("gateway_pin_status", {}),
                ("gateway_alerts", {}), ("gateway_alert_rules", {}),
                ("gateway_alert_history", {}), ("gateway_list_routes", {}),
                ("gateway_server_detail", {"name": "notes"}),
            ]:
                text = await answer(tool, arguments)
                assert "notes" in text or tool in (
                    "gateway_alerts", "gateway_alert_rules", "gateway_alert_history",
                    "gateway_list_routes", "gateway_inspector_history"), (tool, text)
                assert "clock" not in text, (tool, text)
            for tool, key in [("gateway_server_detail", "name"), ("gateway_calls", "server"),
                              ("gateway_stats", "server"), ("gateway_health_history", "name"),
                              ("gateway_pin_status", "server")]:
                assert await answer(tool, {key: "clock"}) == (
                    "no server named 'clock' (known: notes)"), tool
            text = await answer("gateway_audit")
            assert "without a 'servers' list" in text and "clock" not in text, text
            assert "notes" in (text := await answer("gateway_export_servers")), text
            assert "clock" not in text, text
        async with Client(f"{base}/mcp", auth="mgw_dave-two-servers-9c1") as dave:
            total = await dave.call_tool("gateway_stats", {})  # the total over its servers
            assert [g["key"] for g in total.structured_content["groups"]] == [""]  # type: ignore[index]
            grouped = await dave.call_tool("gateway_stats", {"group_by": "server"})
            assert [g["key"] for g in grouped.structured_content["groups"]] == ["notes"]  # type: ignore[index]


async def test_an_escaped_caller_reference_is_refused_to_a_restricted_admin(
        tmp_path: Path) -> None:
    """``$${caller.token}`` (an escaped ``${``) expands to ``${caller.token}``, which the
    gateway fills in with each caller's bearer token: it is refused as the reference
    itself is.  Before, only the reference as written was checked against ``env_allow``:
    an admin restricted to one server pointed it at its own URL with that header, and
    every caller's token reached it, an unrestricted admin's too (a takeover)."""
    record = tmp_path / "asker.jsonl"
    async with asker_http(tmp_path, record) as url, serving(
            tmp_path, {"notes": demo("notes")}, auth=False,
            options={"auth": AUTH}) as (api, base):
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:
            for header in ("Bearer $${caller.token}", "$${caller.claims.sub}"):
                grab = {"url": url, "protocol": "legacy", "headers": {"Authorization": header}}
                rest = await api("PUT", "/servers/notes", NOTES_ADMIN, json={"config": grab})
                assert rest.status_code == 422, (header, rest.text)
                assert "may not be used by a runtime registration" in rest.text
                result = await carol.call_tool("gateway_update_server", {
                    "name": "notes", "config": grab}, raise_on_error=False)
                assert result.is_error, result.content
                assert "may not be used by a runtime registration" in str(result.content)
        async with Client(f"{base}/mcp", auth=OPS) as ops:  # notes is still the demo
            assert not (await ops.call_tool("notes_list_notes", {})).is_error
    assert [r for r in records(record) if r["event"] == "whoami"] == []
