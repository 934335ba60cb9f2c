"""``isolation: per_client``: one upstream session (process) per host session, created
on first use, capped, reaped when the host leaves and when idle; none left behind.

Real upstream processes, real HTTP on 127.0.0.1; processes are checked by pid.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.admin.servers import status_of
from fast_mcp_gateway.config.loader import ConfigError
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.processes import is_alive
from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_asks_routing import WITHIN, answering, listed, records, stdio_gateway, until

pytestmark = pytest.mark.anyio


async def gone(*pids: int) -> None:
    """Until none of ``pids`` is alive (the gateway reaps them in this event loop)."""
    await until(lambda: not any(is_alive(pid) for pid in pids))


def asker(record: Path, **extra: Any) -> dict[str, Any]:
    return stdio_entry("asker.py", "stdio", "--record", str(record), protocol="legacy",
                       isolation="per_client", **extra)


async def test_each_http_host_gets_its_own_process_reaped_when_it_leaves_or_idles(
        tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway({"asker": asker(record, max_clients=2, idle_timeout=600.0)})
    service = gateway.manager.get("asker")
    seen: dict[str, list[str]] = {}
    pids: dict[str, int] = {}
    async with serve_http(gateway.http_app("http")) as base:
        await until(lambda: service.replicas[0].pid is not None)
        catalog_pid = service.replicas[0].pid
        assert catalog_pid is not None

        def both_asking() -> bool:
            return sum(r["event"] == "ask" for r in records(record)) >= 2

        async with (
            Client(f"{base}/mcp", mode="legacy",
                   elicitation_handler=answering("A", seen, both_asking)) as a,
            Client(f"{base}/mcp", mode="legacy",
                   elicitation_handler=answering("B", seen, both_asking)) as b,
        ):
            pids["A"] = (await a.call_tool("asker_pid", {})).data
            pids["B"] = (await b.call_tool("asker_pid", {})).data
            assert len({pids["A"], pids["B"], catalog_pid}) == 3
            assert (await a.call_tool("asker_pid", {})).data == pids["A"]  # kept
            results: dict[str, str] = {}

            async def call(client: Client[Any], tag: str) -> None:
                results[tag] = (await client.call_tool("asker_ask", {"tag": tag})).data

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, a, "A")
                tg.start_soon(call, b, "B")
            assert results == {"A": "A:accept:answer-from-A", "B": "B:accept:answer-from-B"}
            asked = {r["tag"]: r["pid"] for r in records(record) if r["event"] == "ask"}
            assert asked == pids  # each host's call ran in its own process

            # A third host is over max_clients: a clear refusal, no process started.
            async with Client(f"{base}/mcp", mode="legacy") as c:
                with pytest.raises(ToolError, match=r"max_clients: 2.*raise max_clients"):
                    await c.call_tool("asker_pid", {})
            assert len(service.clients.upstreams) == 2  # type: ignore[union-attr]
            # Operators see them: status (admin tools, REST, dashboard) and /metrics.
            status = status_of(service)
            assert status.isolation == "per_client" and status.client_sessions is not None
            sessions = status.client_sessions
            assert (sessions.active, sessions.max_clients, sessions.created,
                    sessions.ended) == (2, 2, 2, 0)
            assert {s.pid for s in sessions.sessions} == set(pids.values())
            async with httpx2.AsyncClient() as http:
                scrape = (await http.get(f"{base}/metrics")).text
                page = (await http.get(f"{base}/ui/servers/asker")).text
            assert "Per-client sessions: 2 of at most 2 open, 2 opened, 0 ended" in page
            for series in ("client_sessions", "client_sessions_limit",
                           "client_sessions_created_total"):
                assert f'mcp_gateway_{series}{{mcp_gateway_server="asker"}} 2.0' in scrape

            # Host A leaves: its process goes; B's stays while B is connected and busy.
            await a.close()
            await gone(pids["A"])
            assert is_alive(pids["B"])
        # B has left too; its process is reaped (on leaving, or at the latest when idle).
        await gone(pids["B"])
        assert service.clients is not None and service.clients.upstreams == []
        ended = status_of(service).client_sessions
        assert ended is not None and (ended.active, ended.ended) == (0, 2)
    assert seen == {"A": ["question for A"], "B": ["question for B"]}
    await gone(catalog_pid, *pids.values())


ALICE, BOB = "mgw_alice-7d0c5e2b9a41f3c8", "mgw_bob-1e6f0a9d4c27b583"


async def test_one_token_cannot_hold_every_slot_against_another(tmp_path: Path) -> None:
    """A handshake-era host is a connection, so one token opening two MCP sessions took
    both of ``max_clients: 2`` and bob was refused.  Now the caller holding the most
    (two more than bob) gives back its least recently used idle session; once they
    hold one each, neither takes the other's, and the refusal says why and what to do."""
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway(
        {"asker": asker(record, max_clients=2, idle_timeout=600.0)},
        options={"auth": {"tokens": [{"name": "alice", "token": ALICE, "scopes": ["tools"]},
                                     {"name": "bob", "token": BOB, "scopes": ["tools"]}]}})
    service = gateway.manager.get("asker")
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE) as first,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE) as second,
        Client(f"{base}/mcp", mode="legacy", auth=BOB) as bob,
    ):
        older = (await first.call_tool("asker_pid", {})).data
        newer = (await second.call_tool("asker_pid", {})).data
        assert (await second.call_tool("asker_pid", {})).data == newer
        # Full, both alice's: bob gets one, alice's least recently used goes.
        mine = (await bob.call_tool("asker_pid", {})).data
        assert mine not in (older, newer)
        await gone(older)
        assert is_alive(newer)
        assert service.clients is not None and service.clients.reclaimed == 1
        # One each now: alice's first session back gets none of bob's...
        with pytest.raises(ToolError) as refused:
            await first.call_tool("asker_pid", {})
        message = str(refused.value)
        assert "already serves 2 host sessions (max_clients: 2), 1 of them held by " \
            "caller 'alice' (this host's previous session was given back for another " \
            "caller: its next session is a new one); no other caller holds two more " \
            "than that" in message
        assert "close another MCP session of caller 'alice'" in message
        assert "raise max_clients for server 'asker'" in message and "bob" not in message
        # ...nor does bob's second session get alice's.
        async with Client(f"{base}/mcp", mode="legacy", auth=BOB) as again:
            with pytest.raises(ToolError, match=r"1 of them held by caller 'bob'"):
                await again.call_tool("asker_pid", {})
        assert (await bob.call_tool("asker_pid", {})).data == mine
        assert (await second.call_tool("asker_pid", {})).data == newer
    await gone(newer, mine)


async def test_a_session_with_a_call_in_flight_is_never_given_back(tmp_path: Path) -> None:
    """Only an idle session is given back: while each of alice's has a call in flight
    (a question she has not answered), bob is refused, told to retry when one is idle;
    once her calls ended, his next call gets one."""
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway(
        {"asker": asker(record, max_clients=2, idle_timeout=600.0)},
        options={"auth": {"tokens": [{"name": "alice", "token": ALICE, "scopes": ["tools"]},
                                     {"name": "bob", "token": BOB, "scopes": ["tools"]}]}})
    seen: dict[str, list[str]] = {}
    answer = anyio.Event()
    answered: list[str] = []

    async def ask(client: Client[Any], tag: str) -> None:
        answered.append((await client.call_tool("asker_ask", {"tag": tag})).data)

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE,
               elicitation_handler=answering("A1", seen, answer.is_set)) as first,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE,
               elicitation_handler=answering("A2", seen, answer.is_set)) as second,
        Client(f"{base}/mcp", mode="legacy", auth=BOB) as bob,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, first, "A1")
            tg.start_soon(ask, second, "A2")
            await until(lambda: len(seen) == 2)  # both asking: each session has a call
            with pytest.raises(ToolError, match=r"0 of them held by caller 'bob'; another "
                               r"caller holds more, but each of its sessions has a call in "
                               r"flight: retry when one is idle"):
                await bob.call_tool("asker_pid", {})
            answer.set()
        assert sorted(answered) == ["A1:accept:answer-from-A1", "A2:accept:answer-from-A2"]
        assert isinstance((await bob.call_tool("asker_pid", {})).data, int)


async def test_an_idle_host_session_is_reaped_and_reopened_on_its_next_call(
        tmp_path: Path) -> None:
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway({"asker": asker(record, idle_timeout=0.5)})
    service = gateway.manager.get("asker")
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy") as host:
        first = (await host.call_tool("asker_pid", {})).data
        await gone(first)  # idle: reaped, host still connected
        assert service.clients is not None
        await until(lambda: service.clients is not None and not service.clients.upstreams)
        second = (await host.call_tool("asker_pid", {})).data
        assert second != first and is_alive(second)
    await gone(second)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full-path"])
async def test_a_stdio_gateway_gives_its_one_host_one_session_with_its_logs(
        tmp_path: Path, lane: bool) -> None:
    """stdio mode: one host, so per_client is one session of its own (besides the
    catalog session); concurrent asks all go to it, and so do its logs between calls."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    seen: dict[str, list[str]] = {}
    logs: list[Any] = []
    logged = anyio.Event()

    async def on_log(message: Any) -> None:
        logs.append(message)
        logged.set()

    def both_asking() -> bool:
        return sum(r["event"] == "ask" for r in records(record)) >= 2

    async with Client(stdio_gateway(tmp_path, record, lane=lane, isolation="per_client"),
                      mode="legacy", log_handler=on_log,
                      elicitation_handler=answering("host", seen, both_asking)) as host:
        await listed(host, "asker_ask")
        pids = {(await host.call_tool("asker_pid", {})).data for _ in range(3)}
        assert len(pids) == 1
        async with anyio.create_task_group() as tg:
            for tag in ("X", "Y"):
                tg.start_soon(host.call_tool, "asker_ask", {"tag": tag})
        assert {r["pid"] for r in records(record) if r["event"] == "ask"} == pids
        await host.call_tool("asker_log_later", {"text": "idle", "go": str(go)})
        go.touch()
        with anyio.fail_after(WITHIN):
            await logged.wait()
    assert sorted(seen["host"]) == ["question for X", "question for Y"]
    assert "idle" in str(logs[0].data)
    await gone(*pids)


async def test_a_host_waits_for_its_session_while_the_server_visibly_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A per-client session whose server takes longer than ``timeouts.connect`` + 5 s to
    start, working all along (a first ``npx`` download), is waited for: its first
    caller gets the answer, not "unavailable" once ``connect + 5`` s passed."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.processes")
    release = tmp_path / "release"
    await anyio.Path(f"{release}.1").touch()  # the first process (the catalog) starts now
    gateway = make_gateway({"slow": stdio_entry(
        "slow_start.py", str(release), "--per-process", isolation="per_client",
        timeouts={"connect": 1.0})})  # its stderr lines are its activity: 0.2 s judged
    service = gateway.manager.get("slow")  # it idle when a loaded loop read them late

    def waited_past_the_old_bound() -> bool:  # connect + 5 = 6 s of extensions
        return any(int(m[1]) >= 7 for r in caplog.records
                   if (m := re.search(r"still connecting after (\d+)s", r.getMessage())))

    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy") as host:
        await until(lambda: service.replicas[0].state is UpstreamState.READY)
        answers: list[int] = []

        async def first_call() -> None:
            answers.append((await host.call_tool("slow_pid", {})).data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_call)
            await until(waited_past_the_old_bound, within=60)
            await anyio.Path(f"{release}.2").touch()  # the host's own process may start
        assert answers and answers[0] != service.replicas[0].pid and is_alive(answers[0])
    await gone(answers[0])


def test_isolation_is_validated() -> None:
    with pytest.raises(ConfigError, match="must be 'shared' or 'per_client'"):
        parse_config({"servers": {"s": {"command": "x", "isolation": "per-client"}}},
                     source="t")
    with pytest.raises(ConfigError, match="'replicas' and 'instances' do not apply"):
        parse_config({"servers": {"s": {"command": "x", "isolation": "per_client",
                                        "replicas": 2}}}, source="t")
    with pytest.raises(ConfigError, match="max_clients"):
        parse_config({"servers": {"s": {"command": "x", "max_clients": 0}}}, source="t")
    config = parse_config({"servers": {"s": {"command": "x", "isolation": "per_client",
                                             "max_clients": 4, "idle_timeout": 60}}},
                          source="t")
    assert config.servers["s"].per_client and config.servers["s"].max_clients == 4
