"""A dashboard login reaching another instance behind a balancer says so (trial13).

Two gateways behind nginx round-robin, one public URL (one login cookie name): the
dashboard's login succeeded on one, and every other page went to the other instance,
which sent the browser to the bare login form -- no word of why, while the README said
"keep a browser on one instance (sticky) or log in again" (logging in again changed
nothing).  The login cookie now names the instance (a tag, not its id), and the login
page a browser is sent to by another instance says what happened and what to fix.
Real uvicorn on 127.0.0.1; one httpx client whose cookie jar, as a browser's, ignores
the port, sends the proxy's ``Host``.
"""

from __future__ import annotations

import html
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.ui.session import cookie_for, instance_tag
from tests.fixtures import make_gateway, serve_http
from tests.test_ui import _csrf

pytestmark = pytest.mark.anyio

OPS = "mgw_elsewhere-ops-4e1b9c27d0"
PUBLIC = "http://gw.example"
HOST = {"host": "gw.example"}  # nginx's `proxy_set_header Host $host`


def _gateway(instance: str) -> Any:
    return make_gateway({}, options={"auth": {"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]}]}}, public_url=PUBLIC,
        allowed_hosts=["gw.example"], instance_id=instance)


async def test_a_page_reaching_another_instance_says_where_the_login_lives() -> None:
    async with serve_http(_gateway("gw-a").http_app()) as a, \
            serve_http(_gateway("gw-b").http_app()) as b, \
            httpx2.AsyncClient(timeout=30, headers=HOST) as browser:
        form = _csrf((await browser.get(a + "/ui/login")).text)
        done = await browser.post(a + "/ui/login", data={
            "token": OPS, "csrf_token": form, "next": "/ui/"})
        assert done.status_code == 303, done.text
        cookie = browser.cookies[cookie_for(PUBLIC)]
        assert cookie.endswith("." + instance_tag("gw-a")) and "gw-a" not in cookie
        assert (await browser.get(a + "/ui/")).status_code == 200  # logged in there

        moved = await browser.get(b + "/ui/logs")
        assert moved.status_code in (302, 303, 307), moved.text
        login = await browser.get(b + moved.headers["location"])
        text = html.unescape(login.text)
        assert "You logged in on another gateway instance than the one this page " \
               "reached" in text, text
        assert "keep each browser on one instance" in text and "gw-a" not in text
        assert OPS not in text

        # Its own instance still takes the cookie, and says nothing on its login page.
        assert (await browser.get(a + "/ui/")).status_code == 200
        own = html.unescape((await browser.get(a + "/ui/login")).text)
        assert "another gateway instance" not in own
        # Logging out on its instance ends it (the tag is not part of the session id).
        page = await browser.get(a + "/ui/")
        out = await browser.post(a + "/ui/logout", data={"csrf_token": _csrf(page.text)})
        assert out.status_code in (302, 303), out.text
        browser.cookies.set(cookie_for(PUBLIC), cookie)  # a copy of the ended cookie
        assert (await browser.get(a + "/ui/")).status_code in (302, 303, 307)
