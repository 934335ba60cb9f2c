"""A refresh the authorization server answers with no OAuth ``error`` code -- a proxy's
HTML page, an empty body -- is a transient failure (upstream/oauth_grant.py): the
sign-in is kept, the gateway tries again with backoff, and says what was answered
(status and the first bytes, secrets masked).  Only a code that says the grant is dead
(``invalid_grant``...) signs out.  Real loopback authorization server and protected MCP
server (tests/oauth_servers.py), a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import until
from tests.oauth_servers import TokenFault, person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, replica, running, sign_in, state_is

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("answer", [
    (502, "text/html", b"<html><body>Bad Gateway (corporate proxy)</body></html>"),
    (400, "text/plain", b""),
    (401, "text/html", b"<html>Please log in to the proxy</html>"),
])
async def test_a_refresh_answered_without_an_oauth_code_keeps_the_sign_in(
        tmp_path: Path, answer: tuple[int, str, bytes]) -> None:
    fault = TokenFault()
    async with signing_upstream(fault=fault) as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            refresh = next(iter(provider.refresh_tokens))
            fault.answer = answer
            provider.access_tokens.clear()  # 'expired': the next call refreshes
            with pytest.raises(ToolError):
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            up = replica(gw)
            await until(lambda: fault.seen >= 2)  # tried again (the reconnect's)
            assert up.state is not UpstreamState.SIGNED_OUT
            error = str(up.last_error)
            status, _kind, body = answer
            assert f"answered HTTP {status} to a refresh" in error, error
            assert (body[:20].decode() if body else "an empty body") in error
            assert "the gateway tries again" in error
            found = await gw.sign_ins.book.load("tickets")
            assert found is not None
            assert found[1]["tokens"]["refresh_token"] == refresh  # kept, not forgotten
            fault.answer = None  # the proxy is fixed: the sign-in works again
            await state_is(gw, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5


async def test_invalid_grant_still_signs_out(tmp_path: Path) -> None:
    fault = TokenFault()
    async with signing_upstream(fault=fault) as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            fault.answer = (400, "application/json", b'{"error": "invalid_grant"}')
            provider.access_tokens.clear()
            with pytest.raises(ToolError):
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert "(invalid_grant)" in str(replica(gw).last_error)
