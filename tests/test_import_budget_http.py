"""What an HTTP-mode ``mcp-gateway serve`` in front of an HTTP upstream has loaded.

``tests/test_import_budget.py`` holds the stdio gateway to its budget; this is the
HTTP twin (issue 15's RSS row: a gateway serving streamable HTTP, its upstream over
streamable HTTP).  The upstream transports are the gateway's own
(``upstream/http_transports.py``), so ``fastmcp.client``'s OAuth, token-storage
(``key_value``) and ``beartype`` libraries (~8 MB) are never loaded: not when the
upstream connects, not after a call relayed to it with a configured bearer header.
Neither are what no request asked for: the JWT verifier without ``gateway.auth.jwt``,
the REST API before a REST request, the ``websockets`` library (an upgrade is refused
by ``http/no_websockets.py``).  A wrapper runs the real CLI and prints ``sys.modules``
when the test asks (SIGUSR1); no timing is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.fixtures import PY, alpha_server, serve_http
from tests.test_import_budget import loaded

pytestmark = pytest.mark.anyio

WRAPPER = textwrap.dedent("""\
    import json, signal, sys

    def record(*_):  # SIGUSR1: the modules loaded now, as one line on stdout
        sys.stdout.write(json.dumps(sorted(sys.modules)) + "\\n")
        sys.stdout.flush()

    signal.signal(signal.SIGUSR1, record)
    from fast_mcp_gateway.cli.main import main
    sys.exit(main())
""")

# What only fastmcp.client's auth (OAuth flows, token storage) needs.
CLIENT_AUTH = ("fastmcp.client", "key_value", "beartype")
# What only a request of its kind needs: JWTs, REST, WebSockets (refused).
UNASKED = ("fastmcp.server.auth.providers.jwt", "joserfc.jwt", "fast_mcp_gateway.http.api",
           "fast_mcp_gateway.http.schemas", "websockets", "uvicorn.protocols.websockets")
# What only a failure needs (a webhook's retries, a "did you mean"): test_import_budget.
ON_FAILURE = ("tenacity", "difflib")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def upstream(seen: list[bytes | None]) -> AsyncIterator[str]:
    """alpha over streamable HTTP; ``seen`` gets each request's Authorization header."""
    app = alpha_server().http_app(path="/mcp")

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization"))
        await app(scope, receive, send)

    async with serve_http(recording, startup=False) as base:
        yield f"{base}/mcp"


async def serving(url: str, proc: anyio.abc.Process) -> None:
    """Until the gateway process answers at ``url`` (it is starting: polled)."""
    async with httpx2.AsyncClient(timeout=30) as http:
        while proc.returncode is None:
            with contextlib.suppress(httpx2.TransportError):
                await http.get(url)
                return
            await anyio.sleep(0.1)
    raise AssertionError(f"the gateway exited ({proc.returncode})")


async def websocket_upgrade(port: int) -> bytes:
    """A WebSocket upgrade of ``/mcp``: the answer's status line (then it is closed)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as sock:
        await sock.send(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        answer = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:  # until the server closes the connection
                answer += await sock.receive()
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.timeout(240)  # a gateway process starts; on a loaded machine that takes a while
async def test_http_serve_with_an_http_upstream_never_loads_the_client_auth_stack(
        tmp_path: Path) -> None:
    wrapper = tmp_path / "serve.py"
    wrapper.write_text(WRAPPER)
    seen: list[bytes | None] = []
    async with upstream(seen) as url:
        config = tmp_path / "servers.yaml"
        config.write_text("servers:\n  alpha:\n"
                          f"    url: {url}\n"
                          "    headers: {Authorization: 'Bearer ${UPSTREAM_TOKEN}'}\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (tmp_path / "gateway.log").open("wb") as log, anyio.fail_after(200):
            async with await anyio.open_process(
                    [PY, str(wrapper), "serve", "--config", str(config),
                     "--db", str(tmp_path / "store.db"), "--log-level", "WARNING",
                     "--startup-wait", "600",
                     "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
                    env={**os.environ, "UPSTREAM_TOKEN": "s3cret-upstream"},
                    stdin=subprocess.DEVNULL, stderr=log) as proc:
                try:
                    await serving(f"{base}/health", proc)
                    assert await websocket_upgrade(port) == b"HTTP/1.1 403 Forbidden"
                    async with Client(StreamableHttpTransport(f"{base}/mcp"),
                                      timeout=60) as client:
                        # the first list waits for the upstream's first connect
                        assert "alpha_add" in {t.name for t in await client.list_tools()}
                        added = await client.call_tool("alpha_add", {"a": 2, "b": 3})
                        assert added.data == 5
                    proc.send_signal(signal.SIGUSR1)
                    assert proc.stdout is not None
                    line = await BufferedByteReceiveStream(proc.stdout).receive_until(
                        b"\n", 1 << 20)
                finally:
                    proc.terminate()
    modules = json.loads(line)
    # The upstream was reached through the gateway's own transport, with its header.
    assert "fast_mcp_gateway.upstream.http_transports" in modules
    assert seen and set(seen) == {b"Bearer s3cret-upstream"}, seen
    assert loaded(modules, CLIENT_AUTH) == []
    assert loaded(modules, UNASKED) == []
    assert loaded(modules, ON_FAILURE) == []
    assert b"WebSocket" not in (tmp_path / "gateway.log").read_bytes()  # refused quietly
