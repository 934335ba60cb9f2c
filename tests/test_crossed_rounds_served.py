"""A crossed round while the holder serves it (front/crossing.py): its deadline, a
cancel before it is served, its progress and logs, how the holder finds its call, and
why nothing crosses with call logging off.  Two real gateways on a real PostgreSQL
(tests/pg.py), served over HTTP on 127.0.0.1, as in tests/test_parked_rounds_crossing.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
import httpx2
import pytest
from fastmcp import Context, FastMCP

from fast_mcp_gateway.store.postgres_rounds import PgRounds
from tests.fixtures import memory_entry, until
from tests.test_parked_rounds_crossing import (
    ALICE,
    ASKING,
    answer,
    asked_of,
    asking_upstream,
    gateway,
    listening,
    post,
    rows_left,
)
from tests.test_request_state import served

pytestmark = pytest.mark.anyio
TOLD = {"progressToken": "t", "io.modelcontextprotocol/logLevel": "debug"}


class Seen:
    """What the upstream's ``guarded`` tool was given, and whether its call ended."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.ended = anyio.Event()


def upstream(seen: Seen) -> FastMCP[Any]:
    mcp = asking_upstream()

    @mcp.tool
    async def guarded(ctx: Context) -> str:
        try:
            got = await ctx.elicit("Go on?", response_type=str)
            seen.answers.append(str(getattr(got, "data", "?")))
            await anyio.sleep_forever()
        finally:
            seen.ended.set()
        return "never"

    @mcp.tool
    async def told(ctx: Context) -> str:
        got = await ctx.elicit("Go on?", response_type=str)
        await ctx.report_progress(1, 2, "half way")
        await ctx.info("working on it")
        return f"done {getattr(got, 'data', '?')}"

    return mcp


def listened(instance: str, heard: anyio.Event) -> Callable[..., Any]:
    """``PgRounds.listening`` that also sets ``heard`` when ``instance`` hears a cancel."""
    listening = PgRounds.listening

    def spying(self: PgRounds, to: str, on: Callable[[str, str], None],
               lost: Callable[[], None]) -> Any:
        def spy(kind: str, key: str) -> None:
            on(kind, key)
            if kind == "cancel" and to == instance:
                heard.set()

        return listening(self, to, spy, lost)

    return spying


async def test_a_holder_that_cannot_write_its_reply_is_told_at_its_deadline(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder took the round, then lost the right to write to the store (its reply
    fails there for real: INSERT revoked from its role), its instance lease still held:
    the host used to wait without a bound.  The holder's deadline is in the store (the
    call's start plus its max_total, and a margin): past it (and the grace for the
    reply) the receiving instance tells its host."""
    from fast_mcp_gateway.front import crossing as crossing_module
    from fast_mcp_gateway.store import open_store

    monkeypatch.setattr(crossing_module, "HOLD_MARGIN", 1.0)
    monkeypatch.setattr(crossing_module, "REPLY_GRACE", 1.0)
    await (await open_store(pg_url)).close()  # the schema, made by its owner
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE ROLE holder LOGIN; GRANT ALL ON SCHEMA public TO holder;"
                           " GRANT ALL ON ALL TABLES IN SCHEMA public TO holder;"
                           " GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO holder")
        seen = Seen()
        entry = memory_entry("asker", protocol="legacy", timeouts={"call": 5, "max_total": 10})
        first = gateway("gw-a", pg_url.replace("postgres@", "holder@"), entry,
                        {"asker": upstream(seen)})
        second = gateway("gw-b", pg_url, entry, {"asker": upstream(seen)})
        async with served(first, second) as (to_a, to_b):
            await listening(first, second)
            asked = await asked_of(to_a, "asker_guarded")
            held = next(iter(first.parking._calls.values()))
            told: list[str] = []

            async def round_two() -> None:
                told.append(json.dumps(await post(
                    to_b, ALICE, "tools/call", answer("asker_guarded", asked, "Ada"), ASKING)))

            with anyio.fail_after(90):  # (it waited for ever)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(round_two)
                    await until(lambda: held.current is not None, 30)  # the holder took it
                    await conn.execute("REVOKE INSERT ON parked_rounds FROM holder")
            assert "took the answers, but sent no outcome back by its deadline" in told[0]
            assert "call it again without requestState" in told[0] and "Ada" not in told[0]
        assert await rows_left(pg_url) == 0  # its deadline's row deleted by the receiver
    finally:
        await conn.execute("DROP OWNED BY holder; DROP ROLE holder")
        await conn.close()


async def test_a_host_giving_up_before_the_holder_serves_its_round_cancels_the_call(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host gives up just after the holder took its round, before it served it: the
    cancel is heard then (it was dropped: nothing was being served under that key), and
    the upstream call is cancelled without its answers (it used to get them, and its
    reply waited in the store for the hourly clean-up)."""
    taken, go, heard = anyio.Event(), anyio.Event(), anyio.Event()
    take_round = PgRounds.take_round

    async def held_back(self: PgRounds, *args: Any) -> Any:
        got = await take_round(self, *args)
        taken.set()
        await go.wait()  # taken; not served yet
        return got

    monkeypatch.setattr(PgRounds, "take_round", held_back)
    monkeypatch.setattr(PgRounds, "listening", listened("gw-a", heard))
    seen = Seen()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": upstream(seen)}, call_timeout=600)
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        await listening(first, second)
        asked = await asked_of(to_a, "asker_guarded")
        async with anyio.create_task_group() as tg:
            tg.start_soon(post, to_b, ALICE, "tools/call", answer("asker_guarded", asked, "y"),
                          ASKING)
            with anyio.fail_after(30):
                await taken.wait()
            tg.cancel_scope.cancel()  # the host gives up (its HTTP request ends)
        with anyio.fail_after(30):
            await heard.wait()  # the holder heard the cancel before serving the round
        go.set()
        with anyio.fail_after(30):
            await seen.ended.wait()
        assert seen.answers == []
        with anyio.fail_after(30):
            while await rows_left(pg_url):  # noqa: ASYNC110 - rows: no event
                await anyio.sleep(0.05)


async def events_of(http: httpx2.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each JSON-RPC message of a 2026-07-28 ``tools/call``'s answer (``post``'s
    request, with a progress token and a log level), in order."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}, **ASKING,
        **TOLD}}}
    reply = await http.post("/mcp", content=json.dumps(body), headers={
        "content-type": "application/json", "mcp-protocol-version": "2026-07-28",
        "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
        "mcp-name": params["name"], "authorization": f"Bearer {ALICE}"})
    if reply.headers["content-type"].startswith("application/json"):
        return [reply.json()]
    return [json.loads(line[5:]) for line in reply.text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


async def test_progress_and_logs_of_a_crossed_round_reach_its_host(pg_url: str) -> None:
    """As for a round served where its call waits: the upstream's progress and log come
    on the round's answer stream, before the result (they were dropped when the round
    crossed)."""
    seen = Seen()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": upstream(seen)})
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        await listening(first, second)
        got: dict[str, list[dict[str, Any]]] = {}
        for where, to in (("here", to_a), ("crossed", to_b)):
            asked = (await events_of(to_a, {"name": "asker_told"}))[-1]["result"]
            assert asked["resultType"] == "input_required", asked
            got[where] = await events_of(to, answer("asker_told", asked, where))
        for where, events in got.items():
            kinds = [event.get("method", "answer") for event in events]
            assert kinds == ["notifications/progress", "notifications/message", "answer"], \
                (where, events)
            assert events[0]["params"]["message"] == "half way", events
            assert events[1]["params"]["data"]["msg"] == "working on it", events
            assert events[-1]["result"]["content"][0]["text"] == f"done {where}", events
    assert await rows_left(pg_url) == 0


async def test_the_holder_finds_a_crossed_rounds_call_by_its_digest(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The round names its call by a digest of its token: the holder looks it up (it
    hashed each token it held, up to 2,048 with the ended ones, to find it)."""
    hashed: list[bytes] = []
    sha256 = hashlib.sha256

    def counting(data: bytes = b"", **kwargs: Any) -> Any:
        if data.startswith(b"mcp-gateway/parked-round/id:"):
            hashed.append(data)
        return sha256(data, **kwargs)

    seen = Seen()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": upstream(seen)})
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        await listening(first, second)
        asked = [await asked_of(to_a, "asker_ask") for _ in range(20)]
        monkeypatch.setattr(hashlib, "sha256", counting)
        done = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked[-1], "Ada"),
                          ASKING)
        monkeypatch.setattr(hashlib, "sha256", sha256)
        assert done["result"]["content"][0]["text"] == "hello Ada", done
        first.parking.stop()  # the others (as serve's stop: their tasks hold the ASGI app's)
    assert len(hashed) == 1, len(hashed)  # the receiver's, naming the call in the round


async def test_with_call_logging_off_the_refusal_says_so(pg_url: str) -> None:
    """Both instances on one PostgreSQL (--db) with call logging off: the store is not
    opened, and it is what carries rounds.  The refusal said to give the instances one
    PostgreSQL store -- which they had."""
    entry = memory_entry("asker", protocol="legacy")
    first, second = (gateway(name, pg_url, entry, {"asker": asking_upstream()},
                             record_calls=False) for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        asked = await asked_of(to_a, "asker_ask")
        told = json.dumps(await post(to_b, ALICE, "tools/call",
                                     answer("asker_ask", asked, "Ada"), ASKING))
        first.parking.stop()
    assert "the gateway instance 'gw-a' asked, not this one ('gw-b')" in told, told
    assert "runs with call logging off (--no-db, or MCP_GATEWAY_RECORD_CALLS=false)" in told
    assert "turn call logging on in every instance" in told, told
    assert "give the instances one PostgreSQL store" not in told, told
