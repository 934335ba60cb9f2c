"""Signing out of a server with ``auth: {type: oauth}`` while a call to it is in flight
(upstream/sign_in.py ``SignIns.sign_out``, upstream/bearer.py, the supervisor's
``signed_out_held``): the call already running finishes; a new call is refused in
words naming the ways to sign in again.  Real loopback authorization server and
protected MCP server (tests/oauth_servers.py), a real SQLite file, the real CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import Gate, person_signs_in, signing_upstream
from tests.test_cli_login import cli
from tests.test_oauth_sign_in import free_port, gateway, replica, running, sign_in, state_is

pytestmark = pytest.mark.anyio


async def test_sign_out_lets_a_call_in_flight_finish_and_refuses_new_ones(
        tmp_path: Path) -> None:
    gate = Gate()
    async with signing_upstream(gate) as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            answers: list[int] = []

            async def held() -> None:
                answers.append((await client.call_tool("tickets_hold", {"n": 0})).data)

            async with anyio.create_task_group() as tg:
                tg.start_soon(held)
                await gate.arrived[0].wait()
                out = await client.call_tool("gateway_sign_out", {"name": "tickets"})
                assert out.structured_content is not None
                assert out.structured_content["signed_out"] is True
                with pytest.raises(ToolError) as refused:
                    await client.call_tool("tickets_add", {"a": 1, "b": 1})
                text = str(refused.value)
                assert "signed out" in text and "gateway_sign_in" in text, text
                assert "mcp-gateway login tickets" in text
                gate.release.set()
            assert answers == [0]  # the call in flight was not cut
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert "gateway_sign_in" in str(replica(gw).last_error)


async def test_logout_from_a_terminal_lets_a_call_in_flight_finish(tmp_path: Path) -> None:
    gate, db = Gate(), tmp_path / "gateway.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    async with signing_upstream(gate) as (provider, url):
        config = tmp_path / "servers.yaml"
        await anyio.Path(config).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}}}\n")
        gw = gateway(url, db, free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            answers: list[int] = []

            async def held() -> None:
                answers.append((await client.call_tool("tickets_hold", {"n": 0})).data)

            async with anyio.create_task_group() as tg:
                tg.start_soon(held)
                await gate.arrived[0].wait()
                out = await anyio.run_process(cli("logout", "tickets", "--config",
                                                  str(config), "--db", str(db)), env=env)
                said = out.stderr.decode()
                assert "'tickets' is signed out" in said
                # The SDK's authorization server refuses to revoke for a public client
                # (it said only "answered HTTP 400"): its code, its words, and that the
                # sign-in is forgotten here anyway.
                assert "was refused (HTTP 400, invalid_request: 'client_secret: Field " \
                       "required')" in said, said
                assert "the sign-in is forgotten here all the same" in said
                # What an authorization server that revokes does (the SDK's refuses to
                # revoke for a public client): the gateway's access token is refused.
                provider.access_tokens.clear()
                with pytest.raises(ToolError) as refused:
                    await client.call_tool("tickets_add", {"a": 1, "b": 1})
                text = str(refused.value)
                assert "needs sign-in (no sign-in yet)" in text, text
                assert "mcp-gateway login tickets" in text
                gate.release.set()
            assert answers == [0]  # the call in flight was not cut
            await state_is(gw, UpstreamState.SIGNED_OUT)


async def test_a_refused_revocation_says_its_error_code_and_that_the_sign_in_is_gone(
        caplog: pytest.LogCaptureFixture) -> None:
    """A revocation endpoint answering 400 with an OAuth error: the warning quotes the
    code and the description (masked: it echoes the token sent; on one line, cut
    short), and says the sign-in is forgotten here anyway and the token expires by
    itself (it said only "answered HTTP 400")."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from fast_mcp_gateway.store.credentials import StoredCredential
    from fast_mcp_gateway.upstream.sign_in_page import revoke
    from tests.fixtures import serve_http

    refresh = "rt-" + "q" * 40

    async def refuse(request: Request) -> JSONResponse:
        token = (await request.form())["token"]
        return JSONResponse({"error": "invalid_request", "error_description":
                             f"token {token} is not\nknown to us " + "x" * 300}, 400)

    async with serve_http(Starlette(routes=[Route("/revoke", refuse, methods=["POST"])]),
                          startup=False) as base:
        row = StoredCredential(
            server="tickets", owner="", issuer=base, token_endpoint=base + "/token",
            revocation_endpoint=base + "/revoke", resource=None, scopes=None,
            redirect_uri=None, expires_at=None, sealed="", updated_at=0.0, updated_by="t")
        with caplog.at_level("WARNING", "fast_mcp_gateway.upstream.sign_in_page"):
            await revoke("tickets", row, {"tokens": {"refresh_token": refresh,
                                                     "access_token": "at-" + "z" * 40},
                                          "client": {"client_id": "gw"}})
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"upstream tickets: revoking its token at {base}/revoke was "
                           "refused (HTTP 400, invalid_request: 'token *** is not known to "
                           "us xxx"), said
    assert refresh not in said and "q" * 10 not in said and "\n" not in said
    assert "...'" in said and "x" * 120 not in said  # cut short
    assert said.endswith("; the sign-in is forgotten here all the same; its token stays "
                         "valid at the authorization server until it expires by itself (or "
                         "revoke the gateway's access on the provider's settings page)")
