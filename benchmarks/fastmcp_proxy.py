"""FastMCP's own proxy as a stdio server: the peer the gateway is compared with.

Run as::

    python benchmarks/fastmcp_proxy.py [--mode auto|legacy] COMMAND [ARGS...]
    python benchmarks/fastmcp_proxy.py [--mode auto|legacy] --config upstreams.json
    python benchmarks/fastmcp_proxy.py --http PORT [--mode ...] http://127.0.0.1:P/mcp

``--http PORT`` serves the proxy over streamable HTTP on 127.0.0.1:PORT/mcp instead of
stdio; an upstream given as an ``http://`` URL is reached over streamable HTTP.

One upstream is proxied under its own tool names (``FastMCPProxy``, what
``create_proxy`` builds); a config ``{"name": [command, arg, ...], ...}`` mounts one
``ProxyProvider`` per upstream under ``namespace=name`` (tools ``name_tool``, as the
gateway names them).

Each upstream gets **one persistent session**: a ``ProxyClient`` connected before the
server starts and returned by the provider's client factory for every request (the
set-up from /work/shared/reference/fastmcp4-gateway-notes.md, section 3).  FastMCP's
default, a fresh session per request, would make every call a reconnect and is not a
fair comparison.  Every upstream connects at once, as the gateway's do.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.client.transports import ClientTransport, StdioTransport, StreamableHttpTransport
from fastmcp.server.providers.proxy import FastMCPProxy, ProxyClient, ProxyProvider


def upstreams_from(args: argparse.Namespace) -> dict[str, list[str]]:
    """Upstream name -> command line; the name is "" for a single, unprefixed upstream."""
    if args.config is not None:
        loaded = json.loads(Path(args.config).read_text())
        if not isinstance(loaded, dict) or not all(
            isinstance(v, list) and v and all(isinstance(a, str) for a in v)
            for v in loaded.values()
        ):
            raise SystemExit(f"{args.config}: expected {{name: [command, arg, ...]}}")
        return {str(k): v for k, v in loaded.items()}
    if not args.command:
        raise SystemExit("give an upstream COMMAND [ARGS...] or --config FILE")
    return {"": list(args.command)}


def transport_of(argv: list[str]) -> ClientTransport:
    if len(argv) == 1 and argv[0].startswith("http"):
        return StreamableHttpTransport(argv[0])
    return StdioTransport(argv[0], argv[1:], keep_alive=False)


async def serve(upstreams: dict[str, list[str]], mode: str, http_port: int | None = None
                ) -> None:
    """Connect every upstream, then serve the proxy on stdio until stdin closes (or on
    streamable HTTP until stopped)."""
    clients = {
        name: ProxyClient(transport_of(argv), mode=mode, timeout=120)
        for name, argv in upstreams.items()
    }
    stop = anyio.Event()
    connected = 0
    all_connected = anyio.Event()

    async def hold(client: ProxyClient[Any]) -> None:
        nonlocal connected
        async with client:
            connected += 1
            if connected == len(clients):
                all_connected.set()
            await stop.wait()

    async with anyio.create_task_group() as tg:
        for client in clients.values():
            tg.start_soon(hold, client)
        await all_connected.wait()
        server: FastMCP[Any]
        if list(clients) == [""]:
            only = clients[""]
            server = FastMCPProxy(client_factory=lambda: only, name="fastmcp-proxy")
        else:
            server = FastMCP("fastmcp-proxy")
            for name, client in clients.items():
                server.add_provider(ProxyProvider(lambda c=client: c), namespace=name)
        try:
            if http_port is not None:
                await server.run_http_async(show_banner=False, host="127.0.0.1",
                                            port=http_port, log_level="WARNING")
            else:
                await server.run_stdio_async(show_banner=False, log_level="WARNING")
        finally:
            stop.set()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="auto", help="protocol mode towards the upstreams")
    parser.add_argument("--config", default=None, help="JSON {name: [command, args...]}")
    parser.add_argument("--http", type=int, default=None, metavar="PORT",
                        help="serve streamable HTTP on 127.0.0.1:PORT instead of stdio")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    anyio.run(serve, upstreams_from(args), args.mode, args.http)


if __name__ == "__main__":
    main()
