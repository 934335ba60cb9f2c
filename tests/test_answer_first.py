"""Answer first: a stdio ``serve`` answers ``initialize`` (or a 2026-07-28 host's
``server/discover``) before it adds its admin tools, and reads nothing else of the
host's until they are added.

A host may write its whole opening at once (initialize, initialized, the lists and a
call): every answer must be the complete one, with no ``list_changed`` for tools that
were only being added.  ``AnswerFirst`` and ``Deferred`` are also driven directly, with
events instead of a process, to pin the order: the second line is read only after the
answer was flushed and the deferred work is done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOL_NAMES
from fast_mcp_gateway.front.server import Deferred, is_opening
from tests.fixtures import PY

pytestmark = pytest.mark.anyio

WELL = Path(__file__).parent / "servers" / "well.py"
GUARD = 200  # seconds: a hang guard only (a real serve and its upstream start)


def request(id_: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


OPENING = [
    request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "eager-host", "version": "1"}}),
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    request(2, "tools/list"),
    request(3, "tools/call", {"name": "gateway_list_servers", "arguments": {}}),
    request(4, "prompts/list"),
    request(5, "resources/list"),
    request(6, "tools/call", {"name": "well_echo", "arguments": {"text": "hi"}}),
    request(7, "ping"),
]

# A 2026-07-28 host (fastmcp's Client in its default "auto" mode) opens with
# server/discover, and stamps every request with its era; it sends no initialized.
ERA_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "eager-host", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def modern(id_: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return request(id_, method, {**(params or {}), "_meta": ERA_META})


MODERN_OPENING = [
    modern(1, "server/discover"),
    modern(2, "tools/list"),
    modern(3, "tools/call", {"name": "gateway_list_servers", "arguments": {}}),
    modern(4, "tools/call", {"name": "well_echo", "arguments": {"text": "hi"}}),
    modern(5, "server/discover"),
]


async def serve_and_answer(tmp_path: Path, lines: list[dict[str, Any]]
                           ) -> tuple[dict[int, Any], list[str]]:
    """Run a real ``mcp-gateway serve``, write ``lines`` in one write, and collect the
    answers by id and the notifications' methods until the last request is answered."""
    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  well: {{command: {PY}, args: [{WELL}]}}\n")
    wanted = {m["id"] for m in lines if "id" in m}
    answers: dict[int, Any] = {}
    notices: list[str] = []
    with (tmp_path / "gateway.log").open("wb") as log:
        process = await anyio.open_process(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--db", str(tmp_path / "store.db"), "--log-level", "WARNING",
             # The lists wait for well's first attempt: nothing connects after them.
             "--startup-wait", "600"],
            env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true"}, stderr=log)
        async with process:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send(
                "".join(json.dumps(m) + "\n" for m in lines).encode())
            buffer = b""
            with anyio.fail_after(GUARD):
                while not wanted <= answers.keys():
                    buffer += await process.stdout.receive()
                    *complete, buffer = buffer.split(b"\n")
                    for raw in complete:
                        message = json.loads(raw)
                        if "id" in message:
                            answers[message["id"]] = message
                        else:
                            notices.append(message["method"])
            await process.stdin.aclose()
            with anyio.fail_after(GUARD):
                await process.wait()
    return answers, notices


def assert_complete(tools: dict[str, Any], servers: dict[str, Any] | None = None) -> None:
    """A ``tools/list`` result with every admin tool and the upstream's, and (given)
    a ``gateway_list_servers`` result naming the one server."""
    names = {tool["name"] for tool in tools["tools"]}
    assert {n for n in names if n.startswith("gateway_")} == ADMIN_TOOL_NAMES
    assert "well_echo" in names
    if servers is not None:
        assert not servers.get("isError"), servers
        assert [s["name"] for s in servers["structuredContent"]["servers"]] == ["well"]


@pytest.mark.timeout(240)
async def test_a_host_writing_its_whole_opening_at_once_gets_complete_answers(
        tmp_path: Path) -> None:
    answers, notices = await serve_and_answer(tmp_path, OPENING)
    assert all("result" in answers[i] for i in answers), answers
    assert_complete(answers[2]["result"], answers[3]["result"])
    assert answers[4]["result"]["prompts"] == []
    assert "resources" in answers[5]["result"]
    assert answers[6]["result"]["content"][0]["text"] == "hi"  # the express lane's
    # Adding the admin tools after the answer is not a change of the catalog.
    assert not [n for n in notices if n.endswith("list_changed")], notices


@pytest.mark.timeout(240)
async def test_a_2026_host_opening_with_discover_gets_the_same_answer_and_complete_lists(
        tmp_path: Path) -> None:
    answers, notices = await serve_and_answer(tmp_path, MODERN_OPENING)
    assert all("result" in answers[i] for i in answers), answers
    # Answered before the admin tools were added, the discover result is the one the
    # gateway gives once its start-up is complete.
    assert answers[1]["result"] == answers[5]["result"]
    assert answers[1]["result"]["supportedVersions"] == ["2026-07-28"]
    assert_complete(answers[2]["result"], answers[3]["result"])
    assert answers[4]["result"]["content"][0]["text"] == "hi"
    assert not [n for n in notices if n.endswith("list_changed")], notices


@pytest.mark.timeout(240)
async def test_a_discover_at_an_unsupported_version_first_is_answered_as_later(
        tmp_path: Path) -> None:
    """An opening the SDK refuses (-32022, naming the versions it serves) is handed on
    at once too; the host's re-probe and lists come after the start-up, complete."""
    unsupported = {**ERA_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    probe = request(1, "server/discover", {"_meta": unsupported})
    answers, _ = await serve_and_answer(tmp_path, [
        probe, modern(2, "server/discover"), modern(3, "tools/list"),
        {**probe, "id": 4}])
    assert answers[1]["error"]["code"] == -32022
    assert answers[1]["error"]["data"]["supported"] == ["2026-07-28"]
    assert answers[1]["error"] == answers[4]["error"]
    assert "result" in answers[2]
    assert_complete(answers[3]["result"])


# -- the parts, in order ---------------------------------------------------------------


class Host:
    """Lines a host sends (fed one by one by the test) and what was written to it."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[str](10)
        self.written: list[str] = []
        self.flushed = 0

    def __aiter__(self) -> Host:
        return self

    async def __anext__(self) -> str:
        try:
            return await self.receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def write(self, text: str) -> None:
        self.written.append(text)

    async def flush(self) -> None:
        self.flushed += 1


INIT = json.dumps(OPENING[0])
DISCOVER = json.dumps(MODERN_OPENING[0])


class Steps:
    """Deferred work that records what it saw: whether the answer was flushed."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.flushed_when_run: list[int] = []
        self.then_ran = False

    def steps(self) -> Any:
        for _ in range(3):
            self.flushed_when_run.append(self.host.flushed)
            yield None

    def then(self) -> None:
        self.then_ran = True


@pytest.mark.parametrize("opening", [INIT, DISCOVER], ids=["initialize", "discover"])
async def test_the_second_line_waits_for_the_answer_and_the_deferred_work(opening: str) -> None:
    host = Host()
    work = Steps(host)
    deferred = Deferred(work.steps(), work.then)
    front = deferred.hold(host, host)
    await host.send.send(opening)
    await host.send.send(json.dumps(OPENING[2]))
    with anyio.fail_after(10):
        assert await front.__anext__() == opening
        assert work.flushed_when_run == []  # the answer comes first
        async with anyio.create_task_group() as tg:
            second: list[str] = []

            async def read() -> None:
                second.append(await front.__anext__())

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            assert second == [] and not deferred.done.is_set()
            await front.write('{"jsonrpc":"2.0","id":1,"result":{}}\n')
            await front.flush()
        assert second == [json.dumps(OPENING[2])]
    assert work.flushed_when_run == [1, 1, 1] and work.then_ran
    assert host.written == ['{"jsonrpc":"2.0","id":1,"result":{}}\n']


async def test_a_first_line_other_than_initialize_runs_the_work_before_it() -> None:
    host = Host()
    work = Steps(host)
    front = Deferred(work.steps(), work.then).hold(host, host)
    await host.send.send(json.dumps(OPENING[2]))
    with anyio.fail_after(10):
        assert await front.__anext__() == json.dumps(OPENING[2])
    assert work.flushed_when_run == [0, 0, 0] and work.then_ran


async def test_the_fallback_releases_the_next_line_without_an_answer() -> None:
    host = Host()
    work = Steps(host)
    deferred = Deferred(work.steps(), work.then)
    front = deferred.hold(host, host)
    opened = anyio.Event()
    await host.send.send(INIT)
    await host.send.send(json.dumps(OPENING[2]))
    with anyio.fail_after(10):
        assert await front.__anext__() == INIT
        async with anyio.create_task_group() as tg:
            tg.start_soon(deferred.run_after, opened)
            second: list[str] = []

            async def read() -> None:
                second.append(await front.__anext__())

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            assert second == []
            opened.set()
        assert second == [json.dumps(OPENING[2])]
    assert work.then_ran and host.flushed == 0


async def test_deferred_work_runs_once_and_a_failure_reaches_its_first_caller() -> None:
    runs: list[int] = []

    def steps() -> Any:
        runs.append(1)
        yield None
        raise RuntimeError("broken step")

    deferred = Deferred(steps(), lambda: None)
    with pytest.raises(RuntimeError, match="broken step"):
        await deferred.run()
    assert deferred.done.is_set()
    await deferred.run()  # done (it failed): nothing runs again
    assert runs == [1]


def test_only_an_initialize_or_discover_request_opens() -> None:
    assert is_opening(INIT) and is_opening(DISCOVER)
    assert not is_opening(json.dumps({"jsonrpc": "2.0", "method": "initialize"}))
    assert not is_opening(json.dumps({"jsonrpc": "2.0", "method": "server/discover"}))
    assert not is_opening('{"method": "initialize", "id": 1')  # not JSON
    assert not is_opening(json.dumps(OPENING[2]))
    assert not is_opening(json.dumps(modern(2, "tools/list", {"cursor": "server/discover"})))
    assert not is_opening(json.dumps([OPENING[0]]))


async def test_a_deferring_gateway_served_in_process_adds_them_before_any_request() -> None:
    """Library mode (and the SDK's threaded stdio) has no ``AnswerFirst``: the lifespan
    does the deferred work before the first request."""
    from fastmcp import Client

    from fast_mcp_gateway import Gateway, GatewaySettings, parse_config

    gateway = Gateway(parse_config({"servers": {}}, source="test"),
                      GatewaySettings(db=None, startup_wait=600.0), answer_first=True)
    assert not gateway.started.done.is_set()
    assert gateway.provider.own == {}  # not added yet (each one added is registered here)
    with anyio.fail_after(GUARD):
        async with Client(gateway.server) as client:
            names = {tool.name for tool in await client.list_tools()}
    assert gateway.started.done.is_set() and gateway.provider.own.keys() == ADMIN_TOOL_NAMES
    assert {n for n in names if n.startswith("gateway_")} == ADMIN_TOOL_NAMES


# A serve whose fallback (the deferred work once the start-up gate opens) is held until
# SIGUSR1, saying on stderr when the gate opened: the window in which a host's first
# line comes after the gate but before the admin tools are added, pinned open.
HELD_FALLBACK = """\
import signal, sys
import anyio
from fast_mcp_gateway.front import server

async def run_after(self, event):
    await event.wait()
    sys.stderr.write("held: gate opened\\n")
    sys.stderr.flush()
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            break
    await self.run()

server.Deferred.run_after = run_after
from fast_mcp_gateway.cli.main import main
sys.exit(main())
"""


@pytest.mark.timeout(240)
async def test_a_first_list_after_the_gate_opened_waits_for_the_admin_tools(
        tmp_path: Path) -> None:
    """A 2026-07-28 host need not open with ``server/discover`` (a pinned client sends
    its first list at once): if that list comes once the gate opened, the express lane
    must not answer it from a catalog the admin tools are still being added to."""
    wrapper = tmp_path / "serve.py"
    wrapper.write_text(HELD_FALLBACK)
    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  well: {{command: {PY}, args: [{WELL}]}}\n")
    process = await anyio.open_process(
        [PY, str(wrapper), "serve", "--config", str(config), "--db",
         str(tmp_path / "store.db"), "--log-level", "WARNING"],
        env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true"})
    async with process:
        assert process.stdin and process.stdout and process.stderr
        with anyio.fail_after(GUARD):
            said = b""
            while b"held: gate opened" not in said:
                said += await process.stderr.receive()
            await process.stdin.send(json.dumps(modern(2, "tools/list")).encode() + b"\n")
            buffer = b""
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        answer = json.loads(buffer.split(b"\n")[0])
        names = {tool["name"] for tool in answer["result"]["tools"]}
        assert {n for n in names if n.startswith("gateway_")} == ADMIN_TOOL_NAMES
        assert "well_echo" in names
        await process.stdin.aclose()
        with anyio.fail_after(GUARD):
            await process.wait()
