"""2026-07-28 hosts in front of handshake-era upstreams (front/mrtr.py, front/listen.py),
and roots outside calls (upstream/roots.SoleHost).

Every test runs ``mcp-gateway serve`` as a subprocess (stdio with and without the
express lane, or streamable HTTP) in front of ``tests/servers/pusher.py``, a real
stdio upstream, and drives it with a FastMCP 4 client in its default ``auto`` mode
(2026-07-28, sessionless) unless it says otherwise.  What the upstream saw is asked
of the upstream itself, by tools that wait on its own events.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp.client.subscriptions import ResourceUpdated, listen

from tests.fixtures import PY, SERVERS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

FRONTS = ["stdio-lane", "stdio-full", "http"]


def write_config(tmp_path: Path, protocol: str = "legacy") -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  pusher:\n    command: {json.dumps(PY)}\n"
                    f"    args: [{json.dumps(str(SERVERS / 'pusher.py'))}]\n"
                    f"    protocol: {protocol}\n")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def gateway_client(tmp_path: Path, front: str, *, protocol: str = "legacy",
                         env: dict[str, str] | None = None, db: Path | None = None,
                         **client: Any) -> AsyncIterator[Client[Any]]:
    """A connected FastMCP client of a gateway subprocess serving ``pusher`` on
    ``front``, once the upstream's tools are listed.  The gateway's stderr goes to
    ``tmp_path / "gateway.log"``; calls are recorded in ``db`` if given."""
    config = write_config(tmp_path, protocol)
    recording = ["--db", str(db)] if db is not None else ["--no-db"]
    environ = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(front == "stdio-lane").lower(),
               **(env or {})}
    log = tmp_path / "gateway.log"
    if front.startswith("stdio"):
        transport: Any = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                             str(config), *recording],
                                        env=environ, keep_alive=False, log_file=log)
        async with Client(transport, **client) as connected:
            await _until_listed(connected)
            yield connected
        return
    port = _free_port()
    with log.open("w") as stderr:
        process = await anyio.open_process(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config), "--transport",
             "http", "--port", str(port), *recording], env=environ, stdout=stderr, stderr=stderr)
        async with process:
            try:
                await _until_serving(f"http://127.0.0.1:{port}/health", process)
                transport = StreamableHttpTransport(f"http://127.0.0.1:{port}/mcp")
                async with Client(transport, **client) as connected:
                    await _until_listed(connected)
                    yield connected
            finally:
                process.terminate()
                with anyio.fail_after(30):
                    await process.wait()


async def _until_serving(url: str, process: Any) -> None:
    with anyio.fail_after(60):
        async with httpx2.AsyncClient() as http:
            while True:
                assert process.returncode is None, "the gateway exited"
                try:
                    await http.get(url)
                    return
                except httpx2.TransportError:
                    await anyio.sleep(0.05)  # another process's start-up: nothing to wait on


async def _until_listed(client: Client[Any]) -> None:
    with anyio.fail_after(60):
        while "pusher_interview" not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110 - upstream start-up
            await anyio.sleep(0.05)


class Host:
    """A host's answers, and what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.roots = ["file:///work/project"]

    async def elicit(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(f"elicit:{message}")
        (name,) = params.requested_schema["properties"]
        return ElicitResult(action="accept", content={name: "Ada"})

    async def sample(self, messages: Any, params: Any, context: Any) -> str:
        self.asked.append(f"sample:{messages[0].content.text}")
        return "sampled-by-host"

    def handlers(self) -> dict[str, Any]:
        return {"elicitation_handler": self.elicit, "sampling_handler": self.sample,
                "roots": lambda context: self.roots}


@pytest.mark.parametrize("front", FRONTS)
async def test_a_2026_host_answers_a_handshake_era_upstreams_pushed_asks(
        tmp_path: Path, front: str) -> None:
    host = Host()
    async with gateway_client(tmp_path, front, **host.handlers()) as client:
        assert client.protocol_version == "2026-07-28"
        # Two questions one after the other: two rounds of the same upstream call.
        result = await client.call_tool("pusher_interview", {"topic": "poem"})
        name, sampled, request_id = result.data.split("|")
        assert name == "accept:Ada"  # the upstream received the host's answers
        assert sampled.endswith(":sampled-by-host")
        assert host.asked == ["elicit:Your name?", "sample:poem for accept:Ada"]
        # The lanes (stdio, and HTTP for 2026-07-28 hosts) send their own request ids
        # upstream; the full path the SDK's.
        assert str(request_id).startswith("gw-") is (front in ("stdio-lane", "http"))

        # Questions asked at once (and roots, within the call) in one upstream call.
        host.asked.clear()
        result = await client.call_tool("pusher_both", {})
        assert result.data == "accept:Ada|fastmcp-slim:sampled-by-host|file:///work/project"
        assert sorted(host.asked) == ["elicit:Your name?", "sample:both"]


@pytest.mark.parametrize("front", ["stdio-lane", "http"])
async def test_a_2026_upstreams_own_asks_still_reach_a_2026_host(tmp_path: Path,
                                                                 front: str) -> None:
    host = Host()
    async with gateway_client(tmp_path, front, protocol="auto", **host.handlers()) as client:
        result = await client.call_tool("pusher_guard", {})
        assert result.content[0].text == "guard:Ada:Ada"
        assert sorted(host.asked) == ["elicit:Your color?", "elicit:Your name?"]


@pytest.mark.parametrize("front", ["stdio-lane", "stdio-full", "http"])
async def test_an_unanswered_ask_expires_and_cancels_the_upstream_call(
        tmp_path: Path, front: str) -> None:
    asked, release = anyio.Event(), anyio.Event()

    async def slow_host(message: str, response_type: Any, params: Any, context: Any) -> Any:
        asked.set()
        await release.wait()  # a human who walked away
        return ElicitResult(action="accept", content={"value": "late"})

    failures: list[str] = []
    async with gateway_client(tmp_path, front, elicitation_handler=slow_host,
                              env={"MCP_GATEWAY_ASK_TIMEOUT": "1"}) as client:
        async with anyio.create_task_group() as tg:
            async def held_call() -> None:
                with pytest.raises(ToolError) as caught:
                    await client.call_tool("pusher_hold", {})
                failures.append(str(caught.value))

            tg.start_soon(held_call)
            with anyio.fail_after(60):
                await asked.wait()
            # The upstream sees its call cancelled once the question expires.
            assert (await client.call_tool("pusher_wait_cancelled", {})).data == "cancelled"
            release.set()  # the host answers too late, with the expired requestState
        # The gateway (and the upstream) are fine for the next call.
        assert (await client.call_tool("pusher_bump", {})).data == 1
    (failure,) = failures
    assert "did not answer elicitation/create question within 1s (ask_timeout)" in failure
    assert "call it again without requestState" in failure
    log = (tmp_path / "gateway.log").read_text()
    assert "did not answer elicitation/create question within 1s" in log


async def recorded(db: Path) -> list[dict[str, Any]]:
    """The call records in ``db``, oldest first (``mcp-gateway logs``)."""
    logs = await anyio.run_process([PY, "-m", "fast_mcp_gateway", "logs", "--db", str(db),
                                    "--json"])
    return sorted(map(json.loads, logs.stdout.decode().splitlines()),
                  key=lambda r: r["started_at"])


@pytest.mark.parametrize("front", FRONTS)
async def test_an_asked_call_is_one_record_whatever_its_rounds(tmp_path: Path,
                                                               front: str) -> None:
    asked, release = anyio.Event(), anyio.Event()
    host = Host()

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        if not host.asked:  # pusher_interview's
            return await host.elicit(message, response_type, params, context)
        asked.set()  # pusher_hold's question: a human who walked away
        await release.wait()
        return ElicitResult(action="accept", content={"value": "late"})

    db = tmp_path / "calls.db"
    handlers = {**host.handlers(), "elicitation_handler": elicit}
    async with gateway_client(tmp_path, front, db=db, env={"MCP_GATEWAY_ASK_TIMEOUT": "1"},
                              **handlers) as client:
        # Two rounds of questions (three host requests), as a handshake host's one call.
        assert (await client.call_tool("pusher_interview", {"topic": "x"})).data
        async with anyio.create_task_group() as tg:
            async def held_call() -> None:
                with pytest.raises(ToolError):
                    await client.call_tool("pusher_hold", {})

            tg.start_soon(held_call)
            with anyio.fail_after(60):
                await asked.wait()
            assert (await client.call_tool("pusher_wait_cancelled", {})).data == "cancelled"
            release.set()  # its late round is told the call ended: not another call
    records = [r for r in await recorded(db) if r["exposed"] != "pusher_wait_cancelled"]
    assert [(r["exposed"], r["status"]) for r in records] == [
        ("pusher_interview", "success"), ("pusher_hold", "timeout")]
    assert records[0]["replica"] == "pusher"  # not the empty one of an asking round
    assert "did not answer elicitation/create question within 1s" in records[1]["error"]
    # The record spans the call from its first round (the host's answers included).
    assert records[0]["duration_ms"] > 0


@pytest.mark.parametrize("front", ["stdio-lane", "stdio-full"])
async def test_a_question_goes_to_a_call_the_host_is_in_not_one_it_sits_on(
        tmp_path: Path, front: str) -> None:
    """Over stdio a pushed question carries no call: by timing it went to the host's
    earliest call in flight.  When that call was waiting for the host's next round (the
    host sitting on its question, or gone from it for good), a question of the host's
    later call was parked there, never shown, and that call hung until its timeout.
    (Over HTTP, two sessionless requests are two hosts: such a question is refused.)"""
    sitting, release = anyio.Event(), anyio.Event()
    host = Host()

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        if not sitting.is_set():  # pusher_hold's question: the host sits on it
            sitting.set()
            await release.wait()
        return await host.elicit(message, response_type, params, context)

    handlers = {**host.handlers(), "elicitation_handler": elicit}
    async with gateway_client(tmp_path, front, **handlers) as client, \
            anyio.create_task_group() as tg:
        async def held_call() -> None:
            assert (await client.call_tool("pusher_hold", {})).data == "accept:Ada"

        tg.start_soon(held_call)
        with anyio.fail_after(60):
            await sitting.wait()
        with anyio.fail_after(20):
            result = await client.call_tool("pusher_interview", {"topic": "poem"})
        name, sampled, _ = result.data.split("|")
        assert (name, sampled.endswith(":sampled-by-host")) == ("accept:Ada", True)
        release.set()


@pytest.mark.parametrize(("front", "protocol"), [("stdio-lane", "legacy"),
                                                 ("stdio-lane", "auto"),
                                                 ("http", "legacy")])
async def test_listen_subscribes_upstream_and_delivers_resource_updates(
        tmp_path: Path, front: str, protocol: str) -> None:
    async with gateway_client(tmp_path, front, protocol=protocol) as client:
        (uri,) = [str(r.uri) for r in await client.list_resources()]
        assert uri == "pusher://pusher/counter"
        async with listen(client.session, resource_subscriptions=[uri, "nowhere://x"]) as sub:
            assert sub.honored.resource_subscriptions == [uri]  # the unknown one is left out
            await client.call_tool("pusher_bump", {})
            with anyio.fail_after(30):
                event = await sub.__anext__()
        assert event == ResourceUpdated(uri=uri)
        if protocol == "legacy":
            # The listen stream ended: the upstream is unsubscribed.
            assert (await client.call_tool("pusher_wait_unsubscribed", {})).data == \
                "unsubscribed"


@pytest.mark.parametrize("front", ["stdio-lane", "stdio-full"])
async def test_roots_reach_an_upstream_asking_outside_a_call(tmp_path: Path,
                                                             front: str) -> None:
    host = Host()
    async with gateway_client(tmp_path, front, mode="legacy", **host.handlers()) as client:
        host.roots = ["file:///work/a", "file:///work/b"]
        # Forwarded upstream: the upstream asks roots/list outside any call, and the
        # gateway asks its one host.
        await client.send_roots_list_changed()
        assert (await client.call_tool("pusher_roots_seen", {"count": 1})).data == [
            "file:///work/a", "file:///work/b"]
        host.roots = ["file:///work/c"]
        await client.send_roots_list_changed()
        assert (await client.call_tool("pusher_roots_seen", {"count": 2})).data == [
            "file:///work/c"]


if sys.platform == "win32":  # pragma: no cover - the fixture is a POSIX subprocess
    pytest.skip("POSIX only", allow_module_level=True)
