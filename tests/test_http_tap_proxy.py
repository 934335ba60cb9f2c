"""An ``https`` upstream behind a proxy from the environment (``HTTPS_PROXY``).

The tap steps aside there (the session's client, httpx, opens the ``CONNECT`` tunnel);
what is tested is what a user reads when the proxy will not carry the gateway: a
refusal (407, 403) or a proxy that is gone is said naming the proxy (never its
credentials), the server and the fix, where it read as the server's own failure ("407
Proxy Authentication Required"; "connection refused ... check that the server is
running").  A real ``CONNECT`` proxy on 127.0.0.1 (asyncio) and a uvicorn upstream over
TLS with a private CA (``test_http_tap_tls.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest

from fast_mcp_gateway.upstream.model import UpstreamState, describe_error
from tests.test_http_tap import front, gateway
from tests.test_http_tap_tls import Ca, ca, tls_upstream

pytestmark = pytest.mark.anyio

__all__ = ["ca"]  # (the fixture, used here)

SECRET = "pr0xy-s3cret"


class ConnectProxy:
    """A ``CONNECT`` proxy: opens the tunnel for ``user:SECRET`` (Basic), else answers
    ``refusal`` (``407 Proxy Authentication Required`` by default)."""

    def __init__(self, refusal: bytes = b"407 Proxy Authentication Required") -> None:
        self.refusal, self.port = refusal, 0
        self.asked: list[str] = []  # each CONNECT's target

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            self.asked.append(head[0].split(" ")[1])
            given = [line.split(" ")[-1] for line in head
                     if line.lower().startswith("proxy-authorization:")]
            allowed = base64.b64encode(f"user:{SECRET}".encode()).decode()
            if self.refusal != b"200" or given != [allowed]:
                writer.write(b"HTTP/1.1 %b\r\nproxy-authenticate: Basic realm=\"p\"\r\n"
                             b"content-length: 0\r\n\r\n" % (
                                 b"407 Proxy Authentication Required"
                                 if self.refusal == b"200" else self.refusal))
                await writer.drain()
                return
            host, _, port = head[0].split(" ")[1].rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                with contextlib.suppress(OSError):
                    while data := await source.read(65536):
                        sink.write(data)
                        await sink.drain()
                sink.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[ConnectProxy]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


def _environment(monkeypatch: pytest.MonkeyPatch, proxy: str) -> None:
    for key in ("ALL_PROXY", "all_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)


async def test_calls_go_through_the_proxy_the_tap_steps_aside(
        ca: Ca, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ConnectProxy(b"200").serving() as proxy, tls_upstream(ca) as (up, _):
        _environment(monkeypatch, f"http://user:{SECRET}@127.0.0.1:{proxy.port}")
        async with front(gateway(up.url, tap=True, protocol="legacy")) as fast:
            got = (await fast.post("alpha_add", {"a": 1, "b": 2})).json()["result"]
            assert got["structuredContent"] == {"result": 3} and fast.tap is None
            assert proxy.asked and set(proxy.asked) == {up.url.split("/")[2]}


@pytest.mark.parametrize(("refusal", "credentials", "fix"), [
    (b"407 Proxy Authentication Required", f"user:wrong-{SECRET}@",
     "the user and password in HTTPS_PROXY are not accepted; correct them"),
    (b"407 Proxy Authentication Required", "",
     "give its user and password in HTTPS_PROXY (as user:password@ before its host)"),
    (b"403 Forbidden", f"user:{SECRET}@", "ask its administrator to allow that host"),
])
async def test_a_proxy_that_refuses_the_tunnel_is_named_with_the_fix(
        ca: Ca, monkeypatch: pytest.MonkeyPatch, refusal: bytes, credentials: str,
        fix: str) -> None:
    """The words of the SDK's client's failure (httpx's ``ProxyError``), and the
    replica's state, name the proxy without its credentials."""
    async with ConnectProxy(refusal).serving() as proxy, tls_upstream(ca) as (up, _):
        _environment(monkeypatch, f"http://{credentials}127.0.0.1:{proxy.port}")
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.ProxyError) as refused:
                await client.post(up.url, json={})
        said = describe_error(refused.value)
        assert said.startswith(
            f"the proxy http://127.0.0.1:{proxy.port} (HTTPS_PROXY) refused to connect the "
            f"gateway to {up.url} ({refusal.decode()}): {fix}"), said
        assert "NO_PROXY" in said and SECRET not in said
        if credentials.startswith("user:wrong"):  # ... and so says the replica
            gw = gateway(up.url, tap=True, protocol="legacy")
            async with front(gw):
                replica = gw.manager.services["alpha"].replicas[0]
                with anyio.fail_after(60):
                    while "refused to connect" not in (  # noqa: ASYNC110
                            replica.last_error or ""):
                        await anyio.sleep(0.02)
                assert replica.state is not UpstreamState.READY
                assert replica.last_error == said


async def test_a_proxy_that_is_gone_is_named_not_the_server(
        ca: Ca, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at the proxy's address: the words were the server's ("nothing
    is listening on that port; check that the server is running")."""
    async with ConnectProxy(b"200").serving() as proxy:
        gone = proxy.port
    async with tls_upstream(ca) as (up, _):
        _environment(monkeypatch, f"http://user:{SECRET}@127.0.0.1:{gone}")
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.ConnectError) as failed:
                await client.post(up.url, json={})
        said = describe_error(failed.value)
        assert said.startswith(f"cannot connect to the proxy http://127.0.0.1:{gone} "
                               f"(HTTPS_PROXY) for {up.url}: "), said
        assert "check that the proxy is running" in said and SECRET not in said
