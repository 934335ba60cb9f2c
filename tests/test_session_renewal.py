"""A streamable-HTTP upstream that restarts and forgets the gateway's session
(``http_session_end.SessionEnd.forgotten``, ``requests.py``, the supervisor's renewal).

The upstream is a real process (``tests/servers/renewable.py``, a stateful FastMCP
server; the TypeScript server-everything too), stopped and started again on the same
port: it answers the old session's requests 404 (server-everything: 400 "No valid
session ID").  Each host's calls after the restart must be answered without any admin
action: on the HTTP front (a 2026-07-28 host's raw POST, the HTTP express lane; a
handshake-era host's session, the session lane; both on the full path with the lanes
off), through the tap and the SDK's client, and on a stdio front (lane and full path).
A call that met the 404 was never run: ``bump`` (not idempotent) runs once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any, TextIO

import anyio
import httpx2
import pytest
from anyio.abc import Process

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.http.session_lane import SessionLane
from fast_mcp_gateway.policies import BreakerState
from fast_mcp_gateway.upstream.http_session_end import TERMINATED, refusal
from fast_mcp_gateway.upstream.model import RestartPolicy, UpstreamState
from fast_mcp_gateway.upstream.replica import Upstream
from fast_mcp_gateway.upstream.transports import default_transport
from tests import npm_tools
from tests.fixtures import FAST_RESTART, PY, SERVERS, serve_http, until
from tests.test_lane import raw_host

pytestmark = pytest.mark.anyio

MODERN, HANDSHAKE = "2026-07-28", "2025-11-25"


class Renewable:
    """``renewable.py`` (or ``argv``) as a process that ``restart`` stops and starts
    again on the same port."""

    def __init__(self, tmp_path: Path, argv: list[str] | None = None) -> None:
        self.port_file = tmp_path / "port"
        self.argv = argv
        self.port = 0
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        if self.argv is not None:  # its port is given (server-everything: PORT)
            self.process = await anyio.open_process(
                self.argv, env={**os.environ, "PORT": str(self.port)}, stdout=None,
                stderr=None)
            await until(self._listening, 60)  # a Node process's start
            return
        self.port_file.unlink(missing_ok=True)
        self.process = await anyio.open_process(
            [PY, str(SERVERS / "renewable.py"), str(self.port_file), str(self.port)],
            stdout=None, stderr=None)
        await until(lambda: self.port_file.exists() and self.port_file.read_text() != "")
        self.port = int(self.port_file.read_text())

    def _listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            with anyio.fail_after(30):
                await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Renewable]:
        if self.argv is not None:
            import socket

            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                self.port = free.getsockname()[1]
        await self.start()
        try:
            yield self
        finally:
            await self.stop()


def without_tap(config: ServerConfig, stderr: TextIO | None) -> Any:
    """The gateway's own transport with its tap off (a configured ``auth``): every
    request on the SDK's client."""
    transport = default_transport(config, stderr)
    transport.auth = httpx2.Auth()  # type: ignore[attr-defined]
    return transport


def make_gateway(url: str, *, lanes: bool, tap: bool = True, name: str = "up") -> Gateway:
    config = parse_config({"servers": {name: {"url": url, "protocol": "legacy"}}},
                          source="test")
    settings = GatewaySettings(connect_timeout=10.0, db=None, startup_wait=600.0,
                               call_timeout=60, http_express_lane=lanes)
    return Gateway(config, settings, restart=FAST_RESTART,
                   transport_factory=default_transport if tap else without_tap)


def answer_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC response of a POST: its JSON body, or its SSE stream's last message."""
    if response.headers["content-type"].startswith("application/json"):
        message: dict[str, Any] = response.json()
        return message
    messages = [json.loads(line[len(b"data: "):]) for line in response.content.splitlines()
                if line.startswith(b"data: ")]
    return next(m for m in reversed(messages) if "id" in m)


@dataclass
class HttpHosts:
    """A 2026-07-28 host (raw POSTs) and a handshake-era host (a session) of one
    gateway's HTTP front."""

    gateway: Gateway
    app: Any
    http: httpx2.AsyncClient
    session: str = ""
    ids: Any = None

    async def open(self) -> None:
        got = await self.http.post("/mcp", headers=_headers(), json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": HANDSHAKE, "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}})
        self.session = got.headers["mcp-session-id"]
        done = await self.http.post("/mcp", headers=_headers(self.session),
                                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code == 202

    async def call(self, modern: bool, name: str, **arguments: Any) -> Any:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if modern:
            params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                               "io.modelcontextprotocol/clientInfo": {"name": "raw",
                                                                      "version": "1"},
                               "io.modelcontextprotocol/clientCapabilities": {}}
        headers = ({"content-type": "application/json", "mcp-protocol-version": MODERN,
                    "accept": "application/json, text/event-stream",
                    "mcp-method": "tools/call", "mcp-name": name} if modern
                   else _headers(self.session))
        got = answer_of(await self.http.post("/mcp", headers=headers, json={
            "jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call", "params": params}))
        assert "result" in got and not got["result"].get("isError"), got
        result = got["result"]
        if "structuredContent" in result:
            return result["structuredContent"]["result"]
        return result["content"][0]["text"]

    def lanes(self) -> tuple[HttpLane | None, SessionLane | None]:
        entry, found = self.app.mcp_entry, []
        while entry is not None:
            found.append(entry)
            entry = getattr(entry, "app", None)
        return (next((e for e in found if isinstance(e, HttpLane)), None),
                next((e for e in found if isinstance(e, SessionLane)), None))


def _headers(session: str | None = None) -> dict[str, str]:
    found = {"content-type": "application/json",
             "accept": "application/json, text/event-stream"}
    if session is not None:
        found |= {"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE}
    return found


@contextlib.asynccontextmanager
async def http_hosts(gateway: Gateway) -> AsyncIterator[HttpHosts]:
    app = gateway.http_app("http")
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        hosts = HttpHosts(gateway, app, http, ids=itertools.count(1))
        await hosts.open()
        yield hosts


def replica_of(gateway: Gateway, name: str = "up") -> Upstream:
    return gateway.manager.services[name].replicas[0]


@pytest.mark.parametrize(("lanes", "tap"), [(True, True), (True, False), (False, True)])
async def test_http_hosts_calls_after_a_restart_are_answered_on_a_new_session(
        tmp_path: Path, lanes: bool, tap: bool) -> None:
    async with Renewable(tmp_path).running() as upstream, \
            http_hosts(make_gateway(upstream.url, lanes=lanes, tap=tap)) as hosts:
        replica = replica_of(hosts.gateway)
        http_lane, session_lane = hosts.lanes()
        assert await hosts.call(True, "up_add", a=1, b=2) == 3
        assert await hosts.call(False, "up_bump") == 1
        assert (replica.connects, replica.restarts) == (1, 0)
        for restart in (1, 2):
            await upstream.restart()  # it forgets every session
            # The first call meets the 404 (or waits for the renewal a probe or the
            # GET stream started): answered on the new session, run there once.
            assert await hosts.call(restart == 1, "up_bump") == 1
            assert await hosts.call(restart == 2, "up_add", a=restart, b=1) == restart + 1
            assert await hosts.call(False, "up_runs") == ["bump"]
            assert replica.state is UpstreamState.READY and replica.connects == 1 + restart
        # Two restarts of the server: two renewals, no failure, nothing parked.
        assert replica.restarts == 2 and replica.breaker.state is BreakerState.CLOSED
        assert replica.last_error is None
        if lanes:  # the lanes answered (their upstream side: the tap, or the SDK's)
            assert http_lane is not None and http_lane.served >= 3
            assert session_lane is not None and session_lane.served >= 4
            tap_now = replica._sup.tap
            assert (tap_now is not None and tap_now.served >= 1) if tap else tap_now is None


async def test_subscriptions_are_replayed_on_the_new_session(tmp_path: Path) -> None:
    async with Renewable(tmp_path).running() as upstream, \
            http_hosts(make_gateway(upstream.url, lanes=True)) as hosts:
        replica = replica_of(hosts.gateway)
        await replica.subscribe("watch://counter")
        assert await hosts.call(True, "up_runs") == ["subscribe watch://counter"]
        await upstream.restart()
        # The renewal is noticed by the call (or earlier), the subscription replayed.
        assert await hosts.call(True, "up_add", a=1, b=1) == 2
        await until(lambda: replica.connects == 2)

        async def replayed() -> bool:
            return await hosts.call(True, "up_runs") == ["subscribe watch://counter"]

        with anyio.fail_after(30):
            while not await replayed():  # noqa: ASYNC110 - the replay is its own task
                await anyio.sleep(0.05)
        assert replica.is_subscribed("watch://counter")


@pytest.mark.parametrize("tap", [True, False])
async def test_calls_that_met_the_404_together_each_run_once(tmp_path: Path, tap: bool) -> None:
    """The server forgets the session with no downtime (``forget``): the calls in
    flight then all meet its 404; each is sent again on the one new session."""
    async with Renewable(tmp_path).running() as upstream, \
            http_hosts(make_gateway(upstream.url, lanes=True, tap=tap)) as hosts:
        replica = replica_of(hosts.gateway)
        assert await hosts.call(True, "up_bump") == 1
        assert await hosts.call(True, "up_forget") == "forgotten"
        got: list[int] = []

        async def bump(modern: bool) -> None:
            got.append(await hosts.call(modern, "up_bump"))

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(bump, n % 2 == 0)
        assert sorted(got) == [2, 3, 4, 5, 6, 7]
        assert await hosts.call(False, "up_runs") == ["bump"] * 7
        # One renewal: not a failure per call, nothing parked, the breaker closed.
        assert (replica.connects, replica.restarts) == (2, 1)
        assert replica.breaker.state is BreakerState.CLOSED and replica.last_error is None


async def test_a_call_without_a_new_session_fails_saying_it_was_not_run(
        tmp_path: Path) -> None:
    """The server forgets the session and refuses new ones: the call that met the 404
    fails at the failed attempt at a new session, saying what happened (with no retry
    configured: the error is its own, not a later attempt's)."""
    async with Renewable(tmp_path).running() as upstream:
        config = parse_config({"servers": {"up": {
            "url": upstream.url, "protocol": "legacy", "retry": {"attempts": 1}}}},
            source="test")
        gateway = Gateway(config, GatewaySettings(connect_timeout=10.0, db=None,
                                                  startup_wait=600.0, call_timeout=60),
                          restart=FAST_RESTART)
        async with http_hosts(gateway) as hosts:
            assert await hosts.call(True, "up_forget", refuse=True) == "forgotten"
            got = answer_of(await hosts.http.post("/mcp", headers={
                "content-type": "application/json", "mcp-protocol-version": MODERN,
                "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
                "mcp-name": "up_bump"}, json={
                "jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {
                    "name": "up_bump", "arguments": {}, "_meta": {
                        "io.modelcontextprotocol/protocolVersion": MODERN,
                        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                        "io.modelcontextprotocol/clientCapabilities": {}}}}))
            text = got["result"]["content"][0]["text"]
            assert got["result"]["isError"] is True, got
            assert "tools/call 'bump' was not run: the server no longer knows the " \
                   "gateway's session (HTTP 404" in text, text
            assert "Too many open sessions" in text, text  # its attempt at a new one


async def test_a_forgotten_session_is_noticed_by_the_health_probe(tmp_path: Path) -> None:
    async with Renewable(tmp_path).running() as upstream:
        config = parse_config({"servers": {"up": {
            "url": upstream.url, "protocol": "legacy", "health": {"interval": 0.2}}}},
            source="test")
        gateway = Gateway(config, GatewaySettings(connect_timeout=10.0, db=None,
                                                  startup_wait=600.0, call_timeout=60),
                          restart=FAST_RESTART)
        async with http_hosts(gateway) as hosts:
            replica = replica_of(gateway)
            assert await hosts.call(True, "up_forget") == "forgotten"
            # No call: the probe's ping meets the 404, and the session is renewed.
            await until(lambda: replica.connects == 2 and replica.session is not None, 30)
            assert replica.restarts == 1 and replica.last_error is None


@pytest.mark.parametrize(("era", "lane"), [("legacy", True), ("modern", True),
                                           ("legacy", False)])
async def test_stdio_hosts_calls_after_a_restart_are_answered(
        tmp_path: Path, era: str, lane: bool) -> None:
    async with Renewable(tmp_path).running() as upstream:
        config = tmp_path / "servers.yaml"
        config.write_text(f"servers:\n  up:\n    url: {upstream.url}\n    protocol: legacy\n")
        async with raw_host(config, era, lane=lane, listed=("up_bump",),
                            env={"MCP_GATEWAY_DB": str(tmp_path / "g.db")}) as host:
            assert (await host.call("up_bump"))["structuredContent"]["result"] == 1
            await upstream.restart()
            got = await host.call("up_bump")
            assert not got.get("isError") and got["structuredContent"]["result"] == 1, got
            runs = (await host.call("up_runs"))["structuredContent"]["result"]
            assert runs == ["bump"]


async def test_the_typescript_everything_server_restarted(tmp_path: Path) -> None:
    """server-everything answers an unknown session 400 "No valid session ID provided"
    (the TypeScript SDK's example servers), not 404: the same renewal."""
    tools = npm_tools.ensure()
    if tools is None:
        pytest.skip("npm is not available")
    script = npm_tools.package_path(tools, "@modelcontextprotocol/server-everything")
    argv = [str(npm_tools.node(tools)), str(script / "dist/index.js"), "streamableHttp"]
    async with Renewable(tmp_path, argv).running() as upstream:
        for tap in (True, False):
            gateway = make_gateway(upstream.url, lanes=True, tap=tap, name="every")
            async with http_hosts(gateway) as hosts:
                replica = replica_of(gateway, "every")
                for modern in (True, False):
                    assert "3" in await hosts.call(modern, "every_get-sum", a=1, b=2)
                await upstream.restart()
                for modern in (True, False):
                    assert "4" in await hosts.call(modern, "every_get-sum", a=2, b=2)
                assert replica.connects == 2 and replica.restarts == 1


# -- the pure parts -------------------------------------------------------------------


def test_what_a_forgotten_session_is_answered() -> None:
    json_type = "application/json"
    found = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'
    assert refusal(404, json_type, found) == (-32600, "Session not found")
    assert refusal(404, None, b"") == TERMINATED
    assert refusal(404, "text/plain", b"Not Found") == TERMINATED
    ts = b'{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid ' \
         b'session ID provided"}}'
    assert refusal(400, "application/json; charset=utf-8", ts) == (
        -32000, "Bad Request: No valid session ID provided")
    other = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid params"}}'
    assert refusal(400, json_type, other) is None  # a refusal of the request itself
    named = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"no session_name"}}'
    assert refusal(400, json_type, named) is None  # (not the transport's -32000)
    answered = b'{"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"Session x"}}'
    assert refusal(404, json_type, answered) is None  # the request's own answer
    unknown = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Not found"}}'
    assert refusal(404, json_type, unknown) is None
    assert refusal(400, None, b"") is None
    assert refusal(500, json_type, found) is None


def test_a_forgotten_session_is_renewed_at_once_then_with_backoff() -> None:
    policy = RestartPolicy(initial=0.5, maximum=30.0, jitter=0.0, crash_window=60.0)
    renewals: deque[float] = deque()
    rng = Random(1)
    assert policy.renewal_delay(renewals, 100.0, rng) == 0.0
    assert policy.renewal_delay(renewals, 101.0, rng) == 0.5  # again within the window
    assert policy.renewal_delay(renewals, 102.0, rng) == 1.0
    assert policy.renewal_delay(renewals, 500.0, rng) == 0.0  # long after: at once again
