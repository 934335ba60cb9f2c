"""The dashboard's live streams (``/ui/events``) are bounded per caller: each open stream
is fed every event on the event loop, from the call path's own observer, so a token of
any scope that opened thousands of them made every call of every caller pay for each
one.  Past the bound a caller's newest stream ends its oldest, which says why; another
caller's streams are left alone.  A browser's tabs share one stream (its
SharedWorker, ``static/live-worker.js``): a stream per tab took the 6 connections a
browser opens to a host, and the 7th tab of the dashboard never loaded."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fixtures import make_gateway, serve_http, until
from tests.test_ui import AUTH, BOB, OPS, _login
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio


LINES: list[AsyncIterator[str]] = []  # each stream's line reader, kept: a dropped one closes it


async def _opened(stack: contextlib.AsyncExitStack, http: httpx2.AsyncClient,
                  base: str) -> httpx2.Response:
    response = await stack.enter_async_context(http.stream("GET", base + "/ui/events"))
    if response.status_code == 200:  # its subscription is made by the time it speaks
        lines = response.aiter_lines()
        LINES.append(lines)
        assert await anext(lines) == ": connected"
    return response


async def test_one_caller_opens_a_bounded_number_of_live_streams(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound a caller's newest stream ends its oldest, saying why (a 429 for
    the newest kept whoever held the bound first: a program left running shut the
    dashboard's live updates out, and reloading the page changed nothing)."""
    from fast_mcp_gateway.ui import live

    monkeypatch.setattr(live, "MAX_STREAMS", 2)
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as bob, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as ops:
        await _login(bob, base, BOB)
        await _login(ops, base, OPS)
        async with contextlib.AsyncExitStack() as stack:
            first = [await _opened(stack, bob, base) for _ in range(2)]
            assert [r.status_code for r in first] == [200, 200]
            assert (await _opened(stack, ops, base)).status_code == 200  # another caller
            newest = await _opened(stack, bob, base)
            assert newest.status_code == 200
            oldest = LINES[-4]  # the first of bob's: it says why, then ends
            said = [line async for line in oldest]
            assert said[2:4] == ["event: displaced", 'data: {"message": "live updates '
                                "stopped: 2 newer live streams of 'bob' were opened (by "
                                "other browsers, or programs), the most one caller may "
                                "hold; they resume when this page is used again (or click "
                                'here), ending the oldest of those"}'], said
            await until(lambda: gateway.events.subscribers == 3)  # bob's 2, ops' 1
            assert (await _opened(stack, bob, base)).status_code == 200
            await until(lambda: gateway.events.subscribers == 3)


@pytest.mark.timeout(240)
async def test_a_browser_s_tabs_share_one_live_stream(tmp_path: Path) -> None:
    """Eight tabs of the dashboard in one browser (without auth, as on a laptop): each
    page's own stream held one of the 6 connections Chromium opens to a host over
    HTTP/1.1, and the 7th tab hung loading (as did every other request of that browser
    to the gateway) until a tab was closed.  Shared, every tab loads, goes live and gets
    every event, over one stream, closed when the last tab goes."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context()
            tabs = []
            for _ in range(8):
                tab = await context.new_page()
                await tab.goto(base + "/ui/live")
                await expect(tab.locator("#live-status")).to_have_text("live")
                tabs.append(tab)
            assert gateway.events.subscribers == 1
            gateway.events.publish("catalog", {"kinds": ["tools"]})
            for tab in tabs:
                await expect(tab.locator("#live-feed")).to_contain_text(
                    "catalog changed: tools")
            for tab in tabs:
                await tab.close()
            await until(lambda: gateway.events.subscribers == 0)
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_program_holding_the_bound_does_not_shut_the_dashboard_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``auth`` every viewer is the one anonymous caller: a local program holding
    its 32 streams had the dashboard's stream refused (a 429: "stopped", "reload the
    page", which changed nothing).  Now the page's stream goes live, ending the
    program's oldest; and a page whose stream newer ones ended says so and stops (no
    reconnect by itself: it would end another), until it is used again or reloaded."""
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    from fast_mcp_gateway.ui import live

    monkeypatch.setattr(live, "MAX_STREAMS", 2)
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw, \
            httpx2.AsyncClient(timeout=30) as program, contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            assert (await _opened(stack, program, base)).status_code == 200
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/ui/live")
            status = page.locator("#live-status")
            await expect(status).to_have_text("live")
            for _ in range(2):  # the program opens two more: the page's is the oldest
                assert (await _opened(stack, program, base)).status_code == 200
            await expect(status).to_have_text("stopped")
            await expect(status).to_have_attribute("title", re.compile(
                "^live updates stopped: 2 newer live streams of '[a-z]+' were opened"))
            await page.reload()
            await expect(status).to_have_text("live")
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_page_whose_worker_does_not_load_opens_a_stream_of_its_own(
        tmp_path: Path) -> None:
    """The shared worker's script refused (a proxy that passes the pages but not that
    file): the page stayed "offline" with no updates; it opens its own stream."""
    _need_chromium()
    from playwright.async_api import Route, async_playwright, expect

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context()
            asked: list[str] = []

            async def missing(route: Route) -> None:
                asked.append(route.request.url)
                await route.fulfill(status=404, body="Not Found")

            await context.route("**/live-worker.js", missing)
            page = await context.new_page()
            await page.goto(base + "/ui/live")
            await expect(page.locator("#live-status")).to_have_text("live")
            assert asked == [base + "/ui/static/live-worker.js"]
            gateway.events.publish("catalog", {"kinds": ["prompts"]})
            await expect(page.locator("#live-feed")).to_contain_text(
                "catalog changed: prompts")
        finally:
            await browser.close()


@pytest.mark.timeout(240)
async def test_a_displaced_page_resumes_when_it_is_used_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A browser's stream that newer ones ended left every tab of it "stopped" until
    each was reloaded.  Now its tabs wait (never reconnecting by themselves, which would
    end another stream, whose page would do the same), and come back together when one
    is used again: its status clicked (the shared stream), or the page shown again (a
    page's own stream, the worker's script refused)."""
    _need_chromium()
    from playwright.async_api import Route, async_playwright, expect

    from fast_mcp_gateway.ui import live

    monkeypatch.setattr(live, "MAX_STREAMS", 2)
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, async_playwright() as pw, \
            httpx2.AsyncClient(timeout=30) as program, contextlib.AsyncExitStack() as stack:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            shared = await browser.new_context()
            opened: list[object] = []   # streams the gateway served (a worker's requests
            subscribe = gateway.events.subscribe   # are not the page's to see)

            def counted() -> Any:
                opened.append(None)
                return subscribe()

            monkeypatch.setattr(gateway.events, "subscribe", counted)
            tabs = [await shared.new_page() for _ in range(2)]
            for tab in tabs:
                await tab.goto(base + "/ui/live")
                await expect(tab.locator("#live-status")).to_have_text("live")
            for _ in range(2):  # the program's two newer streams end the browser's
                assert (await _opened(stack, program, base)).status_code == 200
            for tab in tabs:
                status = tab.locator("#live-status")
                await expect(status).to_have_text("stopped")
                await expect(status).to_have_attribute("title", re.compile(
                    "they resume when this page is used again"))
            before = len(opened)
            await tabs[1].locator("#live-status").click()  # one tab used: both come back
            for tab in tabs:
                await expect(tab.locator("#live-status")).to_have_text("live")
            gateway.events.publish("catalog", {"kinds": ["tools"]})
            for tab in tabs:
                await expect(tab.locator("#live-feed")).to_contain_text(
                    "catalog changed: tools")
            assert len(opened) == before + 1  # one stream for both tabs, once

            # A page with a stream of its own (no worker script): shown again, it resumes.
            alone = await browser.new_context()

            async def missing(route: Route) -> None:
                await route.fulfill(status=404, body="Not Found")

            await alone.route("**/live-worker.js", missing)
            page = await alone.new_page()
            await page.goto(base + "/ui/live")
            status = page.locator("#live-status")
            await expect(status).to_have_text("live")
            for _ in range(2):
                assert (await _opened(stack, program, base)).status_code == 200
            await expect(status).to_have_text("stopped")
            await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
            await expect(status).to_have_text("live")
            gateway.events.publish("catalog", {"kinds": ["prompts"]})
            await expect(page.locator("#live-feed")).to_contain_text(
                "catalog changed: prompts")
        finally:
            await browser.close()
