"""The dashboard's live streams (``/ui/events``) are bounded per caller: each open stream
is fed every event on the event loop, from the call path's own observer, so a token of
any scope that opened thousands of them made every call of every caller pay for each
one.  Past the bound a new stream is a 429 saying why; another caller's still opens, and
a stream that ends gives its place back.  A browser's tabs share one stream (its
SharedWorker, ``static/live-worker.js``): a stream per tab took the 6 connections a
browser opens to a host, and the 7th tab of the dashboard never loaded."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx2
import pytest

from tests.fixtures import make_gateway, serve_http, until
from tests.test_ui import AUTH, BOB, OPS, _login
from tests.test_ui_browser import ARGS, CHROMIUM, _need_chromium

pytestmark = pytest.mark.anyio


LINES: list[object] = []  # each stream's line reader, kept: a dropped one closes it


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
            refused = await _opened(stack, bob, base)
            assert refused.status_code == 429
            said = (await refused.aread()).decode()
            assert "2 live streams of &#39;bob&#39; are open already" in said, said
            assert (await _opened(stack, ops, base)).status_code == 200  # another caller
            assert gateway.events.subscribers == 3
            await first[0].aclose()  # a tab closed gives its place back
            await until(lambda: gateway.events.subscribers == 2)
            assert (await _opened(stack, bob, base)).status_code == 200
            assert (await _opened(stack, bob, base)).status_code == 429


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
