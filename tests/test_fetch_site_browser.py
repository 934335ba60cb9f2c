"""A page of another local web app cannot make the browser use the gateway, in a real
browser (Debian's chromium, Playwright): ``http/fetch_site.py``.

A page on ``127.0.0.1:<other port>`` is same-site with a gateway on ``127.0.0.1``: its
``fetch`` says ``Sec-Fetch-Site: same-site`` and carries its ``Origin``, which the
Host/Origin guard lets through (every loopback origin).  The page could not read the
answer (no CORS headers), but the read ran: on a gateway without ``auth`` an upstream's
resource was read and recorded.  Refused now unless ``MCP_GATEWAY_ALLOWED_ORIGINS``
lists the page's origin; the gateway's own dashboard (same-origin) works as before.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fixtures import serve_http
from tests.test_fetch_site import READ, WHAT, _gateway
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio

PAGE = """<!doctype html><title>another local app</title><pre id="out">...</pre>
<script>
const gateway = new URLSearchParams(location.search).get("gateway");
fetch(gateway).then(r => "read " + r.status, e => "fetch failed: " + e)
  .then(t => { document.getElementById("out").textContent = t; });
</script>"""


async def _page(_request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


@pytest.mark.timeout(240)
async def test_a_page_of_another_local_port_cannot_make_the_browser_read(
        tmp_path: Path) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    other_app = Starlette(routes=[Route("/", _page)])
    gateway = _gateway(tmp_path)  # no auth, --allow-unauthenticated-admin, loopback
    app = gateway.http_app()
    heard: list[dict[bytes, bytes]] = []  # the headers of the page's request, as sent

    async def listening(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == READ:
            heard.append(dict(scope["headers"]))
        await app(scope, receive, send)

    listening.state = app.state  # type: ignore[attr-defined]  # serve_http's start-up gate
    async with serve_http(listening) as base, serve_http(other_app) as other, \
            async_playwright() as pw, httpx2.AsyncClient(timeout=30, base_url=base) as http:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            read = httpx2.URL(base + READ, params=WHAT)
            # The page never sees the answer (CORS: the request fails for it either way).
            async with page.expect_event("requestfailed",
                                         lambda r: r.url.startswith(base)) as failed:
                await page.goto(f"{other}/?{httpx2.QueryParams({'gateway': str(read)})}")
            assert await failed.value
            assert heard[0][b"sec-fetch-site"] == b"same-site"
            assert heard[0][b"origin"] == other.encode()
            await expect(page.locator("#out")).to_contain_text("fetch failed")
            history = (await http.get("/api/v1/debug/history")).json()["entries"]
            assert history == []  # the read did not run (it ran, recorded, before)

            # The gateway's own dashboard (same-origin) works: its pages, htmx parts and
            # the live stream.
            await page.goto(base + "/ui/")
            await expect(page.locator("main")).to_contain_text("alpha")
            await expect(page.locator("#live-status")).to_have_text("live")
        finally:
            await browser.close()
