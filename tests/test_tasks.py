"""MCP tasks through the gateway (the ``io.modelcontextprotocol/tasks`` extension).

A real ``mcp-gateway serve`` in front of a real FastMCP 4 upstream whose tools run as
tasks (``tests/servers/tasker.py``), driven by a raw JSON-lines host: a 2026-07-28 host
that opts in gets a task under a gateway id, follows it with ``tasks/get`` (result
inlined), cancels it, is told clearly about ids it does not own and about a replica
that lost its tasks; hosts that do not opt in, and handshake-era hosts, call the same
tools as plain calls; a handshake-era upstream session's task-only tool stays hidden
with a reason that says how to relay it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.front.task_book import TASK_PREFIX, TaskBook, TaskRecord
from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import PY, SERVERS, make_gateway, serve_http, stdio_entry
from tests.test_lane import CLIENT_INFO, RawHost, raw_host

pytestmark = pytest.mark.anyio

TASKS = "io.modelcontextprotocol/tasks"
OPT_IN = {"io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}}}
TERMINAL = {"completed", "failed", "cancelled"}


def write_config(tmp_path: Path) -> Path:
    """``tasker`` on a 2026-07-28 session, ``old`` (the same program) on a handshake-era one."""
    script = json.dumps(str(SERVERS / "tasker.py"))
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n"
                    f"  tasker:\n    command: {json.dumps(PY)}\n    args: [{script}]\n"
                    "    protocol: '2026-07-28'\n"
                    f"  old:\n    command: {json.dumps(PY)}\n    args: [{script}]\n"
                    "    protocol: legacy\n")
    return path


@asynccontextmanager
async def task_host(tmp_path: Path, era: str = "modern", *,
                    lane: bool = True) -> AsyncIterator[RawHost]:
    async with raw_host(write_config(tmp_path), era, lane=lane,
                        listed=("tasker_pid", "old_pid"), command=[
                            PY, "-m", "fast_mcp_gateway", "serve", "--log-level", "WARNING",
                            "--db", str(tmp_path / "gateway.db"), "--config"]) as host:
        yield host


async def until_terminal(host: RawHost, task_id: str) -> dict[str, Any]:
    """``tasks/get`` until the task ends (the upstream's background work: polled, as
    a host polls)."""
    with anyio.fail_after(30):
        while True:
            reply = await host.request("tasks/get", {"taskId": task_id}, meta=OPT_IN)
            assert "result" in reply, reply
            if reply["result"]["status"] in TERMINAL:
                return dict(reply["result"])
            await anyio.sleep(0.02)  # the host's poll interval


async def task_ends(host: RawHost) -> list[dict[str, Any]]:
    """The records of tasks' ends (kind ``task``) among the latest calls."""
    calls = (await host.call("gateway_calls", {"limit": 20}))["structuredContent"]
    return [c for c in calls["calls"] if c["kind"] == "task"]


async def killed_and_restarted(host: RawHost, pid: int) -> None:
    """Kill the tasker process ``pid`` and wait until the supervisor's new one answers."""
    os.kill(pid, signal.SIGKILL)
    with anyio.fail_after(30):
        while True:
            reply = await host.request("tools/call", {"name": "tasker_pid", "arguments": {}})
            new = reply.get("result", {}).get("structuredContent", {}).get("result")
            if new not in (None, pid) and not reply["result"].get("isError"):
                return
            await anyio.sleep(0.05)  # another process's progress


@pytest.mark.parametrize("lane", [True, False])
async def test_a_2026_host_runs_a_tool_as_a_task_and_follows_it(
        tmp_path: Path, lane: bool) -> None:
    async with task_host(tmp_path, lane=lane) as host:
        created = await host.call("tasker_hold", {"gate": "g1"}, meta=OPT_IN)
        assert created["resultType"] == "task"
        assert created["status"] == "working"
        task_id = created["taskId"]
        assert task_id.startswith(TASK_PREFIX), created
        assert "io.modelcontextprotocol/serverInfo" in created["_meta"]  # the gateway's
        assert created["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] != "tasker"
        # Gated upstream: still working until released (no timing involved).
        again = await host.request("tasks/get", {"taskId": task_id}, meta=OPT_IN)
        assert again["result"]["status"] == "working"
        assert again["result"]["taskId"] == task_id
        assert (await host.call("tasker_release", {"gate": "g1"}))["content"][0]["text"] \
            == "opened g1"
        done = await until_terminal(host, task_id)
        assert done["status"] == "completed", done
        assert done["taskId"] == task_id
        assert done["result"]["content"] == [{"type": "text", "text": "released g1"}]
        # An optional task tool the upstream tasks too.
        crunched = await host.call("tasker_crunch", {"n": 21}, meta=OPT_IN)
        assert crunched["resultType"] == "task"
        done = await until_terminal(host, crunched["taskId"])
        assert done["result"]["structuredContent"] == {"result": "crunched 42"}
        # Recorded as calls of the exposed tools, on the server that owns them, and each
        # task's end as a record of its own (kind task: the whole run, the same trace);
        # statistics count the request only.
        calls = (await host.call("gateway_calls", {"limit": 20}))["structuredContent"]
        hold = {c["kind"]: c for c in calls["calls"] if c["exposed"] == "tasker_hold"}
        assert sorted(hold) == ["task", "tool"], calls
        assert [(c["server"], c["status"]) for c in hold.values()] == [("tasker", "success")] * 2
        assert hold["task"]["trace_id"] == hold["tool"]["trace_id"]
        assert hold["task"]["duration_ms"] > hold["tool"]["duration_ms"]
        stats = (await host.call("gateway_stats", {"group_by": "tool"}))["structuredContent"]
        groups = {g["key"]: g for g in stats["groups"]}
        assert groups["tasker_hold"]["count"] == 1, stats


async def test_a_task_is_updated_and_cancelled_through_the_gateway(tmp_path: Path) -> None:
    async with task_host(tmp_path) as host:
        task_id = (await host.call("tasker_hold", {"gate": "g2"}, meta=OPT_IN))["taskId"]
        update = await host.request("tasks/update", {"taskId": task_id,
                                                     "inputResponses": {}}, meta=OPT_IN)
        assert update["result"]["resultType"] == "complete", update
        reply = await host.request("tasks/cancel", {"taskId": task_id}, meta=OPT_IN)
        assert reply["result"]["resultType"] == "complete", reply
        done = await until_terminal(host, task_id)
        assert done["status"] == "cancelled"
        ended = [c["status"] for c in await task_ends(host)]
        assert ended == ["cancelled"], ended  # recorded once, however often it is polled


async def test_unknown_task_ids_and_requests_without_the_extension_are_refused(
        tmp_path: Path) -> None:
    async with task_host(tmp_path) as host:
        for method in ("tasks/get", "tasks/cancel", "tasks/update"):
            reply = await host.request(method, {"taskId": "gwt-made-up"}, meta=OPT_IN)
            assert reply["error"]["code"] == -32602, reply
            assert reply["error"]["message"].startswith("Unknown task: 'gwt-made-up'.")
            assert "another caller" in reply["error"]["message"]
        task_id = (await host.call("tasker_crunch", {"n": 1}, meta=OPT_IN))["taskId"]
        refused = await host.request("tasks/get", {"taskId": task_id})  # no opt-in
        assert refused["error"]["code"] == -32021, refused
        assert TASKS in refused["error"]["message"]


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_hosts_that_do_not_opt_in_call_task_tools_as_plain_calls(
        tmp_path: Path, era: str) -> None:
    async with task_host(tmp_path, era) as host:
        for server in ("tasker", "old"):
            result = await host.call(f"{server}_crunch", {"n": 2})
            assert result["content"] == [{"type": "text", "text": "crunched 4"}], result
            assert "taskId" not in result
        tools = {t["name"]: t for t in (await host.request("tools/list"))["result"]["tools"]}
        # Task-only on a 2026-07-28 session: listed (that wire has no `execution`); a
        # host that did not opt in gets the upstream's own refusal.
        assert "tasker_hold" in tools
        refused = await host.request("tools/call", {"name": "tasker_hold",
                                                    "arguments": {"gate": "x"}})
        assert refused["error"]["code"] == -32021, refused
        # Task-only on a handshake-era session: hidden, and a call says how to relay it.
        assert "old_hold" not in tools
        if era == "legacy":  # the optional one keeps its declaration, as the upstream said
            assert tools["old_crunch"]["execution"] == {"taskSupport": "optional"}
        hidden = await host.call("old_hold", {"gate": "x"})
        assert hidden["isError"] is True
        assert "protocol: 2026-07-28" in hidden["content"][0]["text"]


async def test_a_modern_host_opting_in_on_a_handshake_era_session_gets_a_plain_call(
        tmp_path: Path) -> None:
    async with task_host(tmp_path) as host:
        result = await host.call("old_crunch", {"n": 5}, meta=OPT_IN)
        assert result.get("resultType") == "complete"
        assert result["content"] == [{"type": "text", "text": "crunched 10"}]


async def test_a_task_whose_replica_restarted_fails_clearly(tmp_path: Path) -> None:
    async with task_host(tmp_path) as host:
        first = (await host.call("tasker_pid"))["structuredContent"]["result"]
        task_id = (await host.call("tasker_hold", {"gate": "g3"}, meta=OPT_IN))["taskId"]
        await killed_and_restarted(host, first)
        failed = await host.request("tasks/get", {"taskId": task_id}, meta=OPT_IN)
        task = failed["result"]
        assert (task["taskId"], task["status"]) == (task_id, "failed"), task
        assert "restarted after the task was created" in task["statusMessage"]
        assert task["error"]["message"] == task["statusMessage"]
        # It stays failed, and cannot be cancelled any more.
        assert (await host.request("tasks/get", {"taskId": task_id}, meta=OPT_IN)
                )["result"]["status"] == "failed"
        cancel = await host.request("tasks/cancel", {"taskId": task_id}, meta=OPT_IN)
        assert "has failed" in cancel["error"]["message"]
        (ended,) = await task_ends(host)
        assert ended["status"] == "error" and ended["exposed"] == "tasker_hold"
        assert "restarted after the task was created" in ended["error"]


async def test_a_lost_task_cancelled_without_a_get_is_recorded_as_failed(
        tmp_path: Path) -> None:
    """A host that only cancels a task its replica lost is told it failed: its end is
    recorded then (it was only when a tasks/get showed it)."""
    async with task_host(tmp_path) as host:
        first = (await host.call("tasker_pid"))["structuredContent"]["result"]
        task_id = (await host.call("tasker_hold", {"gate": "g4"}, meta=OPT_IN))["taskId"]
        await killed_and_restarted(host, first)
        for _ in range(2):
            cancel = await host.request("tasks/cancel", {"taskId": task_id}, meta=OPT_IN)
            assert "has failed" in cancel["error"]["message"], cancel
        (ended,) = await task_ends(host)
        assert ended["status"] == "error" and ended["exposed"] == "tasker_hold"
        assert "restarted after the task was created" in ended["error"]


async def test_a_failed_tasks_record_masks_the_secrets_its_error_echoes(
        tmp_path: Path) -> None:
    """A failed task's error may echo its call's input, as a call's error may: the
    values of its credential-like arguments are masked in what its host is told (as a
    direct call's error is: it got them whole, fidelity15) and in its end record."""
    key = "k-" + secrets.token_hex(12)
    async with task_host(tmp_path) as host:
        created = await host.call("tasker_sign_in", {"user": "ada", "api_key": key},
                                  meta=OPT_IN)
        failed = await until_terminal(host, created["taskId"])
        assert failed["status"] == "failed", failed
        assert "user ada could not sign in" in failed["error"]["message"], failed
        assert key not in json.dumps(failed), failed
        again = await host.request("tasks/get", {"taskId": created["taskId"]}, meta=OPT_IN)
        assert again["result"]["status"] == "failed" and key not in json.dumps(again), again
        calls = (await host.call("gateway_calls", {"limit": 20}))["structuredContent"]
        (ended,) = [c for c in calls["calls"] if c["kind"] == "task"]
        assert ended["status"] == "error" and "user ada could not sign in" in ended["error"]
        assert key not in json.dumps(calls), ended["error"]


def test_the_task_book_is_bounded_and_forgets_expired_tasks() -> None:
    now = [0.0]
    book = TaskBook(limit=3, clock=lambda: now[0])

    def record(task_id: str, ttl_ms: Any = None) -> TaskRecord:
        return TaskRecord(task_id, "up", "s", "s_t", None, 1,  # type: ignore[arg-type]
                          ("local", "local"), book.expiry(ttl_ms), "")

    for name in "abcd":
        book.add(record(name))
    assert [book.get(n) is not None for n in "abcd"] == [False, True, True, True]
    book.add(record("short", ttl_ms=1000))   # kept 1 s + a minute's grace
    now[0] = 62.0
    assert book.get("short") is None
    assert book.get("d") is not None         # default: an hour
    now[0] = 3601.0
    assert book.get("d") is None
    assert book.expiry(10**12) - now[0] == 86_400.0  # at most a day


def test_one_callers_tasks_do_not_push_out_another_callers() -> None:
    """Past the bound, the caller holding the most tasks forgets its oldest: the oldest
    of all went, so a caller that made ``limit`` tasks ended every other caller's."""
    book = TaskBook(limit=4, clock=lambda: 0.0)

    def record(task_id: str, owner: str) -> TaskRecord:
        return TaskRecord(task_id, "up", "s", "s_t", None, 1,  # type: ignore[arg-type]
                          ("token", owner), book.expiry(None), "")

    book.add(record("alice-1", "alice"))
    for i in range(10):
        book.add(record(f"mallory-{i}", "mallory"))
    assert book.get("alice-1") is not None and len(book) == 4
    assert [book.get(f"mallory-{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    book.add(record("bob-1", "bob"))  # the most held gives up its oldest: mallory's
    assert book.get("bob-1") is not None and book.get("alice-1") is not None
    assert book.get("mallory-7") is None and book.get("mallory-9") is not None


def _token() -> tuple[str, str]:
    token = "mgw_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


ALICE, ALICE_SHA = _token()
BOB, BOB_SHA = _token()
HTTP_TOKENS = [{"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"], "servers": ["tasker"]},
               {"name": "bob", "sha256": BOB_SHA, "scopes": ["tools"], "servers": ["tasker"]}]


async def post(http: httpx2.AsyncClient, token: str, method: str, params: dict[str, Any],
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """One sessionless 2026-07-28 request; its JSON-RPC answer (JSON or the SSE stream's)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {}, **(meta or {})}}}
    headers = {"content-type": "application/json", "mcp-protocol-version": "2026-07-28",
               "accept": "application/json, text/event-stream", "mcp-method": method,
               "authorization": f"Bearer {token}"}
    name = params.get("name", params.get("taskId"))
    if isinstance(name, str):
        headers["mcp-name"] = name
    reply = await http.post("/mcp", content=json.dumps(body), headers=headers)
    # (An error answer has the SDK's HTTP status for its code: 400 for -32602.)
    if reply.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in reply.text.splitlines()
                if line.startswith("data:") and line[5:].strip()]
        answers = [json.loads(d) for d in data if '"id"' in d]
        return dict(answers[-1])
    return dict(reply.json())


async def test_over_http_a_task_is_its_callers_only() -> None:
    gateway = make_gateway({"tasker": stdio_entry("tasker.py", protocol="2026-07-28")},
                           options={"auth": {"tokens": HTTP_TOKENS}}, call_timeout=60)
    app = gateway.http_app("http")
    lane = getattr(app.mcp_entry, "app", None)
    assert isinstance(lane, HttpLane) and lane.enabled
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        plain = await post(http, ALICE, "tools/call", {"name": "tasker_crunch",
                                                      "arguments": {"n": 3}})
        assert plain["result"]["content"][0]["text"] == "crunched 6"
        assert lane.served == 1  # a plain call takes the lane
        created = await post(http, ALICE, "tools/call", {"name": "tasker_hold",
                                                        "arguments": {"gate": "h1"}}, OPT_IN)
        assert lane.served == 1  # a task is the full path's
        task_id = created["result"]["taskId"]
        assert task_id.startswith(TASK_PREFIX)
        other = await post(http, BOB, "tasks/get", {"taskId": task_id}, OPT_IN)
        assert other["error"]["message"].startswith(f"Unknown task: {task_id!r}"), other
        cancel = await post(http, BOB, "tasks/cancel", {"taskId": task_id}, OPT_IN)
        assert cancel["error"]["code"] == -32602
        mine = await post(http, ALICE, "tasks/get", {"taskId": task_id}, OPT_IN)
        assert mine["result"]["status"] == "working", mine
        await post(http, BOB, "tools/call", {"name": "tasker_release",
                                             "arguments": {"gate": "h1"}})
        with anyio.fail_after(30):
            while True:
                done = await post(http, ALICE, "tasks/get", {"taskId": task_id}, OPT_IN)
                if done["result"]["status"] != "working":
                    break
                await anyio.sleep(0.02)  # the host's poll interval
        assert done["result"]["status"] == "completed"
        assert done["result"]["result"]["content"][0]["text"] == "released h1"
