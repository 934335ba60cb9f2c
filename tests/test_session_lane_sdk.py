"""The session lane (http/session_lane.py) where it differed from the SDK's own handling
of a handshake-era session: the ids of its questions, a question withdrawn after its
call was answered, a bad token verified twice, the sessions it remembers, a
cancellation and an answer only the SDK's parser reads; and the one ping timer of both
HTTP lanes.  Over real HTTP on 127.0.0.1 (``tests.test_session_lane``'s two gateways, lanes on and
off), the small pieces directly."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.http.auth import GatewayVerifier
from fast_mcp_gateway.http.session_reply import SessionReply
from tests.fixtures import WITHIN, until
from tests.test_session_lane import (
    ANN,
    Front,
    call,
    cancelled_mid_call,
    front,
    headers,
    open_session,
)

pytestmark = pytest.mark.anyio


async def _ask_and_answer(f: Front, session: str, body: dict[str, Any]) -> list[Any]:
    """POST ``body`` (a call of ``inter_ask``), answer its question; the ids asked."""
    asked: list[Any] = []
    with anyio.fail_after(WITHIN):  # a bound only: the answer ends the call
        async with f.http.stream("POST", "/mcp", json=body,
                                 headers=headers(ANN, session)) as got:
            async for line in got.aiter_lines():
                message = json.loads(line[6:]) if line.startswith("data: ") else {}
                if message.get("method") == "elicitation/create":
                    asked.append(message["id"])
                    ack = await f.http.post("/mcp", headers=headers(ANN, session), json={
                        "jsonrpc": "2.0", "id": message["id"],
                        "result": {"action": "accept", "content": {"value": "Ann"}}})
                    assert ack.status_code == 202
                elif "result" in message:
                    assert message["result"]["content"][0]["text"] == "accept:Ann"
    return asked


async def test_questions_carry_the_sessions_own_request_ids() -> None:
    """The SDK numbers a session's requests to its host 1, 2, ...: the lane's questions
    take the same numbers from the same counter (they were ``gw-ask-N``), so that a
    host sees the same ids on either path and one of the lane's never shares an id
    with one the SDK sends on the session (a call the lane leaves to it: the member
    ``x``)."""
    seen = []
    for lane in (True, False):
        async with front(lane) as f:
            session = await open_session(f, ANN, capabilities={"elicitation": {}})
            ids = [*await _ask_and_answer(f, session, call("inter_ask", {}, 1)),
                   *await _ask_and_answer(f, session, {**call("inter_ask", {}, 2), "x": 1}),
                   *await _ask_and_answer(f, session, call("inter_ask", {}, 3))]
            seen.append(ids)
            assert f.served == (2 if lane else 0)
    assert seen == [[1, 2, 3], [1, 2, 3]], seen


class _Sent:
    """An ASGI ``send`` and a session's SDK dispatcher, as ``SessionReply`` uses them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.notified: list[tuple[str, Any]] = []
        self.written = asyncio.Event()
        self._pending: dict[Any, Any] = {}
        self._next_id = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if b"elicitation/create" in message.get("body", b""):
            self.written.set()

    def _allocate_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def notify(self, method: str, params: Any, opts: Any = None) -> None:
        self.notified.append((method, params))


async def test_a_question_withdrawn_after_its_calls_answer_is_dropped() -> None:
    """The SDK sends a withdrawal on the request's stream; once that stream ended (the
    call was answered first) its transport drops it.  The lane sent it to the
    session's GET stream instead."""
    sent = _Sent()
    asks: dict[Any, Any] = {}
    reply = SessionReply(sent, b"s1", {"elicitation": {}}, asks, sent)  # type: ignore[arg-type]
    await reply.start(asyncio.get_running_loop())
    asking = asyncio.create_task(reply.ask("elicitation/create", {"message": "Name?"}))
    await sent.written.wait()
    await reply.finish(b'{"jsonrpc":"2.0","id":1,"result":{}}')
    ended = len(sent.messages)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    reply.stop_pings()
    assert sent.notified == [] and len(sent.messages) == ended and not asks


async def test_a_bad_token_on_a_session_post_is_verified_once() -> None:
    """The lane verified it, then FastMCP's guard, which it went to, again (a JWT's
    signature checked and its refusal logged twice): now once, with the same 401."""
    answers = []
    for lane in (True, False):
        async with front(lane) as f:
            session = await open_session(f)
            verifier = f.lane.access.verifier  # the one FastMCP's guard asks too
            assert isinstance(verifier, GatewayVerifier)
            verified: list[str] = []
            verify = verifier._verify

            async def counting(token: str, verify: Any = verify,
                               verified: list[str] = verified) -> Any:
                verified.append(token)
                return await verify(token)

            verifier._verify = counting  # type: ignore[method-assign]
            for extra in ({"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"},
                          {"mcp-protocol-version": "2026-07-28"}):  # the 2026-07-28 lane's
                verified.clear()
                got = await f.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 2}),
                                        headers={**headers("mgw_nope"), **extra})
                assert got.status_code == 401 and verified == ["mgw_nope"], verified
                answers.append((got.status_code, got.content, [
                    (k, v) for k, v in got.headers.raw if k not in (b"date", b"server")]))
            # A good token after a bad one, in the same task's next request: verified.
            done = await f.http.post("/mcp", headers=headers(ANN, session),
                                     json=call("alpha_add", {"a": 1, "b": 2}))
            assert done.status_code == 200 and b'"result":3' in done.content
    assert answers[:2] == answers[2:], answers


async def test_a_sessions_entry_goes_with_a_connection_closed_without_its_cleanup() -> None:
    """``SessionHosts`` held each session's connection weakly and dropped the entry in
    the connection's cleanup: a connection gone without it left its entry for good."""
    async with front(True) as f:
        hosts = f.lane.hosts
        sessions = []
        for _ in range(6):
            session = await open_session(f)
            listed = await f.http.post("/mcp", headers=headers(ANN, session), json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert listed.status_code == 200
            known = hosts.get(session)
            assert known is not None
            known[0].exit_stack.pop_all()  # its cleanup lost
            sessions.append(session)
            del known
        assert len(hosts) == 6
        for session in sessions:
            gone = await f.http.delete("/mcp", headers=headers(ANN, session))
            assert gone.status_code == 200

        def collected() -> bool:
            gc.collect()
            return len(hosts) == 0

        await until(collected)


@pytest.mark.parametrize("lane", [True, False])
async def test_a_cancellation_only_the_sdks_parser_reads_cancels(lane: bool) -> None:
    """NaN (pydantic-core reads it) and nesting past the lane's 64 levels (the SDK's
    parser reads 200): the lane passed such a cancellation on, and the full path's SDK
    knew no such call, which ran on.  Past 200 levels the SDK refuses it (400): the
    same answer on both paths, and the call runs on there too."""
    async with front(lane) as f:
        session = await open_session(f)
        nested = b"[" * 100 + b"]" * 100
        for n, extra in enumerate([b'"reason":NaN', b'"x":%b' % nested,
                                   b'"x":%b' % (b"[" * 250 + b"]" * 250)]):
            async def cancelling(n: int = n, extra: bytes = extra) -> None:
                body = (b'{"jsonrpc":"2.0","method":"notifications/cancelled",'
                        b'"params":{"requestId":%d,%b}}' % (n, extra))
                ack = await f.http.post("/mcp", content=body, headers=headers(ANN, session))
                if n == 2:  # refused: the SDK's words; then cancelled as usual
                    assert ack.status_code == 400, ack.text
                    assert ack.json()["error"]["message"].startswith("Parse error: ")
                    ack = await f.http.post("/mcp", headers=headers(ANN, session), json={
                        "jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": n}})
                assert ack.status_code == 202 and ack.content == b""

            stream = await cancelled_mid_call(f, session, n, cancelling)
            assert stream == [b'event: message\r\ndata: {"jsonrpc":"2.0","id":%d,"error":'
                              b'{"code":-32800,"message":"Request cancelled"}}\r\n\r\n' % n]
        assert f.served == (3 if lane else 0)


@pytest.mark.parametrize("lane", [True, False])
async def test_an_answer_only_the_sdks_parser_reads_answers_the_question(lane: bool) -> None:
    """NaN, an infinity (pydantic-core reads them) and nesting past the lane's 64 levels
    (the SDK's parser reads 200) in a host's answer: the lane passed such an answer on,
    the full path's SDK session knew no such question, and the call waited for ever."""
    async with front(lane) as f:
        session = await open_session(f, ANN, capabilities={"elicitation": {}})
        nested = b"[" * 100 + b"]" * 100
        for n, extra in enumerate([b'"x":NaN', b'"x":[Infinity,-Infinity]', b'"x":%b' % nested]):
            answered: list[Any] = []
            with anyio.fail_after(WITHIN):  # a bound only: the answer ends the call
                async with f.http.stream("POST", "/mcp", json=call("inter_ask", {}, n),
                                         headers=headers(ANN, session)) as got:
                    async for line in got.aiter_lines():
                        message = json.loads(line[6:]) if line.startswith("data: ") else {}
                        if message.get("method") == "elicitation/create":
                            body = (b'{"jsonrpc":"2.0","id":%d,"result":{"action":"accept",'
                                    b'"content":{"value":"Ann"},"_meta":{%b}}}'
                                    % (message["id"], extra))
                            ack = await f.http.post("/mcp", content=body,
                                                    headers=headers(ANN, session))
                            assert ack.status_code == 202 and ack.content == b""
                        elif message.get("id") == n:
                            answered.append(message["result"]["content"][0]["text"])
            assert answered == ["accept:Ann"]
        assert f.served == (3 if lane else 0)


async def test_one_pinger_serves_both_lanes() -> None:
    """``pings.Pinger``: every ``every`` seconds what it is given, until stopped (the
    2026-07-28 lane's ``: ping`` and the session lane's ``: ping - <time>``)."""
    from fast_mcp_gateway.http import lane, session_reply
    from fast_mcp_gateway.http.pings import Pinger

    ticks: list[int] = []
    enough = asyncio.Event()

    async def ping() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 3:
            enough.set()

    pinger = Pinger(asyncio.get_running_loop(), 0.001, ping)
    await enough.wait()
    pinger.stop()
    assert pinger.handle is None and ticks[:3] == [0, 1, 2]
    assert lane.Pinger is Pinger and session_reply.Pinger is Pinger
    assert not hasattr(lane, "_Pinger") and not hasattr(session_reply.SessionReply, "_pings")
