"""``protocol: auto`` learns the handshake era back from a tool that asks by push on a
2026-07-28 session, whichever server refuses it: FastMCP's own refusal text is covered
in ``test_asks_routing.py``; here the MCP SDK's lowlevel ``Server``
(``tests/servers/lowlevel_pusher.py``), whose session raises ``NoBackChannelError``:
as the call's -32600 error (a handler that lets it go) or as an isError text (one that
catches it).  A real upstream process, real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.upstream.session import asks_by_push, refuses_push
from tests.fixtures import SERVERS, make_gateway, serve_http
from tests.test_asks_routing import answering, http_process, until

pytestmark = pytest.mark.anyio

SDK_REFUSAL = ("Cannot send 'elicitation/create': this transport context has no "
               "back-channel for server-initiated requests.")


def pusher(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[str]:
    """The lowlevel pusher as a streamable-HTTP server process; yields its MCP URL."""
    port_file = tmp_path / "port"
    return http_process(port_file, SERVERS / "lowlevel_pusher.py", port_file)


@pytest.mark.parametrize("tool", ["ask", "ask_wrapped"])
async def test_a_handshake_host_gets_its_question_from_a_lowlevel_sdk_tool(
        tmp_path: Path, tool: str) -> None:
    """``ask``: the SDK's refusal comes as the call's -32600 error; ``ask_wrapped``: as
    the tool's isError text.  Either way the replica reconnects in the handshake era
    and the call is sent again: the host gets the question and the tool's answer."""
    async with pusher(tmp_path) as url:
        gateway = make_gateway({"low": {"url": url}})
        replica = gateway.manager.get("low").replicas[0]
        seen: dict[str, list[str]] = {}
        async with serve_http(gateway.http_app("http")) as base, Client(
                f"{base}/mcp", mode="legacy", elicitation_handler=answering("A", seen)) as host:
            assert replica.statistics().protocol_version == "2026-07-28"
            result = await host.call_tool(f"low_{tool}", {"tag": "A"})
            assert result.content[0].text == "A:accept:answer-from-A"  # type: ignore[union-attr]
            assert seen == {"A": ["question for A"]}
            stats = replica.statistics()
            assert stats.protocol_version != "2026-07-28"
            assert "asks for input by push (elicitation/create)" in (
                stats.protocol_reason or ""), stats.protocol_reason
            # Learned: the next call goes straight to the handshake-era session.
            again = await host.call_tool(f"low_{tool}", {"tag": "A"})
            assert again.content[0].text == "A:accept:answer-from-A"  # type: ignore[union-attr]
            assert replica.connects == 2


async def test_a_modern_host_gets_the_sdk_refusal_as_directly_and_the_replica_learns(
        tmp_path: Path) -> None:
    async with pusher(tmp_path) as url:
        gateway = make_gateway({"low": {"url": url}})
        replica = gateway.manager.get("low").replicas[0]
        async with serve_http(gateway.http_app("http")) as base, Client(
                f"{base}/mcp", mode="2026-07-28") as host:
            with pytest.raises(Exception, match="no back-channel for server-initiated"):
                await host.call_tool("low_ask", {"tag": "B"})
            await until(lambda: replica.statistics().protocol_version != "2026-07-28"
                        and replica.state.value == "ready")
            assert "(elicitation/create)" in (replica.statistics().protocol_reason or "")


async def test_a_sampling_push_is_learned_too(tmp_path: Path) -> None:
    async def sample(messages: Any, params: Any, context: Any) -> str:
        return "sampled"

    async with pusher(tmp_path) as url:
        gateway = make_gateway({"low": {"url": url}})
        replica = gateway.manager.get("low").replicas[0]
        async with serve_http(gateway.http_app("http")) as base, Client(
                f"{base}/mcp", mode="legacy", sampling_handler=sample) as host:
            result = await host.call_tool("low_sample", {"tag": "C"})
            assert result.content[0].text == "C:sampled"  # type: ignore[union-attr]
            assert "(sampling/createMessage)" in (replica.statistics().protocol_reason or "")


def test_the_refusals_recognized_and_what_is_not() -> None:
    fastmcp_text = ("elicitation via server-initiated requests is unavailable on "
                    "2026-07-28 connections.")
    wrapped = f"Error calling tool 'x': {SDK_REFUSAL}"
    for text, pushed in [(fastmcp_text, "ctx.elicit()"), (SDK_REFUSAL, "elicitation/create"),
                         (wrapped, "elicitation/create")]:
        assert asks_by_push({"isError": True, "content": [
            {"type": "text", "text": text}]}) == pushed
        assert asks_by_push(types.CallToolResult(
            is_error=True, content=[types.TextContent(text=text)])) == pushed
        # Only a failed call is a refusal: a tool may talk about it.
        assert asks_by_push({"content": [{"type": "text", "text": text}]}) is None
    assert refuses_push(MCPError(code=types.INVALID_REQUEST, message=SDK_REFUSAL)) == \
        "elicitation/create"
    assert refuses_push(MCPError(code=types.INVALID_REQUEST, message="bad request")) is None
    assert refuses_push(MCPError(code=types.INTERNAL_ERROR, message=SDK_REFUSAL)) is None
    assert refuses_push(ValueError(SDK_REFUSAL)) is None
    assert asks_by_push({"isError": True, "content": [
        {"type": "text", "text": "some other failure"}]}) is None


