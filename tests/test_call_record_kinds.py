"""Names of different kinds of caller may be alike -- a static token named ``alice`` and a
JWT whose subject is ``alice``; a token named ``stdio`` and a library or stdio host, whose
records name its client id (``stdio``) -- and none of them reads another's call records:
a record keeps what its ``client`` names (``client_kind``: token, jwt, host), and a caller
without scope ``admin`` sees the records of its name *and* kind.  Real HTTP on 127.0.0.1,
a real JWKS endpoint, a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_call_privacy import _calls, _fail, _next_call
from tests.test_http_service import ISSUER, signed
from tests.test_ui import _login

pytestmark = pytest.mark.anyio

OPS = "mgw_kinds-ops-5b1d9e07c3"
ALICE = "mgw_kinds-alice-8e2f40a9"
STDIO = "mgw_kinds-stdio-61c7d3b2"
TOKEN_MARK = "token-alice-text-4a1e"  # what the token alice sent
JWT_MARK = "jwt-alice-text-9c3b"  # what the JWT alice sent
HOST_MARK = "host-text-2f7d"  # what the in-process host sent


def _auth(uri: str) -> dict[str, Any]:
    return {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       {"name": "alice", "token": ALICE, "scopes": ["tools"]},
                       {"name": "stdio", "token": STDIO, "scopes": ["tools"]}],
            "jwt": {"jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}


def _seen(page: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(c["client"], c["client_kind"]) for c in page["calls"]]


async def test_a_jwt_and_a_token_of_one_name_read_their_own_records_only(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    pair, uri = jwks
    jwt_alice = signed(pair, "alice", expires_in_seconds=600)
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": _auth(uri)}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http, \
            httpx2.AsyncClient(timeout=30) as ui:
        await _fail(base, ALICE, TOKEN_MARK)
        await _fail(base, jwt_alice, JWT_MARK)
        async with Client(gateway.server) as host:  # a library host: its client id
            await host.call_tool("alpha_fail", {"message": HOST_MARK}, raise_on_error=False)

        token = await _calls(http, base, ALICE)
        assert TOKEN_MARK in json.dumps(token)
        assert JWT_MARK not in json.dumps(token) and HOST_MARK not in json.dumps(token)
        assert _seen(token) == [("alice", "token")]
        by_jwt = await _calls(http, base, jwt_alice)
        assert JWT_MARK in json.dumps(by_jwt) and TOKEN_MARK not in json.dumps(by_jwt)
        assert _seen(by_jwt) == [("alice", "jwt")]
        stdio = await _calls(http, base, STDIO)
        assert stdio["calls"] == []  # the host's record names 'stdio' too: not the token's
        everyone = await _calls(http, base, OPS)
        assert sorted(_seen(everyone)) == [("alice", "jwt"), ("alice", "token"),
                                           ("stdio", "host")]

        # The dashboard's logs page and a record's page, as the JWT alice.
        await _login(ui, base, jwt_alice)
        page = (await ui.get(base + "/ui/logs")).text
        assert JWT_MARK in page and TOKEN_MARK not in page and HOST_MARK not in page
        theirs = token["calls"][0]
        record = await ui.get(f"{base}/ui/calls/{theirs['id']}",
                              params={"at": theirs["started_at"]})
        assert record.status_code == 404 and TOKEN_MARK not in record.text


async def test_a_jwt_of_a_tokens_name_gets_neither_its_call_events_nor_its_sessions(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    pair, uri = jwks
    jwt_alice = signed(pair, "alice", expires_in_seconds=600)
    gateway = make_gateway({"alpha": memory_entry("alpha", isolation="per_client")},
                           {"alpha": alpha_server()}, options={"auth": _auth(uri)},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http, \
            httpx2.AsyncClient(timeout=30) as ui:
        await _login(ui, base, jwt_alice)
        async with ui.stream("GET", base + "/ui/events") as stream, \
                Client(f"{base}/mcp", auth=ALICE) as token, \
                Client(f"{base}/mcp", auth=jwt_alice) as by_jwt:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"  # subscribed by now
            await token.call_tool("alpha_fail", {"message": TOKEN_MARK},
                                  raise_on_error=False)  # first: the JWT's stream skips it
            await by_jwt.call_tool("alpha_add", {"a": 1, "b": 2})
            mine = await _next_call(lines)
            assert mine["name"] == "alpha_add"
            assert (mine["client"], mine["client_kind"]) == ("alice", "jwt")

            async def owners(bearer: str) -> list[tuple[str, str]]:
                one = (await http.get(f"{base}/api/v1/servers/alpha",
                                      headers={"Authorization": f"Bearer {bearer}"})).json()
                return sorted((s["owner"], s["owner_kind"])
                              for s in one["client_sessions"]["sessions"])

            assert await owners(jwt_alice) == [("alice", "jwt")]
            assert await owners(ALICE) == [("alice", "token")]
            assert await owners(OPS) == [("alice", "jwt"), ("alice", "token")]
