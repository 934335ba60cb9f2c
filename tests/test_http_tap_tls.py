"""The HTTP side door over TLS (upstream/http_tap.py on an ``https://`` URL).

A FastMCP upstream served by uvicorn over TLS on 127.0.0.1, its certificate signed by
a private CA made here, which the gateway is told to trust as a user would tell it:
``SSL_CERT_FILE`` in its environment (what the session's httpx client honours; there
is no per-server setting).  The tap uses the SSL context of the session's own client,
so it trusts exactly that.  Compared with fastmcp's plain ``StreamableHttpTransport``
(the SDK's client) in both eras; a counting TCP relay in front of the upstream (it
relays the TLS bytes as they are) tells how many connections the calls opened.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.upstream.http_tap import HttpTap
from fast_mcp_gateway.upstream.model import UpstreamState, describe_error
from tests.test_http_lane import canonical
from tests.test_http_tap import (
    BIG,
    Upstream,
    front,
    gateway,
    goes_on_through_the_tap,
    host_leaves_mid_call,
)
from tests.test_http_tap_handshake import (
    CASES,
    Relay,
    Served,
    handshake_upstream,
    read_request,
    settled,
)

pytestmark = pytest.mark.anyio


class Ca:
    """A private CA (``ca.pem``) and a certificate it signed for 127.0.0.1 and
    localhost (``cert.pem``, ``key.pem``), in ``folder``."""

    def __init__(self, folder: Path, name: str = "Gateway Test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
            ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=True, content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False, key_cert_sign=True,
                  crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca, self.cert, self.key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
        self.ca.write_bytes(ca.public_bytes(pem))
        self.cert.write_bytes(leaf.public_bytes(pem))
        self.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])  # (a server that would speak HTTP/2)
        return ctx


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ca:
    """A private CA the gateway trusts (``SSL_CERT_FILE``, as a user would say it)."""
    made = Ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(made.ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return made


def tls_served(app: Any, ca: Ca, port: int = 0) -> Served:
    """``Served`` over TLS with ``ca``'s certificate."""
    import uvicorn

    served = Served(app, port)
    served.server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", lifespan="on", log_config=None,
        ssl_certfile=str(ca.cert), ssl_keyfile=str(ca.key)))
    return served


@contextlib.asynccontextmanager
async def tls_upstream(ca: Ca, port: int = 0) -> AsyncIterator[tuple[Upstream, Served]]:
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    app = handshake_upstream(up).http_app(path="/mcp")
    async with tls_served(app, ca, port).serving() as served:
        up.url = f"https://127.0.0.1:{served.port}/mcp"
        yield up, served


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_https_calls_go_through_the_tap_on_kept_connections(
        ca: Ca, protocol: str) -> None:
    async with tls_upstream(ca) as (up, served), Relay(served.port).serving() as relay:
        relayed = f"https://127.0.0.1:{relay.port}/mcp"
        async with front(gateway(relayed, tap=True, protocol=protocol)) as fast, \
                front(gateway(up.url, tap=False, protocol=protocol)) as sdk:
            tap = fast.tap
            assert tap is not None and sdk.tap is None
            assert tap.pool.tls is not None and tap.port == relay.port
            for name, arguments, meta in CASES:
                before = tap.served
                got, want = await fast.post(name, arguments, meta), await sdk.post(
                    name, arguments, meta)
                await settled(tap)
                assert tap.served == before + (name != "alpha_nope"), name
                if meta and "progressToken" in meta:  # progress reached the host first
                    events = [json.loads(e) for e in canonical(got.content)]
                    assert [e.get("method") for e in events[:-1]].count(
                        "notifications/progress") == arguments["steps"], events
                if meta and meta.get("io.modelcontextprotocol/logLevel"):
                    assert b"notifications/message" in got.content, name
                assert got.status_code == want.status_code, name
                assert got.headers["content-type"] == want.headers["content-type"], name
                if protocol != "legacy" and arguments == {"text": BIG} and meta:
                    # (the SDK's client closes the connection there on 2026-07-28,
                    # test_http_tap.py: compared with what the upstream said)
                    log, result = (json.loads(e) for e in canonical(got.content))
                    assert log["params"]["data"]["msg"] == f"about {BIG}"
                    assert result["result"]["structuredContent"]["echo"] == BIG
                    continue
                assert canonical(got.content) == canonical(want.content), (name, got.text)
            if protocol == "legacy":  # the tap's own ids, on the session's id
                who = (await fast.post("alpha_whoami", {})).json()["result"]
                assert who["structuredContent"]["result"].startswith("gw-"), who
                await settled(tap)
            # Every answer (JSON, or a stream read to its end) left its TLS connection
            # for the next call: twenty calls open none (no handshake either).
            opened, accepted = tap.opened, relay.accepted
            assert opened <= 2 and not tap.lingers
            for n in range(20):
                got = await fast.post("alpha_add", {"a": n, "b": 1})
                assert got.json()["result"]["structuredContent"] == {"result": n + 1}
                await settled(tap)
            assert tap.opened == opened and relay.accepted == accepted
            assert len(tap._idle) == 1 and not tap._busy
            conn = tap._idle[0]
            ssl_object = conn.writer.get_extra_info("ssl_object")
            assert ssl_object is not None and ssl_object.server_hostname == "127.0.0.1"


async def test_a_certificate_not_trusted_is_a_clear_connect_failure(
        ca: Ca, tmp_path: Path) -> None:
    """The server comes back (same URL) with a certificate of a CA nobody trusts: the
    tap's new connection fails as the SDK's does, naming the server and what to do;
    the replica's state says the same."""
    async with tls_upstream(ca) as (up, served):
        gw = gateway(up.url, tap=True, protocol="2026-07-28")
        async with front(gw) as fast:
            assert (await fast.post("alpha_add", {"a": 1, "b": 1})).status_code == 200
            tap = fast.tap
            assert tap is not None and tap.opened == 1
            await served.stop()
            other = Ca(tmp_path / "other", name="Unknown CA")
            app = handshake_upstream(up).http_app(path="/mcp")
            async with tls_served(app, other, served.port).serving():
                got = (await fast.post("alpha_add", {"a": 2, "b": 2})).json()["result"]
                text = got["content"][0]["text"]
                assert got["isError"] is True and tap.opened == 1, got
                assert f"cannot connect to {up.url}: its TLS certificate does not verify" \
                    in text, text
                assert "SSL_CERT_FILE" in text, text
                replica = gw.manager.services["alpha"].replicas[0]
                with anyio.fail_after(60):
                    while "certificate does not verify" not in (  # noqa: ASYNC110
                            replica.last_error or ""):
                        await anyio.sleep(0.02)
                assert replica.state is not UpstreamState.READY
                assert f"cannot connect to {up.url}: its TLS certificate" in (
                    replica.last_error or "")


async def test_the_tap_names_the_server_when_its_certificate_does_not_verify(
        ca: Ca, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tap's own words, without the SDK's path before it: its client trusts the
    system's CAs only (no ``SSL_CERT_FILE``)."""
    monkeypatch.delenv("SSL_CERT_FILE")
    async with tls_upstream(ca) as (up, _):
        tap = HttpTap(up.url, {}, cast(Any, _Modern()), tls=httpx2.create_ssl_context())
        with pytest.raises(httpx2.ConnectError) as caught:
            await tap.send_stamped("tools/call", {"name": "add"}, {"timeout": 30})
        said = describe_error(caught.value)
        assert said.startswith(f"cannot connect to {up.url}: its TLS certificate does "
                               "not verify (unable to get local issuer certificate)"), said
        assert "SSL_CERT_FILE=/path/to/ca.pem" in said
        await tap.aclose()
        # The same words as the SDK's client's failure (httpx's) are given.
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.ConnectError) as sdk:
                await client.post(up.url, json={})
        assert describe_error(sdk.value) == said


class _Modern:
    protocol_version = "2026-07-28"


class _ClosesIdleTls:
    """A blocking HTTPS server in a thread: answers one POST on a kept-alive TLS
    connection, and either answers the next on it too (``healthy``), or closes it when
    told (``close_notify``, then FIN: a server's idle close) or as the next request
    arrives, unanswered (``cut``: an idle close crossing it), and answers the next
    connection's POST."""

    cut = False

    def __init__(self, ca: Ca) -> None:
        self.ctx = ca.server_context()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.close_now, self.closed = threading.Event(), threading.Event()
        self.healthy = False
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, conn: ssl.SSLSocket, n: int | None) -> None:
        body = read_request(conn)
        self.requests.append(json.loads(body))
        if n is None:
            return
        answer = json.dumps({"jsonrpc": "2.0", "id": json.loads(body)["id"],
                             "result": {"n": n}}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%b" % (len(answer), answer))

    def _accept(self) -> ssl.SSLSocket:
        raw, _ = self.listener.accept()
        return self.ctx.wrap_socket(raw, server_side=True)

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            first = self._accept()
            self._answer(first, 1)
            if self.healthy:
                self._answer(first, 2)
                self.close_now.wait()
                first.close()
                return
            if self.cut:
                self._answer(first, None)  # read, never answered
            else:
                self.close_now.wait()
            first.setblocking(False)  # close_notify, not waiting for the client's
            with contextlib.suppress(ssl.SSLWantReadError):
                first.unwrap()
            first.close()  # then the FIN
            self.closed.set()
            with self._accept() as second:
                self._answer(second, 2)

    async def stop(self) -> None:
        self.close_now.set()
        self.listener.close()
        await anyio.to_thread.run_sync(self.thread.join, 30)


async def _tls_tap(ca: Ca, port: int) -> HttpTap:
    return HttpTap(f"https://127.0.0.1:{port}/mcp", {}, cast(Any, _Modern()),
                   tls=ssl.create_default_context(cafile=str(ca.ca)))


@pytest.mark.parametrize("healthy", [True, False])
async def test_a_pooled_tls_connection_is_reused_unless_the_server_closed_it(
        ca: Ca, healthy: bool) -> None:
    """A quiet TLS connection is reused (TLS 1.3's session tickets, read with the
    first answer, leave its socket quiet); one whose server sent close_notify and its
    FIN, not yet read by the event loop (a loaded machine), is not written into: the
    call goes on a new connection."""
    server = _ClosesIdleTls(ca)
    server.healthy = healthy
    try:
        tap = await _tls_tap(ca, server.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        (conn,) = tap._idle
        tls = conn.writer.get_extra_info("ssl_object")
        assert tls.version() == "TLSv1.3" and tls.selected_alpn_protocol() == "http/1.1"
        if not healthy:
            server.close_now.set()
            assert server.closed.wait(30)  # (blocking: the loop reads nothing meanwhile)
            sock = conn.writer.get_extra_info("socket")
            assert select.select([sock.fileno()], [], [], 30)[0]  # arrived, unread
            assert not conn.reader.at_eof()
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 2}
        assert tap.opened == (1 if healthy else 2)
        await tap.aclose()
    finally:
        await server.stop()


async def test_a_request_crossing_a_tls_idle_close_is_written_again_if_safe(ca: Ca) -> None:
    """The server closes a reused TLS connection as a request arrives (close_notify, no
    byte of an answer): a request safe to repeat (here ``tasks/get``) is written once
    more on a new connection and answered, as over plain HTTP (``Pool.again``)."""
    server = _ClosesIdleTls(ca)
    server.cut = True
    try:
        tap = await _tls_tap(ca, server.port)
        asked = {"taskId": "t-1"}
        assert await tap.send_stamped("tasks/get", asked, {"timeout": 30}) == {"n": 1}
        assert await tap.send_stamped("tasks/get", asked, {"timeout": 30}) == {"n": 2}
        assert (tap.opened, tap.pool.resent, len(server.requests)) == (2, 1, 3)
        await tap.aclose()
    finally:
        await server.stop()


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_a_host_that_goes_away_cancels_the_https_upstream_request(
        ca: Ca, protocol: str) -> None:
    """Each era's cancellation signal reaches the upstream over TLS: the connection's
    close (its close_notify) on 2026-07-28, ``notifications/cancelled`` on a new TLS
    connection in the handshake era; the tool is cancelled, the session goes on."""
    async with tls_upstream(ca) as (up, _), \
            front(gateway(up.url, tap=True, protocol=protocol)) as fast:
        outcomes = await host_leaves_mid_call(fast, up)
        assert [o.status for o in outcomes] == ["cancelled"]
        await goes_on_through_the_tap(fast)


class _Hangs:
    """A blocking HTTPS server in a thread that reads one POST and never answers nor
    reads again (a hung server: no close_notify in return); ``fin`` is set when the
    client's FIN (or reset) reaches its socket."""

    def __init__(self, ca: Ca) -> None:
        self.ctx = ca.server_context()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.fin = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            raw, _ = self.listener.accept()
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                read_request(conn)
                # Below TLS from here on: the client's close_notify is bytes like any,
                # its FIN the end of them.
                with socket.socket(fileno=os.dup(conn.fileno())) as tcp:
                    with contextlib.suppress(ConnectionResetError):  # (a reset ends it too)
                        while tcp.recv(65536):
                            pass
                    self.fin.set()

    async def stop(self) -> None:
        self.listener.close()
        await anyio.to_thread.run_sync(self.thread.join, 30)


async def test_a_tls_connection_closed_by_the_tap_is_let_go_at_once(ca: Ca) -> None:
    """A call timed out on a hung server: its TLS connection is closed at once, as
    httpx closes its own (asyncio's close waited up to 30 s for the server's
    close_notify, keeping the socket: one per such call)."""
    server = _Hangs(ca)
    try:
        tap = await _tls_tap(ca, server.port)
        with pytest.raises(MCPError, match="Timed out"):
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 0.2})
        assert not tap._busy and not tap._idle
        assert await anyio.to_thread.run_sync(server.fin.wait, 10)  # (it was 30 s)
        await tap.aclose()
    finally:
        await server.stop()
