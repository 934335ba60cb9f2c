"""`mcp-gateway serve` and access: the public-bind refusal, --allow-unauthenticated-admin,
and the REST API of a real gateway process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.cli.main import _parser, _settings
from fast_mcp_gateway.cli.serve import announcement, bind_refusal
from fast_mcp_gateway.config.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fast_mcp_gateway", "serve"]
NOTES = ("servers:\n  notes:\n    command: ${GATEWAY_PYTHON}\n"
         "    args: ['-m', 'fast_mcp_gateway.demo.notes']\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(NOTES)
    done = subprocess.run([*CLI, "--config", str(config), "--transport", "http", "--host",
                           "0.0.0.0", "--port", str(_free_port()), "--db",
                           str(tmp_path / "g.db")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert "mcp-gateway token new" in done.stderr and "gateway.auth.tokens" in done.stderr
    assert not (tmp_path / "g.db").exists()  # refused before anything started


def test_the_bind_rule() -> None:
    public = GatewaySettings(transport="http", host="0.0.0.0")
    assert bind_refusal(public, authenticated=False) is not None
    assert bind_refusal(public, authenticated=True) is None
    assert bind_refusal(GatewaySettings(transport="sse", host="::"), authenticated=False)
    assert bind_refusal(GatewaySettings(transport="http", host="127.0.0.1"),
                        authenticated=False) is None
    assert bind_refusal(GatewaySettings(host="0.0.0.0"), authenticated=False) is None  # stdio


def test_library_mode_refuses_a_public_address_without_auth(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the CLI asked the bind rule: ``Gateway.run_async("http")`` in library mode
    served a gateway without ``auth`` on 0.0.0.0 -- with ``allow_unauthenticated_admin``,
    anyone on the network could register a command.  (uvicorn is stubbed: nothing binds.)"""
    import anyio
    import uvicorn

    from fast_mcp_gateway.errors import ConfigError
    from tests.fixtures import make_gateway

    served: list[object] = []

    async def serve(self: object, sockets: object = None) -> None:
        served.append(self)

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    for transport in ("http", "sse"):
        gateway = make_gateway({}, host="0.0.0.0", allow_unauthenticated_admin=True)
        with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without auth"):
            anyio.run(gateway.run_async, transport)
    assert served == []
    anyio.run(make_gateway({}, host="127.0.0.1").run_async, "http")  # loopback: as before
    assert len(served) == 1


def test_an_app_mounted_by_a_library_answers_off_loopback_only_with_auth() -> None:
    """``gateway.http_app()`` served by a library's own server on a network address,
    without ``auth``: it answered everyone who reached it (the bind rule is the CLI's
    and ``run_async``'s).  Now a request that came in on a non-loopback address gets a
    403 naming it and the way out; loopback, a Unix socket and a gateway with ``auth``
    are served as before.  (In process: the ASGI ``server`` is the address a request
    came in on; nothing binds.)"""
    import anyio

    from fast_mcp_gateway.http.loopback import arrived_locally
    from tests.fixtures import make_gateway

    assert arrived_locally(("127.0.0.1", 8000)) and arrived_locally(("::1", 8000))
    assert arrived_locally(("::ffff:127.0.0.1", 8000)) and arrived_locally(("/run/g.sock", None))
    assert arrived_locally(None) and arrived_locally(("testserver", 80))
    assert not arrived_locally(("192.0.2.7", 8000)) and not arrived_locally(("2001:db8::1", 80))

    async def get(app: object, base: str, path: str) -> httpx2.Response:
        transport = httpx2.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx2.AsyncClient(transport=transport, base_url=base) as http:
            return await http.get(path)

    async def main() -> None:
        app = make_gateway({}).http_app()
        for path in ("/health", "/mcp", "/api/v1/servers"):
            refused = await get(app, "http://192.0.2.7:8000", path)
            assert refused.status_code == 403, (path, refused.text)
            message = refused.json()["error"]["message"]
            assert "no gateway.auth" in message and "192.0.2.7" in message, message
            assert "mcp-gateway token new" in message and "127.0.0.1" in message, message
        assert (await get(app, "http://127.0.0.1:8000", "/health")).status_code == 200
        token = {"tokens": [{"name": "ops", "token": "mgw_ops-mounted-5c1d2e3f4a",
                             "scopes": ["admin"]}]}
        secured = make_gateway({}, options={"auth": token}).http_app()
        answered = await get(secured, "http://192.0.2.7:8000", "/health")
        assert answered.status_code == 200, answered.text

    anyio.run(main)


def test_the_flag_and_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_GATEWAY_ALLOW_UNAUTHENTICATED_ADMIN", raising=False)
    plain = _settings(_parser().parse_args(["serve"]))
    assert plain.allow_unauthenticated_admin is False
    flagged = _settings(_parser().parse_args(["serve", "--allow-unauthenticated-admin"]))
    assert flagged.allow_unauthenticated_admin is True
    monkeypatch.setenv("MCP_GATEWAY_ALLOW_UNAUTHENTICATED_ADMIN", "true")
    assert _settings(_parser().parse_args(["serve"])).allow_unauthenticated_admin is True


def test_serve_says_how_access_works() -> None:
    local = GatewaySettings(transport="http", port=9000)
    lines = announcement(local, 1, interactive=False, authenticated=False)
    assert "admin operations are refused" in lines[1] and "token new" in lines[1]
    opened = local.model_copy(update={"allow_unauthenticated_admin": True})
    assert announcement(opened, 1, interactive=False, authenticated=False)[1].startswith(
        "WARNING: --allow-unauthenticated-admin")
    assert "bearer token" in announcement(local, 1, interactive=False, authenticated=True)[1]


def _wait_for_api(url: str, proc: subprocess.Popen[str], within: float = 60) -> None:
    """Until the gateway answers (its upstreams connect before the port opens)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway exited"
        try:
            httpx2.get(url, timeout=5)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {within}s")


@pytest.mark.parametrize("allow", [False, True])
def test_a_real_gateway_process_refuses_or_allows_anonymous_admin(tmp_path: Path,
                                                                 allow: bool) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(NOTES)
    port = _free_port()
    args = [*CLI, "--config", str(config), "--transport", "http", "--port", str(port),
            "--db", str(tmp_path / "g.db")] + (["--allow-unauthenticated-admin"] if allow else [])
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        _wait_for_api(f"{api}/openapi.json", proc)
        assert httpx2.get(f"{api}/servers", timeout=30).json()["total"] == 1
        response = httpx2.put(f"{api}/servers/notes/disable", timeout=30)
        if allow:
            assert response.status_code == 200 and response.json()["state"] == "disabled"
        else:
            assert response.status_code == 403
            assert "gateway.auth.tokens" in response.json()["error"]["message"]
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
