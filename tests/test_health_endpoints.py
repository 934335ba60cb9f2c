"""/health, /ready and /health/servers over real HTTP on 127.0.0.1 with real demo
upstreams; readiness follows an upstream gated on a file (no sleeps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.admin.models import HealthReport, ServerStatus
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.replica import RestartPolicy
from tests.fixtures import PY, make_gateway, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-health-91ab3c7d5e"
ALICE = "mgw_alice-health-notes-4e2c"
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "alice", "token": ALICE, "scopes": ["tools"], "servers": ["notes"]},
]}
# One failed start parks a replica as failed until it is reconnected: nothing retries
# behind the test's back.
PARK_AT_ONCE = RestartPolicy(initial=0.05, maximum=0.2, jitter=0.0, crash_limit=1,
                             crash_window=60.0)


def demo(name: str) -> dict[str, Any]:
    return {"command": "${GATEWAY_PYTHON}", "args": ["-m", f"fast_mcp_gateway.demo.{name}"]}


def gated(gate: Path) -> dict[str, Any]:
    """The clock demo, which exits at once while ``gate`` does not exist."""
    script = ("import os, runpy, sys\n"
              f"if not os.path.exists({str(gate)!r}):\n"
              "    sys.exit('gate closed')\n"
              "runpy.run_module('fast_mcp_gateway.demo.clock', run_name='__main__')\n")
    return {"command": PY, "args": ["-c", script]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_ready_waits_for_an_upstream_and_health_is_always_live(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gateway = make_gateway({"clock": gated(gate)}, restart=PARK_AT_ONCE)

    # Its lifespan never run (an app that mounts it without it): it says so; it said
    # "waiting for the first connect attempt" of servers that never start.
    app = gateway.http_app()
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gw") as early:
        unrun = await early.get("/ready")
        assert unrun.status_code == 503 and unrun.json()["status"] == "not_running"
        assert "lifespan=gateway_app.lifespan" in unrun.json()["reason"]
        # What shows the servers said each was "starting", for ever: it says the
        # gateway is not running, and how to run it.
        for path in ("/api/v1/servers", "/api/v1/servers/clock", "/health/servers"):
            shown = await early.get(path)
            assert shown.status_code == 503, (path, shown.text)
            assert shown.json()["error"]["code"] == "not_running", shown.text
            assert "lifespan=gateway_app.lifespan" in shown.json()["error"]["message"]
        page = await early.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "starting" not in page.text, page.text
        assert "<h1>The gateway is not running</h1>" in page.text, page.text
        assert "lifespan=gateway_app.lifespan" in page.text, page.text

    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http:
        live = await http.get(f"{base}/health")
        assert live.status_code == 200
        assert live.json() == {"status": "ok", "version": __version__}

        down = await http.get(f"{base}/ready")
        assert down.status_code == 503, down.text
        assert down.json()["status"] == "unavailable" and down.json()["ready"] == 0
        assert "none of the 1 upstream servers is ready" in down.json()["reason"]
        assert (await http.get(f"{base}/health")).status_code == 200  # still live

        gate.touch()
        replica = gateway.manager.services["clock"].replicas[0]
        replica.reconnect()
        assert await replica.wait_until(lambda: replica.state is UpstreamState.READY, 30)
        up = await http.get(f"{base}/ready")
        assert up.status_code == 200, up.text
        assert up.json() | {"reason": ""} == {"status": "ready", "ready": 1, "total": 1,
                                              "ready_servers": ["clock"], "reason": ""}


async def test_server_health_needs_a_token_and_shows_only_the_callers_servers(
        tmp_path: Path) -> None:
    gateway = make_gateway({"clock": demo("clock"), "notes": demo("notes")},
                           options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        # Probes need no token.
        assert (await http.get(f"{base}/health")).status_code == 200
        assert (await http.get(f"{base}/ready")).status_code == 200

        missing = await http.get(f"{base}/health/servers")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert (await http.get(f"{base}/health/servers/clock")).status_code == 401

        every = (await http.get(f"{base}/health/servers", headers=bearer(OPS))).json()
        assert [s["name"] for s in every["servers"]] == ["clock", "notes"]
        assert every["total"] == 2
        clock = every["servers"][0]
        assert clock["state"] == "ready" and clock["replicas"][0]["breaker"] == "closed"

        mine = (await http.get(f"{base}/health/servers", headers=bearer(ALICE))).json()
        assert [s["name"] for s in mine["servers"]] == ["notes"] and mine["total"] == 1
        notes = await http.get(f"{base}/health/servers/notes", headers=bearer(ALICE))
        assert notes.status_code == 200 and notes.json()["name"] == "notes"
        assert notes.json()["tools"] > 0
        # Another's server and a server that does not exist get the same 404.
        hidden = await http.get(f"{base}/health/servers/clock", headers=bearer(ALICE))
        absent = await http.get(f"{base}/health/servers/nope", headers=bearer(ALICE))
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"]["code"] == "not_found"
        assert (await http.get(f"{base}/health/servers/clock",
                               headers=bearer(OPS))).json()["name"] == "clock"

    # The same models as the gateway_health tool (the same admin operation).
    HealthReport.model_validate(every)
    ServerStatus.model_validate(notes.json())


async def test_the_favicon_is_served_without_a_token_or_a_host_check() -> None:
    """Browsers ask for /favicon.ico on every page (it answered 404, logged each time):
    a small icon from the package, without a token (auth is on) and whatever the Host,
    and without building the dashboard.  The stdio dashboard's own app serves it too,
    and the pages name it."""
    from fast_mcp_gateway.ui.app import dashboard_app
    from fast_mcp_gateway.ui.session import DashboardAuth
    from tests.test_lazy_surfaces import lazy_dashboard

    gateway = make_gateway({}, options={"auth": AUTH})
    app = gateway.http_app()
    icon = (Path(__file__).parents[1] / "src" / "fast_mcp_gateway" / "ui" / "static"
            / "favicon.ico").read_bytes()
    assert icon[:4] == b"\x00\x00\x01\x00" and len(icon) < 2048  # an ICO, small
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="http://evil.example") as http:
        answer = await http.get("/favicon.ico")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/x-icon"
        assert answer.content == icon and "max-age" in answer.headers["cache-control"]
    assert lazy_dashboard(app).builds == 0

    standalone = dashboard_app(gateway.control, DashboardAuth.of(app.access), gateway.events, [])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=standalone),
                                  base_url="http://127.0.0.1") as http:
        assert (await http.get("/favicon.ico")).content == icon
        assert (await http.get("/ui/static/favicon.ico")).content == icon
    base = Path(__file__).parents[1] / "src" / "fast_mcp_gateway" / "ui" / "templates"
    assert '<link rel="icon" href="{{ base }}/static/favicon.ico">' in (
        base / "base.html").read_text()


async def test_without_auth_server_health_and_metrics_are_host_checked(tmp_path: Path) -> None:
    """Without ``gateway.auth`` (loopback only) anyone on the machine reads the servers'
    health and the metrics; a web page on a DNS name rebound to 127.0.0.1 must not: it
    got the servers, their state and errors, and every tool name in the metrics.  The
    probes stay unchecked (they send any Host)."""
    gateway = make_gateway({"clock": demo("clock")})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
        for path in ("/health/servers", "/health/servers/clock", "/metrics"):
            assert (await http.get(f"{base}{path}")).status_code == 200, path
            refused = await http.get(f"{base}{path}", headers={"Host": "evil.example"})
            assert refused.status_code == 421, (path, refused.text)
            assert "DNS-rebinding" in refused.json()["error"]["message"]
            assert (await http.get(f"{base}{path}", headers=rebound)).status_code == 421
        for path in ("/health", "/ready"):
            assert (await http.get(f"{base}{path}", headers=rebound)).status_code == 200
    # With auth the token is the check, as before (a scraper may send any Host).
    gateway = make_gateway({"clock": demo("clock")}, options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        other = {**bearer(OPS), "Host": "scraper.internal"}
        assert (await http.get(f"{base}/health/servers", headers=other)).status_code == 200
        assert (await http.get(f"{base}/metrics", headers=other)).status_code == 200
