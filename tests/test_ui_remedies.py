"""A server's last error on dashboard pages points at the dashboard's own button, not at
the admin tool or the REST call (session 22, the operator's trial): a crash-looping
server's "restart it: admin tool gateway_reconnect_server (HTTP mode: POST ...)" was
shown right above its Restart / reconnect button.  REST and the admin tools keep their
words; a viewer who has no button is told who has."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import make_gateway, serve_http, stdio_entry

pytestmark = pytest.mark.anyio

OPS = "mgw_remedies-ops-7a1e5c93d0b4"
BOB = "mgw_remedies-bob-4c0f8e2a61d9"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]}]}
TOOL_WORDS = ("gateway_reconnect_server", "POST /api/v1/servers/bad/restart")


async def _login(http: httpx2.AsyncClient, token: str) -> None:
    form = await http.get("/ui/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf, form.text[:300]
    done = await http.post("/ui/login", data={"token": token, "csrf_token": csrf.group(1)})
    assert done.status_code == 303, done.text


def _errors(page: str) -> str:
    """The last-error texts of a dashboard page (a card's, the status section's)."""
    found = re.findall(r'<(?:p|dd) class="error[^"]*"[^>]*>(.*?)</(?:p|dd)>', page, re.S)
    return html.unescape(" | ".join(found))


async def _crash_looped(options: dict[str, Any]) -> Any:
    return make_gateway({"bad": stdio_entry("exit_at_start.py")}, options=options)


@pytest.mark.timeout(120)
async def test_a_last_errors_remedy_points_at_the_dashboards_button() -> None:
    gateway = await _crash_looped({"auth": AUTH})
    async with serve_http(gateway.http_app()) as base:
        bad = gateway.manager.get("bad").replicas[0]
        assert await bad.wait_until(lambda: bad.state is UpstreamState.FAILED, 60)
        async with httpx2.AsyncClient(base_url=base, timeout=30) as ops, \
                httpx2.AsyncClient(base_url=base, timeout=30) as bob:
            rest = await ops.get("/api/v1/servers/bad",
                                 headers={"Authorization": f"Bearer {OPS}"})
            assert all(w in rest.json()["last_error"] for w in TOOL_WORDS)  # REST keeps
            await _login(ops, OPS)
            await _login(bob, BOB)
            for path in ("/ui/", "/ui/servers/bad", "/ui/partials/cards",
                         "/ui/partials/servers/bad/status"):
                page = await ops.get(path)
                assert page.status_code == 200, path
                said = _errors(page.text)
                assert "gave up after 3 failures" in said, (path, said)
                assert not any(w in said for w in TOOL_WORDS), (path, said)
                assert ("restart it: the Restart / reconnect button under Actions on its "
                        "page (/ui/servers/bad)") in said, (path, said)
                # A viewer without the button is told who has it.
                said = _errors((await bob.get(path)).text)
                assert not any(w in said for w in TOOL_WORDS), (path, said)
                assert ("restart it: ask an admin (the Restart / reconnect button on its "
                        "page, /ui/servers/bad)") in said, (path, said)
            assert "Restart / reconnect" in (await ops.get("/ui/servers/bad")).text
            # The inspector's refusal to read from the failed server says it too.
            form = await ops.get("/ui/inspector?server=bad")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf
            read = await ops.post("/ui/inspector/read", data={
                "csrf_token": csrf.group(1), "server": "bad", "uri": "notes://x"})
            said = html.unescape(" ".join(re.findall(r'role="alert">(.*?)</p>', read.text)))
            assert "has failed" in said and not any(w in said for w in TOOL_WORDS), said
            assert "the Restart / reconnect button under Actions on its page" in said, said


@pytest.mark.timeout(120)
async def test_under_read_only_admin_the_remedy_says_changes_are_off() -> None:
    gateway = await _crash_looped({"admin": "read_only"})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        bad = gateway.manager.get("bad").replicas[0]
        assert await bad.wait_until(lambda: bad.state is UpstreamState.FAILED, 60)
        said = _errors((await http.get("/ui/servers/bad")).text)
        assert not any(w in said for w in TOOL_WORDS), said
        assert ("restart it: the Restart / reconnect button on its page (/ui/servers/bad), "
                "once 'gateway.admin' in the config file allows changes") in said, said


@pytest.mark.timeout(120)
async def test_the_live_streams_state_changes_word_the_remedy_for_the_dashboard() -> None:
    gateway = await _crash_looped({"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as ops:
        bad = gateway.manager.get("bad").replicas[0]
        assert await bad.wait_until(lambda: bad.state is UpstreamState.FAILED, 60)
        await _login(ops, OPS)
        async with ops.stream("GET", "/ui/events") as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"
            restarted = await ops.post("/api/v1/servers/bad/restart",
                                       headers={"Authorization": f"Bearer {OPS}"})
            assert restarted.status_code == 200, restarted.text
            async for line in lines:  # until it gives up again
                if line.startswith("data:") and "gave up after" in line:
                    assert not any(w in line for w in TOOL_WORDS), line
                    assert ("the Restart / reconnect button under Actions on its page "
                            "(/ui/servers/bad)") in line, line
                    break


def test_each_remedy_is_found_with_its_server_and_the_rest_left_as_it_was() -> None:
    from fast_mcp_gateway.upstream.failures import remedy, reword_remedies

    text = (f"is disabled; enable it: {remedy('enable', 'a-b_1')}; or "
            f"restart it: {remedy('restart', 'bad')}.")
    assert reword_remedies(text, lambda action, server: f"<{action} {server}>") == (
        "is disabled; enable it: <enable a-b_1>; or restart it: <restart bad>.")
    assert reword_remedies("no remedy here", lambda a, s: "x") == "no remedy here"
