"""The dashboard end to end in a real headless browser (Debian's chromium, Playwright).

One real gateway (``mcp-gateway serve --transport http``, a subprocess) with the demo
upstreams (notes; clock with two replicas) as real stdio servers, a real SQLite store,
two tokens and alerts evaluated every 200 ms, shared by every step below (one test:
the gateway and browser start once; each step is a function).  Real MCP calls go
through the gateway's /mcp with a fastmcp Client, so charts, cards and alerts show real
traffic.  Every step waits on a page condition (Playwright's ``expect``), never on
time.  The screenshots it takes are the ones in docs/screenshots/ and the README when
``MCP_GATEWAY_SCREENSHOTS=docs`` is set, else they go to a temporary folder (each run
rewrote the PNGs in the work tree, and a ``git add -A`` committed them).

Without /usr/bin/chromium the test skips, except under ``CI=true`` where it fails
(``.ci/run`` installs it with apt).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPS = "mgw_ui-ops-7d3f0b9e2c41a8f6"
BOB = "mgw_ui-bob-tools-1e5a9c7d"
DOCS_SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
SHOTS = (DOCS_SHOTS if os.environ.get("MCP_GATEWAY_SCREENSHOTS") == "docs"
         else Path(tempfile.gettempdir()) / f"mcp-gw-screenshots-{os.getpid()}")


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = "chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message + " -- CI must run the browser tests", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo(name: str) -> dict[str, object]:
    return {"command": sys.executable, "args": ["-m", f"fast_mcp_gateway.demo.{name}"],
            "description": f"the {name} demo server"}


@contextlib.contextmanager
def gateway(tmp_path: Path, servers: dict[str, Any] | None = None) -> Iterator[str]:
    if servers is None:
        servers = {"notes": _demo("notes"), "clock": {**_demo("clock"), "replicas": 2}}
    config = {"gateway": {"auth": {"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]},
        {"name": "bob", "token": BOB, "scopes": ["tools"]}]}},
        "servers": servers,
        "alerts": {"evaluate_every": "200ms"}}
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--transport", "http",
         "--port", str(port), "--config", str(path), "--db", str(tmp_path / "gw.db"),
         "--connect-timeout", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
            tmp_path / "gateway.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # the condition: /ready answers 200 (both upstreams connected)
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(base + "/ready", timeout=5).status_code == 200:
                    break
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.1)  # polling a subprocess's readiness (a condition)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mcp_calls(base: str, calls: list[tuple[str, dict[str, Any]]]) -> list[bool]:
    """Real MCP tool calls through the gateway's /mcp (a fastmcp Client, in a thread of
    its own: Playwright's sync API owns this one); returns each call's isError."""
    from fastmcp import Client

    async def run() -> list[bool]:
        async with Client(f"{base}/mcp", auth=OPS) as client:
            return [(await client.call_tool(name, args, raise_on_error=False)).is_error
                    for name, args in calls]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, run).result(timeout=120)


# Every form control has a label (a <label for>, a wrapping label or an aria name).
UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML.slice(0, 120))"""
# Ids are unique (labels, aria-describedby and the tests' locators rely on them).
DUPLICATE_IDS = """() => { const seen = {}; document.querySelectorAll('[id]').forEach(
  e => { seen[e.id] = (seen[e.id] || 0) + 1; });
  return Object.keys(seen).filter(k => seen[k] > 1); }"""
# The element keyboard focus is on shows an outline (:focus-visible), at least 2px.
FOCUS_RING = """() => { const s = getComputedStyle(document.activeElement);
  return document.activeElement !== document.body && s.outlineStyle !== 'none'
         && parseFloat(s.outlineWidth) >= 2; }"""


@pytest.mark.timeout(600)
def test_the_dashboard_in_a_browser(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    if SHOTS != DOCS_SHOTS:
        request.addfinalizer(lambda: shutil.rmtree(SHOTS, ignore_errors=True))
    with gateway(tmp_path) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            expect.set_options(timeout=30_000)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            _login_and_overview(page, base)
            _inspector(page, base)
            # Real traffic: successes on both servers and one failure.
            errors = mcp_calls(base, [("notes_list_notes", {}), ("clock_now", {}),
                                      ("clock_add", {"a": 1, "b": 2}),
                                      ("notes_search_notes", {"query": "browser"}),
                                      ("notes_delete_note", {"note_id": 424242}),
                                      ("clock_now", {"timezone": "Europe/Paris"})])
            assert errors == [False, False, False, False, True, False]
            _server_page(page, base)
            _disable_enable_and_live(page, base)
            _add_and_edit_servers(page, base)
            _replicas_and_breaker(page, base)
            _routes(page, base)
            _alert_fires_and_resolves(page, base)
            _call_record(page, base)
            _accessibility(page, base)
            _tools_token_on_a_phone(browser, base)
            _dark(browser, base)
        finally:
            browser.close()


def _login_and_overview(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    # Log in: the dashboard sends us to the login page first.
    page.goto(base + "/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.get_by_label("Token").fill(OPS)
    page.get_by_role("button", name="Log in").click()

    # The overview: a card per server, live connected, search.
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("article[data-server=notes] .badge.state")).to_have_text("ready")
    expect(page.locator("article[data-server=clock] .badge.state")).to_have_text("ready")
    expect(page.locator("#live-status")).to_have_text("live")
    page.get_by_label("Search servers").fill("clo")
    expect(page.locator("article[data-server=notes]")).to_have_count(0)
    expect(page.locator("article[data-server=clock]")).to_have_count(1)
    page.get_by_label("Search servers").fill("")
    expect(page.locator("article[data-server=notes]")).to_have_count(1)


def _inspector(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    # Call a tool from the form generated from its schema.
    page.goto(base + "/ui/inspector?server=notes&tool=add_note")
    page.get_by_label(re.compile(r"^title")).fill("From the browser")
    page.get_by_label(re.compile(r"^tags")).fill("ui\ntest")
    page.get_by_role("button", name="Call tool").click()
    expect(page.locator("#result-status")).to_have_text("success")
    expect(page.locator("#result")).to_contain_text("From the browser")
    page.screenshot(path=str(SHOTS / "inspector.png"), full_page=True)

    # Read a resource, then get a prompt, from the same page.
    page.get_by_label("URI").fill("notes://all")
    page.get_by_role("button", name="Read").click()
    expect(page.locator("#result-status")).to_have_text("success")
    expect(page.locator("#result")).to_contain_text("resources/read notes://all")
    expect(page.locator("#result .result-text").first).to_contain_text("From the browser")
    page.get_by_role("button", name="Get prompt summarize_notes").click()
    expect(page.locator("#result-status")).to_have_text("success")
    expect(page.locator("#result .result-text").first).to_contain_text("[user]")


def _server_page(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    # The server's page: its tools, the calls just made (charts) and its status.
    page.goto(base + "/ui/servers/notes")
    expect(page.locator("#server-state")).to_have_text("ready")
    expect(page.get_by_role("heading", name="Tools (4)")).to_be_visible()
    calls = page.locator("table.calls tbody tr")
    expect(calls.filter(has_text="notes_search_notes")).to_have_count(1)
    expect(calls.filter(has_text="notes_delete_note")).to_have_class(re.compile("status-error"))
    page.screenshot(path=str(SHOTS / "server.png"), full_page=True)


def _disable_enable_and_live(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    # Disable (confirmed) and enable again.
    page.goto(base + "/ui/servers/clock")
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("heading", name="Disable?")).to_be_visible()
    page.get_by_role("button", name="Yes, disable").click()
    expect(page.locator(".flash")).to_contain_text("disabled")
    expect(page.locator("#server-state")).to_have_text("disabled")
    page.get_by_role("button", name="Enable").click()
    expect(page.locator(".flash")).to_contain_text("ready")

    # Live updates arrive without reload: a change made through the REST API shows on
    # the Live page and on the overview's card.
    rest = {"Authorization": f"Bearer {OPS}"}
    page.goto(base + "/ui/live")
    expect(page.locator("#live-status")).to_have_text("live")
    changed = httpx2.put(base + "/api/v1/servers/clock/disable", timeout=60, headers=rest)
    assert changed.status_code == 200, changed.text
    expect(page.locator("#live-feed li.event-transition").filter(
        has_text=re.compile(r"clock · clock#\d → disabled")).first).to_be_visible()
    page.goto(base + "/ui/")
    expect(page.locator("#live-status")).to_have_text("live")
    card = page.locator("article[data-server=clock] .badge.state")
    expect(card).to_have_text("disabled")
    changed = httpx2.put(base + "/api/v1/servers/clock/enable", timeout=60, headers=rest)
    assert changed.status_code == 200, changed.text
    expect(card).to_have_text("ready")


def _add_and_edit_servers(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    # Add a server by form: first a validation error next to its field.
    page.goto(base + "/ui/add")
    page.locator("#name").fill("clock2")
    page.locator("#replicas").fill("0")
    page.locator("#command").fill(sys.executable)
    page.locator("#args").fill("-m\nfast_mcp_gateway.demo.clock")
    page.get_by_role("button", name="Add server").click()
    expect(page.locator("#err-replicas")).to_be_visible()
    page.locator("#replicas").fill("1")
    page.get_by_role("button", name="Add server").click()
    expect(page.locator(".flash")).to_contain_text("Saved server 'clock2'")

    # ... and by pasting a Claude mcpServers JSON (a broken one first).
    page.goto(base + "/ui/add")
    page.locator("#content").fill('{"mcpServers": {"bad": {"args": []}}}')
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#paste-error")).to_contain_text("bad")
    page.locator("#content").fill(json.dumps({"mcpServers": {"notes2": {
        "command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.notes"]}}}))
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".flash")).to_contain_text("Imported")
    page.goto(base + "/ui/")
    expect(page.locator("article[data-server=notes2]")).to_have_count(1)
    expect(page.locator("article[data-server=clock2] .badge.state")).to_have_text("ready")

    # Edit a server: the form comes filled in; the change is saved and shown.
    page.goto(base + "/ui/servers/clock2")
    page.get_by_role("link", name="Edit settings").click()
    expect(page.locator("#command")).to_have_value(sys.executable)
    page.locator("#description").fill("edited in the browser")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("Saved server 'clock2'")
    page.goto(base + "/ui/servers/clock2")
    expect(page.locator("#status")).to_contain_text("edited in the browser")
    expect(page.locator("#server-state")).to_have_text("ready")

    # A forged mutation without the CSRF token is refused.
    refused = page.request.post(base + "/ui/servers/notes/action",
                                form={"action": "reset_breaker"})
    assert refused.status == 403 and "CSRF" in refused.text()


def _replicas_and_breaker(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/ui/servers/clock")
    rows = page.locator("#status tbody tr")
    expect(rows).to_have_count(2)
    # Drain the second replica (confirmed), then return it to the pool.
    rows.nth(1).get_by_role("button", name=re.compile("^Drain")).click()
    page.get_by_role("button", name="Yes, drain replica").click()
    expect(page.locator(".flash")).to_contain_text("Drain replica: done")
    expect(page.locator("#status tbody tr").nth(1)).to_contain_text("(draining)")
    page.locator("#status tbody tr").nth(1).get_by_role(
        "button", name=re.compile("^Undrain")).click()
    expect(page.locator(".flash")).to_contain_text("Return replica to the pool: done")
    expect(page.locator("#status tbody tr").nth(1)).not_to_contain_text("(draining)")
    # Restart it (confirmed); it comes back ready.
    page.locator("#status tbody tr").nth(1).get_by_role(
        "button", name=re.compile("^Restart")).click()
    page.get_by_role("button", name="Yes, restart replica").click()
    expect(page.locator(".flash")).to_contain_text("Restart replica: done")
    expect(page.locator("#status tbody tr").nth(1).locator("td").first).to_have_text("ready")
    # Reset the circuit breaker (not destructive: no confirmation).
    page.get_by_role("button", name="Reset breaker").click()
    expect(page.locator(".flash")).to_contain_text("Reset circuit breaker: done")
    expect(page.locator("#status tbody tr").first.locator("td").nth(2)).to_have_text(
        "closed")


def _routes(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    def resolve(name: str) -> Any:
        page.get_by_label("Which server does this tool name go to?").fill(name)
        page.get_by_role("button", name="Resolve").click()
        return page.locator("#resolved")

    page.goto(base + "/ui/routes")
    expect(resolve("notes_list_notes")).to_contain_text(
        "server notes (its own server; no rule matches)")
    # Add a rule sending notes_list_notes to notes2.
    page.get_by_label("Pattern").fill("notes_list_notes")
    page.get_by_label("Match").select_option("exact")
    page.get_by_label("Target server").select_option("notes2")
    page.get_by_label("Priority").fill("5")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator(".flash")).to_contain_text("notes_list_notes → notes2")
    expect(resolve("notes_list_notes")).to_contain_text(re.compile(
        r"server notes2 by rule #\d+ \(exact notes_list_notes\)"))
    # Edit it: a prefix rule to clock2 now.
    page.get_by_role("link", name="Edit").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Edit rule #"))).to_be_visible()
    page.get_by_label("Pattern").fill("notes_")
    page.get_by_label("Match").select_option("prefix")
    page.get_by_label("Target server").select_option("clock2")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator(".flash")).to_contain_text("notes_ → clock2")
    expect(resolve("notes_add_note")).to_contain_text("server clock2 by rule")
    page.screenshot(path=str(SHOTS / "routes.png"), full_page=True)
    # Delete it: names resolve to their own server again.
    page.get_by_role("button", name=re.compile(r"^Delete route")).first.click()
    expect(page.get_by_role("heading", name=re.compile(r"^Delete route #\d+\?"))).to_be_visible()
    expect(page.locator(".confirm")).to_contain_text("notes_ stop going to server clock2")
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator(".flash")).to_contain_text("Deleted route")
    expect(page.get_by_text("No rules: every tool goes to its own server.")).to_be_visible()
    expect(resolve("notes_add_note")).to_contain_text("its own server")


def _alert_fires_and_resolves(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/ui/alerts")
    expect(page.locator("#no-alerts")).to_be_visible()
    # A rule from the form: the rule model's error shows next to its field first.
    page.get_by_label("Name").fill("notes-failing")
    page.get_by_label("Server").select_option("notes")
    page.get_by_label("Metric").select_option("consecutive_failures")
    page.get_by_label("Threshold").fill("1.5")
    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator("#err-threshold")).to_contain_text("whole number")
    expect(page.get_by_label("Threshold")).to_have_attribute("aria-invalid", "true")
    # not_ready takes no threshold: choosing it hides those fields.
    page.get_by_label("Metric").select_option("not_ready")
    expect(page.get_by_label("Threshold")).to_be_hidden()
    page.get_by_label("Metric").select_option("consecutive_failures")
    page.get_by_label("Threshold").fill("2")
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator(".flash")).to_contain_text("Added alert rule 'notes-failing'")
    expect(page.locator("#alert-rules tr[data-rule=notes-failing]")).to_contain_text(
        "consecutive_failures >= 2")

    # The Live page in a second tab; both pages connected to the event stream.
    live = page.context.new_page()  # the same session (cookie)
    live.goto(base + "/ui/live")
    expect(live.locator("#live-status")).to_have_text("live")
    expect(page.locator("#live-status")).to_have_text("live")

    # The upstream fails twice: the alert fires, shown without a reload.
    assert mcp_calls(base, [("notes_delete_note", {"note_id": 1001}),
                            ("notes_delete_note", {"note_id": 1002})]) == [True, True]
    firing = page.locator("#active-alerts tr.alert-firing[data-rule=notes-failing]")
    expect(firing).to_contain_text("notes")
    expect(page.locator("#firing-count")).to_have_text("1")
    expect(page.locator("#alert-toast")).to_contain_text("ALERT FIRING notes-failing")
    expect(page.locator("#nav-firing")).to_contain_text("1")
    expect(live.locator("#live-feed li.alert-firing").filter(
        has_text="notes-failing").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)

    # The overview: the banner, non-zero totals and the cards' sparklines.
    page.goto(base + "/ui/")
    banner = page.locator("#alert-banner .banner")
    expect(banner).to_contain_text("1 alert firing")
    expect(banner).to_contain_text("notes-failing")
    expect(page.locator("article[data-server=notes] .card-trends svg")).to_have_count(2)
    expect(page.locator("#live-status")).to_have_text("live")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # It succeeds again: the alert resolves, live on both pages.
    assert mcp_calls(base, [("notes_list_notes", {})]) == [False]
    expect(banner).to_have_count(0)
    expect(page.locator("#nav-firing")).to_be_hidden()
    expect(live.locator("#live-feed li.alert-resolved").filter(
        has_text="notes-failing").first).to_be_visible()
    live.screenshot(path=str(SHOTS / "live.png"))
    live.close()
    page.goto(base + "/ui/alerts")
    expect(page.locator("#no-alerts")).to_be_visible()
    history = page.locator("#alert-history tbody tr")
    expect(history.first).to_contain_text("resolved")
    expect(history.nth(1)).to_contain_text("firing")


def _call_record(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/ui/logs?server=notes&status=error")
    page.locator("table.calls tbody a").first.click()
    expect(page.locator("#call-status")).to_have_text("error")
    expect(page.locator("#call-arguments")).to_contain_text('"note_id"')
    expect(page.locator("#call-trace")).to_have_text(re.compile(r"\S{8,}"))
    expect(page.locator("#call-record")).to_contain_text("Route taken")
    page.goto(base + "/ui/logs?tab=audit")
    expect(page.locator("table")).to_contain_text("add_alert_rule")
    expect(page.locator("table")).to_contain_text("inspect_call_tool")


def _accessibility(page: Any, base: str) -> None:
    from playwright.sync_api import expect

    for path in ("/ui/", "/ui/servers/notes", "/ui/add", "/ui/servers/clock2/edit",
                 "/ui/inspector?server=notes&tool=add_note", "/ui/logs", "/ui/routes",
                 "/ui/alerts", "/ui/live"):
        page.goto(base + path)
        expect(page.locator("main h1")).to_be_visible()
        assert page.evaluate(UNLABELLED) == [], path
        assert page.evaluate(DUPLICATE_IDS) == [], path
        # Keyboard: the first Tab lands on the skip link, visibly; it leads to main.
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUS_RING), path
        expect(page.locator(":focus")).to_have_text("Skip to content")
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUS_RING), path


# WCAG contrast ratio of an element's text colour against the page background.
CONTRAST = """(sel) => { const rgb = c => c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = rgb(c).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const fg = lum(getComputedStyle(document.querySelector(sel)).color);
  const bg = lum(getComputedStyle(document.body).backgroundColor);
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05); }"""


def _dark(browser: Any, base: str) -> None:
    """The same pages in a browser that prefers dark: dark background, readable text."""
    from playwright.sync_api import expect

    for scheme, background in (("light", "rgb(255, 255, 255)"), ("dark", "rgb(13, 17, 23)")):
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      color_scheme=scheme)
        page = context.new_page()
        page.goto(base + "/ui/login")
        page.get_by_label("Token").fill(OPS)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("article[data-server=notes]")).to_have_count(1)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        for selector in ("main h1", "article[data-server=notes]", ".muted", "nav a"):
            if page.locator(selector).count():
                assert page.evaluate(CONTRAST, selector) >= 4.5, (scheme, selector)
        if scheme == "dark":
            page.screenshot(path=str(SHOTS / "overview-dark.png"))
        context.close()


def _tools_token_on_a_phone(browser: Any, base: str) -> None:
    from playwright.sync_api import expect

    # A tools-only token: no admin actions shown, a forged one refused with 403.
    bob = browser.new_page(viewport={"width": 390, "height": 844})  # phone width
    bob.goto(base + "/ui/login")
    bob.get_by_label("Token").fill(BOB)
    bob.get_by_role("button", name="Log in").click()
    expect(bob.locator("article[data-server=notes]")).to_have_count(1)
    expect(bob.get_by_role("link", name="Add server")).to_have_count(0)
    bob.goto(base + "/ui/alerts")
    expect(bob.locator("#alert-rules tr[data-rule=notes-failing]")).to_have_count(1)
    expect(bob.locator("#rule-form")).to_have_count(0)
    bob.goto(base + "/ui/servers/notes")
    expect(bob.locator("#server-state")).to_have_text("ready")
    expect(bob.get_by_role("button", name="Disable")).to_have_count(0)
    csrf = bob.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = bob.request.post(base + "/ui/servers/notes/action",
                              form={"action": "disable", "confirm": "yes",
                                    "csrf_token": csrf or ""})
    assert forged.status == 403 and "needs scope &#39;admin&#39;" in forged.text()
    bob.goto(base + "/ui/")
    expect(bob.locator("article[data-server=notes]")).to_have_count(1)
    bob.screenshot(path=str(SHOTS / "phone-overview.png"))
