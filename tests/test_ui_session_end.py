"""A dashboard session that ends stops its Live stream, and the login page says why;
an add sent while PostgreSQL is down keeps its form (session 22, the operator's trial),
in a real browser (Debian's chromium, Playwright).

README: a session ends "when you log out, after 12 hours, ..., or when a reload removes
its token from the config; the token's scopes and servers apply to it throughout".  The
Live stream (`/ui/events`) checked the session once, when the page opened: a browser
left on any page went on receiving every call, state change and alert after the session
had ended; and the viewer sent to the login page was not told why.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from starlette.responses import Response

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.ui import live
from fast_mcp_gateway.ui.core import Page
from tests.fixtures import make_gateway, serve_http, until
from tests.pg import PgCluster, running_cluster
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-session-end-3c9a71d0e5b2"
BOB = "mgw_bob-session-end-8f04e6a2d1c7"
NOTES = {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.notes"]}


def _write(path: Path, *tokens: tuple[str, str, str]) -> None:
    entries = [{"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "scopes": [scope]} for name, token, scope in tokens]
    path.write_text(json.dumps({"gateway": {"auth": {"tokens": entries}},
                                "servers": {"notes": NOTES}}))


@pytest.mark.timeout(240)
async def test_a_session_ended_by_a_reload_stops_its_live_stream_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    # An event goes out under a session check at most RECHECK (1 s) old: the events of
    # the 'enable' below can all come within that second of the last check (the demo
    # server restarts in well under it), and then none follows for the heartbeat's 15 s.
    # Checked on every event here, the test sees the mechanism, not the window.
    monkeypatch.setattr(live, "RECHECK", 0.0)

    path = tmp_path / "servers.yaml"
    _write(path, ("ops", OPS, "admin"), ("bob", BOB, "tools"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw, \
            httpx2.AsyncClient(timeout=30) as http:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/live")
            await page.get_by_label("Token").fill(BOB)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#live-status")).to_have_text("live")

            async def lifecycle(action: str) -> None:
                answer = await http.put(f"{base}/api/v1/servers/notes/{action}",
                                        headers={"Authorization": f"Bearer {OPS}"})
                assert answer.status_code == 200, answer.text

            # While the session lives, the page gets the server's state changes.
            await lifecycle("disable")
            await expect(page.locator("#live-feed")).to_contain_text("notes")

            # A reload removes bob's token: the next event ends the stream instead of
            # reaching bob, and the page goes to the login page, which says why.
            _write(path, ("ops", OPS, "admin"))
            assert (await gateway.reload_config()).error is None
            await lifecycle("enable")
            await expect(page).to_have_url(re.compile(r"/ui/login"))
            await expect(page.get_by_role("alert")).to_contain_text(
                "Your session ended: the gateway no longer takes the token you logged in "
                "with")
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_log_out_in_one_tab_ends_the_other_tabs_live_stream_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tabs of one login share a live stream (the browser's shared worker); a log
    out in one left the other "live", its stream open, until the next event or
    heartbeat (15 s; here it is never).  It goes to the login page at once."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    monkeypatch.setattr(live, "HEARTBEAT", 3600.0)  # no heartbeat during the test
    path = tmp_path / "servers.yaml"
    _write(path, ("bob", BOB, "tools"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context()
            one = await context.new_page()
            await one.goto(base + "/ui/live")
            await one.get_by_label("Token").fill(BOB)
            await one.get_by_role("button", name="Log in").click()
            two = await context.new_page()
            await two.goto(base + "/ui/live")
            for tab in (one, two):
                await expect(tab.locator("#live-status")).to_have_text("live")
            assert gateway.events.subscribers == 1
            await one.get_by_role("button", name="Log out").click()
            await expect(one).to_have_url(re.compile(r"/ui/login"))
            await expect(two).to_have_url(re.compile(r"/ui/login"))
            await until(lambda: gateway.events.subscribers == 0)
        finally:
            await browser.close()


async def test_a_log_out_from_a_forms_answer_goes_to_the_login_page(tmp_path: Path) -> None:
    """The tab logging out got its own stream's "ended" too, and reloaded as the other
    tabs do: the reload replaced its way to the login page, and on a page that answered
    a form (the inspector's result) posted that form again, ending on "Not logged in"
    (found by trial11).  The tab logging out goes to the login page, the form not sent
    again."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    path = tmp_path / "servers.yaml"
    _write(path, ("ops", OPS, "admin"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            posted: list[str] = []
            page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
            await page.goto(base + "/ui/inspector?server=notes&tool=list_notes")
            await page.get_by_label("Token").fill(OPS)
            await page.get_by_role("button", name="Log in").click()
            await page.get_by_role("button", name="Call tool").click()
            await expect(page.locator("#result-status")).to_have_text("success")
            await expect(page.locator("#live-status")).to_have_text("live")
            await page.get_by_role("button", name="Log out").click()
            await expect(page).to_have_url(re.compile(r"/ui/login"))
            await expect(page.get_by_role("button", name="Log in")).to_be_visible()
            await until(lambda: gateway.events.subscribers == 0)
            assert posted.count(base + "/ui/inspector/call") == 1, posted
            assert page.url.startswith(base + "/ui/login"), page.url
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_jwt_granting_no_scope_is_refused_at_login_in_the_restss_words() -> None:
    """A JWT whose scopes claim names neither tools nor admin logged in: every page then
    said "Not allowed" and the live status stayed "reconnecting".  The login refuses it,
    saying what the REST API's 403 says (the claim must name tools or admin), and opens
    no session; a JWT that grants tools logs in as before."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    pair, issuer = RSAKeyPair.generate(), "https://idp.test/"
    gateway = make_gateway({"notes": NOTES}, options={"auth": {"jwt": {
        "public_key": pair.public_key, "issuer": issuer, "audience": "mcp-gateway"}}})

    def jwt(subject: str, scopes: list[str]) -> str:
        return pair.create_token(subject=subject, issuer=issuer, audience="mcp-gateway",
                                 scopes=scopes)

    carol, dan = jwt("carol@idp", ["openid", "profile"]), jwt("dan@idp", ["tools"])
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw, \
            httpx2.AsyncClient(timeout=30) as http:
        rest = await http.get(f"{base}/api/v1/servers",
                              headers={"Authorization": f"Bearer {carol}"})
        assert rest.status_code == 403
        lacks = ("the JWT of 'carol@idp' grants no scope of this gateway: its scopes claim "
                 "(gateway.auth.jwt.scopes_claim, 'scope' unless set) must name tools or "
                 "admin")
        assert lacks in rest.json()["error"]["message"]
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/")
            await page.get_by_label("Token").fill(carol)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_contain_text(lacks)
            await expect(page).to_have_url(re.compile(r"/ui/login"))
            assert await page.context.cookies() == []  # no session was opened
            await expect(page.locator("#live-status")).to_have_count(0)
            await page.get_by_label("Token").fill(dan)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#live-status")).to_have_text("live")
            await expect(page.locator("main")).to_contain_text("notes")
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_live_stream_the_gateway_refuses_is_not_shown_as_reconnecting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused Live stream (any answer but the event stream: a 403, a redirect to the
    login page) is never retried by the browser, yet the status said
    "reconnecting" for good.  It says the updates stopped, and how to get them back."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    refusing, served = anyio.Event(), live.events

    async def events(page: Page) -> Response:
        if refusing.is_set():
            return page.ui.error(page.request, page.viewer, 403, "Not allowed")
        return await served(page)

    monkeypatch.setattr(live, "events", events)  # the dashboard's routes are made later
    path = tmp_path / "servers.yaml"
    _write(path, ("bob", BOB, "tools"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/")
            await page.get_by_label("Token").fill(BOB)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.locator("#live-status")).to_have_text("live")

            # Refused by the gateway: the stream is opened by the browser's shared worker
            # (static/live-worker.js), whose requests Playwright's routes do not see.
            refusing.set()
            await page.reload()
            status = page.locator("#live-status")
            await expect(status).to_have_text("stopped")
            await expect(status).to_have_attribute(
                "title", "live updates stopped: the gateway refused them; reload the page")
        finally:
            await browser.close()


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this test's own: the test stops and starts it."""
    with running_cluster() as cluster:
        yield cluster


@pytest.mark.timeout(240)
async def test_an_add_while_postgresql_is_down_keeps_the_form(own_cluster: PgCluster) -> None:
    """The dashboard's add form sent while the store cannot be reached answered a bare
    "Unavailable" page (the store's error and "Back to the overview"): what the operator
    typed was gone, and nothing said the server was not added.  The form comes back as
    typed, saying nothing was saved and to save again once the database is back."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    url = own_cluster.create_database()
    gateway = make_gateway({"notes": NOTES}, db=url, options={"auth": {"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]}]}})
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/add")
            await page.get_by_label("Token").fill(OPS)
            await page.get_by_role("button", name="Log in").click()
            await page.locator("#name").fill("memo")
            await page.locator("#command").fill(sys.executable)
            await page.locator("#args").fill("-m\nfast_mcp_gateway.demo.notes")
            await anyio.to_thread.run_sync(own_cluster.stop)
            await page.get_by_role("button", name="Add server").click()
            alert = page.get_by_role("alert")
            await expect(alert).to_contain_text("was not saved")
            await expect(alert).to_contain_text("unreachable")
            await expect(page.locator("#name")).to_have_value("memo")
            await expect(page.locator("#command")).to_have_value(sys.executable)

            await anyio.to_thread.run_sync(own_cluster.start)
            await page.get_by_role("button", name="Add server").click()
            await expect(page.locator("main")).to_contain_text("Saved server 'memo'.")
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_refused_edit_keeps_the_form_and_names_the_token(tmp_path: Path) -> None:
    """A restricted admin changing its server's command on the edit form got a bare "Not
    allowed" page (what it typed gone) naming "the token 'dashboard:bob'", a token that
    does not exist ('dashboard:' is the audit log's actor prefix)."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    gateway = make_gateway({"notes": NOTES}, db=tmp_path / "gw.db", options={"auth": {
        "tokens": [{"name": "bob", "token": BOB, "scopes": ["admin"], "servers": ["notes"]}]}})
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/servers/notes/edit")
            await page.get_by_label("Token").fill(BOB)
            await page.get_by_role("button", name="Log in").click()
            await page.locator("#command").fill("/bin/sh")
            await page.get_by_role("button", name=re.compile("Save")).click()
            alert = page.locator("#unsaved")
            await expect(alert).to_contain_text("needs an admin token without a 'servers' list")
            await expect(alert).to_contain_text("the token 'bob'")
            await expect(alert).not_to_contain_text("dashboard:")
            await expect(page.locator("#command")).to_have_value("/bin/sh")
        finally:
            await browser.close()
