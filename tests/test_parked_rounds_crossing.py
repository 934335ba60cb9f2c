"""A 2026-07-28 host's round that reaches another gateway instance than the one holding
its question is carried there through the shared PostgreSQL store (front/crossing.py).

Behind nginx round-robin over three gateways sharing keys and a store, 12 of 12
`ctx.elicit()` calls of a handshake-era upstream failed at their second round: the
instance it reached refused it, naming the one that held the question.  Two real
gateways on a real PostgreSQL here, served over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx2
import pytest
import yaml
from fastmcp import Context, FastMCP

from fast_mcp_gateway.gateway import Gateway
from tests.fixtures import make_gateway, memory_entry, stdio_entry, until
from tests.pg import free_port
from tests.stdio_gateway import CLI
from tests.test_request_state import KEY, served
from tests.test_scaleout_trial import pushing_upstream
from tests.test_tasks import ALICE, ALICE_SHA, post

AUTH = {"tokens": [{"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"]}]}
ASKING = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
BIG = 1024 * 1024
HUNG = anyio.Event()  # (set by the upstream's ``hang`` as its call is cancelled)

pytestmark = pytest.mark.anyio


def asking_upstream() -> FastMCP[Any]:
    """FastMCP tools that ask with ``ctx.elicit()`` (handshake-era pushes): ``ask``
    (``pushing_upstream``'s) and more."""
    mcp = pushing_upstream()

    @mcp.tool
    async def twice(ctx: Context) -> str:
        first = await ctx.elicit("Your name?", response_type=str)
        second = await ctx.elicit("Your friend's name?", response_type=str)
        return f"{getattr(first, 'data', None)} and {getattr(second, 'data', None)}"

    @mcp.tool
    async def hang(ctx: Context) -> str:
        await ctx.elicit("Go on?", response_type=str)
        try:
            await anyio.sleep_forever()
        finally:
            HUNG.set()  # the upstream call was cancelled
        return "never"

    @mcp.tool
    async def big(ctx: Context) -> str:
        answer = await ctx.elicit("Which letter?", response_type=str)
        return str(getattr(answer, "data", "?")) * BIG

    return mcp


def gateway(name: str, db: str, entry: dict[str, Any],
            memory: dict[str, FastMCP[Any]] | None = None, **settings: Any) -> Gateway:
    return make_gateway({"asker": entry}, memory, request_state_keys=[KEY], db=db,
                        instance_id=name, options={"auth": AUTH}, **settings)


@asynccontextmanager
async def two_gateways(pg_url: str) -> AsyncIterator[tuple[httpx2.AsyncClient,
                                                           httpx2.AsyncClient]]:
    upstream = asking_upstream()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": upstream})
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        for one in (first, second):  # each listens on its channel of the store
            crossing = getattr(one.parking, "crossing", None)  # (none before: refused)
            if crossing is not None:
                await until(lambda c=crossing: c.listening, 30)  # type: ignore[misc]
        yield to_a, to_b


def answer(tool: str, asked: dict[str, Any], value: str) -> dict[str, Any]:
    ((key, _),) = asked["inputRequests"].items()
    return {"name": tool, "requestState": asked["requestState"],
            "inputResponses": {key: {"action": "accept", "content": {"value": value}}}}


async def asked_of(http: httpx2.AsyncClient, tool: str) -> dict[str, Any]:
    asked = (await post(http, ALICE, "tools/call", {"name": tool}, ASKING))["result"]
    assert asked["resultType"] == "input_required", asked
    return dict(asked)


async def rows_left(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM parked_rounds"))
    finally:
        await conn.close()


async def first_row(pg_url: str, seen: list[str]) -> None:
    """Put the first ``parked_rounds`` payload another task writes into ``seen``."""
    conn = await asyncpg.connect(pg_url)
    try:
        while not seen:
            payload = await conn.fetchval("SELECT payload FROM parked_rounds")
            if payload is not None:
                seen.append(payload)
            await anyio.sleep(0.02)
    finally:
        await conn.close()


async def listening(*gateways: Gateway) -> None:
    """Return once each of ``gateways`` listens on its channel of the store."""
    for one in gateways:
        crossing = one.parking.crossing
        assert crossing is not None
        await until(lambda c=crossing: c.listening, 30)  # type: ignore[misc]


async def test_an_answer_reaching_another_instance_completes_the_call(pg_url: str) -> None:
    async with two_gateways(pg_url) as (to_a, to_b):
        asked = await asked_of(to_a, "asker_ask")
        done = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked, "Ada"), ASKING)
        assert done["result"]["content"][0]["text"] == "hello Ada", done
        # Collected: the same round again is told so, not answered twice upstream.
        again = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked, "Eve"),
                           ASKING)
        assert "already returned its result" in json.dumps(again), again
        # A second question crosses back the same way, and its answer too.
        asked = await asked_of(to_a, "asker_twice")
        second = (await post(to_b, ALICE, "tools/call", answer("asker_twice", asked, "Ada"),
                             ASKING))["result"]
        assert second["resultType"] == "input_required", second
        assert "friend" in json.dumps(second["inputRequests"]), second
        done = await post(to_b, ALICE, "tools/call", answer("asker_twice", second, "Bob"),
                          ASKING)
        assert done["result"]["content"][0]["text"] == "Ada and Bob", done
    assert await rows_left(pg_url) == 0  # every message deleted by its taker


async def test_a_large_result_crosses_back(pg_url: str) -> None:
    async with two_gateways(pg_url) as (to_a, to_b):
        asked = await asked_of(to_a, "asker_big")
        done = await post(to_b, ALICE, "tools/call", answer("asker_big", asked, "x"), ASKING)
        assert done["result"]["content"][0]["text"] == "x" * BIG
    assert await rows_left(pg_url) == 0


@pytest.mark.timeout(180)
async def test_a_holder_killed_meanwhile_is_a_clear_error_within_its_lease(
        pg_url: str, tmp_path: Path) -> None:
    """The holder is a real ``serve`` process, killed -9 after it asked: the round
    reaching the other instance is told the holder is gone once its lease ends (30 s),
    instead of waiting for ever."""
    config = tmp_path / "servers.yaml"
    entry = stdio_entry("asker.py", protocol="legacy")
    config.write_text(yaml.safe_dump({"gateway": {"auth": AUTH}, "servers": {"asker": entry}}))
    port = free_port()
    holder = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [*CLI, "serve", "--transport", "http", "--port", str(port), "--config", str(config),
         "--db", pg_url, "--instance-id", "gw-a"], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MCP_GATEWAY_REQUEST_STATE_KEYS": KEY}, start_new_session=True)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as to_a:
            with anyio.fail_after(60):
                while True:
                    try:
                        if (await to_a.get("/health")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        pass
                    assert holder.poll() is None, "the holder's serve exited"
                    await anyio.sleep(0.1)
            asked = (await post(to_a, ALICE, "tools/call",
                                {"name": "asker_ask", "arguments": {"tag": "t"}},
                                ASKING))["result"]
            assert asked["resultType"] == "input_required", asked
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        other = gateway("gw-b", pg_url, entry)
        async with served(other, gateway("gw-c", pg_url, entry)) as (to_b, _):
            round_two = {**answer("asker_ask", asked, "Ada"), "arguments": {"tag": "t"}}
            told = json.dumps(await post(to_b, ALICE, "tools/call", round_two, ASKING))
        assert "the gateway instance 'gw-a' that holds the question is gone" in told, told
        assert "call it again without requestState" in told and "Ada" not in told
        assert "and the call to server 'asker' ended with it" in told, told  # not "'asker''s"
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    assert await rows_left(pg_url) == 0  # the round withdrawn


async def test_a_round_is_taken_once(pg_url: str) -> None:
    """Two takers of one round (a notification heard twice, two listeners of one
    instance id): one gets it, so the upstream is answered once."""
    from fast_mcp_gateway.store import open_store
    from fast_mcp_gateway.store.postgres_rounds import rounds_of

    store = await open_store(pg_url)
    try:
        rounds = rounds_of(store)
        assert rounds is not None
        await rounds.post("round", "k1", "gw-a", "gw-b", "sealed")
        got: list[object] = []

        async def take() -> None:
            got.append(await rounds.take("round", "k1", "gw-a"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            tg.start_soon(take)
        assert sorted(got, key=str) == [("gw-b", "sealed"), None]
    finally:
        await store.close()
    assert await rows_left(pg_url) == 0


async def test_a_round_nobody_takes_is_withdrawn_at_the_ask_timeout_its_answers_sealed(
        pg_url: str) -> None:
    """The holder runs (its lease is held) but does not listen: the round is withdrawn
    once the ask timeout passes, and the host told so; meanwhile the store holds the
    answers sealed (never in the clear)."""
    upstream = asking_upstream()
    entry = memory_entry("asker", protocol="legacy")
    first = make_gateway({"asker": entry}, {"asker": upstream}, request_state_keys=[KEY],
                         db=pg_url, instance_id="gw-a", options={"auth": AUTH}, ask_timeout=3)
    second = make_gateway({"asker": entry}, {"asker": upstream}, request_state_keys=[KEY],
                          db=pg_url, instance_id="gw-b", options={"auth": AUTH}, ask_timeout=3)
    first.parking.crossing = None  # gw-a holds its question, and hears no round
    async with served(first, second) as (to_a, to_b):
        asked = await asked_of(to_a, "asker_ask")
        seen: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_row, pg_url, seen)
            told = json.dumps(await post(to_b, ALICE, "tools/call",
                                         answer("asker_ask", asked, "Ada-s3cret"), ASKING))
            tg.cancel_scope.cancel()
    assert "'gw-a' that holds the question did not take the answers within 3s" in told, told
    assert "a gateway of a version before schema 13 carries no rounds" in told, told  # (mixed)
    assert seen and "Ada-s3cret" not in seen[0] and "Ada" not in told, seen
    assert await rows_left(pg_url) == 0


async def test_a_host_giving_up_on_a_crossed_round_cancels_the_call_upstream(
        pg_url: str) -> None:
    """As a host cancelling a round served where the call waits: the holder cancels
    the upstream call (its ``notifications/cancelled``), not left running unseen."""
    global HUNG
    HUNG = anyio.Event()
    upstream = asking_upstream()
    entry = memory_entry("asker", protocol="legacy")
    # (No call timeout ends the upstream call meanwhile: only the host's cancel does.)
    first, second = (gateway(name, pg_url, entry, {"asker": upstream}, call_timeout=600)
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        await listening(first, second)
        asked = await asked_of(to_a, "asker_hang")
        held = next(iter(first.parking._calls.values()))
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, to_b, ALICE, "tools/call", answer("asker_hang", asked, "y"),
                          ASKING)
            await until(lambda: held.current is not None, 30)  # the holder took the round
            tg.cancel_scope.cancel()  # the host gives up (its HTTP request ends)
        with anyio.fail_after(30):
            await HUNG.wait()


async def test_a_round_that_does_not_read_as_one_is_refused_and_the_holder_goes_on(
        pg_url: str) -> None:
    """A row addressed to an instance whose payload is not a round (written by another
    version, or by hand): its sender is told so, and the holder goes on carrying rounds.
    It used to raise in the holder's listener before any reply: a background task
    failing, which stopped the holder gateway (review25)."""
    from fast_mcp_gateway.store.postgres_rounds import channel

    async with two_gateways(pg_url) as (to_a, to_b):
        conn = await asyncpg.connect(pg_url)
        try:
            for n, payload in enumerate(("not json", "[1]", "{}")):
                await conn.execute(
                    "INSERT INTO parked_rounds (id, kind, addressee, sender, payload, at)"
                    " VALUES ($1, 'round', 'gw-a', 'gw-b', $2, 0)", f"bad{n}", payload)
                await conn.execute("SELECT pg_notify($1, $2)", channel("gw-a"), f"round:bad{n}")
            replies: list[Any] = []

            async def replied() -> None:
                replies[:] = await conn.fetch("SELECT payload FROM parked_rounds"
                                              " WHERE kind = 'reply' AND addressee = 'gw-b'")

            with anyio.fail_after(30):
                while len(replies) < 3:
                    await replied()
                    await anyio.sleep(0.05)
            for (text,) in replies:
                assert "does not read as a round" in json.loads(text)["detail"], text
            await conn.execute("DELETE FROM parked_rounds")
        finally:
            await conn.close()
        asked = await asked_of(to_a, "asker_ask")
        done = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked, "Ada"), ASKING)
        assert done["result"]["content"][0]["text"] == "hello Ada", done
    assert await rows_left(pg_url) == 0


async def test_a_reply_left_as_the_host_gives_up_is_deleted(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's reply is in the store when the receiving instance's host gives up
    (before it took the reply): the receiver deletes it, not left (with a result of any
    size) until a listener starts again after KEEP_SECONDS (review25)."""
    from fast_mcp_gateway.front import crossing as crossing_module

    monkeypatch.setattr(crossing_module, "POLL_SECONDS", 600.0)  # the receiver only polls
    upstream = asking_upstream()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": upstream})
                     for name in ("gw-a", "gw-b"))
    receiver = second.parking.crossing
    assert receiver is not None

    async def deaf(**_: Any) -> None:  # gw-b hears no reply: it would take it at its poll
        return None

    receiver.run = deaf  # type: ignore[method-assign]
    async with served(first, second) as (to_a, to_b):
        crossing = first.parking.crossing
        assert crossing is not None
        await until(lambda: crossing.listening, 30)
        asked = await asked_of(to_a, "asker_big")
        conn = await asyncpg.connect(pg_url)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, to_b, ALICE, "tools/call", answer("asker_big", asked, "x"),
                              ASKING)
                with anyio.fail_after(30):
                    while not await conn.fetchval(  # noqa: ASYNC110 - rows: no event
                            "SELECT count(*) FROM parked_rounds WHERE kind = 'reply'"):
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()  # the host gives up, the reply not taken
            with anyio.fail_after(30):
                while await conn.fetchval(  # noqa: ASYNC110 - rows: no event
                        "SELECT count(*) FROM parked_rounds"):
                    await anyio.sleep(0.05)
        finally:
            await conn.close()


async def test_a_listening_holder_checks_its_connection_and_the_rows_left(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener connection can die without a word (a NAT or firewall dropping an idle
    connection): no notification comes, and none says it is lost.  The listening holder
    checks its connection every ``CHECK_SECONDS`` and reads the rounds left for it then
    (a round whose notification it missed is taken), and deletes the rows nobody took
    within ``KEEP_SECONDS``.  It used to wait on the notifications alone: every round
    for it was withdrawn at the ask timeout until it restarted, and old rows stayed
    until some instance started listening (review25)."""
    from fast_mcp_gateway.front import crossing as crossing_module

    monkeypatch.setattr(crossing_module, "CHECK_SECONDS", 0.2, raising=False)
    async with two_gateways(pg_url):
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(  # a reply of a sender gone long ago, and a round unheard
                "INSERT INTO parked_rounds (id, kind, addressee, sender, payload, at)"
                " VALUES ('old', 'reply', 'gw-b', 'gw-a', 'x', 0),"
                " ('unheard', 'round', 'gw-a', 'gw-b', '{}', extract(epoch from now()))")
            with anyio.fail_after(30):
                while await conn.fetchval(  # noqa: ASYNC110 - rows: no event
                        "SELECT count(*) FROM parked_rounds"
                        " WHERE id = 'old' OR (id = 'unheard' AND kind IN ('round', 'taken'))"
                        " OR NOT EXISTS (SELECT 1 FROM parked_rounds WHERE id = 'unheard')"):
                    await anyio.sleep(0.05)
            told = await conn.fetchval("SELECT payload FROM parked_rounds"
                                       " WHERE id = 'unheard' AND kind = 'reply'")
            assert "does not read as a round" in told, told
            await conn.execute("DELETE FROM parked_rounds")
        finally:
            await conn.close()
