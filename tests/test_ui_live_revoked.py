"""A dashboard session that is revoked gets no further Live event: the next one ends
the stream instead.  Real uvicorn on 127.0.0.1, a real ``/ui/events`` stream read by
httpx.

The stream sent an event under a session check at most ``live.RECHECK`` (1 s) old: for
up to a second after a reload removed the token, a log out or the per-caller cap
pushed the session out, the browser still received call records and state changes.
Whatever can end a session moves ``DashboardAuth.generation``, which the stream compares
before each event.  Here the stream's clock stands still, so its last check never grows
older than ``RECHECK``: only the revocation itself can stop the event (on a loaded
machine a second may pass anyway, and the old code's periodic check hid the window).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.ui import live
from fast_mcp_gateway.ui.session import SESSIONS_PER_TOKEN
from tests.fixtures import serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-live-revoked-61d0c4a9e2f7"
BOB = "mgw_bob-live-revoked-0b93e7c15a48"


def _write(path: Path, *tokens: tuple[str, str, str]) -> None:
    entries = [{"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "scopes": [scope]} for name, token, scope in tokens]
    path.write_text(json.dumps({"gateway": {"auth": {"tokens": entries}}, "servers": {}}))


def _csrf(html: str) -> str:
    found = re.search(r'(?:name="csrf_token" value=|"X-CSRF-Token": )"([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def _login(http: httpx2.AsyncClient, token: str) -> str:
    """Log ``http`` in (its cookie jar keeps the session); the page's CSRF token."""
    page = await http.get("/ui/login")
    done = await http.post("/ui/login", data={"token": token, "csrf_token": _csrf(page.text),
                                              "next": "/ui/"})
    assert done.status_code == 303, done.text
    overview = await http.get("/ui/")
    assert overview.status_code == 200, overview.text
    return _csrf(overview.text)


async def _frames(lines: AsyncIterator[str]) -> AsyncIterator[list[str]]:
    """The stream's frames (their lines) until it ends; comments and the reconnection
    delay left out."""
    frame: list[str] = []
    async for line in lines:
        if line:
            if not line.startswith((":", "retry:")):
                frame.append(line)
        elif frame:
            yield frame
            frame = []


@pytest.mark.parametrize("revoke", ["reload", "log out", "pushed out"])
@pytest.mark.timeout(120)
async def test_a_revoked_session_gets_no_further_live_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revoke: str) -> None:
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=lambda: 0.0))
    path = tmp_path / "servers.yaml"
    _write(path, ("ops", OPS, "admin"), ("bob", BOB, "tools"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        csrf = await _login(http, BOB)

        async def reload() -> None:
            _write(path, ("ops", OPS, "admin"))  # bob's token removed
            assert (await gateway.reload_config()).error is None

        async def log_out() -> None:  # in another tab of the same browser
            out = await http.post("/ui/logout", data={"csrf_token": csrf})
            assert out.status_code == 303

        async def pushed_out() -> None:  # bob logs in on as many other browsers
            async with httpx2.AsyncClient(base_url=base, timeout=30) as other:
                for _ in range(SESSIONS_PER_TOKEN):
                    other.cookies.clear()
                    await _login(other, BOB)

        revocations: dict[str, Callable[[], Awaitable[None]]] = {
            "reload": reload, "log out": log_out, "pushed out": pushed_out}
        async with http.stream("GET", "/ui/events") as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"  # subscribed to the bus
            frames = _frames(lines)
            gateway.events.publish("catalog", {"marker": "before"})
            first = await anext(frames)
            assert first[1] == "event: catalog" and '"marker":"before"' in first[-1]

            await revocations[revoke]()
            gateway.events.publish("catalog", {"marker": "after"})
            rest = [frame async for frame in frames]  # the stream ends
        assert rest == [["event: ended", "data: {}"]], rest  # not the event after
