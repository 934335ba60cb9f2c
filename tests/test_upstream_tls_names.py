"""Where ``tls:`` files are read from, and ``server_name``, on both paths.

A relative path is read from the folder of the config file that names it (``~``
expanded), whatever the gateway's working directory; a server added at run time (the
admin tool, REST: no file) gives absolute paths.  ``server_name`` is the name the
server's certificate is checked against and sent as SNI, for the SDK's client and the
HTTP side door alike (one SSL context).  An SSE server's ``tls:`` is its client's too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import load_config, parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.config.upstream_tls import UpstreamTls
from fast_mcp_gateway.upstream.model import UpstreamState, describe_error
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, make_gateway, until
from tests.test_http_tap import front
from tests.test_rest import OPS, assert_error, serving
from tests.test_upstream_tls import (
    HUNG_UP,
    PASSWORD,
    Pki,
    _both,
    _Refuses,
    add_through_the_tap,
    gateway,
    mtls_upstream,
    pki,
)
from tests.test_upstream_tls_config import refusal

pytestmark = pytest.mark.anyio

__all__ = ["pki"]  # (the fixture, used here)

SETTINGS = {"connect_timeout": 10.0, "db": None, "startup_wait": 600.0, "call_timeout": 60}


async def test_relative_paths_are_read_from_the_config_files_folder(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config file in /…/etc, the gateway run from another folder and given the
    file's path relatively: ``tls/ca.pem`` is /…/etc/tls/ca.pem, ``~/`` the user's home;
    the session and the side door connect with them."""
    folder, home, elsewhere = tmp_path / "etc", tmp_path / "home", tmp_path / "elsewhere"
    for made in (folder / "tls", home, elsewhere):
        made.mkdir(parents=True)
    shutil.copy(pki.servers.ca, folder / "tls" / "ca.pem")
    shutil.copy(pki.client_cert, folder / "tls" / "gateway.pem")
    shutil.copy(pki.client_key, home / "gateway-key.pem")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    async with mtls_upstream(pki) as (up, _):
        (folder / "servers.yaml").write_text(yaml.safe_dump({"servers": {"alpha": {
            "url": up.url, "protocol": "2026-07-28", "tls": {
                "ca_file": "tls/ca.pem", "client_cert": "tls/gateway.pem",
                "client_key": "~/gateway-key.pem",
                "client_key_password": "${TLS_KEY_PASSWORD}"}}}}))
        config = load_config(Path("..") / "etc" / "servers.yaml", partial=True)
        assert not config.invalid, config.invalid
        tls = config.servers["alpha"].tls
        assert tls is not None
        assert (tls.ca_file, tls.client_cert, tls.client_key) == (
            str(elsewhere / ".." / "etc" / "tls" / "ca.pem"),
            str(elsewhere / ".." / "etc" / "tls" / "gateway.pem"),
            str(home / "gateway-key.pem"))
        gw = Gateway(config, GatewaySettings(**SETTINGS), restart=FAST_RESTART,
                     transport_factory=default_transport)
        async with front(gw) as fast:
            replica = gw.manager.services["alpha"].replicas[0]
            await until(lambda: replica.state is UpstreamState.READY)
            await add_through_the_tap(fast, 1)


RELATIVE = ("server 'billing', field 'tls.ca_file': tls/ca.pem is a relative path, and a "
            "server added at run time has no config file to read it from: give the file's "
            "absolute path (e.g. /etc/gateway/tls/ca.pem)")


async def test_a_server_added_at_run_time_gives_absolute_paths(tmp_path: Path) -> None:
    """The admin tool and REST refuse a relative ``tls:`` path, saying why and the fix
    (it read "no such file", from the gateway's working directory)."""
    config = {"url": "https://127.0.0.1:1/mcp", "tls": {"ca_file": "tls/ca.pem"}}
    gw = make_gateway({}, db=tmp_path / "g.db")
    async with Client(gw.server) as client:
        result = await client.call_tool_mcp("gateway_add_server",
                                            {"name": "billing", "config": config})
        assert result.isError
        assert RELATIVE in result.content[0].text, result.content  # type: ignore[union-attr]
    async with serving(tmp_path / "rest", {}) as (api, _):
        refused = assert_error(await api("POST", "/servers", OPS, json={
            "name": "billing", "config": config}), 422, "invalid_config")
        assert RELATIVE in refused["message"], refused


def test_server_name_is_a_host_name(pki: Pki) -> None:
    for wrong in ("https://billing.internal", "billing.internal:8443", "billing internal",
                  "billing.internal/mcp"):
        said = refusal(pki, {"ca_file": str(pki.servers.ca), "server_name": wrong})
        assert f"server_name {wrong!r} is not a host name: give the name the server's " \
               "certificate is for" in said, said
    assert "server_name (the name its certificate is for)" in refusal(pki, {})
    for right in ("billing.internal", "10.0.0.7", "::1", "svc_a.local"):
        tls = UpstreamTls(server_name=right)
        assert tls.server_name == right


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_server_name_is_the_name_checked_on_both_paths(pki: Pki, protocol: str) -> None:
    """The upstream's certificate is for billing.internal only, and it is reached at
    127.0.0.1: with ``server_name`` the session (resources: the SDK's client) and the
    side door (tools/call) connect; without, the replica says the name does not match
    and where to give the right one."""
    named = pki.servers.issue("billing", server=True, names=("billing.internal",))
    async with mtls_upstream(pki, server=named) as (up, _):
        async with front(gateway(up.url, pki.tls(server_name="billing.internal"),
                                 protocol)) as fast:
            replica = fast.gateway.manager.services["alpha"].replicas[0]
            assert replica.state is UpstreamState.READY, replica.last_error
            await add_through_the_tap(fast, 1)
            async with Client(str(fast.http.base_url).rstrip("/") + "/mcp") as client:
                (config,) = await client.read_resource("data://alpha/config")
                assert "alpha" in config.text  # type: ignore[union-attr]
        async with front(gateway(up.url, pki.tls(), protocol)) as fast:
            replica = fast.gateway.manager.services["alpha"].replicas[0]
            assert replica.state is not UpstreamState.READY
            assert "certificate is not valid for '127.0.0.1'" in (replica.last_error or "")
            assert "or give that name as the server's tls: {server_name: ...}" in (
                replica.last_error or ""), replica.last_error


async def test_server_name_is_sent_as_sni_on_both_paths(pki: Pki) -> None:
    """A server reached at 127.0.0.1 sees SNI billing.internal from the tap and from the
    SDK's client (asyncio's and anyio's connections, one SSL context)."""
    blocking = _Refuses(pki)
    seen: list[str | None] = []
    blocking.ctx.sni_callback = lambda _conn, name, _ctx: seen.append(name)
    blocking.ctx.load_cert_chain(*pki.servers.issue("billing", server=True,
                                                    names=("billing.internal",)))
    try:
        tls = UpstreamTls(ca_file=str(pki.servers.ca), client_cert=str(pki.client_cert),
                          client_key=str(pki.client_key), client_key_password=PASSWORD,
                          server_name="billing.internal")
        tapped, sdk = await _both(blocking.url, tls)
    finally:
        await blocking.stop()
    assert seen == ["billing.internal", "billing.internal"], seen
    assert describe_error(sdk, blocking.url) == describe_error(tapped)


async def test_an_sse_server_uses_its_tls_block(pki: Pki) -> None:
    """``transport: sse``: the session's client is made with the server's SSL context
    (its CA, the client certificate); without the certificate it is refused."""
    async with mtls_upstream(pki, sse=True) as (up, _):
        for tls, ready in ((pki.tls(), True), ({"ca_file": str(pki.servers.ca)}, False)):
            config = parse_config({"servers": {"alpha": {
                "url": up.url, "transport": "sse", "tls": tls}}}, source="test")
            gw = Gateway(config, GatewaySettings(**SETTINGS), restart=FAST_RESTART,
                         transport_factory=default_transport)
            async with front(gw) as fast:
                replica = gw.manager.services["alpha"].replicas[0]
                if not ready:
                    assert replica.state is not UpstreamState.READY
                    assert f"{up.url} {HUNG_UP}" in (replica.last_error or ""), \
                        replica.last_error
                    continue
                assert replica.state is UpstreamState.READY, replica.last_error
                got = (await fast.post("alpha_add", {"a": 2, "b": 1})).json()["result"]
                assert got["structuredContent"] == {"result": 3}, got

