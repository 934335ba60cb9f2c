"""``isolation: per_client``: a host whose session was given back for another caller is
told at its next call, which runs on a new session (whatever a stateful server kept
for the old one is gone): a ``notifications/message`` warning related to that call and
``_meta["io.github.fast-mcp-gateway/session"]`` on its result, once.

Real upstream processes, real HTTP on 127.0.0.1; processes are checked by pid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp_types import LOG_LEVEL_META_KEY

from fast_mcp_gateway.front.results import CACHE_META
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.routing.isolation import NOTICE_LOGGER, SESSION_META
from tests.fixtures import make_gateway, serve_http
from tests.test_asks_routing import WITHIN
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_http_lane import body_of, headers_of
from tests.test_http_service import ISSUER, signed
from tests.test_isolation import ALICE, BOB, asker, gone

pytestmark = pytest.mark.anyio

TOKENS = {"auth": {"tokens": [{"name": "alice", "token": ALICE, "scopes": ["tools"]},
                              {"name": "bob", "token": BOB, "scopes": ["tools"]}]}}


class Logs:
    """The logs one host got, and an event set at each."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.event = anyio.Event()

    async def __call__(self, message: Any) -> None:
        self.got.append(message)
        self.event.set()

    async def first(self) -> Any:
        with anyio.fail_after(WITHIN):
            while not self.got:
                await self.event.wait()
        return self.got[0]


def told(meta: dict[str, Any] | None, limit: int) -> str:
    """The message of a result's session notice (checked for what it must say)."""
    assert meta is not None and SESSION_META in meta, meta
    notice = meta[SESSION_META]
    assert {k: v for k, v in notice.items() if k != "message"} == {
        "renewed": True, "server": "asker", "reason": "given_back", "max_clients": limit}
    message: str = notice["message"]
    for words in ("server 'asker': this call runs on a new upstream session",
                  "given back for another caller", f"max_clients={limit}",
                  "keep it busy", "raise max_clients for server 'asker' in servers.yaml"):
        assert words in message, (words, message)
    return message


async def test_a_host_whose_session_was_given_back_is_told_at_its_next_call(
        tmp_path: Path) -> None:
    """alice holds both of ``max_clients: 2``; bob's call takes her least recently used
    one.  Her host is refused while bob holds it (told its session was given back); once
    bob left, its next call runs on a new process and says so, once, in a warning log
    and the result's ``_meta`` (not kept in the result cache).  Her other host, never
    given back, is told nothing."""
    gateway = make_gateway(
        {"asker": asker(tmp_path / "asker.jsonl", max_clients=2, idle_timeout=600.0,
                        tools={"cache": {"my_digest": {"ttl": 600}}})},
        options=TOKENS)
    service = gateway.manager.get("asker")
    first_logs, second_logs = Logs(), Logs()
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE, log_handler=first_logs) as first,
        Client(f"{base}/mcp", mode="legacy", auth=ALICE, log_handler=second_logs) as second,
    ):
        older = (await first.call_tool("asker_pid", {})).data
        newer = (await second.call_tool("asker_pid", {})).data
        async with Client(f"{base}/mcp", mode="legacy", auth=BOB) as bob:
            mine = (await bob.call_tool("asker_pid", {})).data
            await gone(older)
            with pytest.raises(ToolError) as refused:
                await first.call_tool("asker_pid", {})
            assert "(this host's previous session was given back for another caller: " \
                "its next session is a new one)" in str(refused.value)
        await gone(mine)  # bob left: his slot is free
        digest = await first.call_tool("asker_my_digest", {})
        message = told(digest.meta, 2)
        assert "this host's caller held 2 of them" in message
        assert "bob" not in message and ALICE not in message
        log = await first_logs.first()
        assert (log.level, log.logger, log.data) == ("warning", NOTICE_LOGGER, message)
        # Said once: the cached answer and the next call on that session carry nothing.
        cached = await first.call_tool("asker_my_digest", {})
        assert CACHE_META in (cached.meta or {}) and SESSION_META not in (cached.meta or {})
        later = await first.call_tool("asker_pid", {})
        assert later.data not in (older, newer, mine)
        assert SESSION_META not in (later.meta or {})
        other = await second.call_tool("asker_pid", {})
        assert other.data == newer and SESSION_META not in (other.meta or {})
        assert len(first_logs.got) == 1 and second_logs.got == []
        assert service.clients is not None and service.clients.reclaimed == 1


async def test_a_2026_host_is_told_on_its_json_answer_and_in_a_log_it_asked_for(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    """A 2026-07-28 host's session is its caller's token: bob's three JWTs (three
    identities, one caller) fill ``max_clients: 3`` and alice's call takes the least
    recently used.  Once alice left, that token's next call -- the HTTP express lane's
    JSON answer -- carries the notice, and a log at the level the request asked for."""
    pair, uri = jwks
    gateway = make_gateway(
        {"asker": asker(tmp_path / "asker.jsonl", max_clients=3, idle_timeout=600.0)},
        options={"auth": {"jwt": {"jwks_uri": uri, "issuer": ISSUER,
                                  "audience": "mcp-gateway"}}})
    app = gateway.http_app("http")
    lane = getattr(app.mcp_entry, "app", None)
    assert isinstance(lane, HttpLane) and lane.enabled
    bobs = [signed(pair, "bob", expires_in_seconds=600 + i) for i in range(3)]
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:

        async def pid(token: str, **meta: Any) -> tuple[int, dict[str, Any]]:
            answer = await http.post("/mcp", json=body_of("asker_pid", {}, meta),
                                     headers=headers_of("asker_pid", token))
            assert answer.status_code == 200, answer.text
            lines = [json.loads(line[len("data:"):]) for line in answer.text.splitlines()
                     if line.startswith("data:")] if answer.headers[
                "content-type"].startswith("text/event-stream") else [answer.json()]
            *notes, last = lines
            result = last["result"]
            return int(result["structuredContent"]["result"]), {
                "meta": result.get("_meta"), "logs": [n["params"] for n in notes]}

        pids = [(await pid(token))[0] for token in bobs]
        # Each token its own session on the lane too (it had been one for all of them).
        assert len(set(pids)) == 3 and lane.served == 3
        served = lane.served
        alice = signed(pair, "alice", expires_in_seconds=600)
        async with Client(f"{base}/mcp", mode="legacy", auth=alice) as host:
            hers = (await host.call_tool("asker_pid", {})).data
            assert hers not in pids
            await gone(pids[0])
        await gone(hers)  # alice left: her slot is free
        again, told_now = await pid(bobs[0], **{LOG_LEVEL_META_KEY: "warning"})
        assert again not in pids and lane.served == served + 1  # the lane's JSON answer
        message = told(told_now["meta"], 3)
        assert "this host's caller held 3 of them" in message
        assert told_now["logs"] == [{"level": "warning", "logger": NOTICE_LOGGER,
                                     "data": message}]
        same, later = await pid(bobs[0], **{LOG_LEVEL_META_KEY: "warning"})
        assert same == again and SESSION_META not in (later["meta"] or {})
        assert later["logs"] == []
