"""A JWT of a key the identity provider has just published is taken (trial13).

Two gateways on one JWKS: the issuer's keys rotated (a new key id, 'k2') 20 s after one
gateway's first JWT, and that gateway refused every JWT of the new key until 30 s after
its fetch (FastMCP's JWKS refresh interval), logging that jwks_uri "has a key 'k2', but
the signature does not match it: the JWT was altered" -- the other gateway took them.
A real gateway over HTTP on 127.0.0.1 against a real JWKS endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from joserfc.jwk import RSAKey

from fast_mcp_gateway.config.auth import JwtConfig
from fast_mcp_gateway.http.auth import _jwt_verifier
from fast_mcp_gateway.http.jwt_keys import KEYS_MAX_AGE, RETRY_EVERY, KeyRotation
from tests.test_jwt_refusals import AUDIENCE, ISSUER
from tests.test_rest import demo, serving

pytestmark = pytest.mark.anyio


class Idp:
    """A JWKS endpoint on 127.0.0.1 whose keys a test adds to; counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.url = ""

    def add(self, kid: str) -> RSAKeyPair:
        pair = RSAKeyPair.generate()
        self.keys.append({**RSAKey.import_key(pair.public_key).as_dict(private=False),
                          "kid": kid, "use": "sig", "alg": "RS256"})
        return pair


@pytest.fixture
def idp() -> Iterator[Idp]:
    with jwks_endpoint() as state:
        yield state


@contextmanager
def jwks_endpoint() -> Iterator[Idp]:
    """Serve an `Idp` on 127.0.0.1 (a plain context manager: importers need no fixture)."""
    state = Idp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _jwt(pair: RSAKeyPair, kid: str, subject: str = "carol") -> str:
    return pair.create_token(subject=subject, issuer=ISSUER, audience=AUDIENCE, kid=kid,
                             scopes=["tools"])


def _config(idp: Idp) -> JwtConfig:
    return JwtConfig(jwks_uri=idp.url, issuer=ISSUER, audience=AUDIENCE)


async def test_a_jwt_of_a_key_published_after_the_last_fetch_is_taken(
        tmp_path: Path, idp: Idp, caplog: pytest.LogCaptureFixture) -> None:
    first = idp.add("k1")
    auth = {"jwt": {"jwks_uri": idp.url, "issuer": ISSUER, "audience": AUDIENCE}}
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": auth}) as (api, base):
        http = api.http
        async def status(token: str) -> httpx2.Response:
            return await http.get(f"{base}/api/v1/servers",
                                  headers={"Authorization": f"Bearer {token}"})

        assert (await status(_jwt(first, "k1"))).status_code == 200  # the keys fetched
        second = idp.add("k2")  # the issuer rotates: a new key, at once in use
        with caplog.at_level(logging.INFO, "fast_mcp_gateway.http.auth"):
            taken = await status(_jwt(second, "k2", "dana"))
        assert taken.status_code == 200, taken.text
        assert "which jwks_uri published after this gateway last fetched it" in caplog.text
        assert (await status(_jwt(second, "k2", "erin"))).status_code == 200
        assert (await status(_jwt(first, "k1", "fay"))).status_code == 200  # kept too

        # A JWT claiming a published key id, signed by another key, is still refused.
        forged = await status(_jwt(RSAKeyPair.generate(), "k2", "mallory"))
        assert forged.status_code == 401, forged.text
        assert "signature does not verify" in forged.text


async def test_unknown_key_ids_fetch_the_keys_at_most_every_few_seconds(idp: Idp) -> None:
    """A flood of JWTs naming key ids nobody published fetches jwks_uri once per
    ``RETRY_EVERY``; a key id the running verifier took a JWT of fetches nothing."""
    pair = idp.add("k1")
    now = [1000.0]
    rotation = KeyRotation(lambda: _jwt_verifier(_config(idp)), clock=lambda: now[0])
    running = _jwt_verifier(_config(idp))
    stranger = RSAKeyPair.generate()
    assert await rotation.retry(_jwt(stranger, "x1"), running) is None
    assert idp.fetches == 1
    for n in range(5):
        assert await rotation.retry(_jwt(stranger, f"y{n}"), running) is None
    assert idp.fetches == 1  # within RETRY_EVERY: not fetched again
    now[0] += RETRY_EVERY
    taken = await rotation.retry(_jwt(pair, "k1"), running)
    assert taken is not None and taken[1].client_id == "carol" and idp.fetches == 2
    now[0] += RETRY_EVERY
    assert await rotation.retry(_jwt(stranger, "k1"), taken[0]) is None  # k1 held: no fetch
    assert idp.fetches == 2


async def test_jwts_of_a_new_key_arriving_together_share_one_fetch(idp: Idp) -> None:
    """Hosts of a busy gateway bring JWTs of the new key at once: the first fetched the
    keys, and the others, refused by the running verifier meanwhile, were refused again
    as "fetched too recently".  They wait for that fetch and are verified with it."""
    idp.add("k1")
    running = _jwt_verifier(_config(idp))
    rotation = KeyRotation(lambda: _jwt_verifier(_config(idp)))
    second = idp.add("k2")
    results: list[Any] = []

    async def one(n: int) -> None:
        results.append(await rotation.retry(_jwt(second, "k2", f"user{n}"), running))

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(one, n)
    assert all(r is not None for r in results), results
    assert sorted(r[1].client_id for r in results) == [f"user{n}" for n in range(6)]
    assert idp.fetches == 1


async def test_a_key_the_issuer_withdrew_is_refused_within_minutes(idp: Idp) -> None:
    """The identity provider removed a (compromised) key from its JWKS: new JWTs signed
    with it went on being taken for up to an hour, FastMCP's verifier keeping the keys it
    fetched that long, while the gateway's code said a minute.  Once its keys are
    ``KEYS_MAX_AGE`` old they are fetched again."""
    from fast_mcp_gateway.config.auth import AuthConfig
    from fast_mcp_gateway.http.auth import GatewayVerifier

    old = idp.add("k1")
    kept = idp.add("k2")
    now = [time.time()]
    verifier = GatewayVerifier(AuthConfig(jwt=_config(idp)), clock=lambda: now[0])
    assert await verifier.verify_token(_jwt(old, "k1", "ann")) is not None
    idp.keys = [key for key in idp.keys if key["kid"] != "k1"]  # withdrawn
    now[0] += KEYS_MAX_AGE - 1
    assert idp.fetches == 1
    assert await verifier.verify_token(_jwt(old, "k1", "ben")) is not None  # the bound
    now[0] += 1
    assert await verifier.verify_token(_jwt(old, "k1", "cy")) is None
    assert idp.fetches >= 2  # fetched again (the refusal's log may fetch once more)
    assert await verifier.verify_token(_jwt(kept, "k2", "dee")) is not None  # kept key
