"""A refused JWT says why (session 22, the operator's trial).

Every refused JWT got the same 401, "not valid (unknown, expired or not for this
gateway)", on REST, the MCP endpoint and the dashboard's login, and the gateway's log
said nothing for an expired JWT, one whose signature did not verify, or every JWT at
once while `jwks_uri` answered 404: an operator could not tell a user's stale token
from a misconfigured identity provider.  Each test runs a real gateway over HTTP on
127.0.0.1 against a real JWKS endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from joserfc.jwk import RSAKey

from tests.test_rest import assert_error, demo, serving
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.test/"
AUDIENCE = "mcp-gateway"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


@pytest.fixture
def idp() -> Iterator[tuple[RSAKeyPair, str]]:
    """An RSA key and a real JWKS endpoint for it on 127.0.0.1 (key id 'k1') at
    /jwks.json; any other path answers 404."""
    pair = RSAKeyPair.generate()
    key = RSAKey.import_key(pair.public_key)
    body = json.dumps({"keys": [{**key.as_dict(private=False), "kid": "k1", "use": "sig",
                                 "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/jwks.json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield pair, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _jwt(pair: RSAKeyPair, **kw: Any) -> str:
    claims = {"subject": "carol", "issuer": ISSUER, "audience": AUDIENCE, "kid": "k1",
              "scopes": ["admin"], **kw}
    return pair.create_token(**claims)


def _auth(jwks_uri: str) -> dict[str, Any]:
    return {"jwt": {"jwks_uri": jwks_uri, "issuer": ISSUER, "audience": AUDIENCE}}


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("fast_mcp_gateway") and "JWT" in r.getMessage()]


async def test_a_refused_jwt_says_why_on_rest_and_mcp_and_in_the_log(
        tmp_path: Path, idp: tuple[RSAKeyPair, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pair, base = idp
    stranger = RSAKeyPair.generate()  # signs with a key the JWKS does not publish
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": _auth(base + "/jwks.json")}) as (api, gateway):
        assert (await api("GET", "/servers", _jwt(pair))).status_code == 200

        expired = _jwt(pair, expires_in_seconds=-120)
        said = assert_error(await api("GET", "/servers", expired), 401,
                            "unauthorized")["message"]
        assert re.search(r"the JWT expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", said), said
        assert "fresh one" in said, said
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = await http.post(gateway + "/mcp", json=INITIALIZE, headers={
                **MCP_HEADERS, "Authorization": f"Bearer {expired}"})
        assert answer.status_code == 401
        assert "the JWT expired at" in answer.json()["error_description"], answer.text
        assert "the JWT expired at" in answer.headers["www-authenticate"]

        other_audience = _jwt(pair, audience="another-app")
        said = assert_error(await api("GET", "/servers", other_audience), 401,
                            "unauthorized")["message"]
        assert "'aud'" in said and "gateway.auth.jwt.audience" in said, said
        assert "another-app" not in said  # nothing the token chose is echoed

        other_issuer = _jwt(pair, issuer="https://elsewhere.test/")
        said = assert_error(await api("GET", "/servers", other_issuer), 401,
                            "unauthorized")["message"]
        assert f"takes JWTs from {ISSUER}" in said and "elsewhere" not in said, said

        forged = _jwt(stranger)
        said = assert_error(await api("GET", "/servers", forged), 401,
                            "unauthorized")["message"]
        assert "signature" in said and "gateway.auth.jwt.jwks_uri" in said, said

    logged = "\n".join(_refusals(caplog))
    assert "expired at" in logged, logged
    assert "'aud'" in logged, logged
    # The operator is told the JWKS answered and has the key: the signature is the problem.
    assert "has a key 'k1'" in logged and "signature does not match" in logged, logged
    for token in (expired, other_audience, other_issuer, forged):
        assert token not in logged and token.split(".")[1] not in logged


async def test_a_jwks_uri_that_answers_404_is_named_in_the_log_once(
        tmp_path: Path, idp: tuple[RSAKeyPair, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A mistyped `jwks_uri` refused every JWT with nothing in the log."""
    caplog.set_level(logging.INFO)
    pair, base = idp
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": _auth(base + "/jwks-typo.json")}) as (api, _):
        for _ in range(3):
            said = assert_error(await api("GET", "/servers", _jwt(pair)), 401,
                                "unauthorized")["message"]
            assert "signature" in said and "gateway.auth.jwt.jwks_uri" in said, said
    logged = [line for line in _refusals(caplog) if "jwks_uri" in line]
    assert len(logged) == 1, logged  # one line per cause a minute, not one per request
    assert f"{base}/jwks-typo.json answered HTTP 404" in logged[0], logged


async def test_the_dashboard_login_says_a_jwt_expired(
        tmp_path: Path, idp: tuple[RSAKeyPair, str]) -> None:
    """In a real browser: the login page names the expiry, and says what it keeps of the
    token (a session on the gateway; it said "kept in a cookie", which it never is)."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    pair, base = idp
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": _auth(base + "/jwks.json")}) as (_, gateway), \
            async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(gateway + "/ui/")
            await expect(page).to_have_url(re.compile(r"/ui/login"))
            await expect(page.locator("#login-help")).not_to_contain_text("kept in a cookie")
            await expect(page.locator("#login-help")).to_contain_text("never the token")
            await page.get_by_label("Token").fill(_jwt(pair, expires_in_seconds=-120))
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_contain_text(
                re.compile(r"the JWT expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
            await page.get_by_label("Token").fill(_jwt(pair))
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        finally:
            await browser.close()


async def test_a_dashboard_session_whose_jwt_expired_says_so_once() -> None:
    """The viewer sent to the login page when the JWT it logged in with expired was
    shown the form and no reason (cheapest level: the verifier's clock is advanced)."""
    from fast_mcp_gateway.config.auth import AuthConfig
    from fast_mcp_gateway.http.access import Access
    from fast_mcp_gateway.http.auth import GatewayVerifier
    from fast_mcp_gateway.ui.session import DashboardAuth

    pair = RSAKeyPair.generate()
    now = [time.time()]
    verifier = GatewayVerifier(AuthConfig.model_validate({"jwt": {
        "public_key": pair.public_key, "issuer": ISSUER, "audience": AUDIENCE}}),
        clock=lambda: now[0], jwt_cache_size=0)
    auth = DashboardAuth.of(Access(verifier))
    session, problem = await auth.redeem(_jwt(pair, expires_in_seconds=600))
    assert session is not None and problem is None
    assert await auth.session_principal(session) is not None
    assert auth.ended_because(session) is None
    now[0] += 601  # past its exp by this gateway's clock
    assert await auth.session_principal(session) is None
    ended = auth.ended_because(session)
    assert ended is not None and ended.startswith("the JWT expired at "), ended
    assert auth.ended_because(session) is None  # said once


async def test_a_jwt_granting_no_scope_of_the_gateway_is_told_which_claim_to_fix(
        tmp_path: Path, idp: tuple[RSAKeyPair, str]) -> None:
    """A JWT whose scopes claim names none of the gateway's scopes ("read write", as an
    identity provider's defaults) got "the token 'carol' has no scopes" over REST and
    "Unknown tool: ...: this caller may use no server's tools" over MCP: nothing said
    that the claim, or which one, had to name tools or admin."""
    from fastmcp import Client

    pair, base = idp
    token = _jwt(pair, scopes=["read", "write"])
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": _auth(base + "/jwks.json")}) as (api, gateway):
        said = assert_error(await api("GET", "/servers", token), 403, "forbidden")["message"]
        assert "gateway.auth.jwt.scopes_claim" in said and "'scope'" in said, said
        async with Client(f"{gateway}/mcp", auth=token) as client:
            refused = await client.call_tool("notes_list_notes", {}, raise_on_error=False)
        text = refused.content[0].text  # type: ignore[union-attr]
        assert refused.is_error and "needs scope 'tools'" in text, text
        assert "gateway.auth.jwt.scopes_claim" in text, text
