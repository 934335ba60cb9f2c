"""A path the gateway does not serve says so in the gateway's own shapes.

``/ui/<unknown>`` answered a browser with the REST API's JSON; any path outside
``/api/v1`` and ``/ui`` (``/nosuch``, ``/``, ``POST /health``) got Starlette's bare
text ``Not Found`` from under the MCP endpoint, naming neither the path nor where the
MCP endpoint is.  Now the dashboard answers a browser with its HTML 404 page, and every
other unknown path (or method) answers ``{"error": {"code", "message", "details"}}``
naming the path and -- to a caller the gateway lets in -- what it serves.  The MCP
endpoint's own paths (its slash redirect, ``/sse``, ``/messages/``, the
``/.well-known/...`` documents it serves) answer as before: FastMCP's app answers them."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.fixtures import make_gateway, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_unknown-paths-ops-5e1d0c9b"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


def _shape(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.url, response.status_code, response.text)
    assert response.headers["content-type"] == "application/json", (response.url, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


async def test_an_unknown_dashboard_page_is_the_dashboards_404_to_a_browser() -> None:
    gateway = make_gateway({"secret-server": {"url": "http://127.0.0.1:9/x"}},
                           options={"auth": AUTH})
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(base + "/ui/nosuch/<b>x</b>", headers=HTML)
        assert page.status_code == 404, page.text
        assert page.headers["content-type"].startswith("text/html"), page.headers
        assert "<h1>Not found</h1>" in page.text and 'href="/ui/"' in page.text, page.text
        assert "/ui/nosuch/&lt;b&gt;x&lt;/b&gt;" in page.text and "<b>x</b>" not in page.text
        assert "secret-server" not in page.text  # not logged in: no nav, no names
        assert "Content-Security-Policy" in page.headers
        # Not a browser: the API's JSON shape, as before.
        error = _shape(await http.get(base + "/ui/nosuch"), 404, "not_found")
        assert error["message"] == "GET /ui/nosuch: no such path; start from /ui/"
        # A known page is still the login redirect.
        assert (await http.get(base + "/ui/", headers=HTML)).status_code == 303


async def test_the_dashboard_typed_without_its_slash_is_redirected_to_it() -> None:
    """``http://127.0.0.1:8765/ui``, as a person types it, answered the JSON 404 (while
    ``/mcp/`` redirects to ``/mcp``): a browser now lands on the dashboard's login."""
    gateway = make_gateway({}, options={"auth": AUTH})
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for method in ("GET", "HEAD"):
            moved = await http.request(method, base + "/ui?x=1", headers=HTML)
            assert moved.status_code == 307, (moved.status_code, moved.text)
            assert moved.headers["location"] == "ui/?x=1"  # relative: a proxy's prefix stays
            # A token put in the URL is not sent back in the Location (nor kept there).
            moved = await http.request(method, base + f"/ui?access_token={OPS}", headers=HTML)
            assert moved.status_code == 307 and moved.headers["location"] == "ui/"
            assert OPS not in str(moved.headers)
        landed = await http.get(base + "/ui", headers=HTML, follow_redirects=True)
        assert landed.status_code == 200 and str(landed.url).startswith(base + "/ui/login")
        assert "<form" in landed.text, landed.text
        # Not a page: no redirect (a POST, the API's prefix).
        _shape(await http.post(base + "/ui", headers={"Authorization": f"Bearer {OPS}"}),
               404, "not_found")
        _shape(await http.get(base + "/api/v1"), 404, "not_found")


async def test_an_unknown_path_lists_what_the_gateway_serves() -> None:
    gateway = make_gateway({"secret-server": {"url": "http://127.0.0.1:9/x"}},
                           path="/team-mcp")
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for method, path in (("GET", "/nosuch"), ("GET", "/"), ("POST", "/mcp"),
                             ("GET", "/team-mcp/x"), ("DELETE", "/a/b%0Ac")):
            error = _shape(await http.request(method, base + path), 404, "not_found")
            shown = path.replace("%0A", "\n")
            assert error["message"].startswith(f"{method} {shown}: no such path; this "
                                               "gateway serves"), error
            assert "serves /team-mcp (the MCP endpoint" in error["message"], error
            assert "/api/v1/" in error["message"] and "/ui/" in error["message"], error
            served = error["details"]["served"]
            assert error["details"]["path"] == shown
            assert served["/team-mcp"].startswith("the MCP endpoint"), served
            assert {"/api/v1/", "/ui/", "/health", "/ready", "/metrics"} <= set(served)
            assert "secret-server" not in str(error)
        wrong = _shape(await http.post(base + "/health"), 405, "method_not_allowed")
        assert wrong["message"] == "POST /health: this path does not take POST; it takes GET, HEAD"
        allowed = await http.post(base + "/health")
        assert allowed.headers["allow"] == "GET, HEAD"


async def test_the_dashboard_mounted_under_a_prefix_is_redirected_to_as_well() -> None:
    """The gateway's app mounted in another (``Gateway.http_app`` under ``/gw``): its
    dashboard answered at ``/gw/ui/``, but ``/gw/ui`` was the JSON 404 (the redirect
    looked for the path with the prefix among the dashboard's)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    gateway = make_gateway({}, options={"auth": AUTH})
    app = gateway.http_app()
    # Its lifespan run by the mounting app (without, the dashboard says the gateway is
    # not running: tests/test_health_endpoints.py).
    outer = Starlette(routes=[Mount("/gw", app=app)], lifespan=app.lifespan)
    async with serve_http(outer, startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        moved = await http.get(base + "/gw/ui?x=1", headers=HTML)
        assert moved.status_code == 307, (moved.status_code, moved.text)
        assert moved.headers["location"] == "ui/?x=1"
        landed = await http.get(base + "/gw/ui", headers=HTML, follow_redirects=True)
        assert landed.status_code == 200 and str(landed.url).startswith(base + "/gw/ui/login")
        _shape(await http.get(base + "/gw/nosuch", headers=HTML), 404, "not_found")


async def test_an_unknown_path_tells_a_caller_without_a_token_nothing_new() -> None:
    gateway = make_gateway({}, options={"auth": AUTH}, path="/team-mcp")
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for headers in ({}, {"Authorization": "Bearer mgw_not-a-token"}):
            error = _shape(await http.get(base + "/nosuch", headers=headers), 404, "not_found")
            assert error["details"] == {"path": "/nosuch"}, error
            assert "team-mcp" not in error["message"] and "/api/v1" not in error["message"]
            assert "Bearer <token>" in error["message"], error
        known = _shape(await http.get(base + "/nosuch", headers={
            "Authorization": f"Bearer {OPS}"}), 404, "not_found")
        assert "/team-mcp" in known["details"]["served"], known


async def test_the_mcp_endpoints_own_paths_answer_as_before() -> None:
    """FastMCP's answers, as recorded before the change (status, type, body)."""
    http_paths = [
        ("GET", "/mcp/", 307, None, ""),
        ("GET", "/mcp", 400, "application/json", "Missing session ID"),
        ("PUT", "/mcp", 405, "application/json", "Method Not Allowed"),
        # OAuth discovery, which this gateway does not serve, says why (test_http_
        # transport_refusals.py); SSE's POST not sent as JSON, what to send.
        ("GET", "/.well-known/oauth-authorization-server", 404, "application/json",
         "this gateway has no OAuth discovery and needs none"),
        ("GET", "/.well-known/oauth-protected-resource/mcp", 404, "application/json",
         "this gateway has no OAuth discovery and needs none"),
    ]
    sse_paths = [
        ("POST", "/sse", 405, "text/plain", "Method Not Allowed"),
        ("GET", "/messages", 307, None, ""),
        ("POST", "/messages/", 400, "text/plain",
         "send the request with that header"),
        ("GET", "/messages/x", 405, None, ""),
        ("GET", "/.well-known/openid-configuration", 404, "application/json",
         "this gateway has no OAuth discovery and needs none"),
    ]
    for transport, paths in (("http", http_paths), ("sse", sse_paths)):
        gateway = make_gateway({})
        async with serve_http(gateway.http_app(transport), startup=False) as base, \
                httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            for method, path, status, kind, text in paths:
                reply = await http.request(method, base + path, headers=MCP_ACCEPT)
                seen = (reply.status_code, reply.headers.get("content-type"), reply.text)
                assert reply.status_code == status, (transport, path, seen)
                assert (kind is None and "content-type" not in reply.headers) or (
                    kind is not None and seen[1] is not None and seen[1].startswith(kind)), (
                    transport, path, seen)
                assert text in reply.text if text else reply.text == "", (transport, path, seen)
                if status == 307:
                    assert reply.headers["location"] == base + path.rstrip("/") + (
                        "/" if path == "/messages" else ""), reply.headers


async def test_the_stdio_dashboard_answers_an_unknown_page_alike(tmp_path: Any) -> None:
    import anyio

    from fast_mcp_gateway.ui.standalone import serve_dashboard

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with anyio.create_task_group() as tg:
        url = await tg.start(serve_dashboard, gateway.control, gateway.events, "127.0.0.1:0")
        base = url.split("/ui/")[0]
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            page = await http.get(base + "/ui/nosuch", headers=HTML)
            assert page.status_code == 404 and "<h1>Not found</h1>" in page.text, page.text
            assert "There is no dashboard page at /ui/nosuch" in page.text
            error = _shape(await http.get(base + "/ui/nosuch"), 404, "not_found")
            assert error["message"] == "GET /ui/nosuch: no such path; start from /ui/"
        tg.cancel_scope.cancel()


async def test_a_browser_outside_the_dashboard_is_told_where_it_is() -> None:
    """A browser at a path outside ``/ui/`` (``/dashboard``, a proxy's path with no
    MCP_GATEWAY_PUBLIC_URL set) was told to send a bearer token, which a browser cannot:
    now it is told that the dashboard is at /ui/ (as a proxy's path is told what to cut
    when a public URL is set).  A caller that is no browser is told as before."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    gateway = make_gateway({}, options={"auth": AUTH})
    app = gateway.http_app()
    async with serve_http(Starlette(routes=[Mount("/gw", app=app)]), startup=False) as outer, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for path in ("/dashboard", "/tools/gw/ui/"):  # mounted under /gw: its /gw/ui/
            error = _shape(await http.get(outer + "/gw" + path, headers=HTML), 404,
                           "not_found")
            assert "; the dashboard is at /gw/ui/; send 'Authorization: Bearer <token>'" \
                in error["message"], error
            error = _shape(await http.get(outer + "/gw" + path), 404, "not_found")
            assert "the dashboard is at" not in error["message"], error
    gateway = make_gateway({}, options={"auth": AUTH})
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        error = _shape(await http.get(base + "/", headers=HTML), 404, "not_found")
        assert error["message"] == (
            "GET /: no such path on this gateway; the dashboard is at /ui/; send "
            "'Authorization: Bearer <token>' with one of its tokens to be told what it serves")


async def test_the_stdio_dashboard_says_where_it_is_outside_it(tmp_path: Any) -> None:
    """``serve --dashboard``'s address serves the dashboard only: a path outside /ui/
    answered "start from /", where nothing is."""
    import anyio

    from fast_mcp_gateway.ui.standalone import serve_dashboard

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with anyio.create_task_group() as tg:
        url = await tg.start(serve_dashboard, gateway.control, gateway.events, "127.0.0.1:0")
        base = url.split("/ui/")[0]
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            for path in ("/", "/dashboard"):
                for headers in (HTML, {}):
                    error = _shape(await http.get(base + path, headers=headers), 404,
                                   "not_found")
                    assert error["message"] == (f"GET {path}: no such path; the dashboard "
                                                "is at /ui/"), error
        tg.cancel_scope.cancel()
