"""A 2026-07-28 host's concurrent calls that ask, over HTTP, to a stdio upstream.

Found with the TypeScript SDK's client (``versionNegotiation: auto``): three calls of
server-everything's ``trigger-elicitation-request`` / ``trigger-sampling-request`` in
flight at once were all refused "asked for elicitation while 3 calls from more than one
host were in flight ... set 'isolation: per_client'" -- with or without ``per_client``.
A stdio upstream's question carries no relation to its call, so the gateway attributes
it by timing to the one host whose calls are in flight; a 2026-07-28 host has no
session, and each of its requests counted as a host of its own.  Its verified
credential is now what tells its calls apart from another host's (as for its roots and
its ``per_client`` session).  Real upstream process (``tests/servers/asker.py``), real
HTTP on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.gateway import Gateway
from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_asks_routing import answering, records

pytestmark = pytest.mark.anyio
ALICE, BOB = "mgw_alice-5d0c2e7a91b34f68", "mgw_bob-0e6f93b2c17a4d85"
TOKENS = {"auth": {"tokens": [{"name": "alice", "token": ALICE, "scopes": ["tools"]},
                              {"name": "bob", "token": BOB, "scopes": ["tools"]}]}}


def _asker(record: Path, options: dict[str, Any] | None = TOKENS, **entry: Any) -> Gateway:
    """A gateway of the handshake-era stdio ``asker``, recording to ``record``."""
    return make_gateway({"asker": stdio_entry("asker.py", "stdio", "--record", str(record),
                                              protocol="legacy", **entry)}, options=options)


def _asked(record: Path, *tags: str) -> bool:
    asked = {r["tag"] for r in records(record) if r["event"] == "ask"}
    return set(tags) <= asked


@pytest.mark.parametrize("isolation", ["shared", "per_client"])
async def test_one_2026_host_is_asked_everything_its_concurrent_calls_cause(
        tmp_path: Path, isolation: str) -> None:
    record = tmp_path / "asker.jsonl"
    gateway = _asker(record, isolation=isolation)
    seen: dict[str, list[str]] = {}
    results: dict[str, str] = {}
    # The host answers only once both upstream calls have asked: both questions are
    # outstanding at once, and neither can be told from the other by its timing.
    handler = answering("alice", seen, lambda: _asked(record, "X", "Y"))
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=ALICE, elicitation_handler=handler) as host:
        assert host.protocol_version == "2026-07-28"

        async def call(tag: str) -> None:
            results[tag] = (await host.call_tool("asker_ask", {"tag": tag})).data

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "X")
            tg.start_soon(call, "Y")
    assert sorted(seen["alice"]) == ["question for X", "question for Y"]
    assert results == {"X": "X:accept:answer-from-alice", "Y": "Y:accept:answer-from-alice"}


async def test_two_2026_hosts_with_other_credentials_are_not_asked_each_others_question(
        tmp_path: Path) -> None:
    """Two callers in flight on one shared stdio session: still refused (the question
    could be either's), naming the fix."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    gateway = _asker(record)
    seen: dict[str, list[str]] = {}
    outcome: dict[str, str] = {}
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=ALICE, elicitation_handler=answering("alice", seen)) as a,
        Client(f"{base}/mcp", auth=BOB, elicitation_handler=answering("bob", seen)) as b,
    ):
        async def asking() -> None:
            try:
                await a.call_tool("asker_hold_then_ask", {"tag": "A", "go": str(go)})
            except ToolError as exc:
                outcome["A"] = str(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asking)
            await until(lambda: any(r["event"] == "hold_then_ask" for r in records(record)))
            tg.start_soon(b.call_tool, "asker_hold", {"tag": "B"})
            await until(lambda: any(r["event"] == "hold" for r in records(record)))
            go.touch()  # now A's upstream asks while B's call is in flight too
            await until(lambda: "A" in outcome)
            tg.cancel_scope.cancel()
    assert seen == {}
    assert "server 'asker'" in outcome["A"] and "isolation: per_client" in outcome["A"]



async def test_an_unauthenticated_2026_host_is_told_to_use_a_token(tmp_path: Path) -> None:
    """Without a credential nothing tells one 2026-07-28 host's requests from another's:
    still refused, and the error says what would let the gateway tell them apart."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    gateway = _asker(record, options=None)
    seen: dict[str, list[str]] = {}
    outcome: dict[str, str] = {}
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", elicitation_handler=answering("anon", seen)) as host:
        assert host.protocol_version == "2026-07-28"

        async def asking() -> None:
            try:
                await host.call_tool("asker_hold_then_ask", {"tag": "A", "go": str(go)})
            except ToolError as exc:
                outcome["A"] = str(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asking)
            await until(lambda: any(r["event"] == "hold_then_ask" for r in records(record)))
            tg.start_soon(host.call_tool, "asker_hold", {"tag": "B"})
            await until(lambda: any(r["event"] == "hold" for r in records(record)))
            go.touch()  # A's upstream asks while the host's other call is in flight
            await until(lambda: "A" in outcome)
            tg.cancel_scope.cancel()
    assert seen == {}
    assert "give each host a token (gateway.auth)" in outcome["A"], outcome["A"]


async def test_two_processes_sharing_a_token_are_one_host_for_questions(
        tmp_path: Path) -> None:
    """What "hosts sharing one token count as one host" means (README, Isolation): a
    question one process's call caused may be put to the other process, on its call
    in flight, and that process's answer is what the first call gets -- its user's
    consent to an elicitation, its model's sampling, its roots.  Pinned here so that a
    change to it is deliberate; the fix for a host that must not be asked another's
    questions is a token of its own (the test above)."""
    record = tmp_path / "asker.jsonl"
    go = tmp_path / "go"
    gateway = _asker(record)
    seen: dict[str, list[str]] = {}
    outcome: dict[str, str] = {}
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=ALICE, elicitation_handler=answering("one", seen)) as one,
        Client(f"{base}/mcp", auth=ALICE, elicitation_handler=answering("two", seen)) as two,
    ):
        async def asking() -> None:
            outcome["A"] = (await one.call_tool(
                "asker_hold_then_ask", {"tag": "A", "go": str(go)})).data

        async with anyio.create_task_group() as tg:
            tg.start_soon(two.call_tool, "asker_hold", {"tag": "B"})  # the earlier call
            await until(lambda: any(r["event"] == "hold" for r in records(record)))
            tg.start_soon(asking)
            await until(lambda: any(r["event"] == "hold_then_ask" for r in records(record)))
            go.touch()  # process one's call asks while process two's is in flight
            await until(lambda: "A" in outcome)
            tg.cancel_scope.cancel()
    assert seen == {"two": ["late question for A"]}  # shown to the other process
    assert outcome["A"] == "A:accept:answer-from-two"  # and its answer taken
