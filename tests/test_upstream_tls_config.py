"""The ``tls:`` block's refusals at load and on reload, and its files read again.

Every bad ``tls:`` is refused where the config is read, naming the setting, the file
and the fix, never a key's bytes or the password; a reload with such an entry keeps the
server running on its last valid one; a reload after the files changed (same paths)
restarts that server's sessions with them; a file gone since the load fails the next
connect in the load's words.
"""

from __future__ import annotations

import datetime
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import load_config, parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, make_gateway, until
from tests.test_http_tap import front
from tests.test_upstream_tls import PASSWORD, Pki, add_through_the_tap, mtls_upstream, pki

pytestmark = pytest.mark.anyio

__all__ = ["pki"]  # (the fixture, used here)


def refusal(pki: Pki, tls: Any, url: str = "https://127.0.0.1:1/mcp", **entry: Any) -> str:
    server = {"url": url, "tls": tls, **entry}
    if "command" in entry:
        del server["url"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"servers": {"alpha": server}}, source="servers.yaml",
                     environ={"TLS_KEY_PASSWORD": PASSWORD, "WRONG": "not it"})
    said = str(caught.value)
    assert said.startswith("servers.yaml: server 'alpha', field 'tls"), said
    for secret in (PASSWORD, "not it", "PRIVATE KEY-----\n", "CERTIFICATE-----\n"):
        assert secret not in said, said
    return said


def test_each_bad_tls_block_is_refused_with_the_fix(pki: Pki, tmp_path: Path) -> None:
    other = pki.stranger.issue("other", server=False)[1]
    old_cert, old_key = pki.clients.issue("old", server=False, days=-2)
    ended = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)).date()
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82" + b"\x00" * 64)
    cases = {
        "no such file; check the path": {"ca_file": str(tmp_path / "nope.pem")},
        "is a directory; give the path of a PEM file": {"ca_file": str(tmp_path)},
        "is DER (binary), not PEM: convert it (openssl x509 -inform der": {
            "ca_file": str(der)},
        "holds no certificate (-----BEGIN CERTIFICATE-----) (it holds a private key": {
            "ca_file": str(pki.client_key)},
        f"client_key {other} is not the key of client_cert {pki.client_cert}": pki.tls(
            client_key=str(other), client_key_password=None),
        "client_key_password does not decrypt client_key": pki.tls(
            client_key_password="${WRONG}"),
        "the key is encrypted; give its password as client_key_password: ${VAR}": pki.tls(
            client_key_password=None),
        f"client_cert {pki.client_cert} holds no private key: give client_key": {
            "client_cert": str(pki.client_cert)},
        "holds no private key (-----BEGIN PRIVATE KEY-----) (it holds a certificate": pki.tls(
            client_key=str(pki.client_cert)),
        "turning verification off (verify) is not supported": {"verify": False},
        "client_key and client_key_password go with client_cert": {
            "client_key": str(pki.client_key)},
        "give ca_file (the CA to trust for this server), client_cert": {},
        "'***' is how a listing shows the password": pki.tls(client_key_password="***"),
        f"client_key_password is given, but client_key {other} is not encrypted: remove "
        "client_key_password": pki.tls(client_cert=str(other.with_name("other.pem")),
                                       client_key=str(other)),
        f"client_cert {old_cert} expired on {ended:%Y-%m-%d} ": {
            "ca_file": str(pki.servers.ca), "client_cert": str(old_cert),
            "client_key": str(old_key)},
    }
    for words, tls in cases.items():
        tls = {k: v for k, v in tls.items() if v is not None}
        assert words in refusal(pki, tls), (words, refusal(pki, tls))
    assert "url is http:// (no TLS): write the server's https:// URL, or remove tls:" in \
        refusal(pki, pki.tls(), url="http://127.0.0.1:1/mcp")
    assert "runs a command (stdio)" in refusal(pki, pki.tls(), command="python")
    assert "instances[1].url is http://" in refusal(pki, pki.tls(), url=None, instances=[
        {"url": "https://127.0.0.1:1/mcp"}, {"url": "http://127.0.0.1:2/mcp"}])


def test_the_password_is_masked_wherever_the_config_is_shown(pki: Pki) -> None:
    config = parse_config({"servers": {"alpha": {"url": "https://127.0.0.1:1/mcp",
                                                 "tls": pki.tls()}}},
                          source="servers.yaml", environ={"TLS_KEY_PASSWORD": PASSWORD})
    server = config.servers["alpha"]
    assert server.redacted()["tls"] == {
        "ca_file": str(pki.servers.ca), "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key), "client_key_password": "***"}
    assert PASSWORD not in repr(server.tls) and PASSWORD not in str(server.model_dump())
    assert PASSWORD not in server.model_dump_json()
    assert mask_text(f"said {PASSWORD}") == "said ***"


def _write(path: Path, url: str, tls: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"servers": {"alpha": {
        "url": url, "protocol": "2026-07-28", "tls": tls}}}))


async def test_a_reload_reads_the_files_again(pki: Pki, tmp_path: Path) -> None:
    """The client certificate is one the server does not accept (another CA's): the
    replica fails.  Files replaced at the same paths: a reload with a key that does not
    fit is refused for that server, which keeps its entry; one with a certificate the
    server accepts restarts the server's sessions with the new files (its entry is the
    same text: the files' content tells the change)."""
    cert, key = tmp_path / "gateway.pem", tmp_path / "gateway-key.pem"
    pki.stranger.issue("gateway", server=False, cert=cert, key=key)
    tls = {"ca_file": str(pki.servers.ca), "client_cert": str(cert), "client_key": str(key)}
    path = tmp_path / "servers.yaml"
    async with mtls_upstream(pki) as (up, _):
        _write(path, up.url, tls)
        settings = GatewaySettings(config=path, connect_timeout=10.0, db=None,
                                   startup_wait=600.0, call_timeout=60)
        gw = Gateway(load_config(path, partial=True), settings, restart=FAST_RESTART,
                     transport_factory=default_transport)
        async with front(gw) as fast:
            replica = gw.manager.services["alpha"].replicas[0]
            await until(lambda: replica.state is UpstreamState.FAILED)  # (parked)
            shutil.copy(pki.stranger.issue("spare", server=False)[1], key)  # (not its key)
            report = await gw.control.reload_config()
            assert "is not the key of client_cert" in report.invalid["alpha"], report
            assert gw.manager.services["alpha"].replicas[0] is replica
            pki.clients.issue("gateway", server=False, cert=cert, key=key)
            report = await gw.control.reload_config()
            assert report.restarted == ["alpha"] and not report.invalid, report
            fresh = gw.manager.services["alpha"].replicas[0]
            await until(lambda: fresh.state is UpstreamState.READY)
            await add_through_the_tap(fast, 1)
            assert (await gw.control.reload_config()).restarted == []  # nothing changed


async def test_a_file_gone_since_the_load_fails_the_connect_in_the_same_words(
        pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    shutil.copy(pki.servers.ca, ca)
    config = parse_config({"servers": {"alpha": {"url": "https://127.0.0.1:1/mcp",
                                                 "tls": {"ca_file": str(ca)}}}},
                          source="test").servers["alpha"]
    ca.unlink()
    transport: Any = default_transport(config, None)
    with pytest.raises(ConfigError) as caught:
        async with transport.connect_session():
            pass
    assert str(caught.value) == f"tls: ca_file {ca}: no such file; check the path"


async def test_a_device_or_a_pipe_given_as_a_tls_file_is_refused_unopened(
        tmp_path: Path) -> None:
    """An admin adding a server (over the network) names a pipe, a terminal or a device
    as a tls: file: refused without opening it (sec29: open() of a FIFO, or read() of a
    terminal, blocked the gateway's event loop -- every caller -- until someone wrote)."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    # The old code waited in open() for a writer: this one lets it on (to its words).
    writer = threading.Thread(target=lambda: fifo.open("wb").close(), daemon=True)
    writer.start()
    try:
        async with Client(make_gateway({}, db=tmp_path / "gw.db").server) as client:
            for setting, path in (("ca_file", fifo), ("client_cert", "/dev/null")):
                answer = await client.call_tool("gateway_add_server", {
                    "name": "beta", "config": {"url": "https://127.0.0.1:1/mcp",
                                               "tls": {setting: str(path)}}},
                    raise_on_error=False)
                text = answer.content[0].text  # type: ignore[union-attr]
                assert answer.is_error and f"{setting} {path}: is not a regular file (a " \
                    "device, pipe or socket); give the path of a PEM file" in text, text
    finally:
        if writer.is_alive():  # the pipe was never opened for reading: let it go
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join()
