"""Two gateways on one machine keep their dashboard logins apart, in one cookie jar.

Browsers keep cookies per host, not per port (RFC 6265): the dashboards of gateways on
127.0.0.1:A and 127.0.0.1:B shared the one ``mgw_dashboard`` cookie, so logging in to
one logged the other out, and each was sent the other's session id.  The cookie's name
now carries the port (``ui.session.cookie_name``).  Real uvicorn on 127.0.0.1, one
httpx client whose cookie jar, like a browser's, ignores the port.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.ui.session import COOKIE
from tests.fixtures import make_gateway, serve_http

pytestmark = pytest.mark.anyio

ANN = "mgw_ann-cookie-ports-3e81b07c5d92"
BEN = "mgw_ben-cookie-ports-a4c62f19e0d8"


def _gateway(name: str, token: str) -> Any:
    return make_gateway({}, options={"auth": {"tokens": [
        {"name": name, "token": token, "scopes": ["admin"]}]}})


def _csrf(html: str) -> str:
    found = re.search(r'(?:name="csrf_token" value=|"X-CSRF-Token": )"([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _log_in(http: httpx2.AsyncClient, base: str, token: str) -> str:
    page = await http.get(base + "/ui/login")
    done = await http.post(base + "/ui/login", data={"token": token, "csrf_token":
                                                     _csrf(page.text)})
    assert done.status_code == 303, done.text
    return done.headers["set-cookie"]


async def _viewer(http: httpx2.AsyncClient, base: str) -> str | None:
    """Who the dashboard at ``base`` takes the jar's cookies for (None: nobody)."""
    overview = await http.get(base + "/ui/")
    if overview.status_code == 303:
        return None
    assert overview.status_code == 200, overview.text
    found = re.search(r'<div class="who">.*?</span>\s*<span>([^<]+)</span>', overview.text,
                      re.DOTALL)
    assert found, overview.text[:2000]
    return found.group(1).strip()


async def test_two_gateways_on_one_host_keep_their_logins_apart() -> None:
    async with serve_http(_gateway("ann", ANN).http_app()) as first, \
            serve_http(_gateway("ben", BEN).http_app()) as second, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        port = first.rsplit(":", 1)[1]
        cookie = await _log_in(browser, first, ANN)
        assert cookie.startswith(f"{COOKIE}_{port}=")  # the port in the name
        for flag in ("HttpOnly", "Path=/ui", "SameSite=strict"):
            assert flag in cookie
        assert "Secure" not in cookie  # plain http on loopback: a Secure one is not sent
        await _log_in(browser, second, BEN)
        assert await _viewer(browser, first) == "ann"  # was logged out by ben's login
        assert await _viewer(browser, second) == "ben"
        assert len(browser.cookies.jar) == 2  # one per gateway, in one jar

        # Logging out of one leaves the other logged in.
        overview = await browser.get(second + "/ui/")
        out = await browser.post(second + "/ui/logout",
                                 data={"csrf_token": _csrf(overview.text)})
        assert out.status_code == 303
        assert await _viewer(browser, second) is None
        assert await _viewer(browser, first) == "ann"
