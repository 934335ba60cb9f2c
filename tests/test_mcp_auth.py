"""Authentication and per-token access on the MCP endpoint, over real HTTP on 127.0.0.1.

Real tokens (made as ``mcp-gateway token new`` makes them), a JWT signed by a test key
from a local JWKS endpoint, and the real demo upstreams as subprocesses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from fast_mcp_gateway.gateway import Gateway
from tests.fixtures import make_gateway, stdio_entry, until
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.test/"
MODES = ["2026-07-28", "legacy"]


def new_token() -> tuple[str, str]:
    """A token and its ``sha256`` entry, as ``mcp-gateway token new`` prints them."""
    token = "mgw_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


OPS, OPS_SHA = new_token()
ALICE, ALICE_SHA = new_token()
TOKENS = [{"name": "ops", "sha256": OPS_SHA, "scopes": ["admin"]},
          {"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"], "servers": ["notes"]}]


def demo(name: str) -> dict[str, Any]:
    return {"command": "${GATEWAY_PYTHON}", "args": ["-m", f"fast_mcp_gateway.demo.{name}"]}


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@asynccontextmanager
async def serving(gateway_for: Any) -> AsyncIterator[tuple[Gateway, str]]:
    """uvicorn in-process on a free port; ``gateway_for(base_url)`` builds the gateway
    (its ``public_url`` must be known before its app is built)."""
    import uvicorn

    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    gateway: Gateway = gateway_for(base)
    server = uvicorn.Server(uvicorn.Config(gateway.http_app(), log_level="warning",
                                           lifespan="on", log_config=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield gateway, base
        finally:
            server.should_exit = True
    sock.close()


async def ready(gateway: Gateway, *servers: str) -> None:
    """Wait (bounded) until ``servers`` are ready."""
    await until(lambda: all(gateway.manager.get(s).state == "ready" for s in servers), 60)


def stored_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def call_error(exc: pytest.ExceptionInfo[ToolError]) -> str:
    return str(exc.value)


@pytest.mark.parametrize("mode", MODES)
async def test_tokens_and_jwts_on_the_mcp_endpoint(
    mode: str, tmp_path: Path, jwks: tuple[RSAKeyPair, str],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pair, jwks_uri = jwks
    auth = {"tokens": TOKENS, "jwt": {"jwks_uri": jwks_uri, "issuer": ISSUER,
                                      "audience": "mcp-gateway",
                                      "servers_claim": "mcp_servers"}}
    bob = pair.create_token(subject="bob@idp", issuer=ISSUER, audience="mcp-gateway", kid="k1",
                            scopes=["tools"], additional_claims={"mcp_servers": ["clock"]})
    db = tmp_path / "gateway.db"

    def build(base: str) -> Gateway:
        return make_gateway({"notes": demo("notes"), "clock": demo("clock")},
                            options={"auth": auth}, db=db, public_url=base)

    async with serving(build) as (gateway, base), httpx2.AsyncClient(timeout=30) as http:
        await ready(gateway, "notes", "clock")
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Accept": "application/json, text/event-stream"}
        metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
        # No token, a bad one, a JWT from another key: 401 pointing at the metadata.
        for bearer in (None, "mgw_not-a-token-000000000000", RSAKeyPair.generate()
                       .create_token(subject="eve", issuer=ISSUER, audience="mcp-gateway",
                                     kid="k1")):
            sent = headers | ({"Authorization": f"Bearer {bearer}"} if bearer else {})
            refused = await http.post(f"{base}/mcp", json=ping, headers=sent)
            assert refused.status_code == 401
            challenge = refused.headers["www-authenticate"]
            assert challenge.startswith("Bearer") and f'resource_metadata="{metadata_url}"' in \
                challenge
        # RFC 9728: the protected resource names the configured issuer.
        metadata = (await http.get(metadata_url)).json()
        assert metadata["resource"] == f"{base}/mcp"
        assert metadata["authorization_servers"] == [ISSUER]
        assert set(metadata["scopes_supported"]) == {"admin", "tools"}

        # alice: tools on notes only.  No clock, no gateway_* tools; calls refused.
        async with Client(f"{base}/mcp", auth=ALICE, mode=mode) as alice:
            names = {t.name for t in await alice.list_tools()}
            assert names and all(n.startswith("notes_") for n in names)
            resources = await alice.list_resources()
            templates = await alice.list_resource_templates()
            prompts = await alice.list_prompts()
            assert resources and templates and prompts
            assert all("notes" in str(r.uri) for r in resources)
            assert all(p.name.startswith("notes_") for p in prompts)
            assert (await alice.call_tool("notes_list_notes", {})).is_error is False
            with pytest.raises(ToolError) as hidden:
                await alice.call_tool("clock_add", {"a": 1, "b": 2})
            # Worded as for a tool that does not exist, naming alice's servers only.
            assert call_error(hidden) == (
                "Unknown tool: 'clock_add': tool names here carry their server's namespace, "
                "as <namespace>_<name> (servers: notes); tools/list lists them")
            with pytest.raises(ToolError) as bare:
                await alice.call_tool("add", {"a": 1, "b": 2})  # clock's own name
            assert "clock" not in call_error(bare) and "(servers: notes)" in call_error(bare)
            with pytest.raises(ToolError) as admin:
                await alice.call_tool("gateway_list_servers", {})
            assert "requires scope 'admin'" in call_error(admin)
            with pytest.raises(ToolError) as mutation:
                await alice.call_tool("gateway_disable_server", {"name": "notes"})
            assert "requires scope 'admin'" in call_error(mutation)

        # bob (JWT, servers claim [clock]): the other way round; no notes resources.
        async with Client(f"{base}/mcp", auth=bob, mode=mode) as jwt_client:
            names = {t.name for t in await jwt_client.list_tools()}
            assert names and all(n.startswith("clock_") for n in names)
            resources = await jwt_client.list_resources()
            assert resources and all("clock" in str(r.uri) for r in resources)
            assert all(p.name.startswith("clock_") for p in await jwt_client.list_prompts())
            assert (await jwt_client.call_tool("clock_add", {"a": 1, "b": 2})).data == 3
            with pytest.raises(ToolError) as hidden:
                await jwt_client.call_tool("notes_list_notes", {})
            assert "notes_list_notes" in call_error(hidden) and "Unknown" in call_error(hidden)

        # carol: a valid JWT granting no scope the gateway knows: sees and calls nothing.
        carol = pair.create_token(subject="carol@idp", issuer=ISSUER, audience="mcp-gateway",
                                  kid="k1", scopes=["email"])
        async with Client(f"{base}/mcp", auth=carol, mode=mode) as no_scope:
            assert await no_scope.list_tools() == []
            assert await no_scope.list_resources() == []
            with pytest.raises(ToolError):
                await no_scope.call_tool("clock_add", {"a": 1, "b": 2})

        # ops: everything, and its admin mutation is audited under its name.
        async with Client(f"{base}/mcp", auth=OPS, mode=mode) as ops:
            names = {t.name for t in await ops.list_tools()}
            assert {"notes_list_notes", "clock_add", "gateway_disable_server"} <= names
            assert (await ops.call_tool("clock_add", {"a": 2, "b": 2})).data == 4
            await ops.call_tool("gateway_reconnect_server", {"name": "clock"})
            audit = (await ops.call_tool("gateway_audit", {})).structured_content
            assert audit is not None
            assert [(e["actor"], e["action"]) for e in audit["entries"]][:1] == [
                ("ops", "reconnect_server")]
            await ready(gateway, "clock")
            calls = (await ops.call_tool("gateway_calls", {})).structured_content
            assert calls is not None
            clients = {(c["server"], c["client"]) for c in calls["calls"]}
            assert {("notes", "alice"), ("clock", "bob@idp"), ("clock", "ops")} <= clients
            assert ("clock", "alice") not in clients  # hidden: refused before any server

    planted = (OPS, ALICE, bob, carol)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = stored_bytes(tmp_path)
    for token in planted:
        assert token not in logged and token.encode() not in stored


@pytest.mark.parametrize("mode", MODES)
async def test_without_auth_loopback_calls_work_and_admin_needs_the_flag(
    mode: str,
) -> None:
    def build(allow: bool) -> Any:
        return lambda base: make_gateway({"notes": demo("notes")},
                                         allow_unauthenticated_admin=allow)

    async with serving(build(False)) as (gateway, base):
        await ready(gateway, "notes")
        async with Client(f"{base}/mcp", mode=mode) as anonymous:
            names = {t.name for t in await anonymous.list_tools()}
            assert "notes_list_notes" in names and not any(
                n.startswith("gateway_") for n in names)
            assert (await anonymous.call_tool("notes_list_notes", {})).is_error is False
            with pytest.raises(ToolError) as refused:
                await anonymous.call_tool("gateway_disable_server", {"name": "notes"})
            message = call_error(refused)
            assert "requires scope 'admin'" in message and "gateway.auth.tokens" in message
            assert "--allow-unauthenticated-admin" in message
        assert gateway.manager.get("notes").state == "ready"

    async with serving(build(True)) as (gateway, base):
        await ready(gateway, "notes")
        async with Client(f"{base}/mcp", mode=mode) as anonymous:
            assert "gateway_disable_server" in {t.name for t in await anonymous.list_tools()}
            await anonymous.call_tool("gateway_disable_server", {"name": "notes"})
        assert gateway.manager.get("notes").state == "disabled"


CALLER = textwrap.dedent("""
    import sys, anyio
    from fastmcp import Client
    async def main():
        async with Client(sys.argv[1], auth=sys.argv[2], mode="legacy") as client:
            await client.call_tool("slow_wait", {"seconds": 120})
    anyio.run(main)
""")


def events(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def caller_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_a_host_that_disconnects_mid_call_cancels_the_upstream_call(
    tmp_path: Path, caller_procs: list[subprocess.Popen[bytes]],
) -> None:
    # A legacy stateful session: its handler runs in the session's task, which the
    # SDK does not cancel when the POST's connection drops; the gateway must.
    log = tmp_path / "events"

    def build(base: str) -> Gateway:
        return make_gateway({"slow": stdio_entry("slow.py", str(log))},
                            options={"auth": {"tokens": TOKENS}}, public_url=base)

    async with serving(build) as (gateway, base):
        await ready(gateway, "slow")
        caller = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-c", CALLER, f"{base}/mcp", OPS], env=os.environ.copy())
        caller_procs.append(caller)
        await until(lambda: "started" in events(log), 60)
        caller.kill()
        caller.wait(10)
        await until(lambda: "cancelled" in events(log), 30)
        assert "finished" not in events(log)
        await until(lambda: not gateway.manager.get("slow").replicas[0].statistics().inflight,
                    10)
