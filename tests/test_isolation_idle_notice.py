"""``isolation: per_client``: a host whose session was reaped because it sat idle longer
than ``idle_timeout`` is told at its next call that gets a session (a new one: whatever a
stateful server kept for the old one is gone), as a host whose session was given back
is (``tests/test_isolation_given_back.py``): a warning log and the result's ``_meta``,
once.

Real upstream processes, real HTTP on 127.0.0.1; processes are checked by pid, the reap
waited on as the session count it changes (no timing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp_types import ElicitResult

from fast_mcp_gateway.front.results import CACHE_META
from fast_mcp_gateway.routing.isolation import NOTICE_LOGGER, SESSION_META
from tests.fixtures import make_gateway, serve_http, until
from tests.test_asks_routing import records
from tests.test_isolation import ALICE, BOB, asker, gone
from tests.test_isolation_given_back import TOKENS, Logs

pytestmark = pytest.mark.anyio

IDLE = 0.2  # seconds: reaped as soon as the test waits for it


def told(meta: dict[str, Any] | None) -> str:
    """The message of a result's idle notice (checked for what it must say)."""
    assert meta is not None and SESSION_META in meta, meta
    notice = meta[SESSION_META]
    assert {k: v for k, v in notice.items() if k != "message"} == {
        "renewed": True, "server": "asker", "reason": "idle", "idle_timeout": IDLE}
    message: str = notice["message"]
    for words in ("server 'asker': this call runs on a new upstream session",
                  f"idle for more than {IDLE:g}s", f"idle_timeout: {IDLE:g}s",
                  "is gone", "raise idle_timeout for server 'asker' in servers.yaml",
                  "keep the session busy"):
        assert words in message, (words, message)
    return message


def late(answer: anyio.Event) -> Any:
    """An elicitation handler answering ``late`` once ``answer`` is set."""

    async def answering(message: str, response_type: Any, params: Any,
                        context: Any) -> ElicitResult:
        await answer.wait()
        (name,) = params.requested_schema["properties"]
        return ElicitResult(action="accept", content={name: "late"})

    return answering


async def test_a_host_whose_session_was_reaped_idle_is_told_at_its_next_call(
        tmp_path: Path) -> None:
    """alice's session is reaped idle; her next call (a question she answers late, so
    the new session stays busy and is not reaped meanwhile) runs on a new process and
    says so in a warning log and its result's ``_meta``; her other calls on that session
    carry nothing.  Reaped idle again: a cached answer opens no session and carries
    nothing, the next call that opens one is told."""
    gateway = make_gateway(
        {"asker": asker(tmp_path / "asker.jsonl", idle_timeout=IDLE,
                        tools={"cache": {"my_digest": {"ttl": 600}}})},
        options=TOKENS)
    clients = gateway.manager.get("asker").clients
    assert clients is not None
    logs = Logs()
    answer = anyio.Event()
    answering = late(answer)

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE, log_handler=logs,
               elicitation_handler=answering) as host,
    ):
        first = (await host.call_tool("asker_pid", {})).data
        await until(lambda: clients.reaped == 1)  # idle: reaped, the host still connected
        await gone(first)
        assert logs.got == []  # told at its next call, not when reaped
        asked: dict[str, Any] = {}

        async def ask() -> None:
            asked["result"] = await host.call_tool("asker_ask", {"tag": "A"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            log = await logs.first()  # the ask opened the new session: the host is told
            assert (log.level, log.logger) == ("warning", NOTICE_LOGGER)
            # The ask is in flight, so its session is not reaped: these share it.
            second = await host.call_tool("asker_pid", {})
            assert second.data != first and SESSION_META not in (second.meta or {})
            digest = await host.call_tool("asker_my_digest", {})
            assert SESSION_META not in (digest.meta or {})
            answer.set()
        result = asked["result"]
        assert result.data == "A:accept:late"
        message = told(result.meta)
        assert log.data == message and ALICE not in message
        assert len(logs.got) == 1  # once

        await until(lambda: clients.reaped == 2)  # idle again
        await gone(second.data)
        cached = await host.call_tool("asker_my_digest", {})  # no session: nothing said
        assert CACHE_META in (cached.meta or {}) and SESSION_META not in (cached.meta or {})
        third = await host.call_tool("asker_pid", {})
        assert third.data not in (first, second.data)
        assert told(third.meta) == message
        await until(lambda: len(logs.got) == 2)
        assert logs.got[1].data == message


async def test_a_refusal_for_want_of_room_says_the_idle_session_is_gone(
        tmp_path: Path) -> None:
    """``max_clients: 1``: alice's session is reaped idle and bob's question in flight
    holds the one slot, so alice is refused, told her previous session was closed after
    idle_timeout; once bob left, her next call is told as above."""
    record = tmp_path / "asker.jsonl"
    gateway = make_gateway(
        {"asker": asker(record, idle_timeout=IDLE, max_clients=1)},
        options=TOKENS)
    clients = gateway.manager.get("asker").clients
    assert clients is not None
    answer = anyio.Event()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy", auth=ALICE) as alice:
        first = (await alice.call_tool("asker_pid", {})).data
        await until(lambda: clients.reaped == 1)
        await gone(first)
        async with Client(f"{base}/mcp", mode="legacy", auth=BOB,
                          elicitation_handler=late(answer)) as bob:
            async with anyio.create_task_group() as tg:
                tg.start_soon(bob.call_tool, "asker_ask", {"tag": "B"})
                await until(lambda: any(r["event"] == "ask" for r in records(record)))
                with pytest.raises(ToolError) as refused:
                    await alice.call_tool("asker_pid", {})
                answer.set()
            assert f"(this host's previous session was closed after idle_timeout " \
                f"({IDLE:g}s): its next session is a new one)" in str(refused.value)
        await until(lambda: not clients.upstreams)  # bob left: the slot is free
        again = await alice.call_tool("asker_pid", {})
        assert again.data != first
        told(again.meta)
