"""A url: server's own TLS settings (``tls:``, config/upstream_tls.py) on both paths.

Two private CAs are made here: one signed the upstream's certificate (for 127.0.0.1),
the other the gateway's client certificate.  The upstream is a FastMCP server under
uvicorn over TLS that requires a client certificate of the second CA
(``ssl.CERT_REQUIRED``).  Nothing in the gateway's environment trusts either CA
(``SSL_CERT_FILE`` unset): only the server's ``tls:`` block does.  The SDK's client
(the session: ``initialize``/``server/discover``, resources, prompts) and the HTTP side
door (the tap: tools/call) use one SSL context made from it, in both eras.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway._compat import tls_context
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.config.upstream_tls import UpstreamTls
from fast_mcp_gateway.upstream.http_tap import HttpTap
from fast_mcp_gateway.upstream.model import UpstreamState, describe_error
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART
from tests.test_http_tap import Front, Upstream, front
from tests.test_http_tap_handshake import Served, handshake_upstream

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


class Authority:
    """A private CA: its certificate (``ca.pem``) in ``folder``, and what it signs."""

    def __init__(self, folder: Path, name: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.key = folder, ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        self.cert = self._signed(self.name, self.key.public_key(), [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.KeyUsage(digital_signature=True, content_commitment=False,
                           key_encipherment=False, data_encipherment=False,
                           key_agreement=False, key_cert_sign=True, crl_sign=True,
                           encipher_only=False, decipher_only=False), True),
            (x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), False)])
        self.ca = folder / "ca.pem"
        self.ca.write_bytes(self._pem(self.cert))

    def _signed(self, subject: Any, public: Any, extensions: list[tuple[Any, bool]],
                days: int = 30) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=40))
                   .not_valid_after(now + datetime.timedelta(days=days)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self.key, hashes.SHA256())

    @staticmethod
    def _pem(cert: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, *, server: bool, password: str | None = None,
              cert: Path | None = None, key: Path | None = None,
              names: tuple[str, ...] = ("localhost", "127.0.0.1"),
              days: int = 30) -> tuple[Path, Path]:
        """A certificate for ``names`` (``server``: by default localhost and 127.0.0.1)
        or a client, valid ``days`` more (expired if negative), and its key (encrypted
        with ``password``), written to ``cert``/``key`` (default: ``stem``.pem/-key.pem)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        private = ec.generate_private_key(ec.SECP256R1())
        use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        extensions: list[tuple[Any, bool]] = [
            (x509.ExtendedKeyUsage([use]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False)]
        if server:
            extensions.append((x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
                for n in names]), False))
        leaf = self._signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]),
                            private.public_key(), extensions, days)
        cert = cert or self.folder / f"{stem}.pem"
        key = key or self.folder / f"{stem}-key.pem"
        cert.write_bytes(self._pem(leaf))
        key.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()) if password
            else serialization.NoEncryption()))
        return cert, key


class Pki:
    """The upstream's CA and certificate, the clients' CA and the gateway's certificate
    (its key encrypted with ``PASSWORD``), and a CA nobody trusts."""

    def __init__(self, folder: Path) -> None:
        self.servers = Authority(folder / "servers", "Upstream CA")
        self.clients = Authority(folder / "clients", "Client CA")
        self.stranger = Authority(folder / "stranger", "Unknown CA")
        self.server_cert, self.server_key = self.servers.issue("upstream", server=True)
        self.client_cert, self.client_key = self.clients.issue("gateway", server=False,
                                                               password=PASSWORD)

    def tls(self, **changed: Any) -> dict[str, Any]:
        """A ``tls:`` block for the upstream (the password from ``${TLS_KEY_PASSWORD}``)."""
        return {"ca_file": str(self.servers.ca), "client_cert": str(self.client_cert),
                "client_key": str(self.client_key),
                "client_key_password": "${TLS_KEY_PASSWORD}", **changed}


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """The certificates, with no CA of the gateway's environment (only ``tls:``)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("TLS_KEY_PASSWORD", PASSWORD)
    return Pki(tmp_path / "pki")


@contextlib.asynccontextmanager
async def mtls_upstream(pki: Pki, port: int = 0, *, sse: bool = False,
                        server: tuple[Path, Path] | None = None,
                        ) -> AsyncIterator[tuple[Upstream, Served]]:
    """The upstream over TLS (streamable HTTP at /mcp, or ``sse`` at /sse), requiring a
    client certificate the clients' CA signed; its certificate ``server`` (default: the
    one for 127.0.0.1)."""
    import uvicorn

    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    path = "/sse" if sse else "/mcp"
    app = handshake_upstream(up).http_app(path=path, transport="sse" if sse else "http")
    served = Served(app, port)
    cert, key = server or (pki.server_cert, pki.server_key)
    served.server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", lifespan="on", log_config=None,
        ssl_certfile=str(cert), ssl_keyfile=str(key),
        ssl_ca_certs=str(pki.clients.ca), ssl_cert_reqs=ssl.CERT_REQUIRED))
    async with served.serving():
        up.url = f"https://127.0.0.1:{served.port}{path}"
        yield up, served


def gateway(url: str, tls: dict[str, Any], protocol: str) -> Gateway:
    config = parse_config({"servers": {"alpha": {"url": url, "protocol": protocol,
                                                 "tls": tls}}}, source="test")
    settings = GatewaySettings(connect_timeout=10.0, db=None, startup_wait=600.0,
                               call_timeout=60)
    return Gateway(config, settings, restart=FAST_RESTART, transport_factory=default_transport)


async def add_through_the_tap(fast: Front, a: int) -> None:
    tap = fast.tap
    assert tap is not None
    before = tap.served
    got = (await fast.post("alpha_add", {"a": a, "b": 1})).json()["result"]
    assert got["structuredContent"] == {"result": a + 1}, got
    assert tap.served == before + 1


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy", "auto"])
async def test_a_private_ca_and_a_client_certificate_serve_both_paths(
        pki: Pki, protocol: str) -> None:
    """The session (the SDK's client) connects, reads a resource and gets a prompt; the
    tap serves tools/call; both with the one SSL context made from ``tls:``, which
    trusts the server's CA alone (not the system's)."""
    async with mtls_upstream(pki) as (up, _), \
            front(gateway(up.url, pki.tls(), protocol)) as fast:
        replica = fast.gateway.manager.services["alpha"].replicas[0]
        assert replica.state is UpstreamState.READY, replica.last_error
        # (auto opens the handshake era towards https)
        assert replica.is_modern is (protocol == "2026-07-28"), replica.protocol_version
        await add_through_the_tap(fast, 1)
        tap = fast.tap
        assert tap is not None and tap.pool.tls is not None
        assert [dict(c["subject"][0])["commonName"] for c in tap.pool.tls.get_ca_certs()] == [
            "Upstream CA"]
        # The SDK's path upstream: a resource and a prompt (the tap steps aside).
        async with Client(str(fast.http.base_url).rstrip("/") + "/mcp") as client:
            (config,) = await client.read_resource("data://alpha/config")
            assert json.loads(config.text) == {"name": "alpha"}  # type: ignore[union-attr]
            prompt = await client.get_prompt("alpha_greet", {"name": "Ada"})
            assert "Hello Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
        await add_through_the_tap(fast, 2)
        assert tap.opened == 1  # one TLS connection kept for the tap's calls


async def _both(url: str, tls: UpstreamTls) -> tuple[BaseException, BaseException]:
    """The tap's failure and the SDK's client's at ``url``, with ``tls``'s SSL context
    (one object, lent by the client to the tap as the transport does)."""
    context = tls.context(httpx2.create_ssl_context)
    async with httpx2.AsyncClient(verify=context) as client:
        assert tls_context(client, url) is context
        tap = HttpTap(url, {}, cast(Any, _Modern()), tls=tls_context(client, url))
        with pytest.raises(httpx2.TransportError) as tapped:
            await tap.send_stamped("tools/call", {"name": "add"}, {"timeout": 30})
        await tap.aclose()
        with pytest.raises((OSError, httpx2.TransportError)) as sdk:  # (an alert: ssl.SSLError)
            await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    return tapped.value, sdk.value


class _Modern:
    protocol_version = "2026-07-28"


class _Refuses:
    """A blocking TLS server in a thread requiring a client certificate of the clients'
    CA, as nginx or Go's server refuses: its alert sent, then a lingering close (the
    client's request read to its FIN, so that no reset overtakes the alert; asyncio's
    server, uvicorn's, aborts the connection instead: no alert)."""

    def __init__(self, pki: Pki, *, lingering: bool = True) -> None:
        self.lingering = lingering
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(pki.clients.ca)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/mcp"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            conn = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            with conn, contextlib.suppress(OSError):
                try:
                    conn.do_handshake()
                except ssl.SSLError:  # (refused: the alert is on its way)
                    if not self.lingering:  # (closed with the request unread: a reset,
                        continue            # which may overtake the alert, or not)
                    conn.shutdown(socket.SHUT_WR)  # (below TLS from here on)
                    while conn.recv(65536):
                        pass

    async def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # (wakes the accept: a close does not)
        self.listener.close()
        await anyio.to_thread.run_sync(self.thread.join, 30)


HUNG_UP = ("closed the connection without an answer (a TLS server does so too when it "
           "wants a client certificate it was not given or does not accept: see the "
           "server's tls: client_cert)")


@pytest.mark.parametrize("server", ["uvicorn", "alerts", "abrupt"])
@pytest.mark.parametrize("case", ["no client certificate", "an unknown client CA",
                                  "another server CA"])
async def test_both_paths_say_the_same_of_a_tls_setting_that_does_not_fit(
        pki: Pki, case: str, server: str) -> None:
    """The same SSL context on the tap and the SDK's client: the same words, naming
    the ``tls:`` setting to change.  TLS 1.3: a missing or refused client certificate
    is known after the handshake, by the server's alert (sent then read: ``alerts``),
    its hang-up (uvicorn's, without an alert) or either (``abrupt``: the alert, then a
    reset that may overtake it): one text for all, whichever the gateway reads (it
    read "asks for a client certificate" or "closed the connection" by the timing)."""
    if case == "no client certificate":
        tls = UpstreamTls(ca_file=str(pki.servers.ca))
        said = HUNG_UP
    elif case == "an unknown client CA":
        cert, key = pki.stranger.issue("intruder", server=False)
        tls = UpstreamTls(ca_file=str(pki.servers.ca), client_cert=str(cert),
                          client_key=str(key))
        said = HUNG_UP
    else:
        tls = UpstreamTls(ca_file=str(pki.stranger.ca), client_cert=str(pki.client_cert),
                          client_key=str(pki.client_key), client_key_password=PASSWORD)
        said = "its TLS certificate does not verify (unable to get local issuer " \
               "certificate): if a private CA signed it, give the gateway that CA's " \
               "certificate (the server's tls: {ca_file: /path/to/ca.pem} in servers.yaml"
    if server == "uvicorn":
        async with mtls_upstream(pki) as (up, _):
            url = up.url
            tapped, sdk = await _both(url, tls)
        rounds = [(tapped, sdk)]
    else:
        blocking = _Refuses(pki, lingering=server == "alerts")
        try:
            url = blocking.url
            rounds = [await _both(url, tls) for _ in range(1 if server == "alerts" else 8)]
        finally:
            await blocking.stop()
    for tapped, sdk in rounds:
        assert f"{url}{':' if case == 'another server CA' else ''} {said}" in \
            describe_error(tapped), describe_error(tapped)
        # (the replica's words: the URL named where httpx's error carries no request)
        assert describe_error(sdk, url) == describe_error(tapped)


@pytest.mark.parametrize("server", ["uvicorn", "alerts", "abrupt"])
async def test_a_replica_without_the_client_certificate_says_what_to_give(
        pki: Pki, server: str) -> None:
    """The session's connect (the SDK's client) fails; the replica's state names the
    server's URL and the setting (httpx let the alert out without a request)."""
    async with contextlib.AsyncExitStack() as stack:
        if server == "uvicorn":
            url = (await stack.enter_async_context(mtls_upstream(pki)))[0].url
        else:
            blocking = _Refuses(pki, lingering=server == "alerts")
            stack.push_async_callback(blocking.stop)
            url = blocking.url
        gw = gateway(url, {"ca_file": str(pki.servers.ca)}, "2026-07-28")
        fast = await stack.enter_async_context(front(gw))
        replica = fast.gateway.manager.services["alpha"].replicas[0]
        assert replica.state is not UpstreamState.READY
        assert f"{url} {HUNG_UP}" in (replica.last_error or ""), replica.last_error


async def test_a_ca_file_that_did_not_sign_the_server_is_named_as_what_to_change(
        pki: Pki) -> None:
    """With ``tls: ca_file`` (trusted instead of the system's CAs) the replica's words
    name that setting alone (trial15: they said to give a ca_file, which was given, or
    SSL_CERT_FILE, which such a server does not read)."""
    async with mtls_upstream(pki) as (up, _), \
            front(gateway(up.url, pki.tls(ca_file=str(pki.stranger.ca)), "legacy")) as fast:
        replica = fast.gateway.manager.services["alpha"].replicas[0]
        assert replica.state is not UpstreamState.READY
        assert replica.last_error == (
            f"cannot connect to {up.url}: its TLS certificate does not verify against the "
            "server's tls: ca_file (unable to get local issuer certificate), trusted instead "
            "of the system's CAs: give as ca_file the certificate of the CA that signed the "
            "server's (a file may hold several)"), replica.last_error
