"""An upstream with many tools: the aggregated ``tools/list`` probe.

Run as ``python benchmarks/many_tools.py [--tools 50] [--first 0] [--port P]``: a
FastMCP stdio (with ``--port``: streamable-HTTP) server with tools ``t{first:04d}`` ..
``t{first + tools - 1:04d}``, each with a description, two parameters and an output
schema, as real tools have.  Twenty copies with ``--tools 50 --first 0, 50, 100, ...``
hold exactly the tools of one copy with ``--tools 1000``, so a gateway in front of the
twenty can be compared with the one server listing all of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fastmcp import FastMCP
from fastmcp.tools import Tool


def search(query: str, limit: int = 10) -> str:
    """Search the catalogue for ``query`` and return at most ``limit`` matches, best first.

    The benchmark only lists these tools; calling one returns the query.
    """
    return f"{query} ({limit})"


def build(tools: int, first: int) -> FastMCP:
    """The server; the tools share one schema (built once, so start-up stays short)."""
    mcp: FastMCP = FastMCP(f"many-tools-{first}")
    template = Tool.from_function(search)
    for n in range(first, first + tools):
        mcp.add_tool(template.model_copy(update={"name": f"t{n:04d}"}))
    return mcp


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--port", type=int, default=0,
                        help="serve streamable HTTP on 127.0.0.1:PORT/mcp, not stdio")
    args = parser.parse_args(argv)
    server = build(args.tools, args.first)
    if args.port:
        server.run(transport="http", host="127.0.0.1", port=args.port,
                   show_banner=False, log_level="WARNING")
    else:
        server.run(show_banner=False, log_level="WARNING")


if __name__ == "__main__":
    main()
