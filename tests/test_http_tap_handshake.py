"""The HTTP side door on a handshake-era upstream session (upstream/http_tap.py).

A FastMCP upstream served over streamable HTTP on 127.0.0.1, reached by gateways with
``protocol: legacy`` (an ``initialize`` session with an ``Mcp-Session-Id``): one through
the default transport (the tap POSTs raw calls itself, under ``gw-N`` ids), one through
fastmcp's plain ``StreamableHttpTransport`` (the SDK's client: the reference).  The same
raw POSTs go to both HTTP fronts (the 2026-07-28 lane) and must give the same answers;
a counting TCP relay in front of the upstream tells how many connections the calls
opened.  Cancellation, timeouts and an upstream that restarts (and forgets the
session) are checked against the upstream's own view and against the SDK's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import mcp_types as types
import pytest
from fastmcp import Context

from fast_mcp_gateway.front.outcomes import CallOutcome
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.test_http_lane import canonical
from tests.test_http_tap import BIG, Upstream, front, gateway, upstream_server

pytestmark = pytest.mark.anyio


class Relay:
    """A TCP byte relay to ``port`` on 127.0.0.1 that counts the connections it took."""

    def __init__(self, port: int) -> None:
        self.target, self.accepted, self.port = port, 0, 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Relay]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()  # its connections end with the gateway's and the upstream's


def handshake_upstream(up: Upstream) -> Any:
    mcp = upstream_server(up)

    @mcp.tool
    def whoami(ctx: Context) -> str:
        """The request id this call arrived under (the tap's are ``gw-N``)."""
        return str(ctx.request_id)

    @mcp.tool
    async def ask_model(question: str, ctx: Context) -> str:
        """A pushed sampling request (the handshake era's server request)."""
        answer = await ctx.session.create_message(messages=[types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=question))],
            max_tokens=50)
        return f"model said: {answer.content.text}"  # type: ignore[union-attr]

    return mcp


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 (``port`` 0: a free one) that can be
    stopped before its context ends, so that another can start at the same URL."""

    def __init__(self, app: Any, port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    log_config=None))
        self.done = anyio.Event()

    async def _serve(self) -> None:
        try:
            await self.server.serve([self.sock])
        finally:
            self.sock.close()
            self.done.set()

    async def stop(self) -> None:
        """As a server that goes away: not waiting for its open streams to end."""
        self.server.should_exit = self.server.force_exit = True
        with anyio.fail_after(30):
            await self.done.wait()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Served]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve)
            try:
                yield self
            finally:
                self.server.should_exit = True


@contextlib.asynccontextmanager
async def legacy_upstream(port: int = 0) -> AsyncIterator[tuple[Upstream, Served]]:
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    async with Served(handshake_upstream(up).http_app(path="/mcp"), port).serving() as served:
        up.url = f"http://127.0.0.1:{served.port}/mcp"
        yield up, served


CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("alpha_add", {"a": 2, "b": 3}, None),
    ("alpha_media", {}, None),
    ("alpha_fail", {"message": "no: ✗"}, None),        # isError
    ("alpha_add", {"a": "x", "b": 1}, None),           # the upstream's refusal
    ("alpha_chatty", {"text": "ü ✗"}, None),
    ("alpha_chatty", {"text": "logs"}, {types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_chatty", {"text": BIG}, {types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_fail", {"message": BIG}, None),
    ("alpha_progress", {"steps": 3, "tag": "t"},
     {"progressToken": "tok", types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_progress", {"steps": 2}, {"progressToken": 9}),
    ("alpha_nope", {}, None),                           # no such tool upstream
    ("alpha_ask_model", {"question": "?"}, None),       # a push a 2026 host cannot answer
]


async def test_handshake_era_calls_go_through_the_tap_on_kept_connections() -> None:
    async with legacy_upstream() as (up, _), Relay(_port(up.url)).serving() as relay:
        relayed = up.url.replace(f":{relay.target}/", f":{relay.port}/")
        async with front(gateway(relayed, tap=True, protocol="legacy")) as fast, \
                front(gateway(up.url, tap=False, protocol="legacy")) as sdk:
            tap = fast.tap
            assert tap is not None and sdk.tap is None
            who = (await fast.post("alpha_whoami", {})).json()["result"]
            assert who["structuredContent"]["result"].startswith("gw-"), who
            assert not (await sdk.post("alpha_whoami", {})).json()["result"][
                "structuredContent"]["result"].startswith("gw-")
            for name, arguments, meta in CASES:
                before = tap.served
                got, want = await fast.post(name, arguments, meta), await sdk.post(
                    name, arguments, meta)
                assert tap.served == before + (name != "alpha_nope"), name
                if meta and "progressToken" in meta:  # progress reached the host first
                    events = [json.loads(e) for e in canonical(got.content)]
                    assert [e.get("method") for e in events[:-1]].count(
                        "notifications/progress") == arguments["steps"], events
                assert got.status_code == want.status_code, name
                assert got.headers["content-type"] == want.headers["content-type"], name
                assert canonical(got.content) == canonical(want.content), (name, got.text)
                if name == "alpha_nope":  # the gateway's own refusal: no upstream call
                    assert "alpha_nope" in got.text
                if name == "alpha_ask_model":  # the SDK session asked: its error, as before
                    assert "sampling" in got.text, got.text
            # Each SSE answer was read to its end: its connection is kept, and twenty
            # calls open none (the SDK's client opens one per call).
            opened, accepted = tap.opened, relay.accepted
            assert opened <= 2 and not tap.lingers
            for n in range(20):
                got = await fast.post("alpha_add", {"a": n, "b": 1})
                assert got.json()["result"]["structuredContent"] == {"result": n + 1}
            assert tap.opened == opened and relay.accepted == accepted
            assert len(tap._idle) == 1 and not tap._busy


async def test_a_host_that_goes_away_cancels_the_upstream_request() -> None:
    async with legacy_upstream() as (up, _), \
            front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        outcomes: list[CallOutcome] = []
        seen = anyio.Event()

        def observe(outcome: CallOutcome) -> None:
            outcomes.append(outcome)
            seen.set()

        fast.gateway.provider.pipeline.observers.append(observe)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fast.post, "alpha_hold", {})
            with anyio.fail_after(30):
                await up.started.wait()
            tg.cancel_scope.cancel()  # the host drops its connection
        with anyio.fail_after(30):
            await up.cancelled.wait()  # notifications/cancelled stopped the tool
            await seen.wait()
        assert [o.status for o in outcomes] == ["cancelled"]
        tap = fast.tap
        assert tap is not None and tap.served == 0 and not tap._busy
        # The session goes on, through the tap.
        got = await fast.post("alpha_add", {"a": 1, "b": 2})
        assert got.json()["result"]["structuredContent"] == {"result": 3}
        assert tap.served == 1


async def test_a_call_timeout_cancels_the_upstream_request() -> None:
    async with legacy_upstream() as (up, _), \
            front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        fast.gateway.manager.services["alpha"].replicas[0]._requests.call_timeout = 0.5
        got = await fast.post("alpha_hold", {})
        result = got.json()["result"]
        assert result["isError"] is True and "did not answer within 0.5s" in result[
            "content"][0]["text"]
        with anyio.fail_after(30):
            await up.cancelled.wait()
        assert (await fast.post("alpha_add", {"a": 1, "b": 2})).json()["result"][
            "structuredContent"] == {"result": 3}
        tap = fast.tap
        assert tap is not None and tap.served == 1


async def test_an_upstream_that_restarted_answers_as_to_the_sdk_client() -> None:
    async with contextlib.AsyncExitStack() as stack:
        up, first = await stack.enter_async_context(legacy_upstream())
        url = up.url
        fast = await stack.enter_async_context(front(gateway(url, tap=True,
                                                             protocol="legacy")))
        sdk = await stack.enter_async_context(front(gateway(url, tap=False,
                                                            protocol="legacy")))
        for each in (fast, sdk):
            assert (await each.post("alpha_add", {"a": 1, "b": 1})).status_code == 200
        tap = fast.tap
        assert tap is not None and tap.served == 1
        await first.stop()  # the upstream stops, and starts again at the same URL
        await stack.enter_async_context(legacy_upstream(_port(url)))
        got, want = await fast.post("alpha_add", {"a": 2, "b": 2}), \
            await sdk.post("alpha_add", {"a": 2, "b": 2})
        assert canonical(got.content) == canonical(want.content), got.text
        assert got.json()["error"] == {"code": types.INVALID_REQUEST,
                                       "message": "Session not found"}  # FastMCP's 404
        assert tap.served == 1  # the SDK's words for the session's 404, not the tap's
        # Neither path notices that the session is gone (both answer that error until
        # the replica reconnects: here, as an admin's reconnect does it).
        for each in (sdk, fast):
            replica = each.gateway.manager.services["alpha"].replicas[0]
            replica.reconnect()

            async def answered(each: Any = each) -> bool:
                got = (await each.post("alpha_add", {"a": 3, "b": 3})).json()
                return bool((got.get("result") or {}).get("structuredContent") == {"result": 6})

            with anyio.fail_after(60):
                while not await answered():  # noqa: ASYNC110 - the supervisor's reconnect
                    await anyio.sleep(0.1)
            assert replica.state is UpstreamState.READY
        assert fast.tap is not None and fast.tap is not tap and fast.tap.served >= 1


def _port(url: str) -> int:
    return int(urlsplit(url).port or 80)
