"""The dashboard's Sign in button (ui/sign_in.py), in a real headless browser.

A real ``mcp-gateway serve --transport http`` (``test_ui_browser.gateway``) fronts a
server with ``auth: {type: oauth}`` behind fastmcp's in-memory authorization server on
127.0.0.1 (``tests/oauth_servers.signing_upstream``, in a thread of its own: Playwright's
sync API owns this one) and the clock demo.  An admin sees the signed-out server's
card with a Sign in button; it starts the sign-in and the server's page shows the link;
the browser follows it (the authorization server approves at once and sends it back to
the gateway's loopback callback), and the server's page, left open, shows the state
turn ``ready`` by its live updates.  A viewer without ``admin`` has no button.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from tests.oauth_servers import signing_upstream
from tests.test_ui_browser import ARGS, BOB, CHROMIUM, OPS, _demo, _need_chromium, gateway


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_in(browser: Any, base: str, token: str) -> Any:
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(base + "/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


@pytest.mark.timeout(300)
def test_an_admin_signs_a_server_in_from_the_dashboard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    monkeypatch.setenv("MCP_GATEWAY_OAUTH_CALLBACK_PORT", str(port))
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(signing_upstream()) as (_provider, url):
        servers = {"tickets": {"url": url, "auth": {"type": "oauth"}},
                   "clock": _demo("clock")}
        with gateway(tmp_path, servers) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                expect.set_options(timeout=30_000)
                viewer = _log_in(browser, base, BOB)  # no admin: no button
                card = viewer.locator("article[data-server=tickets]")
                expect(card.locator(".badge.state")).to_have_text("signed_out")
                expect(card.get_by_role("button", name="Sign in to tickets")).to_have_count(0)
                said = card.locator("p.error")  # the tool and the CLI only: no button here
                expect(said).to_contain_text("call the gateway_sign_in tool with server")
                expect(said).not_to_contain_text("Sign in button")

                page = _log_in(browser, base, OPS)
                card = page.locator("article[data-server=tickets]")
                expect(card.locator(".badge.state")).to_have_text("signed_out")
                expect(card.locator("p.error")).to_contain_text(  # an admin: the button too
                    "press the Sign in button on its page (/ui/servers/tickets), or call "
                    "the gateway_sign_in tool with server 'tickets', or run 'mcp-gateway "
                    "login tickets'")
                card.get_by_role("button", name="Sign in to tickets").click()
                expect(page).to_have_url(re.compile(r"/ui/servers/tickets/sign-in$"))
                expect(page.locator("#server-state")).to_have_text("signed_out")
                link = page.locator("#sign-in-link a")
                expect(link).to_have_text("Open the sign-in page")
                href = link.get_attribute("href")
                assert href is not None and href.startswith(url.rsplit("/mcp", 1)[0])
                assert "state=" in href and "code_challenge=" in href
                expect(page.locator("#sign-in-link")).to_contain_text(
                    f"http://127.0.0.1:{port}/oauth/callback")
                # A fresh 10-minute link says 10 (review30: "valid 9 min").
                expect(page.locator("#sign-in-link")).to_contain_text("(expires in 10 min, at ")
                # A second press while it waits shows the same link (one pending sign-in).
                page.get_by_role("button", name="Sign in", exact=True).click()
                expect(page.locator("#sign-in-link a")).to_have_attribute("href", href)
                # The person: the link in a tab of its own, back to the gateway's callback.
                with page.context.expect_page() as opened:
                    page.locator("#sign-in-link a").click()
                tab = opened.value
                expect(tab.locator("body")).to_contain_text("Signed in to 'tickets'")
                tab.close()
                # The page left open shows the state by its live updates.
                expect(page.locator("#server-state")).to_have_text("ready")
                expect(page.locator("#live-status")).to_have_text("live")
                page.goto(base + "/ui/")
                expect(page.locator("article[data-server=tickets] .badge.state")
                       ).to_have_text("ready")
                expect(page.get_by_role("button", name="Sign in to tickets")
                       ).to_have_count(0)
            finally:
                browser.close()
    log = (tmp_path / "gateway.log").read_text()
    assert "state=" not in log and "code_challenge" not in log
