"""A status filter the call log does not know, on the dashboard as on REST.

``/ui/logs?status=bogus`` (and a server page's ``?status=bogus``) listed every call, as
if unfiltered, where REST's ``GET /api/v1/logs/invocations?status=bogus`` answers 422
naming the statuses it takes.  Now the page says the same, above its filters, with the
same 422.  In a real browser against ``mcp-gateway serve --transport http`` on 127.0.0.1
(``test_ui_browser.gateway``)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.test_ui_browser import ARGS, CHROMIUM, OPS, _demo, _need_chromium, gateway, mcp_calls
from tests.test_ui_invalid_browser import _log_in


@pytest.mark.timeout(300)
def test_an_unknown_status_filter_says_what_rest_says(tmp_path: Path) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    with gateway(tmp_path, {"clock": _demo("clock")}) as base, sync_playwright() as pw:
        assert mcp_calls(base, [("clock_add", {"a": 1, "b": 2})]) == [False]  # a success
        rest = httpx2.get(base + "/api/v1/logs/invocations", params={"status": "bogus"},
                          headers={"Authorization": f"Bearer {OPS}"}, timeout=30)
        assert rest.status_code == 422, rest.text
        said = rest.json()["error"]["message"]
        assert "status must be 'success'" in said, said
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            expect.set_options(timeout=30_000)
            page = _log_in(browser, base, OPS)
            for path in ("/ui/logs?status=bogus", "/ui/servers/clock?status=bogus"):
                answer = page.goto(base + path)
                assert answer is not None and answer.status == 422, path
                expect(page.get_by_role("alert")).to_have_text(said)
                expect(page.locator("table.calls")).to_have_count(0)  # not unfiltered
                # A status the log knows is a page as before.
                answer = page.goto(base + path.replace("bogus", "success"))
                assert answer is not None and answer.status == 200, path
                expect(page.locator("#query-error")).to_have_count(0)
                expect(page.locator("table.calls")).to_contain_text("clock_add")
        finally:
            browser.close()
