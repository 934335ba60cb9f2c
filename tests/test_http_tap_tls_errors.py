"""What the HTTP side door over TLS (and the SDK's path) says of a server it cannot use.

Each server here fails the gateway's HTTP/1.1-over-TLS client in its own way; the tap
(``upstream/http_tap.py``) must fail as the SDK's client (httpx) does, and both in words
that name the server and the fix (``model.describe_error``): they said "check that
the server is running" of a server asking for a client certificate or speaking HTTP/2
only, and the tap refused a response head httpx reads.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import pytest

from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.upstream.http_tap import HttpTap
from fast_mcp_gateway.upstream.model import describe_error
from tests.test_http_tap_handshake import read_request
from tests.test_http_tap_tls import Ca, ca

pytestmark = pytest.mark.anyio

__all__ = ["ca"]  # (the fixture, used here)


class _Modern:
    protocol_version = "2026-07-28"


class _Serves:
    """A blocking HTTPS server in a thread: each connection's request is answered with
    ``head`` (a JSON-RPC result follows it) on a TLS context made by ``context``."""

    def __init__(self, context: ssl.SSLContext, head: bytes = b"") -> None:
        self.ctx, self.head = context, head
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}/mcp"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), self.ctx.wrap_socket(raw, server_side=True) as conn:
                asked = json.loads(read_request(conn))
                body = json.dumps({"jsonrpc": "2.0", "id": asked.get("id", 1),
                                   "result": {"n": 1}}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%b"
                             b"content-length: %d\r\n\r\n%b" % (self.head, len(body), body))

    async def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # (wakes the accept: a close does not)
        self.listener.close()
        await anyio.to_thread.run_sync(self.thread.join, 30)


async def _both(url: str) -> tuple[BaseException, BaseException]:
    """The tap's failure and the SDK's client's (httpx's), at ``url``."""
    async with httpx2.AsyncClient() as client:
        from fast_mcp_gateway._compat import tls_context

        tap = HttpTap(url, {}, cast(Any, _Modern()), tls=tls_context(client, url))
        with pytest.raises(httpx2.TransportError) as tapped:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
        await tap.aclose()
        with pytest.raises(httpx2.TransportError) as sdk:
            await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    return tapped.value, sdk.value


async def test_a_server_asking_for_a_client_certificate_is_said_so(ca: Ca) -> None:
    """TLS 1.2, a client certificate required (the gateway presents none): the
    handshake's alert, on either path, in words that say what it may be."""
    context = ca.server_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(ca.ca)
    server = _Serves(context)
    try:
        tapped, sdk = await _both(server.url)
        assert isinstance(tapped, httpx2.ConnectError) and isinstance(sdk, httpx2.ConnectError)
        said = describe_error(tapped)
        assert said.startswith(f"cannot connect to {server.url}: the server refused the TLS "
                               "handshake (SSLV3_ALERT_HANDSHAKE_FAILURE): it may ask for a "
                               "client certificate (mutual TLS)"), said
        assert describe_error(sdk) == said
    finally:
        await server.stop()


@contextlib.contextmanager
def _http2_only(ca: Ca) -> Iterator[str]:
    """``openssl s_server`` offering ALPN ``h2`` alone: it refuses ``http/1.1`` with
    the ``no_application_protocol`` alert, as an HTTP/2-only server (Go's) does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(ca.cert),
         "-key", str(ca.key), "-alpn", "h2", "-www"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        while b"ACCEPT" not in process.stdout.readline():  # (listening)
            assert process.poll() is None
        yield f"https://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()


async def test_an_http2_only_server_is_said_so(ca: Ca) -> None:
    with _http2_only(ca) as url:
        tapped, sdk = await _both(url)
    assert isinstance(tapped, httpx2.ConnectError) and isinstance(sdk, httpx2.ConnectError)
    said = describe_error(tapped)
    assert said == (f"cannot connect to {url}: the server refused HTTP/1.1 over TLS (an "
                    "HTTP/2-only server): the gateway speaks HTTP/1.1 to servers; enable "
                    "HTTP/1.1 there"), said
    assert describe_error(sdk) == said


async def test_a_response_head_is_read_as_large_as_httpx_reads_it(ca: Ca) -> None:
    """80 KiB of headers (httpx reads up to 100 KiB): answered by the tap as by the SDK's
    client (the tap refused more than 64 KiB: the call failed, the session restarted);
    past 100 KiB both fail, saying so."""
    context = ca.server_context()
    context.set_alpn_protocols(["http/1.1"])
    large = _Serves(context, b"x-large: %b\r\n" % (b"a" * 80 * 1024))
    try:
        tap = HttpTap(large.url, {}, cast(Any, _Modern()),
                      tls=ssl.create_default_context(cafile=str(ca.ca)))
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        await tap.aclose()
    finally:
        await large.stop()
    huge = _Serves(context, b"x-huge: %b\r\n" % (b"a" * 150 * 1024))
    try:
        tapped, sdk = await _both(huge.url)
    finally:
        await huge.stop()
    assert isinstance(tapped, httpx2.ReadError), tapped
    assert "sent a response head larger than 100 KiB" in describe_error(tapped)
    assert describe_error(sdk).startswith(
        f"{huge.url} sent a response head larger than 100 KiB"), describe_error(sdk)


@pytest.mark.parametrize("content", [None, b"not a certificate"])
async def test_an_ssl_cert_file_that_cannot_be_read_is_said_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None) -> None:
    """``SSL_CERT_FILE`` (what the certificate error asks for) naming no file, or no
    certificates: every HTTP upstream's session fails to start (httpx loads it when the
    session's client is made), and said "command not found: [Errno 2] No such file or
    directory" (a ``FileNotFoundError``'s words) or OpenSSL's bare error."""
    from fast_mcp_gateway.upstream.transports import _http_transport

    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    transport = _http_transport()("https://127.0.0.1:1/mcp")
    with pytest.raises(ConfigError) as caught:
        async with transport.connect_session():
            pass
    said = describe_error(caught.value)
    assert said.startswith(f"the gateway's environment: SSL_CERT_FILE={path} cannot be "
                           "read as CA certificates ("), said
    assert said.endswith("): give the path of a PEM file of CA certificates (the private "
                         "CA's), or unset it for the system's CAs"), said


async def test_a_tls_handshake_never_answered_is_a_connect_timeout(
        ca: Ca, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that takes the connection and never answers the TLS hello: the tap gives
    up as the SDK's client does (httpx's connect timeout, 30 s: ``ConnectTimeout``, the
    session restarts), not at the call's deadline (each call timed out, the replica
    stayed ready)."""
    from fast_mcp_gateway.upstream import http_pool

    monkeypatch.setattr(http_pool, "CONNECT_WITHIN", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as listener:  # (the kernel's accept only)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/mcp"
        tap = HttpTap(url, {}, cast(Any, _Modern()),
                      tls=ssl.create_default_context(cafile=str(ca.ca)))
        with pytest.raises(httpx2.ConnectTimeout) as caught:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 20})
        await tap.aclose()
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, connect=0.5)) as client:
            with pytest.raises(httpx2.ConnectTimeout) as sdk:
                await client.post(url, json={})
    for failed in (caught.value, sdk.value):
        said = describe_error(failed)
        assert said.startswith(f"no answer from {url} in time ("), said
