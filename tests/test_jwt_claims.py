"""A JWT's scopes and servers claims (security review, session 25), over real HTTP on
127.0.0.1 with JWTs signed by a local RSA key, served by a real JWKS endpoint.

* With ``gateway.auth.jwt.servers_claim`` set, a JWT without that claim used every
  server: identity providers leave out a claim whose list would be empty, so a user
  granted no server got all of them.  It now gets none, told which claim to fix and
  that ``"*"`` grants every server.
* A scopes or servers claim that is a JSON object had its keys taken as the values
  (``{"admin": false}`` granted admin); a number or a list holding non-strings was read
  through ``str``.  Such a JWT is refused (401), naming the claim and the type it must
  have, never its value.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import make_gateway, serve_http
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_rest import demo
from tests.test_ui import _csrf

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.test/"
CLAIM = "mcp_servers"


def _jwt(pair: RSAKeyPair, subject: str = "dana", **claims: Any) -> str:
    return pair.create_token(subject=subject, issuer=ISSUER, audience="mcp-gateway",
                             kid="k1", expires_in_seconds=600, additional_claims=claims)


@asynccontextmanager
async def _gateway(tmp_path: Path, uri: str) -> AsyncIterator[httpx2.AsyncClient]:
    gateway = make_gateway({"notes": demo("notes"), "clock": demo("clock")},
                           db=tmp_path / "g.db", options={"auth": {"jwt": {
                               "jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway",
                               "servers_claim": CLAIM}}})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        yield http


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_jwt_without_the_servers_claim_gets_no_server_and_is_told_why(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    pair, uri = jwks
    user, admin = _jwt(pair, scope="tools"), _jwt(pair, "root", scope="admin")
    async with _gateway(tmp_path, uri) as http:
        base = str(http.base_url).rstrip("/")
        for token in (user, admin):
            async with Client(f"{base}/mcp", auth=token) as client:
                names = {t.name for t in await client.list_tools()}
                assert not {n for n in names if n.startswith(("notes_", "clock_"))}, names
                with pytest.raises(ToolError) as refused:
                    await client.call_tool("clock_add", {"a": 1, "b": 2})
            said = str(refused.value)
            assert f"its '{CLAIM}' claim (gateway.auth.jwt.servers_claim) is missing or " \
                   "names none" in said and '"*" for every server' in said, said
            listed = await http.get("/api/v1/servers", headers=_auth(token))
            assert listed.status_code == 200 and listed.json()["servers"] == []
            one = await http.get("/api/v1/servers/notes", headers=_auth(token))
            assert one.status_code == 404
            assert f"'{CLAIM}' claim" in one.json()["error"]["message"], one.text
            assert '"*"' in one.json()["error"]["message"]
            # /metrics (every server's) says the claim too, not "use a token without a
            # servers list" (a JWT has none, and lacks only the claim).
            scraped = await http.get("/metrics", headers=_auth(token))
            assert scraped.status_code == 403, scraped.text
            said = scraped.json()["error"]["message"]
            assert f"'{CLAIM}' claim" in said and "servers list" not in said, said
        # An admin's JWT without the claim (the upgrade's case) is told what to fix on
        # what covers every server, not "may only see the servers " naming none.
        async with Client(f"{base}/mcp", auth=admin) as client:
            with pytest.raises(ToolError) as audit:
                await client.call_tool("gateway_audit", {})
        assert f"'{CLAIM}' claim" in str(audit.value) and '"*"' in str(audit.value)
        for method, path in (("GET", "/api/v1/logs/audit"), ("POST", "/api/v1/routes")):
            refused = await http.request(method, path, headers=_auth(admin), json={
                "pattern": "clock_*", "target": "clock"})
            assert refused.status_code == 403, refused.text
            assert f"'{CLAIM}' claim" in refused.json()["error"]["message"], refused.text
        # The dashboard says it too, on the page of a server it may not see.
        login = await http.get("/ui/login")
        done = await http.post("/ui/login", data={"token": user,
                                                  "csrf_token": _csrf(login.text)})
        assert done.status_code in (200, 303), done.text
        page = await http.get("/ui/servers/notes")
        assert f"'{CLAIM}' claim" in html.unescape(page.text), page.text[-2000:]
        overview = html.unescape((await http.get("/ui/")).text)  # not "No servers yet"
        assert "No servers yet" not in overview and f"'{CLAIM}' claim" in overview

        # "*" alone, as a string or in the list, is every server, for an admin too.
        for grant in ("*", ["*"], ["notes", "*"]):
            for scope in ("tools", "admin"):
                token = _jwt(pair, "star", scope=scope, **{CLAIM: grant})
                async with Client(f"{base}/mcp", auth=token) as client:
                    assert (await client.call_tool("clock_add", {"a": 1, "b": 2})).data == 3
                    names = {t.name for t in await client.list_tools()}
                    assert {"notes_list_notes", "clock_add"} <= names, (grant, scope)
        # "*" inside a longer value grants nothing of it.
        for grant in ("x*", "**", ["*notes"], "notes,*"):
            token = _jwt(pair, "odd", scope="tools", **{CLAIM: grant})
            listed = await http.get("/api/v1/servers", headers=_auth(token))
            assert listed.json()["servers"] == [], grant
        named = _jwt(pair, "erin", scope="tools", **{CLAIM: ["clock"]})
        servers = (await http.get("/api/v1/servers", headers=_auth(named))).json()["servers"]
        assert [s["name"] for s in servers] == ["clock"]
        scraped = (await http.get("/metrics", headers=_auth(named))).json()["error"]["message"]
        # An alert rule beyond its servers: its claim, not "an admin token without a
        # 'servers' list" (a JWT has none).
        ops = _jwt(pair, "frank", scope="admin", **{CLAIM: ["clock"]})
        rule = await http.post("/api/v1/alerts/rules", headers=_auth(ops), json={
            "name": "every-down", "server": "*", "metric": "not_ready"})
        assert rule.status_code == 403, rule.text
        said = rule.json()["error"]["message"]
        assert "the JWT of 'frank' may only manage the servers clock (its servers claim" \
            in said and "'servers' list" not in said, said
        assert "the JWT of 'erin' may only see the servers clock (its servers claim" \
            in scraped and "servers list" not in scraped, scraped
    logged = [r.getMessage() for r in caplog.records if CLAIM in r.getMessage()]
    assert len(logged) == 1, logged  # once a minute per cause, not per request
    assert "may use no server" in logged[0] and '"*"' in logged[0]


@pytest.mark.parametrize(("claims", "claim"), [
    ({"scope": {"admin": False}}, "scope"),
    ({"scope": 7}, "scope"),
    ({"scope": ["tools", {"admin": True}]}, "scope"),
    ({"scope": "tools", CLAIM: {"notes": True}}, CLAIM),
    ({"scope": "tools", CLAIM: ["notes", 1]}, CLAIM),
])
async def test_a_claim_of_another_type_is_refused_naming_it(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture, claims: dict[str, Any], claim: str) -> None:
    caplog.set_level(logging.WARNING)
    pair, uri = jwks
    token = _jwt(pair, **claims)
    async with _gateway(tmp_path, uri) as http:
        rest = await http.get("/api/v1/servers", headers=_auth(token))
        mcp = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers={**_auth(token),
                                       "Accept": "application/json, text/event-stream"})
        login = await http.get("/ui/login")
        ui = await http.post("/ui/login", data={"token": token,
                                                "csrf_token": _csrf(login.text)})
    for answer in (rest, mcp, ui):
        assert answer.status_code == 401, answer.text
        challenge = answer.headers["www-authenticate"]
        described = re.search(r'error_description="([^"]*)"', challenge)
        assert described is not None, challenge
        words = described.group(1)
        # FastMCP's verifier refuses a 'scope' list holding non-strings itself (it was
        # told "its signature does not verify"); the gateway refuses the others.
        verified = "a JWT this gateway verified" in words
        assert verified is (claims != {"scope": ["tools", {"admin": True}]}), words
        assert f"its '{claim}' claim" in words and "a list of strings" in words, words
        assert not re.search(r"[Tt]rue|[Ff]alse|7|1\b|'notes'", words), words  # no value
        assert token not in answer.text
    assert f"its '{claim}' claim" in rest.json()["error"]["message"]
    logged = [r.getMessage() for r in caplog.records if "neither a string" in r.getMessage()
              or "holding something other" in r.getMessage()]
    assert len(logged) == 1 and f"'{claim}'" in logged[0], logged
    assert token not in logged[0]
