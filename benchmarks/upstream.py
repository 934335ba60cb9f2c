"""The benchmark's upstream: a tiny FastMCP stdio server.

Run as ``python benchmarks/upstream.py`` (stdio) or ``... upstream.py --http PORT``
(streamable HTTP on 127.0.0.1:PORT/mcp).  Both the direct client and the gateway
talk to exactly this process, so any difference between them is the gateway's.

Tools:

* ``echo(text)``: returns ``text`` (the per-call latency probe);
* ``add(a, b)``: returns ``a + b``;
* ``sleep_ms(ms)``: waits ``ms`` milliseconds without blocking the event loop, so
  concurrent calls overlap (the concurrency probe);
* ``blob(mb)``: returns one text block of ``mb`` MiB (the large-result probe; no
  structured copy, so the result on the wire is the text once).
"""

from __future__ import annotations

import anyio
from fastmcp import FastMCP


def build() -> FastMCP:
    """The benchmark upstream server; with ``BENCH_UPSTREAM_BEARER`` in the environment
    (``http_raw.py --auth``) it accepts only requests bearing that token."""
    import os

    bearer = os.environ.get("BENCH_UPSTREAM_BEARER")
    if bearer:
        from fastmcp.server.auth.providers.jwt import StaticTokenVerifier

        verifier = StaticTokenVerifier({bearer: {"client_id": "bench", "scopes": []}})
        mcp: FastMCP = FastMCP("bench-upstream", auth=verifier)
    else:
        mcp = FastMCP("bench-upstream")

    @mcp.tool
    def echo(text: str = "") -> str:
        """Return ``text`` unchanged."""
        return text

    @mcp.tool
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @mcp.tool
    async def sleep_ms(ms: float = 50.0) -> float:
        """Sleep ``ms`` milliseconds (asynchronously) and return ``ms``."""
        await anyio.sleep(ms / 1000)
        return ms

    @mcp.tool(output_schema=None)
    def blob(mb: float = 1.0) -> str:
        """Return ``mb`` MiB of text (no structured content)."""
        return _text(int(mb * MIB))

    return mcp


MIB = 1 << 20
_CHUNK = "0123456789abcdef" * 4096  # 64 KiB of JSON-safe text


def _text(size: int) -> str:
    """``size`` characters of text that need no escaping in JSON."""
    return (_CHUNK * (size // len(_CHUNK) + 1))[:size]


if __name__ == "__main__":
    import sys

    # ``--http PORT [CERT KEY]``: streamable HTTP on 127.0.0.1 (the HTTP phase; with a
    # certificate and its key, over TLS), else stdio.
    if sys.argv[1:2] == ["--http"]:
        tls = sys.argv[3:5]
        build().run(transport="http", host="127.0.0.1", port=int(sys.argv[2]),
                    show_banner=False, log_level="WARNING", **({"uvicorn_config": {
                        "ssl_certfile": tls[0], "ssl_keyfile": tls[1]}} if tls else {}))
    else:
        build().run(show_banner=False, log_level="WARNING")
