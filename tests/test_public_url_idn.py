"""``MCP_GATEWAY_PUBLIC_URL`` with a Unicode (IDN) host: everything built from it names
the host in the ASCII form browsers and OAuth clients use (``config/origins.public_url``).

The protected-resource metadata (FastMCP's URL type) said ``xn--bcher-kva.example``
while the discovery answers the gateway writes itself (the 404 of an
authorization-server probe, ``resource_metadata`` in its details) said
``Bücher.example``: one resource under two names.  A host whose ASCII form Python
cannot tell as browsers do is refused at start, naming that form.  A real
``mcp-gateway serve`` over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx2
import pytest
import yaml
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.pg import free_port
from tests.stdio_gateway import CLI
from tests.test_rest_cli import _wait_for_api

ASCII = "https://xn--bcher-kva.example"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"auth": {"jwt": {
        "public_key": RSAKeyPair.generate().public_key, "issuer": "https://idp.example/",
        "audience": "mcp-gateway"}}}, "servers": {}}))
    return path


def _serve(tmp_path: Path, public_url: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "serve", "--transport", "http", "--port", str(port), "--no-db",
         "--config", str(_config(tmp_path))], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MCP_GATEWAY_PUBLIC_URL": public_url})


@pytest.mark.timeout(120)
def test_a_unicode_public_url_is_advertised_in_its_ascii_form(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, "https://Bücher.example", port)
    try:
        _wait_for_api(f"{base}/health", proc)  # type: ignore[arg-type]
        metadata = httpx2.get(f"{base}/.well-known/oauth-protected-resource/mcp").json()
        refused = httpx2.post(f"{base}/mcp", json={})
        root = httpx2.get(f"{base}/.well-known/oauth-authorization-server")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert metadata["resource"] == f"{ASCII}/mcp", metadata
    link = f"{ASCII}/.well-known/oauth-protected-resource/mcp"
    assert refused.status_code == 401
    assert f'resource_metadata="{link}"' in refused.headers["www-authenticate"]
    error = root.json()["error"]
    assert error["details"]["resource_metadata"] == link, error
    assert link in error["message"] and "ü" not in root.text, root.text
    assert "Traceback" not in err


def test_a_host_python_cannot_encode_as_browsers_do_is_refused_naming_their_form(
        tmp_path: Path) -> None:
    proc = _serve(tmp_path, "https://straße.example/gw", free_port())
    try:
        _, err = proc.communicate(timeout=60)
    finally:   # the code before served it
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err
    assert err.startswith("mcp-gateway: MCP_GATEWAY_PUBLIC_URL: 'https://straße.example/gw' "
                          "holds U+00DF"), err
    assert "'https://xn--strae-oqa.example/gw'" in err, err


def test_an_ascii_public_url_is_kept_as_written() -> None:
    from fast_mcp_gateway.config.origins import public_url

    assert public_url("https://GW.example:8443/base/") == "https://GW.example:8443/base/"
    assert public_url("http://例え.jp/büro") == "http://xn--r8jz45g.jp/b%C3%BCro"


@pytest.mark.timeout(120)
def test_a_public_url_with_a_path_is_one_metadata_url_on_every_refusal(tmp_path: Path) -> None:
    """RFC 9728 puts the well-known part between the host and the resource's path:
    FastMCP's 401 and its metadata route said .../oauth-protected-resource/gw/mcp while
    the refusals the gateway writes itself (REST, the lanes, discovery) said
    https://x/gw/.well-known/oauth-protected-resource/mcp, where nothing is served."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, "https://gw.example/team", port)
    try:
        _wait_for_api(f"{base}/health", proc)  # type: ignore[arg-type]
        link = "https://gw.example/.well-known/oauth-protected-resource/team/mcp"
        document = httpx2.get(f"{base}/.well-known/oauth-protected-resource/team/mcp")
        root = httpx2.get(f"{base}/.well-known/oauth-protected-resource")
        full = httpx2.post(f"{base}/mcp", json={})  # FastMCP's guard
        lane = httpx2.post(f"{base}/mcp", headers={  # the express lane's refusal
            "Authorization": "Bearer not-a-jwt", "MCP-Protocol-Version": "2026-07-28",
            "Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}})
        rest = httpx2.get(f"{base}/api/v1/servers")
        probe = httpx2.get(f"{base}/.well-known/oauth-authorization-server")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert document.json()["resource"] == "https://gw.example/team/mcp", document.text
    assert root.json() == document.json(), root.text  # the root form too
    for refused in (full, lane, rest):
        assert refused.status_code == 401, refused.text
        assert f'resource_metadata="{link}"' in refused.headers["www-authenticate"], (
            refused.headers)
    assert probe.json()["error"]["details"]["resource_metadata"] == link, probe.text
    assert "Traceback" not in err
