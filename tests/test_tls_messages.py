"""A remote server's URL that does not fit its TLS says what to change: ``https://`` for a
plain-HTTP server, ``http://`` for a TLS one, a certificate the gateway cannot verify.
They said OpenSSL's words with 'check that the server is running and reachable', or only
httpx's ``ReadError``."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.upstream.replica import Upstream

pytestmark = pytest.mark.anyio


async def failure(url: str) -> str:
    """``last_error`` after one connect attempt (as ``mcp-gateway check``)."""
    config = parse_config({"servers": {"up": {"url": url}}}, source="test").servers["up"]
    upstream = Upstream(config, connect_timeout=30)
    with anyio.fail_after(120):  # a guard only: each attempt ends by itself
        with pytest.raises(Exception):  # noqa: B017 - the text is what is tested
            await upstream.probe()
    assert upstream.last_error is not None
    return upstream.last_error


class _Nothing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Nothing)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def self_signed(folder: Path) -> ssl.SSLContext:
    """A TLS server context with a certificate for localhost that no CA signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


async def test_https_to_a_plain_http_server_says_write_http() -> None:
    with serving() as port:
        url = f"https://127.0.0.1:{port}/mcp"
        error = await failure(url)
    assert error == (f"cannot connect to {url}: the server does not speak TLS there (plain "
                     "HTTP?): write http:// in 'url', or the port of its https endpoint"), error


async def test_http_to_a_tls_server_says_it_hung_up_and_names_https(tmp_path: Path) -> None:
    with serving(self_signed(tmp_path)) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        error = await failure(url)
    assert error == (f"{url} closed the connection without an answer (a TLS server does so "
                     "to a plain-HTTP request: if it serves https, write https:// in 'url'); "
                     "check that 'url' is the server's MCP endpoint, and the server's own "
                     "logs"), error


async def test_a_certificate_no_known_ca_signed_names_ssl_cert_file(tmp_path: Path) -> None:
    with serving(self_signed(tmp_path)) as port:
        url = f"https://127.0.0.1:{port}/mcp"
        error = await failure(url)
    assert error.startswith(f"cannot connect to {url}: its TLS certificate does not verify ("
                            ), error
    assert "): if a private CA signed it, give the gateway that CA's certificate " \
           "(the server's tls: {ca_file: /path/to/ca.pem} in servers.yaml; for every server, " \
           "SSL_CERT_FILE=/path/to/ca.pem, or SSL_CERT_DIR, in the gateway's environment)" \
           in error, error
    assert "running and reachable" not in error, error

