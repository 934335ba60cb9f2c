"""Asks reach only the host whose call caused them; a host that leaves takes its calls
and questions with it; logs between calls reach the hosts that asked for logs.

Real upstream processes (``tests/servers/asker.py``), real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp_types import ElicitResult

from tests.fixtures import PY, SERVERS, make_gateway, serve_http, stdio_entry

pytestmark = pytest.mark.anyio
WITHIN = 60.0  # generous bound for a loaded two-core machine; waits end on conditions


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def until(predicate: Any, within: float = WITHIN) -> None:
    """Wait (bounded) until ``predicate()`` holds; polls state another process writes."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the condition lives in another process
            await anyio.sleep(0.02)


@contextlib.asynccontextmanager
async def asker_http(tmp_path: Path, record: Path) -> AsyncIterator[str]:
    """The asker fixture as a streamable-HTTP server process; yields its MCP URL."""
    port_file = tmp_path / f"port-{record.stem}"
    process = await anyio.open_process(
        [PY, str(SERVERS / "asker.py"), "http", str(port_file), "--record", str(record)])
    try:
        await until(lambda: port_file.exists() and port_file.read_text().strip() != "")
        yield f"http://127.0.0.1:{port_file.read_text().strip()}/mcp"
    finally:
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


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
