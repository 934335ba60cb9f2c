"""A gateway without ``gateway.auth`` answers this machine only, also behind a proxy.

Without ``auth`` the gateway serves loopback only (``bind_refusal``, and
``arrived_locally`` for an app a library serves).  A reverse proxy on the same machine
(nginx, Caddy: TLS in front of ``127.0.0.1:8765``) connects from loopback, so every
request from the network arrived locally; the Host guard's 421 then told its user to
start the gateway with ``--allowed-host <name>``, and doing so served anyone the proxy
served, with no credential: tools called, call records read, and under
``--allow-unauthenticated-admin`` commands registered.  The proxy says whom it forwards
for (``X-Forwarded-For``, ``X-Real-IP``, ``Forwarded``; uvicorn puts the first into the
ASGI ``client``): a request forwarded for a client that is not on this machine is
refused, 403 ``authentication_required``, naming it and how to add a token.  Real HTTP
on 127.0.0.1 (uvicorn's own proxy-header handling, as ``serve`` runs it).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_rest import assert_error

pytestmark = pytest.mark.anyio

REMOTE = [{"X-Forwarded-For": "203.0.113.5"}, {"X-Forwarded-For": "127.0.0.1, 203.0.113.5"},
          {"X-Real-IP": "198.51.100.2"}, {"Forwarded": 'for="[2001:db8::1]:4711"'},
          {"Forwarded": "for=unknown"}, {"X-Forwarded-For": "::ffff:192.0.2.9"}]
LOCAL = [{}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "::1"},
         {"Forwarded": 'for="[::1]";proto=https'}, {"X-Forwarded-For": "::ffff:127.0.0.1"}]
MCP = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def _gateway(**options: Any) -> Any:
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                        options=options, allowed_hosts=["gw.example"],
                        allow_unauthenticated_admin=not options)


async def test_a_request_a_proxy_forwards_for_another_machine_needs_a_token() -> None:
    async with serve_http(_gateway().http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base,
                               headers={"Host": "gw.example"}) as http:
        for proxy in REMOTE:
            for method, path, body in [("GET", "/api/v1/servers", None),
                                       ("POST", "/mcp", PING), ("GET", "/ui/", None),
                                       ("GET", "/health", None)]:
                got = await http.request(method, path, json=body, headers={**proxy, **MCP})
                error = assert_error(got, 403, "authentication_required")
                assert "through a proxy" in error["message"], error
                assert "gateway.auth.tokens" in error["message"], error
                assert error["details"]["client"], error
        said = assert_error(await http.get("/api/v1/servers",
                                           headers={"X-Forwarded-For": "203.0.113.5"}),
                            403, "authentication_required")["message"]
        assert said.startswith("this gateway has no gateway.auth, so it answers this machine "
                               "only, and this request came through a proxy for 203.0.113.5")
        for proxy in LOCAL:  # a proxy for a program of this machine: served
            assert (await http.get("/api/v1/servers", headers=proxy)).status_code == 200
            mcp = await http.post("/mcp", json=PING, headers={**proxy, **MCP})
            assert mcp.status_code != 403, mcp.text  # the MCP endpoint's own answer


async def test_with_a_token_a_proxied_client_is_served_as_any() -> None:
    token = "mgw_proxied-client-5c1d2e3f4a5b"
    auth = {"tokens": [{"name": "ops", "token": token, "scopes": ["admin"]}]}
    async with serve_http(_gateway(auth=auth).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base, headers={
                "Host": "gw.example", "X-Forwarded-For": "203.0.113.5"}) as http:
        assert (await http.get("/api/v1/servers")).status_code == 401
        ok = await http.get("/api/v1/servers", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text


async def test_a_host_only_a_wildcard_takes_is_refused_without_a_token() -> None:
    """``--allowed-host '*'`` lets every ``Host`` through the DNS-rebinding guard: a page
    on any DNS name rebound to 127.0.0.1 (its own origin, so no Origin refuses it) used a
    gateway without ``auth`` as its owner would -- under ``--allow-unauthenticated-admin``
    registering a command.  A Host that only a wildcard takes is refused without a
    token; loopback names and the hosts named are served, and with a token any."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           allowed_hosts=["*", "gw.example"], allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        port = base.rsplit(":", 1)[1]
        rebound = {"Host": f"rebind.attacker.example:{port}",
                   "Origin": f"http://rebind.attacker.example:{port}",
                   "Sec-Fetch-Site": "same-origin"}
        for method, path, body in [("GET", "/api/v1/servers", None), ("POST", "/mcp", PING),
                                   ("GET", "/ui/", None)]:
            got = await http.request(method, path, json=body, headers={**rebound, **MCP})
            error = assert_error(got, 403, "authentication_required")
            assert error["message"].startswith(
                "this gateway has no gateway.auth, so it answers this machine only, and "
                f"Host 'rebind.attacker.example:{port}' is let in only by "
                "--allowed-host '*'"), error
            assert error["details"] == {"host": f"rebind.attacker.example:{port}"}
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "gw.example"):
            assert (await http.get("/api/v1/servers", headers={"Host": host})).status_code == 200
    token = "mgw_wildcard-host-5c1d2e3f4a5b"
    secured = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           allowed_hosts=["*"], options={"auth": {"tokens": [
                               {"name": "ops", "token": token, "scopes": ["admin"]}]}})
    async with serve_http(secured.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base) as http:
        ok = await http.get("/api/v1/servers", headers={"Host": "any.example",
                                                        "Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text


async def test_the_misdirected_host_answer_says_a_proxy_needs_a_token_first() -> None:
    """A proxy that names no client (nginx's ``proxy_pass`` with only ``Host`` set sends
    no ``X-Forwarded-For``) is this machine to a gateway without ``auth``.  Its 421 told
    its user to start the gateway with ``--allowed-host <name>``, and nothing more: doing
    so served whoever the proxy served, with no credential.  Without ``auth`` the 421
    says a proxy's name needs a token first; with one it is as before."""
    async with serve_http(_gateway().http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base,
                               headers={"Host": "mcp.example.org"}) as http:
        for method, path, body in [("GET", "/api/v1/servers", None), ("POST", "/mcp", PING),
                                   ("GET", "/ui/", None), ("GET", "/nowhere", None)]:
            got = await http.request(method, path, json=body, headers=MCP)
            said = assert_error(got, 421, "misdirected_request")["message"]
            assert "--allowed-host mcp.example.org" in said, said
            assert "if 'mcp.example.org' is a reverse proxy's name that other machines " \
                   "reach, make a token with 'mcp-gateway token new" in said, said
            assert "X-Forwarded-For" in said, said
    token = "mgw_misdirected-host-5c1d2e3f4a5b"
    auth = {"tokens": [{"name": "ops", "token": token, "scopes": ["admin"]}]}
    async with serve_http(_gateway(auth=auth).http_app()) as base, \
            httpx2.AsyncClient(timeout=30, base_url=base,
                               headers={"Host": "mcp.example.org"}) as http:
        said = assert_error(await http.get("/api/v1/servers"), 421,
                            "misdirected_request")["message"]
        assert said.endswith("--allowed-host mcp.example.org (MCP_GATEWAY_ALLOWED_HOSTS)")
