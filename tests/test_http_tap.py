"""The HTTP upstream side door (upstream/http_tap.py): what the SDK client would answer.

One FastMCP upstream is served over streamable HTTP on 127.0.0.1.  Two gateways front
it over HTTP with the express lane on: one reaches it through the default transport
(``FastHttpTransport``: the tap POSTs 2026-07-28 calls itself), one through fastmcp's
plain ``StreamableHttpTransport`` (the SDK's client).  The same raw POSTs go to both
and must give the same answers; the tap's ``served`` counter tells that it (and not
the SDK session) sent them.  Cancellation, timeouts, a dead pooled connection and the
handshake era are checked against the upstream's own view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TextIO, cast

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Context, FastMCP
from fastmcp.client.transports import ClientTransport, StreamableHttpTransport

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.front.outcomes import CallOutcome
from fast_mcp_gateway.telemetry.redaction import MASK, SECRETS
from fast_mcp_gateway.upstream import http_pool
from fast_mcp_gateway.upstream.deadline import Deadline
from fast_mcp_gateway.upstream.http_pool import Declined, header_lines, proxied, tap_applies
from fast_mcp_gateway.upstream.http_tap import HttpTap
from fast_mcp_gateway.upstream.http_wire import sse_messages
from fast_mcp_gateway.upstream.lifting import lifted_loads
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, alpha_server, serve_http
from tests.test_http_lane import body_of, canonical, headers_of

pytestmark = pytest.mark.anyio


@dataclass
class Upstream:
    url: str
    started: anyio.Event
    cancelled: anyio.Event
    release: anyio.Event


def upstream_server(up: Upstream) -> FastMCP[Any]:
    mcp = alpha_server()

    @mcp.tool
    async def hold(ctx: Context) -> str:
        """Runs until released; notes its start and its cancellation."""
        up.started.set()
        try:
            await up.release.wait()
        except anyio.get_cancelled_exc_class():
            up.cancelled.set()
            raise
        return "released"

    @mcp.tool
    async def log_level_asked(ctx: Context) -> str:
        """The log level this request asked the server for ("none": no logs)."""
        meta = ctx.request_context.meta if ctx.request_context is not None else None
        return str((meta or {}).get(types.LOG_LEVEL_META_KEY, "none"))

    @mcp.tool
    async def chatty(ctx: Context, text: str = "") -> dict[str, Any]:
        await ctx.info(f"about {text}")
        return {"echo": text, "unicode": "✗ ü"}

    return mcp


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    app = upstream_server(up).http_app(path="/mcp")
    async with serve_http(app) as base:
        up.url = f"{base}/mcp"
        yield up


def sdk_only(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
    """The SDK's own streamable-HTTP client (no tap): the reference."""
    assert config.url is not None
    return StreamableHttpTransport(config.url, headers=dict(config.headers) or None)


def gateway(url: str, *, tap: bool, protocol: str = "2026-07-28") -> Gateway:
    config = parse_config({"servers": {"alpha": {"url": url, "protocol": protocol}}},
                          source="test")
    settings = GatewaySettings(connect_timeout=10.0, db=None, startup_wait=600.0,
                               call_timeout=60)
    return Gateway(config, settings, restart=FAST_RESTART,
                   transport_factory=default_transport if tap else sdk_only)


@dataclass
class Front:
    gateway: Gateway
    http: httpx2.AsyncClient

    @property
    def tap(self) -> HttpTap | None:
        tap = self.gateway.manager.services["alpha"].replicas[0]._sup.tap
        assert tap is None or isinstance(tap, HttpTap)
        return tap

    @property
    def served(self) -> int:
        tap = self.tap
        return tap.served if tap is not None else 0

    async def post(self, name: str, arguments: dict[str, Any] | None,
                   meta: dict[str, Any] | None = None) -> httpx2.Response:
        return await self.http.post("/mcp", content=json.dumps(body_of(name, arguments, meta)),
                                    headers=headers_of(name, token=None))


@contextlib.asynccontextmanager
async def front(gw: Gateway) -> AsyncIterator[Front]:
    async with serve_http(gw.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield Front(gw, http)

async def host_leaves_mid_call(fast: Front, up: Upstream, tool: str = "alpha_hold",
                               meta: dict[str, Any] | None = None) -> list[CallOutcome]:
    """Start ``tool`` through ``fast``, drop the host's connection once the upstream's
    tool runs, and wait until the tool was cancelled and the call's outcome observed."""
    outcomes: list[CallOutcome] = []
    seen = anyio.Event()

    def observe(outcome: CallOutcome) -> None:
        outcomes.append(outcome)
        seen.set()

    fast.gateway.provider.pipeline.observers.append(observe)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fast.post, tool, {}, *([meta] if meta is not None else []))
        with anyio.fail_after(30):
            await up.started.wait()
        tg.cancel_scope.cancel()  # the host drops its connection
    with anyio.fail_after(30):
        await up.cancelled.wait()  # the upstream's tool was cancelled
        await seen.wait()
    return outcomes


async def goes_on_through_the_tap(fast: Front) -> None:
    """After a call its host left (no call served by the tap yet), the session answers
    the next call through the tap."""
    tap = fast.tap
    assert tap is not None and tap.served == 0 and not tap._busy
    got = await fast.post("alpha_add", {"a": 1, "b": 2})
    assert got.json()["result"]["structuredContent"] == {"result": 3}
    assert tap.served == 1



BIG = 'a "quoted" \\ back\\slash, ✓ 漢字 🚀 \u2028 line\nnext\ttab ' * 6000  # ~300 KiB


async def test_calls_through_the_tap_answer_as_through_the_sdk_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lifted: list[int] = []

    def counted(data: bytes) -> Any:
        message = lifted_loads(data)
        lifted.append(len(json.dumps(message)) < len(data) // 2)
        return message

    monkeypatch.setattr(http_pool, "lifted_loads", counted)
    async with upstream() as up, front(gateway(up.url, tap=True)) as fast, \
            front(gateway(up.url, tap=False)) as sdk:
        assert fast.tap is not None and sdk.tap is None
        cases: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
            # Past lifting.LIFT_MIN: long strings relayed undecoded (upstream/lifting.py).
            ("alpha_chatty", {"text": BIG}, None),
            ("alpha_fail", {"message": BIG}, None),
            ("alpha_add", {"a": 2, "b": 3}, None),
            ("alpha_media", {}, None),
            ("alpha_fail", {"message": "no: ✗"}, None),        # isError
            ("alpha_add", {"a": "x", "b": 1}, None),           # the upstream's refusal
            ("alpha_chatty", {"text": "ü ✗"}, None),
            ("alpha_chatty", {"text": "logs"}, {types.LOG_LEVEL_META_KEY: "info"}),
            ("alpha_progress", {"steps": 3, "tag": "t"},
             {"progressToken": "tok", types.LOG_LEVEL_META_KEY: "info"}),
            ("alpha_progress", {"steps": 2}, {"progressToken": 9}),
        ]
        for name, arguments, meta in cases:
            before = fast.served
            got, want = await fast.post(name, arguments, meta), await sdk.post(name, arguments,
                                                                                meta)
            assert fast.served == before + 1, name
            assert got.status_code == want.status_code
            assert got.headers["content-type"] == want.headers["content-type"], name
            assert canonical(got.content) == canonical(want.content), (got.text, want.text)
        assert lifted.count(True) == 2  # the two long answers
        # A log notification as long before a long answer (the SDK's client closes the
        # connection there: compared with what the upstream said instead).
        streamed = await fast.post("alpha_chatty", {"text": BIG},
                                   {types.LOG_LEVEL_META_KEY: "info"})
        log, result = [json.loads(e) for e in canonical(streamed.content)]
        assert log["params"]["data"]["msg"] == f"about {BIG}"
        assert result["result"]["structuredContent"]["echo"] == BIG
        assert json.loads(result["result"]["content"][0]["text"])["echo"] == BIG
        assert lifted.count(True) == 3  # the answer (the log's text is under "msg")
        # Progress and logs reached the host as notifications, then the result.
        events = [json.loads(e) for e in canonical(got.content)]
        assert [e.get("method") for e in events[:-1]] == ["notifications/progress"] * 2
        assert [e["params"]["progressToken"] for e in events[:-1]] == [9, 9]
        assert events[-1]["result"]["content"][0]["text"] == " done"
        # A JSON answer leaves its keep-alive connection for the next call, and so does
        # a stream, read to its end (tests/test_http_tap_streams.py counts them).
        tap = fast.tap
        assert tap is not None and len(tap._idle) == 1 and not tap.lingers
        for _ in range(3):
            assert (await fast.post("alpha_add", {"a": 1, "b": 1})).status_code == 200
        assert len(tap._idle) == 1 and not tap._busy


async def test_a_long_error_text_is_masked_and_reaches_the_host_as_text() -> None:
    """An isError result's text has the gateway's secrets masked (``mask_text``) whatever
    its length: a lifted one (upstream/lifting.py) was masked as its token, so the host
    read the token, neither the text nor the mask."""
    secret = "lifting-probe-4f1c9a77e2"
    SECRETS.add([secret])
    async with upstream() as up, front(gateway(up.url, tap=True)) as fast:
        got = await fast.post("alpha_fail", {"message": f"{BIG} key {secret}"})
        result = got.json()["result"]
        assert result["isError"] is True
        assert result["content"][0]["text"] == f"{BIG} key {MASK}"
        assert b"@gw-lifted-" not in got.content and secret.encode() not in got.content


async def test_an_upstream_is_asked_for_logs_only_as_the_host_asked() -> None:
    """A 2026-07-28 host that asks for no logs gets none, so the upstream is not asked
    for any either (it used to be asked for every level: work and traffic for logs the
    gateway then dropped); a level the host asks for is passed on as it is."""
    async with upstream() as up, front(gateway(up.url, tap=True)) as fast:
        async def asked(meta: dict[str, Any] | None) -> str:
            got = await fast.post("alpha_log_level_asked", {}, meta)
            return str(got.json()["result"]["content"][0]["text"])

        assert await asked(None) == "none"
        assert await asked({types.LOG_LEVEL_META_KEY: "warning"}) == "warning"
        assert await asked({"progressToken": 3}) == "none"
        assert fast.served >= 3
        # The gateway's own request (the inspector's, say) asks for none: over a shared
        # session its logs would be told to whichever host has a call in flight.
        replica = fast.gateway.manager.services["alpha"].replicas[0]
        own = await replica.call_tool("log_level_asked", {}, None)
        assert isinstance(own, types.CallToolResult)
        assert own.content[0].text == "none"  # type: ignore[union-attr]


async def test_a_closed_pooled_connection_is_replaced_without_failing_the_call() -> None:
    async with upstream() as up, front(gateway(up.url, tap=True)) as fast:
        assert (await fast.post("alpha_add", {"a": 1, "b": 1})).json()["result"][
            "structuredContent"] == {"result": 2}
        tap = fast.tap
        assert tap is not None
        (conn,) = tap._idle
        conn.writer.transport.abort()  # as a server closing an idle connection
        got = await fast.post("alpha_add", {"a": 2, "b": 2})
        assert got.json()["result"]["structuredContent"] == {"result": 4}
        assert len(tap._idle) == 1 and tap._idle[0] is not conn


@pytest.mark.parametrize("with_tap", [True, False])
async def test_a_host_that_goes_away_cancels_the_upstream_request(with_tap: bool) -> None:
    async with upstream() as up, front(gateway(up.url, tap=with_tap)) as fast:
        # closing the upstream POST cancels the tool
        outcomes = await host_leaves_mid_call(fast, up)
        assert [o.status for o in outcomes] == ["cancelled"]
        tap = fast.tap
        assert (tap is not None) == with_tap
        assert tap is None or (tap.served == 0 and not tap._busy and not tap._idle)


async def test_a_call_timeout_closes_the_upstream_request() -> None:
    async with upstream() as up, front(gateway(up.url, tap=True)) as fast:
        # Short for calls only, once connected (the catalog listing shares the timeout).
        fast.gateway.manager.services["alpha"].replicas[0]._requests.call_timeout = 0.5
        got = await fast.post("alpha_hold", {})
        result = got.json()["result"]
        assert result["isError"] is True and "did not answer within 0.5s" in result[
            "content"][0]["text"]
        with anyio.fail_after(30):
            await up.cancelled.wait()
        # The replica stays usable: a timeout is not a broken connection.
        assert (await fast.post("alpha_add", {"a": 1, "b": 2})).json()["result"][
            "structuredContent"] == {"result": 3}


async def test_a_handshake_era_session_without_its_id_keeps_the_sdk_path() -> None:
    """(A handshake-era session the tap knows the id of: ``test_http_tap_handshake.py``.)"""
    async with upstream() as up, front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        tap = fast.tap
        assert tap is not None and tap.end is not None
        tap.end = None  # where the session's id was never learned
        got = await fast.post("alpha_add", {"a": 5, "b": 6})
        assert got.json()["result"]["structuredContent"] == {"result": 11}
        assert tap.served == 0 and not tap._idle


async def test_a_refused_connection_is_a_transport_failure_and_the_replica_recovers() -> None:
    async with upstream() as up:
        gw = gateway(up.url, tap=True)
        async with front(gw) as fast:
            assert (await fast.post("alpha_chatty", {"text": "a"})).status_code == 200
            tap = fast.tap
            assert tap is not None
            tap.port = _closed_port()  # the next connection is refused
            for conn in tap._idle:
                conn.close()
            # Not idempotent: not retried, so the host sees the transport fault.
            got = (await fast.post("alpha_chatty", {"text": "b"})).json()["result"]
            assert got["isError"] is True, got
            assert "transport failed" in got["content"][0]["text"]
            assert "connection refused (nothing is listening on that port)" in got[
                "content"][0]["text"]
            # The session was marked broken and reconnects, with a new tap.
            replica = gw.manager.services["alpha"].replicas[0]
            with anyio.fail_after(60):
                while fast.tap in (tap, None) or replica.state is not UpstreamState.READY:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            got = (await fast.post("alpha_chatty", {"text": "c"})).json()["result"]
            assert got["structuredContent"]["echo"] == "c"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _events(*chunks: bytes) -> list[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return [data async for data in sse_messages(body(), 1 << 20)]


async def test_sse_events_split_anywhere_in_any_line_ending() -> None:
    stream = (b"event: message\r\ndata: {\"a\":1}\r\n\r\n: ping\r\n\r\n"
              b"data: {\"b\":\r\ndata: 2}\n\nevent: other\ndata: x\n\n"
              b"id: 7\rdata: {\"c\":3}\r\r")
    want = [b'{"a":1}', b'{"b":\n2}', b'{"c":3}']
    assert await _events(stream) == want
    for cut in range(1, len(stream)):  # every split point, CRLF halves included
        assert await _events(stream[:cut], stream[cut:]) == want, cut
    with pytest.raises(Exception, match="larger than max_message_bytes"):
        async def big() -> AsyncIterator[bytes]:
            yield b"data: " + b"x" * 100

        [d async for d in sse_messages(big(), 10)]


def test_the_tap_applies_to_http_and_https_without_proxy_or_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    assert tap_applies("http://127.0.0.1:8000/mcp", None)
    assert tap_applies("https://example.com/mcp", None)  # (test_http_tap_tls.py)
    assert not tap_applies("ws://example.com/mcp", None)
    # ``protocol: auto`` opens 2026-07-28 towards plain http only (https: as before).
    from fast_mcp_gateway.upstream.transports import _http_transport

    assert _http_transport()("http://127.0.0.1:8000/mcp").prefers_modern
    assert not _http_transport()("https://example.com/mcp").prefers_modern
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # https URLs' only
    assert not tap_applies("https://example.com/mcp", None)
    assert tap_applies("http://example.com/mcp", None)
    monkeypatch.delenv("HTTPS_PROXY")
    assert not tap_applies("http://127.0.0.1:8000/mcp", object())
    assert not tap_applies("http://user:secret@127.0.0.1:8000/mcp", None)  # Basic auth
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert proxied("http://upstream.internal/mcp")
    assert not tap_applies("http://upstream.internal/mcp", None)
    monkeypatch.setenv("NO_PROXY", "upstream.internal")
    assert tap_applies("http://upstream.internal/mcp", None)


@pytest.mark.parametrize(("no_proxy", "url"), [
    (".upstream.internal", "http://upstream.internal/mcp"),  # (its subdomains only)
    (".localhost", "http://localhost:8000/mcp"),
    ("127.0.0.1", "http://localhost:8000/mcp"),
    ("upstream.internal:9000", "http://upstream.internal:8000/mcp"),
    ("http://upstream.internal", "https://upstream.internal/mcp"),
])
def test_no_proxy_is_read_as_httpx_reads_it_where_it_keeps_the_proxy(
        monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str) -> None:
    """The tap goes straight to a server only where the SDK's client (httpx) would:
    urllib's ``NO_PROXY`` matching (``.example.com`` is ``example.com`` too) sent the
    tap past the proxy httpx sends the same server's requests through."""
    for key in ("ALL_PROXY", "all_proxy", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    with httpx2.Client() as client:  # (httpx's own decision)
        assert client._transport_for_url(httpx2.URL(url)) is not client._transport
    assert proxied(url) and not tap_applies(url, None)


@pytest.mark.parametrize(("no_proxy", "url"), [
    ("127.0.0.0/8", "http://127.0.0.1:8000/mcp"),
    ("upstream.internal:8000", "http://upstream.internal:8000/mcp"),
    ("other.internal,*", "https://upstream.internal/mcp"),
    (".internal", "https://upstream.internal/mcp"),
])
def test_no_proxy_is_read_as_httpx_reads_it_where_it_goes_straight(
        monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str) -> None:
    """... and serves the calls of a server httpx reaches straight (a CIDR, a
    ``host:port``, a ``*`` among others: the tap stepped aside)."""
    for key in ("ALL_PROXY", "all_proxy", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    with httpx2.Client() as client:
        assert client._transport_for_url(httpx2.URL(url)) is client._transport
    assert not proxied(url) and tap_applies(url, None)


def test_headers_that_could_smuggle_lines_are_left_to_the_sdk() -> None:
    assert header_lines({"x-a": "1", "authorization": "Bearer t"}) == (
        b"x-a: 1\r\nauthorization: Bearer t\r\n")
    for bad in ({"x-a": "1\r\nx-b: 2"}, {"x-a": "1\n"}, {"x-a": "\0"}, {"x-a:": "1"},
                {"x-a": "✗"}, {" ": "1"}):
        with pytest.raises(Declined):
            header_lines(bad)


async def test_the_deadline_cancels_once_and_tells_its_own_cancellation_apart() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    base = task.cancelling()
    expired = Deadline(loop, 0.0)  # its own: taken back, the task is not cancelled
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()
    assert expired.reached() and task.cancelling() == base
    outside = Deadline(loop, 3600.0)  # a cancellation from outside goes on
    loop.call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()
    assert not outside.reached() and task.cancelling() == base + 1
    task.uncancel()
    both = Deadline(loop, 0.0)  # expired while an outside cancellation came too
    loop.call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()
    assert not both.reached() and task.cancelling() == base + 1
    task.uncancel()
    endless = Deadline(loop, float("inf"))  # no timer at all
    assert endless.handle is None and not endless.reached()


async def test_header_lines_with_call_arguments_are_never_kept() -> None:
    tap = HttpTap("http://127.0.0.1:9/mcp", {}, cast(Any, None))
    stamped = {"Mcp-Method": "tools/call", "Mcp-Name": "t", "Mcp-Param-Region": "eu-secret"}
    assert b"Mcp-Param-Region: eu-secret\r\n" in tap._extra_lines(stamped)
    assert tap._extra == {}  # an argument's value is not kept past its call
    plain = {"Mcp-Method": "tools/call", "Mcp-Name": "t"}
    assert tap._extra_lines(plain) == b"Mcp-Method: tools/call\r\nMcp-Name: t\r\n"
    assert list(tap._extra) == [tuple(plain.items())]
