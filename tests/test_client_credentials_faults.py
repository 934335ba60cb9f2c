"""A token request of ``auth: {type: client_credentials}`` answered 400 or 401 with no
OAuth ``error`` code -- a proxy's page, an empty body -- is no refusal of the client
(upstream/token_grants.py): transient, the gateway tries again with backoff and says
what was answered (status, the first characters, masked); the server is never parked.
A code that names the client (``invalid_client``) still is the refusal in words
(tests/test_client_credentials.py).  Real loopback authorization server and protected
MCP server (tests/oauth_servers.py).
"""

from __future__ import annotations

import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import until
from tests.oauth_servers import Issuer, TokenFault, issuer_and_upstream
from tests.test_client_credentials import cc, gateway, replica, running

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("answer", [
    (401, "text/html", b"<html>Please log in to the proxy</html>"),
    (400, "text/plain", b""),
])
async def test_a_token_answer_without_an_oauth_code_is_tried_again(
        answer: tuple[int, str, bytes]) -> None:
    issuer, fault = Issuer(), TokenFault()
    fault.answer = answer
    async with issuer_and_upstream(issuer, fault=fault) as (as_base, url):
        gw = gateway({"tickets": cc(url, issuer=as_base)})
        async with running(gw) as client:
            up = replica(gw, "tickets")
            await until(lambda: up._sup._stats.attempts >= 6)  # past the crash limit
            assert up.state is UpstreamState.RECONNECTING  # never parked as failed
            error = str(up.last_error)
            status, _kind, body = answer
            assert f"answered HTTP {status} to a token request" in error, error
            assert (body[:20].decode() if body else "an empty body") in error
            assert "the gateway tries again" in error
            assert "refused the client" not in error
            listed = await client.call_tool("gateway_list_servers", {"detail": True})
            [row] = [r for r in listed.structured_content["servers"]  # type: ignore[index]
                     if r["name"] == "tickets"]
            assert row["sign_in"]["state"] == "no_token"  # (review30: "signed_out")
            fault.answer = None  # the proxy is fixed: tokens again
            await until(lambda: up.state is UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
