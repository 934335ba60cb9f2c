"""A call of a signed-out ``auth: {type: oauth}`` server asks its host to open the
sign-in link (URL-mode elicitation, front/sign_in_ask.py), then runs once the person
signed in -- in both protocol eras; a host without elicitation gets the words.

End to end on 127.0.0.1 against fastmcp's in-memory authorization server
(tests/oauth_servers.py); the hosts are FastMCP 4 clients whose elicitation handler is
the "person": it follows the link with an HTTP client, then accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, PY, serve_http, until
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, replica, sign_in, state_is
from tests.test_ui_browser import BOB, OPS

pytestmark = pytest.mark.anyio


class Person:
    """An elicitation handler: records each question; follows the link and accepts
    (or answers ``action``); with ``together``, waits until that many were asked."""

    def __init__(self, action: str = "accept", together: int = 1) -> None:
        self.asked: list[types.ElicitRequestURLParams] = []
        self.action, self.together = action, together
        self.all_asked = anyio.Event()
        self.signed_in = anyio.Event()

    async def __call__(self, message: str, response_type: Any, params: Any,
                       context: Any) -> ElicitResult[Any]:
        assert isinstance(params, types.ElicitRequestURLParams), params
        first = not self.asked
        self.asked.append(params)
        if len(self.asked) >= self.together:
            self.all_asked.set()
        await self.all_asked.wait()
        if self.action == "accept" and first:
            page = await person_signs_in(params.url)  # one person, one sign-in
            assert page.status_code == 200
            self.signed_in.set()
        return ElicitResult(action=self.action)  # type: ignore[arg-type]


async def signed_out(gw: Any) -> None:
    """Sign in once (the admin tool), then out: the server's tools stay listed (a
    server never signed in has none to call) and it is ``signed_out``."""
    async with Client(gw.server) as admin:
        await state_is(gw, UpstreamState.SIGNED_OUT)
        await person_signs_in(await sign_in(admin))
        await state_is(gw, UpstreamState.READY)
        await admin.call_tool("gateway_sign_out", {"name": "tickets"})
        await state_is(gw, UpstreamState.SIGNED_OUT)


def messages() -> tuple[list[Any], Any]:
    seen: list[Any] = []

    async def handler(message: Any) -> None:
        seen.append(message)
    return seen, handler


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_call_asks_the_host_to_sign_in_and_then_runs(
        tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        person = Person()
        seen, on_message = messages()
        async with Client(gw.server, mode=mode, elicitation_handler=person,
                          message_handler=on_message) as client:
            await signed_out(gw)
            async with Client(gw.server, mode=mode) as plain:  # no elicitation: the words
                with pytest.raises(ToolError, match="gateway_sign_in") as caught:
                    await plain.call_tool("tickets_add", {"a": 2, "b": 3})
                assert "mcp-gateway login tickets" in str(caught.value)
            assert not person.asked and replica(gw).state is UpstreamState.SIGNED_OUT
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
            assert replica(gw).state is UpstreamState.READY
            [asked] = person.asked
            assert asked.url.startswith(url.rsplit("/mcp", 1)[0]) and "state=" in asked.url
            assert "Sign in to 'tickets'" in asked.message
            assert "(it expires in 10 min, at " in asked.message  # (review30: "9 min")
            if mode == "legacy":  # told the flow is done, by the id it was given
                assert asked.elicitation_id and asked.elicitation_id.startswith(
                    "sign-in-tickets-")
                def done() -> list[str]:
                    return [m.params.elicitation_id for m in seen
                            if isinstance(m, types.ElicitCompleteNotification)]
                await until(done)  # (a host's handlers run as tasks of their own)
                assert done() == [asked.elicitation_id]
            else:
                assert asked.elicitation_id is None  # (the 2026-07-28 era has none)
            # Signed in now: the next call asks nothing.
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
            assert len(person.asked) == 1
        state = parse_qs(urlsplit(asked.url).query)["state"][0]
        # (the person's own HTTP client logs its GETs of the link and the callback)
        logged = "\n".join(r.getMessage() for r in caplog.records if not (
            r.name == "httpx2" and r.getMessage().startswith("HTTP Request: GET")))
        assert state not in logged and "code_challenge" not in logged
        files = [p for p in tmp_path.iterdir() if p.is_file()]  # noqa: ASYNC240 (epilogue)
        data = b"".join([await anyio.Path(p).read_bytes() for p in files])
        assert state.encode() not in data  # nor in the call records


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_two_hosts_asking_at_once_share_one_sign_in(tmp_path: Path, mode: str) -> None:
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        person = Person(together=2)
        async with Client(gw.server, mode=mode, elicitation_handler=person) as one, \
                Client(gw.server, mode=mode, elicitation_handler=person) as two:
            await signed_out(gw)
            results: dict[str, Any] = {}

            async def call(name: str, client: Client[Any]) -> None:
                results[name] = (await client.call_tool("tickets_add", {"a": 1, "b": 2})).data

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "one", one)
                tg.start_soon(call, "two", two)
            assert results == {"one": 3, "two": 3}
            assert len(person.asked) == 2
            assert person.asked[0].url == person.asked[1].url  # one pending sign-in


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_host_that_declines_gets_the_words(tmp_path: Path, mode: str,
                                                   action: str) -> None:
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        person = Person(action=action)
        async with Client(gw.server, mode=mode, elicitation_handler=person) as client:
            await signed_out(gw)
            with pytest.raises(ToolError) as caught:
                await client.call_tool("tickets_add", {"a": 2, "b": 3})
            text = str(caught.value)
            assert "needs sign-in (the host" in text and "gateway_sign_in" in text, text
            assert "mcp-gateway login tickets" in text and "state=" not in text
            assert len(person.asked) == 1
            assert replica(gw).state is UpstreamState.SIGNED_OUT


async def _state(client: Client[Any]) -> str:
    listed = (await client.call_tool("gateway_list_servers", {"detail": True})
              ).structured_content
    assert listed is not None
    (tickets,) = [s for s in listed["servers"] if s["name"] == "tickets"]
    return str(tickets["state"])


async def _until_state(client: Client[Any], state: str) -> None:
    with anyio.fail_after(60):
        while await _state(client) != state:  # each a round trip: the condition, polled
            pass


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_stdio_express_lane_asks_too(tmp_path: Path, mode: str) -> None:
    """A ``serve`` subprocess (its stdio lane answers the calls, JSON, not FastMCP)."""
    db, port = tmp_path / "gateway.db", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    async with signing_upstream() as (_provider, url):
        config = tmp_path / "servers.yaml"
        await anyio.Path(config).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}}}\n")
        first = gateway(url, db, port)  # a sign-in stored, so its tools are listed
        async with Client(first.server) as admin:
            await state_is(first, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(admin))
            await state_is(first, UpstreamState.READY)
        person = Person()
        transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                        str(config), "--db", str(db), "--log-level",
                                        "WARNING"], keep_alive=False,
                                   env={**env, "MCP_GATEWAY_OAUTH_CALLBACK_PORT": str(port)})
        async with Client(transport, mode=mode, elicitation_handler=person) as client:
            await _until_state(client, "ready")
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
            await client.call_tool("gateway_sign_out", {"name": "tickets"})
            await _until_state(client, "signed_out")
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
            [asked] = person.asked
            assert "Sign in to 'tickets'" in asked.message
            assert await _state(client) == "ready"


def _with_tokens(url: str, db: Path, port: int) -> Gateway:
    config = parse_config({"gateway": {"auth": {"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]},
        {"name": "bob", "token": BOB, "scopes": ["tools"]}]}},
        "servers": {"tickets": {"url": url, "auth": {"type": "oauth"}}}}, source="test")
    return Gateway(config, GatewaySettings(
        connect_timeout=10.0, db=str(db), startup_wait=600.0, call_timeout=60,
        oauth_callback_port=port), restart=FAST_RESTART, transport_factory=default_transport)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_http_host_is_asked_when_its_token_may_sign_in(tmp_path: Path,
                                                                 mode: str) -> None:
    """Over the gateway's streamable HTTP (its HTTP express lane answers the calls): the
    sign-in serves every caller, so only a caller who may sign in (scope ``admin``, as
    for ``gateway_sign_in``) is asked; one with ``tools`` only gets the words."""
    async with signing_upstream() as (_provider, url):
        gw = _with_tokens(url, tmp_path / "gateway.db", free_port())
        async with serve_http(gw.http_app()) as base:
            async with Client(f"{base}/mcp", auth=OPS) as admin:  # signed in, then out
                await state_is(gw, UpstreamState.SIGNED_OUT)
                await person_signs_in(await sign_in(admin))
                await state_is(gw, UpstreamState.READY)
                await admin.call_tool("gateway_sign_out", {"name": "tickets"})
                await state_is(gw, UpstreamState.SIGNED_OUT)
            bobs = Person()
            async with Client(f"{base}/mcp", mode=mode, auth=BOB,
                              elicitation_handler=bobs) as bob:
                with pytest.raises(ToolError, match="gateway_sign_in"):
                    await bob.call_tool("tickets_add", {"a": 2, "b": 3})
                assert not bobs.asked
                ops = Person()
                async with Client(f"{base}/mcp", mode=mode, auth=OPS,
                                  elicitation_handler=ops) as client:
                    assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
                    assert len(ops.asked) == 1
                assert (await bob.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
