"""A request a browser makes for a page of another site (``Sec-Fetch-Site``) is refused
by the REST API, the dashboard and the MCP endpoint, with the Origin guard's 403: a
plain GET carries no ``Origin`` (an ``<img>`` tag), so the Origin guard alone let any
website run a REST read of a gateway without ``auth``, recorded as done.  Requests
without the header (programs) pass as before.  Real HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_rest import assert_error

pytestmark = pytest.mark.anyio

IMG = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
READ = "/api/v1/debug/get-resource"
WHAT = {"server": "alpha", "uri": "data://config"}


def _gateway(tmp_path: Path, **settings: Any) -> Any:
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                        db=tmp_path / "gw.db", allow_unauthenticated_admin=True, **settings)


async def test_a_page_of_another_site_cannot_make_the_browser_read_or_call(
        tmp_path: Path) -> None:
    async with serve_http(_gateway(tmp_path).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        refused = assert_error(await http.get(READ, params=WHAT, headers=IMG), 403,
                               "forbidden_origin")
        assert refused["message"].startswith("requests from a web page of another site "
                                             "(Sec-Fetch-Site: cross-site, no Origin) are "
                                             "refused")
        assert refused["details"] == {"origin": None, "sec_fetch_site": "cross-site"}
        same_site = {**IMG, "Sec-Fetch-Site": "same-site"}  # another port of localhost
        assert_error(await http.get(READ, params=WHAT, headers=same_site), 403,
                     "forbidden_origin")
        # A loopback Origin, which the Origin guard lets through, from another site.
        other = {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:3000"}
        said = assert_error(await http.get(READ, params=WHAT, headers=other), 403,
                            "forbidden_origin")["message"]
        assert "MCP_GATEWAY_ALLOWED_ORIGINS=http://localhost:3000" in said
        history = (await http.get("/api/v1/debug/history")).json()["entries"]
        assert history == []  # none of those reads ran

        # The MCP endpoint (also after a program's request was let through) and the
        # dashboard's live stream and pages.
        mcp = {"Content-Type": "application/json", "Accept": "application/json, "
               "text/event-stream"}
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert (await http.post("/mcp", json=ping, headers=mcp)).status_code != 403
        assert_error(await http.post("/mcp", json=ping, headers={**mcp, **IMG}), 403,
                     "forbidden_origin")
        assert_error(await http.get("/ui/events", headers=IMG), 403, "forbidden_origin")
        assert_error(await http.get("/ui/", headers=IMG), 403, "forbidden_origin")
        # A link to the dashboard on another site opens its page (a GET showing it).
        link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                "Sec-Fetch-Dest": "document"}
        assert (await http.get("/ui/", headers=link)).status_code == 200
        assert_error(await http.get(READ, params=WHAT, headers=link), 403, "forbidden_origin")

        # Programs (no header), the gateway's own pages and a typed address pass.
        for site in ({}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
            assert (await http.get("/api/v1/servers", headers=site)).status_code == 200
        # A page of another port of this host, with an Origin (a fetch): the Origin guard
        # lets every loopback origin through, so it is refused unless listed, as another
        # site's, REST, MCP and the dashboard alike.
        near = {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"}
        said = assert_error(await http.get(READ, params=WHAT, headers=near), 403,
                            "forbidden_origin")["message"]
        assert said == (
            "requests from a web page at Origin 'http://localhost:3000' are refused "
            "(cross-site request protection, Sec-Fetch-Site: same-site: another port or "
            "subdomain of this site is another origin); to allow that page, start the "
            "gateway with MCP_GATEWAY_ALLOWED_ORIGINS=http://localhost:3000")
        for path in ("/api/v1/servers", "/ui/", "/ui/events"):
            assert_error(await http.get(path, headers=near), 403, "forbidden_origin")
        assert_error(await http.post("/mcp", json=ping, headers={**mcp, **near}), 403,
                     "forbidden_origin")
        assert (await http.get(READ, params=WHAT)).status_code == 200
        history = (await http.get("/api/v1/debug/history")).json()["entries"]
        assert len(history) == 1  # the program's read only


async def test_a_page_of_another_local_port_listed_by_name_may_call(tmp_path: Path) -> None:
    near = "http://localhost:3000"
    async with serve_http(_gateway(tmp_path, allowed_origins=[near]).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        listed = {"Sec-Fetch-Site": "same-site", "Origin": near}
        assert (await http.get("/api/v1/servers", headers=listed)).status_code == 200
        other = {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3001"}
        assert_error(await http.get("/api/v1/servers", headers=other), 403,
                     "forbidden_origin")


async def test_an_origin_allowed_by_name_may_call_from_another_site(tmp_path: Path) -> None:
    app = "https://app.example.com"
    async with serve_http(_gateway(tmp_path, allowed_origins=[app]).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        allowed = {"Sec-Fetch-Site": "cross-site", "Origin": app}
        assert (await http.get("/api/v1/servers", headers=allowed)).status_code == 200
        # Its <img> (no Origin) is no more than another site's.
        assert_error(await http.get("/api/v1/servers", headers=IMG), 403, "forbidden_origin")
        stranger = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example.com"}
        assert_error(await http.get("/api/v1/servers", headers=stranger), 403,
                     "forbidden_origin")


@pytest.mark.parametrize(("listed", "sent"), [
    ("https://app.example.com:443", "https://app.example.com"),  # browsers omit it
    ("https://bücher.example", "https://xn--bcher-kva.example"),  # browsers send IDNA
    ("HTTP://LocalHost:80/", "http://localhost"),
    ("https://app.example.com", "https://app.example.com:443"),  # a client writing it out
    ("http://localhost:*", "http://localhost"),  # a pattern matches the default port too
])
async def test_a_listed_origin_is_the_same_with_or_without_its_default_port(
        tmp_path: Path, listed: str, sent: str) -> None:
    """``MCP_GATEWAY_ALLOWED_ORIGINS=https://app.example.com:443`` names the page whose
    browser sends ``Origin: https://app.example.com``; it was compared as text and
    refused (and the other way round)."""
    async with serve_http(_gateway(tmp_path, allowed_origins=[listed]).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        allowed = {"Sec-Fetch-Site": "cross-site", "Origin": sent}
        answer = await http.get("/api/v1/servers", headers=allowed)
        assert answer.status_code == 200, answer.text
        other = {"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com:8443"}
        assert_error(await http.get("/api/v1/servers", headers=other), 403, "forbidden_origin")


async def test_a_unicode_host_listed_is_matched_in_the_form_browsers_send(
        tmp_path: Path) -> None:
    """A browser on ``https://bücher.example`` (a proxy in front of the gateway) sends
    ``Host: xn--bcher-kva.example``; ``MCP_GATEWAY_ALLOWED_HOSTS=bücher.example`` was
    kept as written and the guard refused every request (421)."""
    gateway = _gateway(tmp_path, allowed_hosts=["bücher.example"],
                       allowed_origins=["https://bücher.example"])
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        sent = {"Host": "xn--bcher-kva.example", "Sec-Fetch-Site": "same-origin",
                "Origin": "https://xn--bcher-kva.example"}
        answer = await http.get("/api/v1/servers", headers=sent)
        assert answer.status_code == 200, answer.text
        other = {**sent, "Host": "xn--other-kva.example"}
        refused = await http.get("/api/v1/servers", headers=other)
        assert refused.status_code == 421, refused.text
