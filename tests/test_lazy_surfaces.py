"""What the HTTP app builds on a surface's first request, once, and never for MCP
traffic: the dashboard (a gateway whose dashboard nobody opens does not load Jinja2 or
the pages at all), the REST API (its modules and models), and the OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from fast_mcp_gateway.http.lazy_app import LazyApp
from fast_mcp_gateway.ui.app import LazyDashboard
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio


def lazy_group(app: Any, name: str = "dashboard") -> LazyApp:
    """The ``LazyApp`` mounted in ``app``'s route group ``name``."""
    group = next(g for g in app.groups if g.name == name)
    (mount,) = group.routes
    assert isinstance(mount.app, LazyApp)
    return mount.app


def lazy_dashboard(app: Any) -> LazyDashboard:
    return lazy_group(app, "dashboard")


async def get_at_once(http: httpx2.AsyncClient, base: str,
                      paths: tuple[str, ...]) -> list[httpx2.Response]:
    """``paths`` requested concurrently (a surface's first requests race its build)."""
    answers: list[httpx2.Response] = []

    async def get(path: str) -> None:
        answers.append(await http.get(base + path))

    async with anyio.create_task_group() as tg:
        for path in paths:
            tg.start_soon(get, path)
    return answers


async def test_the_dashboard_is_built_by_its_first_request_only(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "gw.db")
    app = gateway.http_app()
    lazy = lazy_dashboard(app)
    async with serve_http(app) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        # MCP, REST and health traffic never build it.
        async with Client(StreamableHttpTransport(base + "/mcp"), timeout=60) as client:
            assert (await client.call_tool("alpha_add", {"a": 2, "b": 3})).data == 5
        assert (await http.get(base + "/api/v1/servers")).status_code == 200
        assert (await http.get(base + "/health")).status_code == 200
        assert lazy.app is None and lazy.builds == 0
        # Concurrent first requests: one build, every page served.
        pages = await get_at_once(http, base, ("/ui/", "/ui/servers/alpha", "/ui/logs",
                                               "/ui/alerts"))
        assert [p.status_code for p in pages] == [200] * 4
        assert "alpha" in next(p.text for p in pages if p.url.path == "/ui/servers/alpha")
        assert lazy.builds == 1
        # The built dashboard answers as before: static files, unknown pages.
        css = await http.get(base + "/ui/static/app.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
        missing = await http.get(base + "/ui/no-such-page")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert lazy.builds == 1


async def test_concurrent_first_callers_share_one_build() -> None:
    built: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "done"})

    def build() -> Any:
        built.append(1)
        return app

    lazy = LazyDashboard(build)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(lazy, {"type": "http"}, None, send)
    assert built == [1] and len(sent) == 8 and lazy.app is app


@pytest.mark.timeout(120)
def test_an_http_app_without_dashboard_requests_loads_no_dashboard(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    script = textwrap.dedent(f"""\
        import json, sys
        from fast_mcp_gateway import Gateway, GatewaySettings, load_config
        settings = GatewaySettings(db={str(tmp_path / 'g.db')!r})
        Gateway(load_config({str(config)!r}), settings).http_app()
        print(json.dumps(sorted(m for m in sys.modules if m in ("jinja2", "prometheus_client")
                                or m.startswith(("jinja2.", "fast_mcp_gateway.ui.",
                                                 "fast_mcp_gateway.http.")))))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=110, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "jinja2" not in loaded and "fast_mcp_gateway.ui.core" not in loaded, loaded
    assert "prometheus_client" not in loaded, loaded  # imported by the first scrape
    assert "fast_mcp_gateway.ui.app" in loaded  # the group itself is there
    # The REST API (its handlers, models and OpenAPI) is built by its first request.
    rest = ("api", "endpoints", "schemas", "openapi")
    assert not [m for m in loaded if m.rpartition(".")[2] in rest], loaded
    assert "fast_mcp_gateway.http.app" in loaded


async def test_the_rest_api_is_built_by_its_first_request_only(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "gw.db")
    app = gateway.http_app()
    lazy = lazy_group(app, "api")
    async with serve_http(app) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        async with Client(StreamableHttpTransport(base + "/mcp"), timeout=60) as client:
            assert (await client.call_tool("alpha_add", {"a": 2, "b": 3})).data == 5
        assert (await http.get(base + "/health")).status_code == 200
        assert lazy.app is None and lazy.builds == 0
        # Concurrent first requests: one build, each answered as the API answers.
        answers = await get_at_once(http, base, ("/api/v1/servers", "/api/v1/servers/alpha",
                                                 "/api/v1/openapi.json"))
        assert [a.status_code for a in answers] == [200] * 3
        assert lazy.builds == 1
        # Its errors keep the API's shape: an unknown path, a wrong method, admin refused.
        missing = await http.get(base + "/api/v1/no-such-thing")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        wrong = await http.put(base + "/api/v1/openapi.json")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"
        refused = await http.post(base + "/api/v1/servers/alpha/restart")
        assert refused.status_code == 403, refused.text
        assert lazy.builds == 1


async def test_openapi_document_is_made_by_its_first_request_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.http import openapi

    made: list[bool] = []

    def counted(endpoints: Any, *, bearer: bool) -> dict[str, Any]:
        made.append(bearer)
        return real(endpoints, bearer=bearer)

    real = openapi.openapi_document
    monkeypatch.setattr(openapi, "openapi_document", counted)
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        assert (await http.get(base + "/api/v1/servers")).status_code == 200
        assert made == []
        first, second = (await http.get(base + "/api/v1/openapi.json"),
                         await http.get(base + "/api/v1/openapi.json"))
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() and made == [False]
        document = first.json()
        assert "/servers" in document["paths"] and "ServerCreate" in str(document)


def test_metrics_tallies_render_as_prometheus_own_counters_and_histogram() -> None:
    """The per-call tallies scrape exactly as prometheus_client's Counter and Histogram
    of the same observations would (bucket bounds included: a value on a bound counts
    in it)."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from fast_mcp_gateway.telemetry.metrics import DURATION_BUCKETS, GatewayMetrics

    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    labels3 = ["mcp_method_name", "gen_ai_tool_name", "mcp_gateway_server"]
    calls = Counter("mcp_gateway_calls", "Calls of upstream tools, resources and prompts by "
                    "outcome", [*labels3, "status"], registry=registry)
    duration = Histogram("mcp_server_operation_duration_seconds", "Duration of MCP "
                         "operations the gateway served (OpenTelemetry "
                         "mcp.server.operation.duration)", labels3,
                         buckets=DURATION_BUCKETS, registry=registry)
    retries = Counter("mcp_gateway_retries", "Attempts beyond the first, by server",
                      ["mcp_gateway_server"], registry=registry)
    limited = Counter("mcp_gateway_rate_limited", "Calls refused by a server's or tool's "
                      "rate limit", ["mcp_gateway_server", "gen_ai_tool_name"],
                      registry=registry)
    metrics = GatewayMetrics()
    values = [0.0005, 0.001, 0.0025, 0.003, 0.1, 0.7, 30.0, 100.0, 0.05, 0.0]
    for i, seconds in enumerate(values):
        key = ("tools/call", "a_x", "a") if i % 4 else ("resources/read", "", "b")
        status = "error" if i % 3 == 0 else "success"
        metrics.observe(*key, status, seconds, retries=i % 2, rate_limited=i == 4)
        calls.labels(*key, status).inc()
        duration.labels(*key).observe(seconds)
        if i % 2:
            retries.labels(key[2]).inc(1)
        if i == 4:
            limited.labels(key[2], key[1]).inc()
    # The gateway's own families come first; the process's (process_*, python_*) follow.
    assert metrics.render().startswith(generate_latest(registry))
    assert "version=" in metrics.content_type()


async def test_an_unknown_path_or_method_says_what_to_use() -> None:
    """'GET /api/v1/nosuch: Not Found' and 'POST ...: Method Not Allowed' named neither
    the paths there are nor the methods the path takes."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        missing = (await http.get(base + "/api/v1/servers/alpha/nosuch")).json()["error"]
        assert missing["message"] == ("GET /api/v1/servers/alpha/nosuch: no such path; "
                                      "/api/v1/openapi.json lists the API's paths")
        wrong = (await http.post(base + "/api/v1/servers/alpha/tools")).json()["error"]
        assert wrong["code"] == "method_not_allowed"
        assert wrong["message"] == ("POST /api/v1/servers/alpha/tools: this path does not "
                                    "take POST; it takes GET, HEAD")
        page = (await http.get(base + "/ui/nosuch")).json()["error"]
        assert page["message"] == "GET /ui/nosuch: no such path; start from /ui/"
