"""The dashboard end to end in a real headless browser (Debian's chromium, Playwright).

A real gateway (``mcp-gateway serve --transport http``, a subprocess) with the demo
upstreams (notes, clock) as real stdio servers, a real SQLite store and two tokens.
Every step waits on a page condition (Playwright's ``expect``), never on time.  The
screenshots it takes are the ones in docs/screenshots/ and the README.

Without /usr/bin/chromium the test skips, except under ``CI=true`` where it fails
(``.ci/run`` installs it with apt).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPS = "mgw_ui-ops-7d3f0b9e2c41a8f6"
BOB = "mgw_ui-bob-tools-1e5a9c7d"
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


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
def gateway(tmp_path: Path) -> Iterator[str]:
    config = {"gateway": {"auth": {"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]},
        {"name": "bob", "token": BOB, "scopes": ["tools"]}]}},
        "servers": {"notes": _demo("notes"), "clock": _demo("clock")}}
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


@pytest.mark.timeout(300)
def test_the_dashboard_in_a_browser(tmp_path: Path) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with gateway(tmp_path) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            expect.set_options(timeout=30_000)

            # Log in: the dashboard sends us to the login page first.
            page.goto(base + "/ui/")
            expect(page).to_have_url(re.compile(r"/ui/login"))
            page.get_by_label("Token").fill("not-a-token")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_contain_text("not valid")
            page.get_by_label("Token").fill(OPS)
            page.get_by_role("button", name="Log in").click()

            # The overview: a card per server, live connected.
            expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            expect(page.locator("article[data-server=notes] .badge.state")).to_have_text("ready")
            expect(page.locator("article[data-server=clock] .badge.state")).to_have_text("ready")
            expect(page.locator("#live-status")).to_have_text("live")
            page.get_by_label("Search servers").fill("clo")
            expect(page.locator("article[data-server=notes]")).to_have_count(0)
            expect(page.locator("article[data-server=clock]")).to_have_count(1)
            page.get_by_label("Search servers").fill("")
            expect(page.locator("article[data-server=notes]")).to_have_count(1)

            # Call a tool from the form generated from its schema.
            page.goto(base + "/ui/inspector?server=notes&tool=add_note")
            page.get_by_label(re.compile(r"^title")).fill("From the browser")
            page.get_by_label(re.compile(r"^tags")).fill("ui\ntest")
            page.get_by_role("button", name="Call tool").click()
            expect(page.locator("#result-status")).to_have_text("success")
            expect(page.locator("#result")).to_contain_text("From the browser")
            page.screenshot(path=str(SHOTS / "inspector.png"), full_page=True)

            # The server's page shows its tools, the call just made and its status.
            page.goto(base + "/ui/servers/notes")
            expect(page.locator("#server-state")).to_have_text("ready")
            expect(page.get_by_role("heading", name="Tools (4)")).to_be_visible()
            page.screenshot(path=str(SHOTS / "server.png"), full_page=True)

            # Disable (confirmed) and enable again; the live stream updates the overview.
            page.goto(base + "/ui/servers/clock")
            page.get_by_role("button", name="Disable").click()
            expect(page.get_by_role("heading", name="Disable?")).to_be_visible()
            page.get_by_role("button", name="Yes, disable").click()
            expect(page.locator(".flash")).to_contain_text("disabled")
            expect(page.locator("#server-state")).to_have_text("disabled")
            page.get_by_role("button", name="Enable").click()
            expect(page.locator(".flash")).to_contain_text("ready")

            # Live updates arrive without reload: a change made through the REST API
            # shows on the Live page and on the overview's card.
            rest = {"Authorization": f"Bearer {OPS}"}
            page.goto(base + "/ui/live")
            expect(page.locator("#live-status")).to_have_text("live")
            changed = httpx2.put(base + "/api/v1/servers/clock/disable", timeout=60,
                                 headers=rest)
            assert changed.status_code == 200, changed.text
            expect(page.locator("#live-feed li.event-transition").filter(
                has_text="clock → disabled").first).to_be_visible()
            page.screenshot(path=str(SHOTS / "live.png"))
            page.goto(base + "/ui/")
            expect(page.locator("#live-status")).to_have_text("live")
            card = page.locator("article[data-server=clock] .badge.state")
            expect(card).to_have_text("disabled")
            changed = httpx2.put(base + "/api/v1/servers/clock/enable", timeout=60,
                                 headers=rest)
            assert changed.status_code == 200, changed.text
            expect(card).to_have_text("ready")

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
            expect(page.locator("article[data-server=clock2] .badge.state")).to_have_text(
                "ready")
            page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

            # A forged mutation without the CSRF token is refused.
            refused = page.request.post(base + "/ui/servers/notes/action",
                                        form={"action": "reset_breaker"})
            assert refused.status == 403 and "CSRF" in refused.text()

            # Logs: the inspector call is in the audit log.
            page.goto(base + "/ui/logs?tab=audit")
            expect(page.locator("table")).to_contain_text("inspect_call_tool")

            # A tools-only token: no admin actions shown, a forged one refused with 403.
            bob = browser.new_page(viewport={"width": 390, "height": 844})  # phone width
            bob.goto(base + "/ui/login")
            bob.get_by_label("Token").fill(BOB)
            bob.get_by_role("button", name="Log in").click()
            expect(bob.locator("article[data-server=notes]")).to_have_count(1)
            expect(bob.get_by_role("link", name="Add server")).to_have_count(0)
            bob.goto(base + "/ui/servers/notes")
            expect(bob.locator("#server-state")).to_have_text("ready")
            expect(bob.get_by_role("button", name="Disable")).to_have_count(0)
            csrf = bob.locator("input[name=csrf_token]").first.get_attribute("value")
            forged = bob.request.post(base + "/ui/servers/notes/action",
                                      form={"action": "disable", "confirm": "yes",
                                            "csrf_token": csrf or ""})
            assert forged.status == 403 and "needs scope &#39;admin&#39;" in forged.text()
            bob.screenshot(path=str(SHOTS / "phone-overview.png"))
        finally:
            browser.close()
