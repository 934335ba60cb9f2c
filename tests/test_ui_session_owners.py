"""Dashboard sessions are counted per caller, not per token string: a JWT holder brings
a new JWT at every refresh (or asks its identity provider for as many as it likes), and
each one counted as another token, so its logins filled the table and ended every other
viewer's session, an admin's too.  Past the table's cap, the caller holding the most
sessions gives up its oldest, not whoever logged in first."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import make_gateway, serve_http
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_http_service import ISSUER
from tests.test_ui import OPS, _login


def test_past_the_cap_the_caller_holding_the_most_gives_up_its_oldest() -> None:
    from fast_mcp_gateway.ui.login_links import Sessions

    now = [1_000_000.0]
    sessions: Sessions[str] = Sessions(ttl=3600, cap=6, per_value=2, clock=lambda: now[0])
    admin = sessions.open("ops-token", owner="ops")
    # Three callers, two sessions each, each session under a token of its own (JWTs).
    held = {who: [sessions.open(f"{who}-jwt-{i}", owner=who) for i in range(2)]
            for who in ("m1", "m2", "m3")}
    assert sessions.get(admin) == "ops-token"  # 7 sessions: m1's oldest went
    assert sessions.get(held["m1"][0]) is None and sessions.get(held["m1"][1]) is not None
    for i in range(5):  # one caller's own cap: its own oldest go
        sessions.open(f"m2-jwt-more-{i}", owner="m2")
    assert sessions.get(admin) == "ops-token" and len(sessions) <= 6
    assert sessions.get(held["m3"][0]) is not None
    now[0] += 3601  # expired sessions go first, before a live one is pushed out
    fresh = [sessions.open(f"t{i}", owner=f"o{i}") for i in range(6)]
    assert all(sessions.get(s) is not None for s in fresh)


@pytest.mark.anyio
async def test_a_jwt_holders_logins_do_not_end_other_viewers_sessions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        jwks: tuple[RSAKeyPair, str]) -> None:  # noqa: F811
    """A tools-scope JWT subject logs in with a new JWT each time (here: a table of 6,
    2 per caller); the admin who logged in first stays logged in."""
    from fast_mcp_gateway.ui import session

    monkeypatch.setattr(session, "MAX_TOKEN_SESSIONS", 6)
    monkeypatch.setattr(session, "SESSIONS_PER_TOKEN", 2)
    pair, uri = jwks
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}],
            "jwt": {"jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}
    gateway = make_gateway({}, options={"auth": auth}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as ops:
        await _login(ops, base, OPS)
        browsers = []
        try:
            for i in range(8):
                jwt = pair.create_token(subject="mallory", issuer=ISSUER,
                                        audience="mcp-gateway", kid="k1", scopes=["tools"],
                                        additional_claims={"jti": f"login-{i}"})
                browser = httpx2.AsyncClient(timeout=30, follow_redirects=False)
                browsers.append(browser)
                await _login(browser, base, jwt)
            assert (await ops.get(base + "/ui/")).status_code == 200  # still logged in
            still = [(await b.get(base + "/ui/")).status_code for b in browsers]
            assert still == [303] * 6 + [200] * 2  # mallory's newest two
        finally:
            for browser in browsers:
                await browser.aclose()
