"""The stdio express lane's questions to its host (sampling, elicitation, roots, a 2026-07-28
upstream's ``input_required``) as the full path's SDK session puts them: the same ids,
from the same counter, the same bytes, and the host's answers read and relayed upstream
as the SDK reads and writes them.  Each test runs a gateway with the lane and one
without (``test_lane.both_paths``) and compares what the host and the upstream saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import until
from tests.test_lane import both_paths, lane_id, raw_host, write_config

pytestmark = pytest.mark.anyio


async def test_questions_carry_the_connections_own_ids(tmp_path: Path) -> None:
    """The SDK numbers its requests to a stdio host 1, 2, ...; the lane's questions take
    their ids from the same counter (they were ``gw-ask-N``, which a host that expects
    the SDK's integers may refuse), so that the host sees the same lines on either path
    and no id is two questions'.  ``up:ask_model`` (the seed-style name) is the full
    path's; an answer under the id as a string (``"3"``) counts, as the SDK counts it."""
    config = write_config(tmp_path, protocol="legacy")

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "model": "m", "content": {"type": "text", "text": "42"}}

    async def asked(lane: bool, env: dict[str, str]) -> list[bytes]:
        async with raw_host(config, "legacy", lane=lane, env=env,
                            capabilities={"sampling": {}}, on_request=answer) as host:
            send = host.send

            async def as_string(message: dict[str, Any]) -> None:
                if "result" in message and message.get("id") == 3:
                    message = {**message, "id": "3"}
                await send(message)

            host.send = as_string  # type: ignore[method-assign]
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            assert not lane_id(await host.call("up:whoami")).startswith("gw-")
            for name in ("up_ask_model", "up:ask_model", "up_ask_model"):
                result = await host.call(name, {"question": "?"})
                assert result["content"][0]["text"] == "model said: 42", result
            # The upstream's trace context, a new one per request, passed on as it came.
            return [re.sub(rb'"traceparent":"[^"]*"', b'"traceparent":"-"', line)
                    for line in host.lines if b'"sampling/createMessage"' in line]

    lines = await both_paths(tmp_path, asked)
    assert lines[True] == lines[False], lines
    assert [json.loads(line)["id"] for line in lines[True]] == [1, 2, 3]


async def test_a_nan_in_an_answer_reaches_the_upstream_as_on_the_full_path(
        tmp_path: Path) -> None:
    """A host's answer with NaN or an infinity in it (the SDK's parser reads them): the
    full path's SDK session writes them upstream as null; the lane relayed the bridged
    answer with Python's ``NaN``, which is no JSON, and the upstream read a number."""
    config = write_config(tmp_path)  # a 2026-07-28 upstream: input_required, bridged

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": float("nan")},
                "_meta": {"k": [float("inf"), -float("inf")]}}

    async def guarded(lane: bool, env: dict[str, str]) -> dict[str, Any]:
        async with raw_host(config, "legacy", lane=lane, env=env,
                            capabilities={"elicitation": {}}, on_request=answer) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            return await host.call("up_guard")

    results = await both_paths(tmp_path, guarded)
    assert results[True] == results[False], results
    assert results[True]["content"][0]["text"] == "hello None (accept)"


async def test_a_question_of_a_cancelled_call_is_withdrawn_in_the_sdks_words(
        tmp_path: Path) -> None:
    """The host cancels a call whose question it has not answered: the question is
    withdrawn under its id with the SDK's reason ("caller cancelled"; the lane said "the
    call was cancelled")."""
    config = write_config(tmp_path, protocol="legacy")

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}  # never sent (below)

    async def withdrawn(lane: bool, env: dict[str, str]) -> list[bytes]:
        async with raw_host(config, "legacy", lane=lane, env=env,
                            capabilities={"sampling": {}}, on_request=answer) as host:
            send = host.send

            async def unanswered(message: dict[str, Any]) -> None:
                if "result" not in message:
                    await send(message)

            host.send = unanswered  # type: ignore[method-assign]
            await host.send({"jsonrpc": "2.0", "id": "c1", "method": "tools/call", "params": {
                "name": "up_ask_model", "arguments": {"question": "?"}}})
            await until(lambda: any(b'"sampling/createMessage"' in line for line in host.lines))
            await host.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                             "params": {"requestId": "c1"}})
            await until(lambda: any(b'"notifications/cancelled"' in line
                                    for line in host.lines))
            return [line for line in host.lines if b'"notifications/cancelled"' in line]

    lines = await both_paths(tmp_path, withdrawn)
    assert lines[True] == lines[False], lines
    assert json.loads(lines[True][0])["params"] == {"requestId": 1, "reason": "caller cancelled"}
