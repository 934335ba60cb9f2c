"""A forged JWT diagnose could not read: times no clock shows, nesting json cannot
read, a list where a name goes (found in review).

``jwt_refusals.diagnose`` words the refusal with the time the token names; a forged
token's ``exp`` of -1e300 (or ``nbf`` of 1e300) made ``time.gmtime`` raise
``OverflowError``: the holder got no reason and the log a WARNING "verification
failed (OverflowError)" on every request, past the one-line-a-minute limit of
``RefusalLog``, which anyone can send without a key.  A real verifier, with the
issuer's real public key; the token is signed by another one.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http import jwt_refusals
from fast_mcp_gateway.http.auth import GatewayVerifier

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.test/"


@pytest.mark.parametrize(("claim", "at", "words"), [
    ("exp", -1e300, "the JWT expired at "), ("nbf", 1e300, "the JWT is not valid before ")])
async def test_a_jwt_naming_a_time_out_of_range_is_refused_saying_why_once(
        caplog: pytest.LogCaptureFixture, claim: str, at: float, words: str) -> None:
    issuer, forger = RSAKeyPair.generate(), RSAKeyPair.generate()
    config = AuthConfig.model_validate({"jwt": {
        "public_key": issuer.public_key, "issuer": ISSUER, "audience": "mcp-gateway"}})
    verifier = GatewayVerifier(config, jwt_cache_size=0)
    token = forger.create_token(subject="mallory", issuer=ISSUER, audience="mcp-gateway",
                                additional_claims={claim: at}, expires_in_seconds=600)
    with caplog.at_level(logging.INFO, logger="fast_mcp_gateway"):
        for _ in range(3):
            assert await verifier.verify_token(token) is None
            said = jwt_refusals.refusal.get()
            assert said is not None and said.startswith(words), said
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("fast_mcp_gateway")]
    assert len(lines) == 1, lines   # one line of this cause, not one per request
    assert "OverflowError" not in lines[0] and token not in lines[0], lines


async def test_a_jwt_nested_too_deep_to_read_is_refused_as_no_jwt_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Claims nested deeper than ``json`` reads (``RecursionError``, no ``ValueError``)
    went the same way: no reason, a WARNING per request."""
    issuer = RSAKeyPair.generate()
    config = AuthConfig.model_validate({"jwt": {
        "public_key": issuer.public_key, "issuer": ISSUER, "audience": "mcp-gateway"}})
    verifier = GatewayVerifier(config, jwt_cache_size=0)
    head = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    deep = base64.urlsafe_b64encode(b"[" * 6000 + b"]" * 6000).rstrip(b"=").decode()
    token = f"{head}.{deep}.c2lnbmF0dXJl"
    with caplog.at_level(logging.INFO, logger="fast_mcp_gateway"):
        for _ in range(3):
            assert await verifier.verify_token(token) is None
            said = jwt_refusals.refusal.get()
            assert said is not None and said.startswith("it is not a JWT"), said
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("fast_mcp_gateway")]
    assert len(lines) == 1 and "RecursionError" not in lines[0], lines


def _unsigned(header: object, claims: object) -> str:
    part = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
            for p in (header, claims)]
    return f"{part[0]}.{part[1]}.c2lnbmF0dXJl"


@pytest.mark.parametrize(("header", "claims", "words"), [
    ({"alg": ["RS256"]}, {}, "the JWT is signed with another algorithm"),
    ({"alg": "RS256"}, {"iss": ISSUER, "aud": [["mcp-gateway"]]},
     "the JWT was not issued for this gateway")])
async def test_a_jwt_whose_claims_are_not_hashable_is_refused_saying_why_once(
        caplog: pytest.LogCaptureFixture, header: object, claims: object, words: str) -> None:
    """An 'alg' or 'aud' holding a list (``TypeError``: unhashable) went the same way."""
    config = AuthConfig.model_validate({"jwt": {
        "public_key": RSAKeyPair.generate().public_key, "issuer": ISSUER,
        "audience": "mcp-gateway"}})
    verifier = GatewayVerifier(config, jwt_cache_size=0)
    token = _unsigned(header, claims)
    with caplog.at_level(logging.INFO, logger="fast_mcp_gateway"):
        for _ in range(3):
            assert await verifier.verify_token(token) is None
            said = jwt_refusals.refusal.get()
            assert said is not None and said.startswith(words), said
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("fast_mcp_gateway")]
    assert len(lines) == 1 and "TypeError" not in lines[0], lines
