"""An invalid server entry's dashboard page says it is invalid, not disabled.

Its page showed a "disabled" badge next to the "invalid" state (the status row of an
entry left out reports ``enabled: false``): a user looked for how to enable it.  Now
the page shows the state alone, and a note, to every viewer, that the entry is invalid
and how to start it (correct the entry the last error names, save the file); a
disabled server's page says "disabled" once (a second badge repeated its state).  In a
real browser against ``mcp-gateway serve --transport http`` on 127.0.0.1
(``test_ui_browser.gateway``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_ui_browser import ARGS, BOB, CHROMIUM, OPS, _demo, _need_chromium, gateway


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
def test_an_invalid_entrys_page_says_invalid_and_how_to_fix_it(tmp_path: Path) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    servers = {"bad": {"comand": "x"}, "clock": _demo("clock")}
    with gateway(tmp_path, servers) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            expect.set_options(timeout=30_000)
            for token in (OPS, BOB):  # an admin, and a viewer who cannot edit
                page = _log_in(browser, base, token)
                expect(page.locator("article[data-server=bad] .badge.state")).to_have_text(
                    "invalid")
                page.goto(base + "/ui/servers/bad")
                badges = page.locator("#status .badges .badge")
                expect(page.locator("#server-state")).to_have_text("invalid")
                expect(badges.filter(has_text=re.compile("^disabled$"))).to_have_count(0)
                note = page.locator("#invalid-note")
                expect(note).to_contain_text("its entry in the config file is invalid "
                                             "(not disabled)")
                expect(note).to_contain_text("correct the entry as the last error below "
                                             "says and save the file")
                expect(page.locator("#status")).to_contain_text("did you mean 'command'?")
                expect(page.locator("#invalid-fix")).to_have_count(1 if token == OPS else 0)
            # A server that is disabled still says so.
            page = _log_in(browser, base, OPS)
            page.goto(base + "/ui/servers/clock")
            page.get_by_role("button", name="Disable").click()
            page.get_by_role("button", name="Disable").click()  # the confirmation page
            expect(page.locator("#server-state")).to_have_text("disabled")
            disabled = page.locator("#status .badges .badge").filter(
                has_text=re.compile("^disabled$"))
            expect(disabled).to_have_count(1)  # the state (it said so twice)
            expect(page.locator("#invalid-note")).to_have_count(0)
        finally:
            browser.close()
