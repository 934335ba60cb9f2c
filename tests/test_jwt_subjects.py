"""A JWT's subject names its caller in call records, the audit log and the dashboard: one
that is no plain name (control characters, 5,000 characters) is refused with a 401 and
a log line saying why, never stored cut or rewritten (two subjects cut alike would be
one caller).  A 255-character subject (OpenID Connect's bound) still works."""

from __future__ import annotations

import html
import logging
import re
import time
from pathlib import Path

import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http.auth import MAX_SUBJECT, GatewayVerifier, principal_of
from tests.fixtures import make_gateway, serve_http
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_http_service import ISSUER, jwt_verifier, signed
from tests.test_ui import _csrf

pytestmark = pytest.mark.anyio
BAD = {"escape": ("\x1b[31mroot", "holds the control character U+001B (at position 0)"),
       "newline": ("bob\nadmin", "holds the control character U+000A (at position 3)"),
       "bidi": ("bob\u202e", "holds the control character U+202E (at position 3)"),
       "long": ("s" * 5000, "has 5000 characters (at most 255)")}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_a_jwt_whose_subject_is_no_plain_name_is_refused_saying_why(
        jwks: tuple[RSAKeyPair, str], caplog: pytest.LogCaptureFixture,  # noqa: F811
        kind: str) -> None:
    pair, uri = jwks
    subject, why = BAD[kind]
    verifier, _ = jwt_verifier(uri, time.time)
    assert await verifier.verify_token(signed(pair, subject, expires_in_seconds=600)) is None
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"refused a JWT whose 'sub' {why}" in line and subject not in line


async def test_a_subject_of_the_bound_still_names_its_caller(
        jwks: tuple[RSAKeyPair, str]) -> None:  # noqa: F811
    pair, uri = jwks
    verifier, _ = jwt_verifier(uri, time.time)
    subject = "ü" * MAX_SUBJECT
    access = await verifier.verify_token(signed(pair, subject, expires_in_seconds=600))
    assert access is not None and principal_of(access).name == subject


async def test_over_http_such_a_jwt_gets_a_401(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    pair, uri = jwks
    gateway = make_gateway({}, db=tmp_path / "g.db", options={"auth": {"jwt": {
        "jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        for subject, status in (("bob\r\nadmin", 401), ("bob", 200)):
            token = signed(pair, subject, expires_in_seconds=600)
            answer = await http.get(f"{base}/api/v1/logs/invocations",
                                    headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == status, (subject, answer.text)


async def test_a_refusal_that_names_the_subject_names_only_a_checked_one(
        jwks: tuple[RSAKeyPair, str], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """A JWT without 'exp' is refused naming its subject: that was the 'sub' claim as
    sent, also where gateway.auth.jwt.subject_claim names another claim (unchecked)."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    pair, uri = jwks
    config = AuthConfig.model_validate({"jwt": {"jwks_uri": uri, "issuer": ISSUER,
                                                "audience": "mcp-gateway",
                                                "subject_claim": "email"}})
    verifier = GatewayVerifier(config)
    claims = {"sub": "\x1b[2J" + "s" * 5000, "email": "bob@example.test", "iss": ISSUER,
              "aud": "mcp-gateway", "scope": "tools"}
    key = RSAKey.import_key(pair.private_key.get_secret_value())
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
    assert await verifier.verify_token(token) is None
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("refused a JWT without 'exp' (subject 'bob@example.test')"), line


async def test_the_holder_of_such_a_jwt_is_told_why_on_every_surface(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    """FastMCP's 401 said only "the bearer token is invalid, expired ..." (the reason was
    in the gateway's log): the MCP endpoint, REST and the dashboard's login now carry an
    RFC 6750 ``error="invalid_token", error_description="..."`` saying why, in the
    challenge and the body, naming neither the token nor the subject's content.  A token
    that does not verify keeps the generic words (a probe learns nothing)."""
    pair, uri = jwks
    gateway = make_gateway({}, db=tmp_path / "g.db", options={"auth": {"jwt": {
        "jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}})
    cases = {kind: (signed(pair, subject, expires_in_seconds=600),
                    f"its 'sub' claim {why}") for kind, (subject, why) in BAD.items()}
    forged = signed(pair, "bob", expires_in_seconds=600)[:-4] + "AAAA"  # bad signature
    cases["forged"] = (forged, "not valid")  # the generic words of each surface
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        login = await http.get("/ui/login")
        for kind, (token, why) in cases.items():
            subject = BAD.get(kind, ("bob", ""))[0]
            mcp = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  headers={"Authorization": f"Bearer {token}",
                                           "Accept": "application/json, text/event-stream"})
            rest = await http.get("/api/v1/servers",
                                  headers={"Authorization": f"Bearer {token}"})
            ui = await http.post("/ui/login", data={"token": token,
                                                    "csrf_token": _csrf(login.text)})
            said = []
            for answer in (mcp, rest, ui):
                assert answer.status_code == 401, (kind, answer.text)
                challenge = answer.headers["www-authenticate"]
                described = re.fullmatch(r'Bearer error="invalid_token", '
                                         r'error_description="([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
                                         r'(, .*)?', challenge)
                assert described is not None, (kind, challenge)
                assert why in described.group(1), (kind, challenge)
                said.append(described.group(1))
                assert ("a JWT this gateway verified" in challenge) is (kind != "forged")
                for text in (challenge, answer.text):
                    assert token not in text
                    assert kind == "forged" or subject not in text
            assert mcp.json() == {"error": "invalid_token", "error_description": said[0]}
            assert why in rest.json()["error"]["message"]
            assert why in html.unescape(ui.text)
            if kind != "forged":
                assert "have the issuer name the subject plainly, or set " \
                    "gateway.auth.jwt.subject_claim" in mcp.json()["error_description"]
