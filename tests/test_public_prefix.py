"""The gateway behind a reverse proxy that serves it under a path and strips it.

nginx's ``location /tools/gw/ { proxy_pass http://127.0.0.1:8765/; proxy_set_header
Host $host; }`` sends ``/ui/`` for the browser's ``/tools/gw/ui/``.  The dashboard named
``/ui/login`` in its redirects and links and set its cookie for ``/ui``: the browser
left the proxy's path (a 404) and never sent the cookie back; the OpenAPI document's
server URL was ``/api/v1``, outside it too.  With ``MCP_GATEWAY_PUBLIC_URL`` naming the
path, a request whose ``Host`` names the public URL's host is served under it
(``http/public_prefix.py``); a request to the gateway's own address is not.  And the
public URL's origin is the gateway's own: nginx's ``$host`` drops the port, so on a
port other than 443 the same-origin check refused the dashboard's login form (403).

``StripProxy`` is such a proxy (real uvicorn, real HTTP on 127.0.0.1, httpx forwarding
each request as nginx would); ``tests/test_ui_cookie_proxy.py`` uses it too.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from fast_mcp_gateway.http.public_prefix import PublicPrefix
from tests.fixtures import make_gateway, serve_http
from tests.test_ui_cookie_ports import ANN, _csrf, _viewer

pytestmark = pytest.mark.anyio
PUBLIC = "http://gw.example/tools/gw"
URLS = re.compile(r'(?:href|src|action|data-base|hx-(?:get|post|put|patch|delete))="([^"]*)"')
HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}


class StripProxy:
    """A reverse proxy as nginx's ``location <prefix>/ { proxy_pass <upstream>/;
    proxy_set_header Host <host>; }`` for each ``routes`` entry: the prefix is cut
    from the path, ``headers`` are added (``X-Forwarded-Proto``); anything else is 404."""

    def __init__(self, routes: dict[str, str], host: str,
                 headers: dict[str, str] | None = None) -> None:
        self.routes, self.host, self.headers = routes, host, headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["raw_path"].decode()
        found = next(((p, u) for p, u in self.routes.items()
                      if path.startswith(p + "/")), None)
        if found is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"proxy: no location"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]
                   if k.decode().lower() not in HOP]
        headers += [("host", self.host), *self.headers.items()]
        # Streamed as it comes, as nginx does: the dashboard's live stream never ends.
        async with httpx2.AsyncClient(timeout=60) as http, http.stream(
                scope["method"], found[1] + path[len(found[0]):] + (f"?{query}" if query else ""),
                headers=headers, content=body) as answer:
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": [(k.encode(), v.encode())
                                    for k, v in answer.headers.multi_items()
                                    if k.lower() not in HOP]})
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def _gateway(public_url: str, allowed_host: str) -> Any:
    return make_gateway({}, options={"auth": {"tokens": [
        {"name": "ann", "token": ANN, "scopes": ["admin"]}]}}, public_url=public_url,
        allowed_hosts=[allowed_host])


def _outside(html: str, prefix: str) -> list[str]:
    """The URLs of ``html``'s links, forms and htmx requests that leave ``prefix``."""
    return [u for u in URLS.findall(html)
            if u != prefix and not u.startswith((prefix + "/", "#"))]


def test_the_prefix_is_the_public_urls_path_for_its_host() -> None:
    prefix = PublicPrefix("https://GW.example:8443/tools/gw/")

    def of(host: str) -> str:
        return prefix.of({"type": "http", "headers": [(b"host", host.encode())]})

    assert of("gw.example") == of("gw.example:8443") == of("GW.EXAMPLE") == "/tools/gw"
    assert of("gw.example:443") == of("127.0.0.1:8765") == of("other.example") == ""
    assert of("gw.example:x") == of("") == ""
    # Not host[:port], though urlsplit finds the host in each (the Host guard does not).
    assert of("x@gw.example") == of("gw.example/x") == of("gw.example?x") == ""
    assert of("gw.example#x") == of("gw.example\\x") == ""
    assert PublicPrefix("https://gw.example").of(
        {"type": "http", "headers": [(b"host", b"gw.example")]}) == ""
    assert PublicPrefix(None).path == ""
    v6 = PublicPrefix("http://[::1]:8080/gw")
    assert v6.of({"type": "http", "headers": [(b"host", b"[::1]:8080")]}) == "/gw"
    assert v6.of({"type": "http", "headers": [(b"host", b"[::1]:8765")]}) == ""


async def test_the_dashboard_and_openapi_stay_under_the_proxys_path() -> None:
    async with serve_http(_gateway(PUBLIC, "gw.example").http_app()) as gw, \
            serve_http(StripProxy({"/tools/gw": gw}, "gw.example"), startup=False) as proxy, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        base = proxy + "/tools/gw"
        first = await browser.get(base + "/ui/")
        assert first.status_code == 303, first.text
        assert first.headers["location"] == "/tools/gw/ui/login?next=%2Ftools%2Fgw%2Fui%2F"
        login = await browser.get(proxy + first.headers["location"])
        assert login.status_code == 200, login.text
        assert _outside(login.text, "/tools/gw/ui") == []
        done = await browser.post(base + "/ui/login", data={
            "token": ANN, "csrf_token": _csrf(login.text), "next": "/tools/gw/ui/"})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/tools/gw/ui/"
        assert "path=/tools/gw/ui" in done.headers["set-cookie"].lower()
        assert await _viewer(browser, base) == "ann"  # the cookie comes back
        for page in ("/ui/", "/ui/add", "/ui/alerts", "/ui/live", "/ui/logs", "/ui/inspector"):
            shown = await browser.get(base + page)
            assert shown.status_code == 200, (page, shown.text)
            assert _outside(shown.text, "/tools/gw/ui") == [], page
        document = (await browser.get(base + "/api/v1/openapi.json")).json()
        assert document["servers"] == [{"url": "/tools/gw/api/v1"}]

        # The gateway's own address is not under the proxy's path.
        direct = await browser.get(gw + "/ui/")
        assert direct.headers["location"] == "/ui/login?next=%2Fui%2F"
        document = (await browser.get(gw + "/api/v1/openapi.json")).json()
        assert document["servers"] == [{"url": "/api/v1"}]


async def test_the_public_urls_origin_is_the_gateways_own() -> None:
    # nginx's `proxy_set_header Host $host` on port 8443: Host has no port, the
    # browser's Origin has it.
    public = "https://gw.example:8443/tools/gw"
    forwarded = {"x-forwarded-proto": "https"}
    async with serve_http(_gateway(public, "gw.example").http_app()) as gw, \
            serve_http(StripProxy({"/tools/gw": gw}, "gw.example", forwarded),
                       startup=False) as proxy, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        base = proxy + "/tools/gw"
        login = await browser.get(base + "/ui/login")
        form = {"token": ANN, "csrf_token": _csrf(login.text)}
        own = {"origin": "https://gw.example:8443", "sec-fetch-site": "same-origin"}
        done = await browser.post(base + "/ui/login", data=form, headers=own)
        assert done.status_code == 303, done.text
        assert "secure" in done.headers["set-cookie"].lower()
        other = {"origin": "https://other.example:8443", "sec-fetch-site": "cross-site"}
        refused = await browser.post(base + "/ui/login", data=form, headers=other)
        assert refused.status_code == 403, refused.text
        assert "MCP_GATEWAY_ALLOWED_ORIGINS=https://other.example:8443" in refused.text


async def _endpoint(http: httpx2.AsyncClient, url: str, **headers: str) -> str:
    """The posts' URL the SSE stream at ``url`` announces (its first event's data)."""
    async with http.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200, await stream.aread()
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                return line.removeprefix("data: ").partition("?")[0]
    raise AssertionError(f"{url}: no endpoint event")


async def test_the_sse_endpoint_event_stays_under_the_proxys_path() -> None:
    # A legacy SSE host behind the proxy posted to /messages/, outside its path (404).
    gateway = make_gateway({}, options={"profiles": {"small": {"servers": []}}},
                           public_url=PUBLIC, allowed_hosts=["gw.example"])
    async with serve_http(gateway.http_app("sse")) as gw, \
            httpx2.AsyncClient(timeout=30) as http:
        proxied = {"host": "gw.example"}  # the proxy's request: /tools/gw cut off
        assert await _endpoint(http, gw + "/sse", **proxied) == "/tools/gw/messages/"
        assert await _endpoint(http, gw + "/sse/p/small", **proxied) == \
            "/tools/gw/sse/p/small/messages/"
        assert await _endpoint(http, gw + "/sse") == "/messages/"  # the gateway's address


async def test_a_proxy_that_did_not_cut_its_path_is_told_so() -> None:
    # nginx's `proxy_pass http://127.0.0.1:8765;` (no final slash) keeps /tools/gw.
    async with serve_http(_gateway(PUBLIC, "gw.example").http_app()) as gw, \
            httpx2.AsyncClient(timeout=30, headers={"host": "gw.example"}) as proxy:
        for method, path, sent in (("POST", "/tools/gw/mcp", "/mcp"),
                                   ("GET", "/tools/gw/ui/", "/ui/")):
            reply = await proxy.request(method, gw + path)
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["message"] == (
                f"{method} {path}: no such path; the proxy in front must cut /tools/gw "
                f"(MCP_GATEWAY_PUBLIC_URL's path), sending {sent} here: nginx's 'location "
                "/tools/gw/ { proxy_pass http://<gateway address>/; }', with the final '/'")
        other = await proxy.get(gw + "/nosuch")  # any other path: as before
        assert other.status_code == 404 and "must cut" not in other.text


def test_serve_says_when_a_proxied_name_has_no_public_url() -> None:
    from pathlib import Path

    from fast_mcp_gateway.cli.serve import announcement
    from fast_mcp_gateway.config.settings import GatewaySettings

    def lines(**settings: Any) -> list[str]:
        return announcement(GatewaySettings(config=Path("s.yaml"), transport="http",
                                            port=8765, **settings),
                            1, interactive=False, authenticated=True)

    proxied = lines(allowed_hosts=["gw.example"])
    assert proxied[1] == (
        "note: --allowed-host gw.example without MCP_GATEWAY_PUBLIC_URL: clients using that "
        "name (through a proxy or tunnel on this machine) are told http://127.0.0.1:8765 in "
        "OAuth metadata (gateway.auth.jwt), and the dashboard does not know a proxy's path; "
        "set MCP_GATEWAY_PUBLIC_URL to the URL they use (README: 'Behind a reverse proxy').")
    # Said the URL, or only local names and wildcards, or another address: nothing.
    for quiet in (lines(allowed_hosts=["gw.example"], public_url="https://gw.example/gw"),
                  lines(allowed_hosts=["localhost:8765", "[::1]:8765", "*"]),
                  lines(allowed_hosts=["gw.example"], host="0.0.0.0")[:1]):
        assert not any(line.startswith("note:") for line in quiet), quiet


@pytest.mark.parametrize(("public", "cut"), [
    ("http://gw.example/工具", "/%E5%B7%A5%E5%85%B7"),  # percent-encoded by the settings
    ("http://gw.example/my%20tools", "/my%20tools")])
async def test_the_login_cookie_is_for_the_proxys_path_as_browsers_send_it(
        public: str, cut: str) -> None:
    # The cookie's Path was the decoded path: /工具 no header can hold (a 500 at
    # login), /my tools no browser matches against its request's /my%20tools.
    async with serve_http(_gateway(public, "gw.example").http_app()) as gw, \
            serve_http(StripProxy({cut: gw}, "gw.example"), startup=False) as proxy, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        base = proxy + cut
        login = await browser.get(base + "/ui/login")
        assert login.status_code == 200, login.text
        done = await browser.post(base + "/ui/login", data={
            "token": ANN, "csrf_token": _csrf(login.text), "next": cut + "/ui/"})
        assert done.status_code == 303, done.text
        assert f"path={cut.lower()}/ui;" in done.headers["set-cookie"].lower()
        assert await _viewer(browser, base) == "ann"
        out = await browser.post(base + "/ui/logout", data={"csrf_token": _csrf(
            (await browser.get(base + "/ui/")).text)})
        assert f"path={cut.lower()}/ui;" in out.headers["set-cookie"].lower(), out.headers


@pytest.mark.parametrize("public", ["http://*", "https://*.example.com", "http://gw.example:*",
                                    "https://*.bücher.example/gw"])
def test_a_public_url_with_a_pattern_is_refused_and_allows_no_origins(public: str) -> None:
    # Its origin is allowed as the gateway's own: 'http://*' let a page of any http site
    # post to the dashboard and the API.
    from fast_mcp_gateway.config.origins import with_public_origin
    from fast_mcp_gateway.config.settings import GatewaySettings

    with pytest.raises(ValueError, match=r"has a '\*' in its host or port: the public URL is "
                       "the one address hosts reach the gateway at"):
        GatewaySettings(public_url=public)
    assert with_public_origin(["https://app.example"], public) == ["https://app.example"]
    assert GatewaySettings(public_url="https://gw.example/a*b").public_url == \
        "https://gw.example/a*b"  # a path may hold one


async def test_a_proxy_that_did_not_cut_a_percent_encoded_path_is_told_so() -> None:
    # The settings percent-encode the path; the request's path is decoded: never alike.
    async with serve_http(_gateway("http://gw.example/工具", "gw.example").http_app()) as gw, \
            httpx2.AsyncClient(timeout=30, headers={"host": "gw.example"}) as proxy:
        reply = await proxy.post(gw + "/工具/mcp")
        assert reply.status_code == 404, reply.text
        assert "the proxy in front must cut /工具 (MCP_GATEWAY_PUBLIC_URL's path), " \
            "sending /mcp here" in reply.json()["error"]["message"]


async def test_a_path_the_server_was_told_already_is_not_doubled() -> None:
    # uvicorn --root-path /tools/gw (the ASGI way to say a proxy cut it) beside
    # MCP_GATEWAY_PUBLIC_URL naming the same path: the dashboard named /tools/gw/tools/gw/.
    app = _gateway(PUBLIC, "gw.example").http_app()

    async def told(scope: Scope, receive: Receive, send: Send) -> None:  # uvicorn's way
        if scope["type"] == "http":
            scope = {**scope, "root_path": "/tools/gw", "path": "/tools/gw" + scope["path"],
                     "raw_path": b"/tools/gw" + scope["raw_path"]}
        await app(scope, receive, send)

    async with serve_http(told, startup=False) as gw, \
            serve_http(StripProxy({"/tools/gw": gw}, "gw.example"), startup=False) as proxy, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        base = proxy + "/tools/gw"
        first = await browser.get(base + "/ui/")
        assert first.headers["location"] == "/tools/gw/ui/login?next=%2Ftools%2Fgw%2Fui%2F"
        login = await browser.get(base + "/ui/login")
        assert _outside(login.text, "/tools/gw/ui") == []
        done = await browser.post(base + "/ui/login", data={
            "token": ANN, "csrf_token": _csrf(login.text), "next": "/tools/gw/ui/"})
        assert "path=/tools/gw/ui;" in done.headers["set-cookie"].lower()
        assert await _viewer(browser, base) == "ann"
        other = await browser.get(base + "/nosuch")  # no proxy to blame
        assert other.status_code == 404 and "must cut" not in other.text


@pytest.mark.parametrize("public", ["https://gw.example//tools/gw", "https://gw.example/%2F/tools",
                                    "https://gw.example/\\tools/gw", "http://gw.example/%5Ctools"])
def test_a_public_url_whose_path_names_a_host_is_refused(public: str) -> None:
    # The dashboard's URLs are its path + /ui/...: '//tools/gw/ui/login' is the host
    # 'tools' to a browser, where its redirect to the login page sent it.
    from fast_mcp_gateway.config.settings import GatewaySettings

    with pytest.raises(ValueError, match="has a path starting with '//': the dashboard's links"):
        GatewaySettings(public_url=public)
    assert GatewaySettings(public_url="https://gw.example/tools//gw").public_url == \
        "https://gw.example/tools//gw"  # a '//' further on names no host


@pytest.mark.parametrize(("public", "said"), [
    ("https://gw.example/tools%2Fgw", "has an encoded '/' (%2F) in its path: the dashboard's "
                                      "links and redirects name the path decoded"),
    ("https://gw.example/tools%2fgw", "has an encoded '/' (%2F)"),
    ("http://gw.example/a%5Cb", "has an encoded '\\' (%5C)"),
    ("https://gw.example/tools;v=1/gw", "has a ';' in its path: the dashboard's login cookie "
                                        "cannot be given that path as browsers match it"),
    ("https://gw.example/工具;x", "has a ';' in its path")])
def test_a_public_url_whose_path_cannot_be_named_back_is_refused(public: str,
                                                                  said: str) -> None:
    # Taken before: the dashboard's links are the path decoded (%2F a '/', a path the
    # proxy does not route here), and its login cookie's Path encodes a ';' (it would
    # end the attribute), so no browser sent the cookie back: every login led to it again.
    from fast_mcp_gateway.config.settings import GatewaySettings

    with pytest.raises(ValueError) as refused:
        GatewaySettings(public_url=public)
    assert said in str(refused.value) and "use a path without" in str(refused.value)
    assert GatewaySettings(public_url="https://gw.example/tools%20gw").public_url == \
        "https://gw.example/tools%20gw"  # another encoded character is taken
