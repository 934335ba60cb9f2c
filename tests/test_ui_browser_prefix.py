"""The dashboard behind a reverse proxy's path, in a real browser (Debian's chromium,
Playwright), through ``tests.test_public_prefix.StripProxy`` (nginx's ``location
<path>/ { proxy_pass http://<gateway>/; proxy_set_header Host $host; }``).

``MCP_GATEWAY_PUBLIC_URL`` names the path, and every dashboard URL follows it
(``http/public_prefix.py``); the login cookie's ``Path`` was the decoded path
(``/my tools/ui``), which chromium matches against the URL's ``/my%20tools/ui``: it
never sent the cookie back, and the login page came again after each login (review20).
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.fixtures import make_gateway, serve_http
from tests.test_public_prefix import ANN, StripProxy
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio

NOTES = {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.notes"]}
CUT = "/my%20tools"  # MCP_GATEWAY_PUBLIC_URL's path, as the browser sends it


@pytest.mark.timeout(240)
async def test_the_dashboard_logs_in_and_out_under_a_proxys_path() -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    proxy_app = StripProxy({}, "gw.example")  # the gateway's address once it serves
    async with serve_http(proxy_app, startup=False) as proxy:
        # The browser reaches gw.example at the proxy's port (its resolver maps the name).
        public = f"http://gw.example:{proxy.rpartition(':')[2]}{CUT}"
        gateway = make_gateway({"notes": NOTES}, options={"auth": {"tokens": [
            {"name": "ann", "token": ANN, "scopes": ["admin"]}]}}, public_url=public,
            allowed_hosts=["gw.example"])
        async with serve_http(gateway.http_app()) as gw, async_playwright() as pw:
            proxy_app.routes[CUT] = gw
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=[
                *ARGS, "--host-resolver-rules=MAP gw.example 127.0.0.1"])
            try:
                page = await (await browser.new_context()).new_page()
                seen: list[tuple[str, int]] = []
                page.on("response", lambda r: seen.append((r.url, r.status)))
                login = re.compile(re.escape(public) + "/ui/login")
                await page.goto(public + "/ui/inspector?server=notes&tool=list_notes")
                await page.get_by_label("Token").fill(ANN)
                await page.get_by_role("button", name="Log in").click()
                await page.get_by_role("button", name="Call tool").click()  # an htmx post
                await expect(page.locator("#result-status")).to_have_text("success")
                await expect(page.locator("#live-status")).to_have_text("live")
                for shown in ("/ui/", "/ui/add", "/ui/alerts", "/ui/live", "/ui/logs",
                              "/ui/servers/notes"):
                    await page.goto(public + shown)
                    if login.match(page.url):  # logged out from the page before
                        await page.get_by_label("Token").fill(ANN)
                        await page.get_by_role("button", name="Log in").click()
                    await expect(page.locator("#live-status")).to_have_text("live")
                    # Logged out, the tab has no live stream open (the gateway and the
                    # proxy stop without waiting on one).
                    await page.get_by_role("button", name="Log out").click()
                    await expect(page).to_have_url(login)
                assert [s for s in seen if not s[0].startswith(public + "/ui")
                        or s[1] >= 400] == [], seen
            finally:
                await browser.close()
