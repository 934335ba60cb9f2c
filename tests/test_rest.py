"""The REST management API /api/v1 over real HTTP on 127.0.0.1, with the demo upstreams
(notes, clock) as real stdio subprocesses and a real SQLite store."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.store import SQLiteStore
from tests.fixtures import WITHIN, make_gateway, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-planted-4b1d9c0e7f2a5d83"  # admin
ALICE = "mgw_alice-only-notes-0a9f7e3c"  # tools, servers [notes]
BOB = "mgw_bob-tools-everything-5c2e"  # tools
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "alice", "token": ALICE, "scopes": ["tools"], "servers": ["notes"]},
    {"name": "bob", "token": BOB, "scopes": ["tools"]},
]}


def demo(name: str) -> dict[str, Any]:
    return {"command": "${GATEWAY_PYTHON}", "args": ["-m", f"fast_mcp_gateway.demo.{name}"]}


class Api:
    """An HTTP client of /api/v1 that keeps every response body (to search for leaks)."""

    def __init__(self, http: httpx2.AsyncClient, base: str) -> None:
        self.http, self.base, self.seen = http, base, []

    async def __call__(self, method: str, path: str, token: str | None = None,
                       **kw: Any) -> httpx2.Response:
        headers = dict(kw.pop("headers", {}))
        if "content" in kw:  # raw JSON text (json= sets the type itself)
            headers.setdefault("Content-Type", "application/json")
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.http.request(method, f"{self.base}/api/v1{path}",
                                           headers=headers, **kw)
        self.seen.append(f"{response.headers}\n{response.text}")
        return response


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, servers: dict[str, Any], *, auth: bool = True,
                  options: dict[str, Any] | None = None, **settings: Any
                  ) -> AsyncIterator[tuple[Api, str]]:
    opts = dict(options or {})
    if auth:
        opts["auth"] = AUTH
    gateway = make_gateway(servers, options=opts, db=tmp_path / "gateway.db", **settings)
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        yield Api(http, base), base


def assert_error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


async def test_servers_lifecycle_as_an_admin_token(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _base):
        listed = (await api("GET", "/servers", OPS)).json()
        assert [s["name"] for s in listed["servers"]] == ["notes"] and listed["ready"] == 1

        added = await api("POST", "/servers", OPS, json={"name": "clock", "config": demo("clock")})
        assert added.status_code == 201 and added.json()["added"] == ["clock"]
        again = await api("POST", "/servers", OPS, json={"name": "clock", "config": demo("clock")})
        assert "already exists" in assert_error(again, 409, "conflict")["message"]

        detail = (await api("GET", "/servers/clock", OPS)).json()
        assert detail["state"] == "ready" and "config" in detail and "stderr_tail" in detail
        tools = (await api("GET", "/servers/clock/tools", OPS)).json()
        assert {"clock_now", "clock_add"} <= {t["exposed"] for t in tools["items"]}
        resources = (await api("GET", "/servers/notes/resources", OPS)).json()["items"]
        assert {r["kind"] for r in resources} == {"resource", "resource_template"}
        prompts = (await api("GET", "/servers/notes/prompts", OPS)).json()["items"]
        assert [p["original"] for p in prompts] == ["summarize_notes"]

        disabled = await api("PUT", "/servers/clock/disable", OPS)
        assert disabled.json()["state"] == "disabled" and not disabled.json()["enabled"]
        enabled = await api("PUT", "/servers/clock/enable", OPS)
        assert enabled.json()["state"] == "ready"
        restarted = await api("POST", "/servers/clock/restart", OPS)
        assert restarted.status_code == 200 and restarted.json()["state"] == "ready"
        updated = await api("PUT", "/servers/clock", OPS,
                            json={"config": {**demo("clock"), "description": "time"}})
        # A description is taken as the server runs (test_update_in_place.py).
        assert updated.json()["updated"] == ["clock"] and updated.json()["restarted"] == []
        assert (await api("GET", "/servers/clock", OPS)).json()["description"] == "time"

        # Validation: the field is named; a bad config names its field too.
        missing = assert_error(await api("POST", "/servers", OPS, json={"config": {}}),
                               422, "validation_error")
        assert [f["field"] for f in missing["details"]["fields"]] == ["name"]
        invalid = assert_error(await api("POST", "/servers", OPS, json={
            "name": "bad", "config": {"command": "x", "timeout": "soon"}}), 422, "invalid_config")
        assert invalid["details"]["issues"] and "bad" in invalid["message"]
        assert_error(await api("POST", "/servers", OPS, content=b"{not json"), 400,
                     "invalid_json")
        assert_error(await api("PUT", "/servers/nope/enable", OPS), 404, "not_found")
        assert_error(await api("DELETE", "/servers/nope", OPS), 404, "not_found")

        removed = await api("DELETE", "/servers/clock", OPS)
        assert removed.json()["removed"] == ["clock"]
        assert_error(await api("GET", "/servers/clock", OPS), 404, "not_found")

        audit = (await api("GET", "/logs/audit", OPS)).json()["entries"]
        actions = {(e["actor"], e["action"], e["target"]) for e in audit}
        assert {("ops", "add_server", "clock"), ("ops", "disable_server", "clock"),
                ("ops", "remove_server", "clock")} <= actions

    # The admin token never shows up: not in a response, a log line or the store's files.
    assert all(OPS not in text for text in api.seen)
    assert OPS not in caplog.text
    files = [f for f in tmp_path.iterdir() if f.is_file()]  # noqa: ASYNC240 (test epilogue)
    assert any(f.name == "gateway.db" for f in files)
    for file in files:
        assert OPS.encode() not in file.read_bytes(), file


async def test_a_server_name_with_a_slash_is_refused_where_it_could_never_be_reached(
        tmp_path: Path) -> None:
    """POST accepted 'a/b', and then GET, PUT and DELETE /servers/a%2Fb all answered 404
    (the path is decoded before routing): REST could add what it could not remove."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, base):
        refused = assert_error(await api("POST", "/servers", OPS, json={
            "name": "a/b", "config": demo("clock")}), 422, "invalid_config")
        assert "may not contain '/'" in refused["message"] and "'a-b'" in refused["message"]
        for dots in (".", ".."):  # GET /servers/.. would be GET /api/v1/: never reached
            refused = assert_error(await api("POST", "/servers", OPS, json={
                "name": dots, "config": demo("clock")}), 422, "invalid_config")
            assert f"'{dots}' cannot be a server name" in refused["message"]
        async with Client(f"{base}/mcp", auth=OPS) as client:
            imported = await client.call_tool("gateway_import_servers", {
                "content": '{"mcpServers": {"clock": {"command": "x"}, "x/y": {"command": "y"}}}'},
                raise_on_error=False)
            assert imported.is_error and "may not contain '/'" in str(imported.content)
        listed = (await api("GET", "/servers", OPS)).json()
        assert [s["name"] for s in listed["servers"]] == ["notes"]  # the import: none of it


async def test_a_call_record_names_the_gateway_that_served_it(tmp_path: Path) -> None:
    """Several gateways share one call log: the store keeps each record's instance, and
    'mcp-gateway logs --json' showed it, but REST and gateway_calls left it out."""
    async with serving(tmp_path, {"clock": demo("clock")}, instance_id="gw-7") as (api, base):
        async with Client(f"{base}/mcp", auth=OPS) as client:
            await client.call_tool("clock_add", {"a": 1, "b": 2})
            tool = await client.call_tool("gateway_calls", {})
        (record,) = (await api("GET", "/logs/invocations", OPS)).json()["calls"]
        assert record["instance_id"] == "gw-7"
        assert [c["instance_id"] for c in tool.structured_content["calls"]] == ["gw-7"]  # type: ignore[index]


async def test_a_records_arguments_are_kept_up_to_a_bound(tmp_path: Path) -> None:
    """A call's arguments were stored whole in its record: a ``tools`` token's megabytes
    per call, each page of records read back whole (500 of them: gigabytes)."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, base):
        async with Client(f"{base}/mcp", auth=ALICE) as client:
            await client.call_tool("notes_search_notes", {"query": "Z" * 200_000})
            await client.call_tool("notes_search_notes", {"query": "small"})

        calls: list[dict[str, Any]] = []
        with anyio.fail_after(WITHIN):
            while len(calls) < 2:  # written off the call path: wait for both
                page = await api("GET", "/logs/invocations", ALICE,
                                 params={"oldest_first": "true"})
                calls = page.json()["calls"]
        big, small = calls
        assert len(big["arguments"]) < 32 * 1024 + 100  # MAX_ARGUMENTS, and the note
        assert big["arguments"].startswith('{"query": "ZZZ')
        assert big["arguments"].endswith("[cut by the gateway: 200013 characters in all]")
        assert small["arguments"] == '{"query": "small"}'


async def test_routes_logs_stats_and_inspector(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")}) as (api, base):
        async with Client(f"{base}/mcp", auth=BOB) as client:  # bob reads his calls below
            for title in ("a", "b", "c"):
                await client.call_tool("notes_add_note", {"title": title})
            await client.call_tool("clock_add", {"a": 1, "b": 2})

        route = await api("POST", "/routes", OPS, json={"pattern": "notes_list_*",
                                                        "target": "clock", "match": "wildcard"})
        assert route.status_code == 201
        rid = route.json()["id"]
        assert (await api("GET", "/routes", BOB)).json()["routes"][0]["target"] == "clock"
        changed = await api("PUT", f"/routes/{rid}", OPS,
                            json={"pattern": "notes_list_notes", "target": "notes",
                                  "priority": 5.0})  # JSON's 5.0 is the integer 5
        listed = (await api("GET", "/routes", OPS)).json()["routes"]
        assert changed.json() == {"id": rid, "pattern": "notes_list_notes", "match": "exact",
                                  "target": "notes", "priority": 5,
                                  "created_at": listed[0]["created_at"]}  # as stored
        assert isinstance(listed[0]["created_at"], float)
        # A rule as GET lists it is accepted back (its id and created_at included) ...
        again = await api("PUT", f"/routes/{rid}", OPS, json=listed[0] | {"priority": 6})
        assert again.status_code == 200, again.text
        assert again.json() == listed[0] | {"priority": 6}
        # ... but not under another rule's id.
        moved = assert_error(await api("PUT", f"/routes/{rid}", OPS, json=listed[0] | {
            "id": rid + 7}), 409, "conflict")
        assert f"/api/v1/routes/{rid + 7}" in moved["message"], moved
        assert (await api("DELETE", f"/routes/{rid}", OPS)).json() == {"deleted": rid}
        gone = assert_error(await api("DELETE", f"/routes/{rid}", OPS), 404, "not_found")
        assert gone["message"] == f"no route #{rid}; GET /api/v1/routes lists the rules " \
                                  "with their ids"  # it said "no route #1" alone
        bad_id = assert_error(await api("DELETE", "/routes/zero", OPS), 422, "validation_error")
        assert bad_id["details"]["in"] == "path"
        # Names the parameter and where ids are found (it said "invalid path: must be a
        # whole number (without quotes)", field "path").
        assert bad_id["details"]["fields"][0]["field"] == "id"
        assert bad_id["message"] == ("invalid path: id must be a whole number (without "
                                     "quotes); GET /api/v1/routes lists the rules with "
                                     "their ids")
        assert_error(await api("POST", "/routes", OPS, json={"pattern": "x", "target": "nope"}),
                     404, "not_found")

        first = (await api("GET", "/logs/invocations", BOB,
                           params={"server": "notes", "limit": 2})).json()
        assert [c["exposed"] for c in first["calls"]] == ["notes_add_note"] * 2
        assert first["next_cursor"]
        rest = (await api("GET", "/logs/invocations", BOB,
                          params={"server": "notes", "cursor": first["next_cursor"]})).json()
        assert len(rest["calls"]) == 1 and rest["next_cursor"] is None
        again = (await api("GET", "/logs/invocations", BOB,  # an empty cursor: the first page
                           params={"server": "notes", "limit": 2, "cursor": ""})).json()
        assert again["next_cursor"] == first["next_cursor"]
        cursor = assert_error(await api("GET", "/logs/invocations", BOB,
                                        params={"cursor": "garbage"}), 422, "validation_error")
        assert cursor["details"]["fields"][0]["field"] == "cursor"
        status = assert_error(await api("GET", "/logs/invocations", BOB,
                                        params={"status": "great"}), 422, "validation_error")
        assert status["details"]["fields"][0]["field"] == "status"
        # A misspelt filter is refused, not ignored (it answered every record); names
        # starting with '_' (cache busters) are let through.
        typo = assert_error(await api("GET", "/logs/invocations", BOB,
                                      params={"sever": "notes"}), 422, "validation_error")
        assert typo["details"]["fields"][0]["field"] == "sever"
        assert "did you mean 'server'" in typo["message"], typo["message"]
        busted = await api("GET", "/logs/invocations", BOB, params={"server": "notes", "_": "1"})
        # A filter given twice is refused too (the last one was used, unsaid: clock's
        # records for '?server=notes&server=clock').
        twice = assert_error(await api("GET", "/logs/invocations", BOB, params=[
            ("server", "notes"), ("server", "clock"), ("_", "1"), ("_", "2")]),
            422, "validation_error")
        assert twice["message"] == ("invalid query: server is given 2 times; give it once "
                                    "(each parameter takes one value)")
        assert twice["details"]["fields"][0]["field"] == "server"
        assert {c["server"] for c in busted.json()["calls"]} == {"notes"}
        health = (await api("GET", "/logs/health", BOB)).json()
        assert {r["server"] for r in health["records"]} >= {"notes", "clock"}

        overview = (await api("GET", "/stats/overview", BOB)).json()
        assert {g["key"]: g["count"] for g in overview["groups"]} == {"notes": 3, "clock": 1}
        per_tool = (await api("GET", "/stats/servers/notes", BOB)).json()
        assert [(g["key"], g["count"]) for g in per_tool["groups"]] == [("notes_add_note", 3)]
        one = (await api("GET", "/stats/tools/clock_add", BOB)).json()
        assert [(g["key"], g["count"]) for g in one["groups"]] == [("clock_add", 1)]
        assert_error(await api("GET", "/stats/tools/nope", BOB), 404, "not_found")

        called = await api("POST", "/debug/call-tool", OPS,
                           json={"server": "clock", "tool": "add", "arguments": {"a": 2, "b": 3}})
        assert called.json()["status"] == "success"
        assert called.json()["result"]["structuredContent"] == {"result": 5.0}
        listing = (await api("GET", "/debug/list-tools", OPS, params={"server": "notes"})).json()
        assert "add_note" in {t["name"] for t in listing["tools"]}
        read = (await api("GET", "/debug/get-resource", OPS,
                          params={"server": "notes", "uri": "notes://note/1"})).json()
        assert read["status"] == "success" and "Welcome" in str(read["result"])
        hist = (await api("GET", "/debug/history", OPS)).json()["entries"]
        assert [e["operation"] for e in hist] == ["resources/read", "tools/call"]
        # 'name' (the MCP tool's parameter) works as well as 'server'.
        by_name = await api("POST", "/debug/call-tool", OPS,
                            json={"name": "clock", "tool": "add", "arguments": {"a": 1, "b": 1}})
        assert by_name.json()["result"]["structuredContent"] == {"result": 2.0}
        neither = assert_error(await api("POST", "/debug/call-tool", OPS,
                                         json={"tool": "add"}), 422, "validation_error")
        assert "'server' (or 'name')" in str(neither)
        both = assert_error(await api("POST", "/debug/call-tool", OPS, json={
            "server": "clock", "name": "clock", "tool": "add"}), 422, "validation_error")
        assert "not both" in str(both)
        spec = (await api("GET", "/openapi.json", OPS)).json()["components"]["schemas"]
        assert {"server", "name"} <= set(spec["CallToolIn"]["properties"])
        assert spec["CallToolIn"]["oneOf"] == [{"required": ["server"]}, {"required": ["name"]}]
        assert_error(await api("GET", "/debug/list-tools", OPS,
                               params={"server": "notes", "replica": 7}), 404, "not_found")


async def test_tokens_scopes_and_server_restrictions(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")}) as (api, base):
        none = assert_error(await api("GET", "/servers"), 401, "unauthorized")
        assert "Bearer" in none["message"]
        assert (await api("GET", "/servers")).headers["www-authenticate"] == "Bearer"
        bad = await api("GET", "/servers", "mgw_wrong-token-0000000000")
        assert_error(bad, 401, "unauthorized")
        assert bad.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="the bearer token is not valid '
            "(unknown, expired or not for this gateway): send one of its tokens ('mcp-gateway "
            "token new' makes one, gateway.auth.tokens lists them by digest)\"")
        basic = await api("GET", "/servers", headers={"Authorization": f"Basic {OPS}"})
        assert_error(basic, 401, "unauthorized")

        refused = assert_error(await api("POST", "/servers", BOB,
                                         json={"name": "x", "config": demo("clock")}),
                               403, "forbidden")
        assert refused["details"] == {"required_scope": "admin"} and "'admin'" in refused["message"]
        assert_error(await api("POST", "/debug/call-tool", BOB,
                               json={"server": "notes", "tool": "list_notes"}), 403, "forbidden")
        assert_error(await api("GET", "/logs/audit", BOB), 403, "forbidden")
        assert_error(await api("GET", "/debug/history", BOB), 403, "forbidden")

        # alice sees notes only; clock does not exist for her.
        mine = (await api("GET", "/servers", ALICE)).json()
        assert [s["name"] for s in mine["servers"]] == ["notes"] and mine["total"] == 1
        status = (await api("GET", "/servers/notes", ALICE)).json()
        assert "config" not in status and "stderr_tail" not in status  # tools scope: status only
        for path in ("/servers/clock", "/servers/clock/tools", "/stats/servers/clock",
                     "/stats/tools/clock_add"):
            hidden = assert_error(await api("GET", path, ALICE), 404, "not_found")
            assert "clock" not in hidden["message"].partition("known:")[2]
        assert_error(await api("GET", "/logs/invocations", ALICE, params={"server": "clock"}),
                     404, "not_found")
        async with Client(f"{base}/mcp", auth=OPS) as client:
            await client.call_tool("clock_add", {"a": 1, "b": 1})
            await client.call_tool("notes_list_notes", {})
        async with Client(f"{base}/mcp", auth=BOB) as client:
            await client.call_tool("clock_add", {"a": 2, "b": 2})
            await client.call_tool("notes_list_notes", {})
        # A token without scope admin reads its own calls only (ops's and bob's on her
        # server are theirs), and bob his own on every server; ops, an admin, all.
        assert (await api("GET", "/logs/invocations", ALICE)).json()["calls"] == []
        calls = (await api("GET", "/logs/invocations", BOB)).json()["calls"]
        assert [(c["client"], c["server"]) for c in calls] == [("bob", "notes"),
                                                               ("bob", "clock")]
        calls = (await api("GET", "/logs/invocations", OPS)).json()["calls"]
        assert [c["client"] for c in calls] == ["bob", "bob", "ops", "ops"]
        overview = (await api("GET", "/stats/overview", ALICE)).json()
        assert [g["key"] for g in overview["groups"]] == ["notes"]
        assert set(overview["inflight"]) == {"notes"}

        assert (await api("GET", "/openapi.json")).status_code == 200  # describes, holds no data
        evil = await api("GET", "/servers", OPS, headers={"Host": "evil.example.com"})
        assert evil.status_code == 421  # the DNS-rebinding guard covers the API too
        assert "--allowed-host evil.example.com" in assert_error(
            evil, 421, "misdirected_request")["message"]
    assert all(token not in text for text in api.seen for token in (OPS, ALICE, BOB))


async def test_without_auth_reads_are_anonymous_and_mutations_refused(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False) as (api, _base):
        assert (await api("GET", "/servers")).json()["total"] == 1
        refused = assert_error(await api("DELETE", "/servers/notes"), 403, "forbidden")
        assert "gateway.auth.tokens" in refused["message"]
        assert "mcp-gateway token new" in refused["message"]
        assert_error(await api("GET", "/logs/audit"), 403, "forbidden")
        assert (await api("GET", "/servers")).json()["total"] == 1  # nothing was removed


async def test_allow_unauthenticated_admin_lets_anonymous_manage(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       allow_unauthenticated_admin=True) as (api, _base):
        assert (await api("PUT", "/servers/notes/disable")).json()["state"] == "disabled"
        audit = (await api("GET", "/logs/audit")).json()["entries"]
        assert [(e["actor"], e["action"]) for e in audit] == [("anonymous", "disable_server")]


async def test_without_auth_a_change_from_another_pages_origin_is_refused(
        tmp_path: Path) -> None:
    """The Host/Origin guard lets every loopback origin through: a page on any port of
    this machine (http://localhost:3000) could POST ``text/plain`` (no CORS preflight)
    to a gateway run with --allow-unauthenticated-admin and register a command.  A
    change from a web page needs this gateway's own origin there; a program sends none."""
    leaked = tmp_path / "ran"
    grab = json.dumps({"name": "grab", "config": {"command": "${GATEWAY_PYTHON}", "args": [
        "-c", f"open({str(leaked)!r}, 'w')"]}})
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       allow_unauthenticated_admin=True) as (api, base):
        page = {"Origin": "http://localhost:3000", "Content-Type": "text/plain"}
        refused = assert_error(await api("POST", "/servers", headers=page, content=grab),
                               403, "forbidden_origin")
        assert "'http://localhost:3000'" in refused["message"]
        assert "gateway.auth.tokens" in refused["message"]
        assert_error(await api("POST", "/servers/notes/restart", headers=page), 403,
                     "forbidden_origin")
        assert not leaked.exists()
        assert (await api("GET", "/servers", headers=page)).status_code == 200  # reads
        own = {"Origin": base}  # the gateway's own pages, and programs (no Origin)
        assert (await api("PUT", "/servers/notes/disable", headers=own)).status_code == 200
        assert (await api("PUT", "/servers/notes/enable")).status_code == 200
        audit = (await api("GET", "/logs/audit")).json()["entries"]
        assert [e["action"] for e in audit] == ["enable_server", "disable_server"]


async def test_gateway_admin_read_only_refuses_rest_mutations(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes")},
                       options={"admin": "read_only"}) as (api, _base):
        assert (await api("GET", "/logs/audit", OPS)).status_code == 200
        off = assert_error(await api("PUT", "/servers/notes/disable", OPS), 403,
                           "admin_disabled")
        assert "read_only" in off["message"]


async def test_the_openapi_document_is_generated_from_the_models(tmp_path: Path) -> None:
    async with serving(tmp_path, {}) as (api, _base):
        doc = (await api("GET", "/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert len(operations) == 34 and ("PUT", "/servers/{name}/disable") in operations
    post = doc["paths"]["/servers"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServerCreate"}
    assert set(post["responses"]) >= {"201", "401", "403", "409", "422"}
    schemas = doc["components"]["schemas"]
    assert {"ServerList", "ServerStatus", "CallPage", "StatsReport", "ErrorBody"} <= set(schemas)
    assert doc["security"] == [{"bearer": []}]


async def test_an_add_whose_server_does_not_start_is_a_422_and_not_kept(
        tmp_path: Path) -> None:
    """POST /servers answered 201 'added' for a server that exits at start, and kept it;
    DELETE of a stored registration the gateway ignores answered 404."""
    broken = {"command": "${GATEWAY_PYTHON}", "args": ["-c", "import sys; sys.exit('boom')"]}
    store = await SQLiteStore.open(tmp_path / "gateway.db")  # what serving() opens
    try:  # a registration that does not validate: ignored at start, removable
        await store.put_server("stale", {"comand": "python"}, True)
    finally:
        await store.close()
    async with serving(tmp_path, {}) as (api, _base):
        assert (await api("DELETE", "/servers/stale", OPS)).json()["removed"] == ["stale"]
        assert_error(await api("DELETE", "/servers/stale", OPS), 404, "not_found")
        refused = await api("POST", "/servers", OPS, json={"name": "broken", "config": broken})
        error = assert_error(refused, 422, "invalid_config")
        assert "server 'broken': did not start, so it was not added: " in error["message"]
        assert "boom" in error["message"]
        assert (await api("GET", "/servers", OPS)).json()["servers"] == []


async def test_a_body_nested_too_deep_or_holding_nan_is_a_400_not_a_500(tmp_path: Path) -> None:
    """A body nested ~1000 deep was a 500 (json.loads' RecursionError) on every POST and
    PUT; nested a few hundred deep it parsed and the inspector's audit overflowed the
    stack (500); NaN (not JSON) reached the tool as null."""
    def call(arguments: str) -> str:
        return f'{{"server": "notes", "tool": "add_note", "arguments": {arguments}}}'

    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _base):
        for depth in (201, 600, 5000):
            nested = "[" * depth + "]" * depth
            for method, path, body in [
                    ("POST", "/debug/call-tool", call(f'{{"title": "t", "body": {nested}}}')),
                    ("POST", "/servers", f'{{"name": "deep", "config": {nested}}}'),
                    ("PUT", "/routes/1", f'{{"pattern": {nested}}}'),
                    ("POST", "/alerts/rules", f'{{"name": "r", "when": {nested}}}')]:
                error = assert_error(await api(method, path, OPS, content=body), 400,
                                     "invalid_json")
                assert "nested more than 200 levels deep" in error["message"], error
                assert "send flatter data" in error["message"]
        for constant in ("NaN", "Infinity", "-Infinity"):
            error = assert_error(await api("POST", "/debug/call-tool", OPS, content=call(
                f'{{"title": {constant}, "body": "b"}}')), 400, "invalid_json")
            assert f"{constant} is not a JSON value" in error["message"], error
        # As deep as an MCP server reads is still served (the tool refuses a list body).
        nested = "[" * 150 + "]" * 150
        served = await api("POST", "/debug/call-tool", OPS,
                           content=call(f'{{"title": "t", "body": {nested}}}'))
        assert served.status_code == 200 and served.json()["status"] == "error", served.text
        assert (await api("GET", "/servers/notes", OPS)).json()["state"] == "ready"


async def test_an_unknown_tools_statistics_say_what_names_a_tool(tmp_path: Path) -> None:
    """GET /stats/tools/<name> of a name with no tool answered "no tool named 'x'"
    only; now the closest of the caller's tools and where the names are listed."""
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")}) as (
            api, _base):
        typo = assert_error(await api("GET", "/stats/tools/notes_add_not", OPS), 404,
                            "not_found")["message"]
        assert typo == ("no tool named 'notes_add_not': did you mean 'notes_add_note'? a tool "
                        "is named by its exposed name, as GET /api/v1/servers/{name}/tools "
                        "lists them")
        # A restricted token is told of its own tools only.
        hidden = assert_error(await api("GET", "/stats/tools/clock_no", ALICE), 404,
                              "not_found")["message"]
        assert "did you mean" not in hidden and "clock_now" not in hidden, hidden
        assert (await api("GET", "/stats/tools/notes_add_note", ALICE)).status_code == 200


async def test_a_servers_config_as_get_shows_it_is_accepted_back_by_put(tmp_path: Path) -> None:
    """GET /servers/{name} shows 'config' with the server's 'name' in it; PUT of that
    config was refused ("field 'name': unknown field"), so read-modify-write failed."""
    notes = {**demo("notes"), "env": {"NOTES_TOKEN": "s3cret-notes-value-9f2"}}
    async with serving(tmp_path, {"notes": notes}) as (api, base):
        shown = (await api("GET", "/servers/notes", OPS)).json()["config"]
        assert shown["name"] == "notes" and shown["env"] == {"NOTES_TOKEN": "***"}
        same = await api("PUT", "/servers/notes", OPS, json={"config": shown})
        assert same.status_code == 200, same.text
        assert same.json()["unchanged"] == ["notes"]
        described = await api("PUT", "/servers/notes", OPS,
                              json={"config": {**shown, "description": "mine"}})
        assert described.json()["updated"] == ["notes"], described.text
        renamed = assert_error(await api("PUT", "/servers/notes", OPS, json={
            "config": {**shown, "name": "other"}}), 422, "invalid_config")
        assert "'name'" in renamed["message"]
        async with Client(f"{base}/mcp", auth=OPS) as client:  # the admin tools alike
            detail = (await client.call_tool("gateway_server_detail", {"name": "notes"})
                      ).structured_content
            assert detail is not None
            again = await client.call_tool("gateway_update_server", {
                "name": "notes", "config": detail["config"]})
            assert again.structured_content["unchanged"] == ["notes"], again  # type: ignore[index]
        stored = (await api("GET", "/servers/notes", OPS)).json()["config"]
        assert stored["env"] == {"NOTES_TOKEN": "***"} and stored["description"] == "mine"
    assert all("s3cret-notes-value-9f2" not in text for text in api.seen)


async def test_a_body_that_is_not_an_object_says_what_to_send(tmp_path: Path) -> None:
    """An empty body, '[]' or bad JSON said only "the request body must be a JSON
    object" / "is not JSON: Expecting value ...": not what the operation takes."""
    async with serving(tmp_path, {}) as (api, _base):
        for content, what in [(b"", "is empty"), (b"[]", "is an array"),
                              (b'"x"', "is a string"), (b"null", "is null"),
                              (b"{nope", "is not JSON: Expecting property name")]:
            error = assert_error(await api("POST", "/routes", OPS, content=content), 400,
                                 "invalid_json")
            assert error["message"].startswith(f"the request body {what}"), error
            assert error["message"].endswith(
                "; send a JSON object with this operation's fields (pattern, target, match, "
                "priority)"), error
        rule = assert_error(await api("POST", "/alerts/rules", OPS, content=b"[]"), 400,
                            "invalid_json")["message"]
        assert "window, for, min_calls" in rule and "for_" not in rule, rule
