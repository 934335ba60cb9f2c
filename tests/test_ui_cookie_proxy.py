"""Two gateways behind one reverse proxy keep their dashboard logins apart.

The login cookie's name carried the port of ``Host``; behind nginx's usual
``proxy_set_header Host $host`` (no port) two proxied gateways on one host both saw
``Host: gw.example`` and shared ``mgw_dashboard`` again: a login to one logged the
other out.  With ``public_url`` set the name comes from it
(``ui.session.cookie_for``).  Real uvicorn on 127.0.0.1, the proxy's ``Host`` sent by
one httpx client whose cookie jar, like a browser's, ignores the port (through a proxy
serving each under its public URL's path, ``tests/test_public_prefix.py``).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.ui.session import COOKIE, cookie_for
from tests.fixtures import make_gateway, serve_http
from tests.test_public_prefix import StripProxy
from tests.test_ui_cookie_ports import ANN, BEN, _log_in, _viewer

pytestmark = pytest.mark.anyio
PROXY = {"host": "gw.example"}  # what nginx's `proxy_set_header Host $host` sends


def _gateway(name: str, token: str, public_url: str) -> Any:
    return make_gateway({}, options={"auth": {"tokens": [
        {"name": name, "token": token, "scopes": ["admin"]}]}}, public_url=public_url,
        allowed_hosts=["gw.example"])


def test_the_name_follows_the_public_url() -> None:
    one = cookie_for("http://gw.example/one")
    assert one.startswith(f"{COOKIE}_") and len(one) == len(COOKIE) + 9
    assert one == cookie_for("HTTP://GW.example/one/")  # the same URL, written otherwise
    assert len({one, cookie_for("http://gw.example/two"), cookie_for("http://gw.example"),
                cookie_for("http://gw.example:8443/one"),
                cookie_for("https://gw.example/one")}) == 5


async def test_two_proxied_gateways_keep_their_logins_apart() -> None:
    # One proxy serving each gateway under its path (nginx's `location /one/ {
    # proxy_pass http://127.0.0.1:<port>/; }`), so each cookie is for its own path.
    first_url, second_url = "http://gw.example/one", "http://gw.example/two"
    async with serve_http(_gateway("ann", ANN, first_url).http_app()) as one, \
            serve_http(_gateway("ben", BEN, second_url).http_app()) as two, \
            serve_http(StripProxy({"/one": one, "/two": two}, PROXY["host"]),
                       startup=False) as proxy, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        first, second = proxy + "/one", proxy + "/two"
        cookie = await _log_in(browser, first, ANN)
        assert cookie.startswith(f"{cookie_for(first_url)}="), cookie
        cookie = await _log_in(browser, second, BEN)
        assert cookie.startswith(f"{cookie_for(second_url)}="), cookie
        assert await _viewer(browser, first) == "ann"  # was logged out by ben's login
        assert await _viewer(browser, second) == "ben"
        assert len(browser.cookies.jar) == 2
