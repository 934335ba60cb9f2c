"""Each cause of a refused JWT is logged once a minute, whatever the request rate and
however many times one request has its token verified (``jwt_refusals.RefusalLog``).

A JWT refused after its signature verified -- a subject that is no plain name, no
``exp``, no subject claim -- and a verification that raised were logged on every
request, and twice on each the HTTP express lane passed on (the lane verifies the token,
then the full path it hands the request to does again): an identity provider that
leaves ``exp`` out wrote two warnings per request.  A real gateway on 127.0.0.1 with the
express lane on, a real JWKS endpoint and a real upstream.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from joserfc import jwt
from joserfc.jwk import RSAKey

from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_http_lane import body_of, headers_of
from tests.test_http_service import ISSUER, jwt_verifier, signed

pytestmark = pytest.mark.anyio


def no_exp(pair: RSAKeyPair) -> str:
    claims = {"sub": "bob", "iss": ISSUER, "aud": "mcp-gateway", "scope": "tools"}
    key = RSAKey.import_key(pair.private_key.get_secret_value())
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name.startswith("fast_mcp_gateway")]


async def test_a_refused_jwt_on_the_express_lane_is_logged_once_per_cause(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    pair, uri = jwks
    gateway = make_gateway({"t": stdio_entry("ticker.py", str(tmp_path))},
                           http_express_lane=True, options={"auth": {"jwt": {
                               "jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}})
    app = gateway.http_app("http")
    lane = getattr(app.mcp_entry, "app", None)
    assert isinstance(lane, HttpLane) and lane.enabled
    tokens = {"no exp": no_exp(pair),
              "subject": signed(pair, "bob\nadmin", expires_in_seconds=600)}
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=30) as http:
        caplog.clear()
        for _ in range(3):
            for token in tokens.values():
                answer = await http.post("/mcp", headers=headers_of("t_hang", token=token),
                                         content=json.dumps(body_of("t_hang", {})))
                assert answer.status_code == 401, answer.text
    logged = warnings(caplog)
    assert len([line for line in logged if "without 'exp'" in line]) == 1, logged
    assert len([line for line in logged if "control character" in line]) == 1, logged
    assert all("not logged for 60 s" in line for line in logged), logged


async def test_a_verification_that_fails_is_logged_once_a_minute(
        jwks: tuple[RSAKeyPair, str], caplog: pytest.LogCaptureFixture,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    pair, uri = jwks
    now = [time.monotonic()]
    verifier, _ = jwt_verifier(uri, time.time)
    monkeypatch.setattr(verifier._refusals, "_clock", lambda: now[0])

    async def broken(token: str) -> None:
        raise RuntimeError("the verifier broke")

    assert verifier._jwt is not None
    monkeypatch.setattr(verifier._jwt, "verify_token", broken)
    for _ in range(3):
        assert await verifier.verify_token(signed(pair, expires_in_seconds=600)) is None
    now[0] += 61
    assert await verifier.verify_token(signed(pair, expires_in_seconds=600)) is None
    logged = [line for line in warnings(caplog) if "verification failed" in line]
    assert logged == ["bearer token refused: verification failed (RuntimeError) (repeats "
                      "of this cause are not logged for 60 s)"] * 2, logged
