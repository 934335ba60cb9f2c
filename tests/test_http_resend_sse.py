"""On an SSE upstream (the handshake era's legacy transport), a ``tools/call`` the
SDK's client does not send again after an idle close fails alone (``http_resend.py``).

The legacy transport posts each message and reads every answer from its one ``GET``
stream; it takes any POST's error status for its writer's end.  The 502 that lets a
streamable-HTTP session's request fail alone (review29) ended that writer: the call
waited for an answer that could not come until its timeout ("did not answer within
8s ... if it is only slow, raise the server's timeouts.call", the tool never ran), and
the next request found the session gone ("connection closed").  Now the POST is
answered 202 and that request's error reaches the session as if read from the stream.
A relay closes a reused connection as the request arrives (``test_http_resend.Reuses``):
deterministic, no waiting.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream import http_pool
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, alpha_server, serve_http
from tests.test_http_resend import Reuses

pytestmark = pytest.mark.anyio


async def test_a_tools_call_not_sent_again_on_an_sse_upstream_fails_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its tool never ran; the call fails at once in the clear words, the session and
    ``ready`` stay, and the next call is answered on it."""
    monkeypatch.setattr(http_pool, "kept_alive",  # (idle connections kept: no clock)
                        lambda seconds=0.0: httpx2.Limits(keepalive_expiry=None))
    runs: dict[str, int] = {}
    mcp = alpha_server()

    @mcp.tool
    def append(key: str) -> str:
        runs["append"] = runs.get("append", 0) + 1
        return f"appended {key}"

    async with serve_http(mcp.http_app(path="/sse", transport="sse"),
                          keep_alive=3600) as base, \
            Reuses(int(base.rsplit(":", 1)[1])).serving() as relay:
        config = parse_config({"servers": {"alpha": {
            "url": f"http://127.0.0.1:{relay.port}/sse"}}}, source="test")
        gw = Gateway(config, GatewaySettings(connect_timeout=10.0, db=None,
                                             startup_wait=600.0, call_timeout=8),
                     restart=FAST_RESTART, transport_factory=default_transport)
        async with Client(gw.server) as client:
            replica = gw.manager.services["alpha"].replicas[0]
            session = replica._sup.session
            for _ in range(2):  # (connections pooled)
                await client.call_tool("alpha_append", {"key": "k"})
            relay.arm()
            failed: Any = await client.call_tool("alpha_append", {"key": "k"},
                                                 raise_on_error=False)
            assert relay.done.is_set()
            said = failed.content[0].text
            assert failed.is_error and "closed the connection without an answer" in said, said
            assert "not sent again" in said and "did not answer within" not in said, said
            assert runs == {"append": 2}  # never ran, not sent again
            assert replica._sup.session is session and replica.state is UpstreamState.READY
            await client.call_tool("alpha_append", {"key": "k"})  # (and the next is served)
            assert runs == {"append": 3}
            relay.done.clear()
            relay.arm()  # a safe request on a reused connection: sent again
            assert await client.read_resource("data://alpha/config")
            assert relay.done.is_set()
            assert replica._sup.session is session
