"""Asks reach only the host whose call caused them; a host that leaves takes its calls
and questions with it; logs between calls reach the hosts that asked for logs.

Real upstream processes (``tests/servers/asker.py``), real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError
from mcp_types import ElicitResult

from tests.fixtures import (
    PY,
    SERVERS,
    WITHIN,
    make_gateway,
    serve_http,
    stdio_entry,
    stopped,
    until,
)

pytestmark = pytest.mark.anyio


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def asker_http(tmp_path: Path, record: Path) -> contextlib.AbstractAsyncContextManager[str]:
    """The asker fixture as a streamable-HTTP server process; yields its MCP URL."""
    port_file = tmp_path / f"port-{record.stem}"
    return http_process(port_file, SERVERS / "asker.py", "http", str(port_file),
                        "--record", str(record))


def _port(port_file: Path) -> str:
    return port_file.read_text().strip() if port_file.exists() else ""


@contextlib.asynccontextmanager
async def http_process(port_file: Path, *argv: str | Path) -> AsyncIterator[str]:
    """``python *argv``, a server that writes its port to ``port_file``; yields its MCP
    URL, and stops it after."""
    process = await anyio.open_process([PY, *map(str, argv)])
    try:
        await until(lambda: _port(port_file) != "")
        yield f"http://127.0.0.1:{_port(port_file)}/mcp"
    finally:
        await stopped(process)


def answering(name: str, seen: dict[str, list[str]], gate: Any = None) -> Any:
    """An elicitation handler for host ``name``: records each question, answers
    ``answer-from-<name>`` once ``gate()`` (if any) holds."""

    async def handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
        seen.setdefault(name, []).append(message)
        if gate is not None:
            await until(gate)
        (field,) = params.requested_schema["properties"]
        return ElicitResult(action="accept", content={field: f"answer-from-{name}"})

    return handler


async def test_two_http_hosts_each_get_only_their_own_question(tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    async with asker_http(tmp_path, record) as url:
        gateway = make_gateway({"asker": {"url": url, "protocol": "legacy"}})
        seen: dict[str, list[str]] = {}

        # Each host answers only once both calls are in flight upstream: the two
        # questions are outstanding at the same time.
        def both_asking() -> bool:
            return sum(r["event"] == "ask" for r in records(record)) >= 2

        results: dict[str, str] = {}
        async with (
            serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp", mode="legacy",
                   elicitation_handler=answering("A", seen, both_asking)) as a,
            Client(f"{base}/mcp", mode="legacy",
                   elicitation_handler=answering("B", seen, both_asking)) as b,
        ):
            async def call(client: Client[Any], tag: str) -> None:
                results[tag] = (await client.call_tool("asker_ask", {"tag": tag})).data

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, a, "A")
                tg.start_soon(call, b, "B")
    assert seen == {"A": ["question for A"], "B": ["question for B"]}
    assert results == {"A": "A:accept:answer-from-A", "B": "B:accept:answer-from-B"}


async def test_a_shared_stdio_upstream_refuses_an_ask_it_cannot_attribute(
        tmp_path: Path) -> None:
    """Two HTTP hosts in flight on one stdio session: the ask goes to neither; the
    error names the server and the fix."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    gateway = make_gateway({"asker": stdio_entry("asker.py", "stdio", "--record", str(record),
                                                 protocol="legacy")})
    seen: dict[str, list[str]] = {}
    outcome: dict[str, str] = {}
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", elicitation_handler=answering("A", seen)) as a,
        Client(f"{base}/mcp", mode="legacy", elicitation_handler=answering("B", seen)) as b,
    ):
        async def asking(client: Client[Any]) -> None:
            try:
                await client.call_tool("asker_hold_then_ask", {"tag": "A", "go": str(go)})
            except ToolError as exc:
                outcome["A"] = str(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asking, a)
            await until(lambda: any(r["event"] == "hold_then_ask" for r in records(record)))
            tg.start_soon(b.call_tool, "asker_hold", {"tag": "B"})
            await until(lambda: any(r["event"] == "hold" for r in records(record)))
            go.touch()  # now A's upstream asks while B's call is in flight too
            await until(lambda: "A" in outcome)
            tg.cancel_scope.cancel()
    assert seen == {}
    assert "server 'asker'" in outcome["A"] and "isolation: per_client" in outcome["A"]


async def test_a_host_that_leaves_mid_call_has_its_call_cancelled_upstream(
        tmp_path: Path) -> None:
    """Host A leaves while its upstream call waits for A's answer: the upstream sees
    the cancellation, the question is withdrawn, and host B is never asked."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    go.touch()  # the tool asks at once
    async with asker_http(tmp_path, record) as url:
        gateway = make_gateway({"asker": {"url": url, "protocol": "legacy"}})
        seen: dict[str, list[str]] = {}
        asked = anyio.Event()

        async def stuck(message: str, response_type: Any, params: Any, context: Any) -> Any:
            seen.setdefault("A", []).append(message)
            asked.set()
            await anyio.sleep_forever()

        async with (
            serve_http(gateway.http_app("http")) as base,
            Client(f"{base}/mcp", mode="legacy", elicitation_handler=answering("B", seen)) as b,
        ):
            async with anyio.create_task_group() as tg:
                async def host_a() -> None:
                    async with Client(f"{base}/mcp", mode="legacy",
                                      elicitation_handler=stuck) as a:
                        await a.call_tool("asker_hold_then_ask", {"tag": "A", "go": str(go)})

                tg.start_soon(host_a)
                with anyio.fail_after(WITHIN):
                    await asked.wait()
                tg.cancel_scope.cancel()  # host A goes away, its question unanswered
            await until(lambda: any(r["event"] == "cancelled" and r["tag"] == "A"
                                    for r in records(record)))
            replica = gateway.manager.get("asker").replicas[0]
            await until(lambda: len(replica.inflight) == 0)
            # B still works, and was never shown A's question.
            assert (await b.call_tool("asker_ask", {"tag": "B"})).data == \
                "B:accept:answer-from-B"
    assert seen == {"A": ["late question for A"], "B": ["question for B"]}


async def test_a_host_that_leaves_a_held_call_has_it_cancelled_upstream(
        tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway({"asker": stdio_entry("asker.py", "stdio", "--record", str(record),
                                                 protocol="legacy")})
    async with serve_http(gateway.http_app("http")) as base:
        async with anyio.create_task_group() as tg:
            async def host() -> None:
                async with Client(f"{base}/mcp", mode="legacy") as client:
                    await client.call_tool("asker_hold", {"tag": "gone"})

            tg.start_soon(host)
            await until(lambda: any(r["event"] == "hold" for r in records(record)))
            tg.cancel_scope.cancel()
        await until(lambda: any(r["event"] == "cancelled" and r["tag"] == "gone"
                                for r in records(record)))


def stdio_gateway(tmp_path: Path, record: Path, *, lane: bool,
                  **extra: Any) -> StdioTransport:
    """``mcp-gateway serve`` on stdio in front of the asker (stdio, handshake era)."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"asker": {
        "command": PY, "args": [str(SERVERS / "asker.py"), "stdio", "--record", str(record)],
        "protocol": "legacy", **extra}}}))
    return StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(config),
                               "--log-level", "WARNING"], keep_alive=False,
                          env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower(),
                               "MCP_GATEWAY_DB": str(tmp_path / "gateway.db")})


async def listed(client: Client[Any], name: str) -> None:
    """Until ``name`` is listed (the gateway connects its upstreams in the background)."""
    with anyio.fail_after(WITHIN):
        while name not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110
            await anyio.sleep(0.05)  # another process's progress: nothing to wait on


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full-path"])
async def test_a_stdio_host_is_asked_everything_its_concurrent_calls_cause(
        tmp_path: Path, lane: bool) -> None:
    """One host: two calls in flight on one shared upstream session, both asks go to
    it (the isolation refusal is only for several hosts).  X starts first, so by
    timing both questions could be X's; Y's is answered only after X's call is over,
    and must still stand (it belongs to the host, not to X's call)."""
    record = tmp_path / "asker.jsonl"
    seen: dict[str, list[str]] = {}
    results: dict[str, str] = {}

    def asked(tag: str) -> bool:
        return any(r["event"] == "ask" and r["tag"] == tag for r in records(record))

    async def answer(message: str, response_type: Any, params: Any, context: Any) -> Any:
        seen.setdefault("host", []).append(message)
        await until(lambda: asked("X") and asked("Y"))
        if message.endswith("Y"):
            await until(lambda: "X" in results)
        (field,) = params.requested_schema["properties"]
        return ElicitResult(action="accept", content={field: "answer-from-host"})

    async with Client(stdio_gateway(tmp_path, record, lane=lane), mode="legacy",
                      elicitation_handler=answer) as host:
        await listed(host, "asker_ask")

        async def call(tag: str) -> None:
            results[tag] = (await host.call_tool("asker_ask", {"tag": tag})).data

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "X")
            await until(lambda: asked("X"))
            tg.start_soon(call, "Y")
    assert sorted(seen["host"]) == ["question for X", "question for Y"]
    assert results == {"X": "X:accept:answer-from-host", "Y": "Y:accept:answer-from-host"}


async def test_upstream_logs_between_calls_reach_the_stdio_host(tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    logs: list[Any] = []
    got = anyio.Event()

    async def on_log(message: Any) -> None:
        logs.append(message)
        got.set()

    async with Client(stdio_gateway(tmp_path, record, lane=True), mode="legacy",
                      log_handler=on_log) as host:
        await listed(host, "asker_log_later")
        assert (await host.call_tool("asker_log_later", {"text": "between calls",
                                                         "go": str(go)})).data == "scheduled"
        go.touch()  # the upstream logs now, with no call in flight
        with anyio.fail_after(WITHIN):
            await got.wait()
    assert [(m.level, m.logger) for m in logs] == [("info", "asker.asker")]
    assert "between calls" in str(logs[0].data)


async def test_a_question_outliving_its_call_is_withdrawn_from_the_host(
        tmp_path: Path) -> None:
    """The call times out while its host still has the question open: the host is told
    (``notifications/cancelled``), and the call fails with the timeout.  A pending
    question holds the call's deadline within ``timeouts.max_total`` only
    (``tests/test_ask_deadline.py``): a host that never answers still ends it there."""
    record = tmp_path / "asker.jsonl"
    async with asker_http(tmp_path, record) as url:
        gateway = make_gateway({"asker": {"url": url, "protocol": "legacy",
                                          "timeouts": {"call": 5.0, "max_total": 6.0}}})
        asked, withdrawn = anyio.Event(), anyio.Event()

        async def never_answers(message: str, response_type: Any, params: Any,
                                context: Any) -> Any:
            asked.set()
            try:
                await anyio.sleep_forever()
            finally:
                withdrawn.set()

        async with (
            serve_http(gateway.http_app("http")) as base,
            Client(f"{base}/mcp", mode="legacy", elicitation_handler=never_answers) as host,
        ):
            with pytest.raises(ToolError, match=r"timeouts\.max_total of 6s") as failed:
                await host.call_tool("asker_ask", {"tag": "late"})
            # Not "still reporting progress": it reported none (trial7's report).
            said = str(failed.value)
            assert "was still waiting on its host's answer to a question it asked " \
                "(elicitation, sampling or roots) when it reached" in said, said
            assert asked.is_set()
            with anyio.fail_after(WITHIN):
                await withdrawn.wait()


async def test_http_hosts_get_logs_between_calls_only_at_the_level_they_set(
        tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway({"asker": stdio_entry("asker.py", "stdio", "--record", str(record),
                                                 protocol="legacy")})
    logs: dict[str, list[str]] = {"A": [], "B": [], "C": []}
    got = anyio.Event()

    def handler(name: str) -> Any:
        async def on_log(message: Any) -> None:
            logs[name].append(f"{message.level}:{message.data}")
            got.set()
        return on_log

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", log_handler=handler("A")) as a,
        Client(f"{base}/mcp", mode="legacy", log_handler=handler("B")) as b,
        Client(f"{base}/mcp", mode="legacy", log_handler=handler("C")) as c,
    ):
        for host in (a, b, c):
            await listed(host, "asker_log_later")
        await a.set_logging_level("info")
        await b.set_logging_level("error")  # C never asks for logs
        for level, go in (("info", tmp_path / "go1"), ("error", tmp_path / "go2")):
            got = anyio.Event()
            await c.call_tool("asker_log_later", {"text": level, "go": str(go),
                                                  "level": level})
            go.touch()
            with anyio.fail_after(WITHIN):
                while len(logs["A"]) < (1 if level == "info" else 2):
                    await got.wait()
                    got = anyio.Event()
    assert logs["A"] == ["info:info", "error:error"]
    assert logs["B"] == ["error:error"]
    assert logs["C"] == []


async def test_deleting_a_session_cancels_its_calls_upstream(tmp_path: Path) -> None:
    """``DELETE /mcp`` (the host ends its session) with a call in flight: the upstream
    sees the cancellation."""
    import httpx2

    record = tmp_path / "asker.jsonl"
    gateway = make_gateway({"asker": stdio_entry("asker.py", "stdio", "--record", str(record),
                                                 protocol="legacy")})
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy") as host,
        anyio.create_task_group() as tg,
    ):
        await listed(host, "asker_hold")

        async def hold() -> None:
            with contextlib.suppress(Exception):  # the session is gone under it
                await host.call_tool("asker_hold", {"tag": "deleted"})

        tg.start_soon(hold)
        await until(lambda: any(r["event"] == "hold" for r in records(record)))
        session_id = host.transport.get_session_id()  # type: ignore[attr-defined]
        assert session_id
        async with httpx2.AsyncClient() as http:
            deleted = await http.delete(f"{base}/mcp", headers={
                "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"})
        assert deleted.status_code in (200, 204)
        await until(lambda: any(r["event"] == "cancelled" and r["tag"] == "deleted"
                                for r in records(record)))
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("host_mode", ["legacy", "auto"])
async def test_an_http_upstream_on_auto_starts_modern_and_learns_a_pushed_ask(
        tmp_path: Path, host_mode: str) -> None:
    """``protocol: auto`` opens 2026-07-28 towards a plain streamable-HTTP upstream (the
    side door serves its calls); a tool that asks by push (``ctx.elicit()``, refused by
    FastMCP on that era) moves the replica to the handshake era and is sent again: the
    host gets its question and the tool's answer, as it would directly."""
    record = tmp_path / "asker.jsonl"
    async with asker_http(tmp_path, record) as url:
        gateway = make_gateway({"asker": {"url": url}})
        replica = gateway.manager.get("asker").replicas[0]
        seen: dict[str, list[str]] = {}
        async with serve_http(gateway.http_app("http")) as base, Client(
                f"{base}/mcp", mode=host_mode,  # type: ignore[arg-type]
                elicitation_handler=answering("A", seen)) as host:
            assert replica.statistics().protocol_version == "2026-07-28"
            assert "streamable HTTP" in (replica.statistics().protocol_reason or "")
            if host_mode == "legacy":   # sent again on the handshake session: answered
                result = (await host.call_tool("asker_ask", {"tag": "A"})).data
                assert result == "A:accept:answer-from-A"
                assert seen == {"A": ["question for A"]}
            else:   # a 2026-07-28 host gets what it would get directly: the refusal
                with pytest.raises(ToolError, match="unavailable on 2026-07-28"):
                    await host.call_tool("asker_ask", {"tag": "A"})
            stats = replica.statistics()
            assert stats.protocol_version != "2026-07-28"
            assert "asks for input by push" in (stats.protocol_reason or "")
            # Learned: later calls go straight to the handshake-era session.
            assert (await host.call_tool("asker_ask", {"tag": "A"})).data == \
                "A:accept:answer-from-A"
