"""With JWTs on a wildcard bind (``--host 0.0.0.0``) and no ``MCP_GATEWAY_PUBLIC_URL``,
OAuth clients are told the URL each request came in at (``http/advertised.py``).

The RFC 9728 document and every 401's ``resource_metadata`` link (FastMCP's guard, the
express lane, REST, ``/metrics``, ``/health/servers``) and the discovery 404s named
``http://0.0.0.0:PORT/mcp``, which no client on another machine reaches.  Now they name
the request's ``Host`` (one the Host guard passed: any other gets 421, the root form of
the document too, which was served to any Host; the routes without a guard ask it) and
scheme (``X-Forwarded-Proto`` only from an address uvicorn trusts,
``FORWARDED_ALLOW_IPS``).

A real ``mcp-gateway serve --host 0.0.0.0`` whose listening socket is bound on
127.0.0.1 instead (``cli.serve.listen`` replaced in the process: nothing listens on
every address), driven with ``Host`` headers and real RS256 JWTs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import yaml
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.pg import free_port
from tests.test_rest_cli import _wait_for_api

ISSUER = "https://idp.example/"

# `serve` as the command line runs it, its sockets bound on 127.0.0.1 for 0.0.0.0.
LOOPBACK_FOR_EVERY_ADDRESS = (
    "import runpy\n"
    "import fast_mcp_gateway.cli.serve as serve\n"
    "listen = serve.listen\n"
    "serve.listen = lambda s: listen(s.model_copy(update={'host': '127.0.0.1'}))\n"
    "runpy.run_module('fast_mcp_gateway', run_name='__main__')\n")


@pytest.fixture(scope="module")
def pair() -> RSAKeyPair:
    return RSAKeyPair.generate()


def _serve(tmp_path: Path, pair: RSAKeyPair, port: int, *, public_url: str | None = None,
           forwarded_allow: str | None = None) -> subprocess.Popen[str]:
    config = tmp_path / "servers.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"auth": {"jwt": {
        "public_key": pair.public_key, "issuer": ISSUER, "audience": "mcp-gateway"}}},
        "servers": {}}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("MCP_GATEWAY_PUBLIC_URL", "FORWARDED_ALLOW_IPS")}
    env["MCP_GATEWAY_ALLOWED_HOSTS"] = f"gw.test:{port}"
    if public_url is not None:
        env["MCP_GATEWAY_PUBLIC_URL"] = public_url
    if forwarded_allow is not None:
        env["FORWARDED_ALLOW_IPS"] = forwarded_allow
    return subprocess.Popen(
        [sys.executable, "-c", LOOPBACK_FOR_EVERY_ADDRESS, "serve", "--transport", "http",
         "--host", "0.0.0.0", "--port", str(port), "--no-db", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env)


@pytest.fixture
def gateway(tmp_path: Path, pair: RSAKeyPair, request: pytest.FixtureRequest
            ) -> Iterator[tuple[str, int, list[str]]]:
    """The gateway's base URL on 127.0.0.1, its port and (after the test) its stderr."""
    port = free_port()
    proc = _serve(tmp_path, pair, port, **getattr(request, "param", {}))
    said: list[str] = []
    try:
        _wait_for_api(f"http://127.0.0.1:{port}/health", proc)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}", port, said
    finally:
        proc.terminate()
        said.append(proc.communicate(timeout=60)[1])
    assert "Traceback" not in said[0], said[0]


def _told(base: str, host: str, pair: RSAKeyPair, **headers: str) -> dict[str, str]:
    """What each place that names the gateway's URL tells a client that sent ``host``:
    the document (both forms), and the metadata link of each refusal."""
    sent = {"Host": host, **headers}
    document = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp", headers=sent)
    root = httpx2.get(f"{base}/.well-known/oauth-protected-resource", headers=sent)
    assert document.status_code == 200, document.text
    assert root.json() == document.json(), root.text
    stranger = RSAKeyPair.generate().create_token(  # a real JWT the gateway does not trust
        subject="eve", issuer=ISSUER, audience="mcp-gateway", scopes=["admin"])
    refusals = {
        "full": httpx2.post(f"{base}/mcp", headers=sent, json={}),  # FastMCP's guard
        "lane": httpx2.post(f"{base}/mcp", headers={  # the express lane's refusal
            **sent, "Authorization": f"Bearer {stranger}", "MCP-Protocol-Version":
            "2026-07-28", "Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}),
        "rest": httpx2.get(f"{base}/api/v1/servers", headers=sent),
        # No guard in front (scrapers and probes send any Host): the guard is asked.
        "metrics": httpx2.get(f"{base}/metrics", headers=sent),
        "health": httpx2.get(f"{base}/health/servers", headers=sent)}
    told = {"resource": document.json()["resource"]}
    for name, refused in refusals.items():
        assert refused.status_code == 401, (name, refused.text)
        challenge = refused.headers["www-authenticate"]
        told[name] = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    probe = httpx2.get(f"{base}/.well-known/oauth-authorization-server", headers=sent)
    told["probe"] = probe.json()["error"]["details"]["resource_metadata"]
    # A real JWT of the issuer is taken on that Host.
    token = pair.create_token(subject="ann", issuer=ISSUER, audience="mcp-gateway",
                              scopes=["admin"])
    served = httpx2.get(f"{base}/api/v1/servers", headers={
        **sent, "Authorization": f"Bearer {token}"})
    assert served.status_code == 200, served.text
    return told


def _all(url: str) -> dict[str, str]:
    link = url.removesuffix("/mcp") + "/.well-known/oauth-protected-resource/mcp"
    return {"resource": url, "full": link, "lane": link, "rest": link, "probe": link,
            "metrics": link, "health": link}


@pytest.mark.timeout(180)
def test_a_wildcard_bind_tells_each_client_the_url_it_came_in_at(
        gateway: tuple[str, int, list[str]], pair: RSAKeyPair) -> None:
    base, port, _ = gateway
    assert _told(base, f"gw.test:{port}", pair) == _all(f"http://gw.test:{port}/mcp")
    assert _told(base, f"127.0.0.1:{port}", pair) == _all(f"http://127.0.0.1:{port}/mcp")
    # A TLS proxy on this machine (uvicorn trusts 127.0.0.1's X-Forwarded-Proto).
    assert _told(base, f"gw.test:{port}", pair, **{"X-Forwarded-Proto": "https"}) == _all(
        f"https://gw.test:{port}/mcp")
    # A Host the gateway does not serve is refused before anything names a URL.
    for path in ("/.well-known/oauth-protected-resource/mcp",
                 "/.well-known/oauth-protected-resource", "/mcp"):
        refused = httpx2.get(f"{base}{path}", headers={"Host": f"evil.test:{port}"})
        assert refused.status_code == 421, (path, refused.text)
        assert "evil.test" not in refused.headers.get("www-authenticate", ""), path
    for path in ("/metrics", "/health/servers"):  # answered: told the bind address's URL
        refused = httpx2.get(f"{base}{path}", headers={"Host": f"evil.test:{port}"})
        assert refused.status_code == 401, (path, refused.text)
        assert (f'resource_metadata="http://0.0.0.0:{port}/.well-known/oauth-protected-'
                'resource/mcp"') in refused.headers["www-authenticate"], refused.headers


@pytest.mark.timeout(180)
@pytest.mark.parametrize("gateway", [{"forwarded_allow": "192.0.2.1"}], indirect=True)
def test_a_scheme_a_client_forwards_is_not_taken_from_an_untrusted_address(
        gateway: tuple[str, int, list[str]], pair: RSAKeyPair) -> None:
    base, port, _ = gateway
    assert _told(base, f"gw.test:{port}", pair, **{"X-Forwarded-Proto": "https"}) == _all(
        f"http://gw.test:{port}/mcp")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("gateway", [{"public_url": "https://mcp.example.com"}],
                         indirect=True)
def test_a_public_url_keeps_winning_on_a_wildcard_bind(
        gateway: tuple[str, int, list[str]], pair: RSAKeyPair) -> None:
    base, port, _ = gateway
    assert _told(base, f"gw.test:{port}", pair) == _all("https://mcp.example.com/mcp")
    # The root form of the document is behind the Host guard as its path form is.
    refused = httpx2.get(f"{base}/.well-known/oauth-protected-resource",
                         headers={"Host": f"evil.test:{port}"})
    assert refused.status_code == 421, refused.text
