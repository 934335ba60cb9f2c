"""The session lane (http/session_lane.py) and the host's answers to its questions,
read as the SDK reads them: over real HTTP on 127.0.0.1, lanes on and off
(``tests.test_session_lane``'s gateways)."""

from __future__ import annotations

import json

import anyio
import pytest

from tests.fixtures import WITHIN
from tests.test_session_lane import ANN, call, front, headers, open_session

pytestmark = pytest.mark.anyio

_NESTED = b"[" * 100 + b"]" * 100


@pytest.mark.parametrize("lane", [True, False])
@pytest.mark.parametrize("extra", [b"NaN", _NESTED], ids=["nan", "nesting-100"])
async def test_an_answer_only_the_sdks_parser_reads_answers_the_question(
        lane: bool, extra: bytes) -> None:
    """An answer with NaN or nesting past the lane's 64 levels in a member the SDK
    ignores (its parser reads both): the lane passed it on, the full path's SDK knew
    no such question (the lane's), and the call waited for ever."""
    answered = []
    async with front(lane) as f:
        session = await open_session(f, ANN, capabilities={"elicitation": {}})
        with anyio.fail_after(WITHIN):  # a bound only: the answer ends the call
            async with f.http.stream("POST", "/mcp", json=call("inter_ask", {}, 5),
                                     headers=headers(ANN, session)) as got:
                async for line in got.aiter_lines():
                    message = json.loads(line[6:]) if line.startswith("data: ") else {}
                    if message.get("method") == "elicitation/create":
                        ack = await f.http.post("/mcp", headers=headers(ANN, session), content=(
                            b'{"jsonrpc":"2.0","id":%d,"result":{"action":"accept",'
                            b'"content":{"value":"Ann"}},"x":%b}' % (message["id"], extra)))
                        assert ack.status_code == 202 and ack.content == b""
                    elif message.get("id") == 5:
                        answered.append(message["result"]["content"][0]["text"])
        assert f.served == (1 if lane else 0)
    assert answered == ["accept:Ann"]
