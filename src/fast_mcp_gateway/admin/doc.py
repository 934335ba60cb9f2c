"""What is generated from the live admin tool definitions: the README's table, tools.json.

``python -m fast_mcp_gateway.admin.doc`` rewrites the table between the README's
``<!-- admin-tools:start -->`` and ``<!-- admin-tools:end -->`` markers and
``admin/tools.json`` (the definitions the gateway lists, ``listed.py``);
``--check`` exits 1 when either is out of date (``tests/test_readme.py`` and
``tests/test_admin_listed.py`` check the same).
The rows are what a host's ``tools/list`` shows: every admin tool registered on a bare
FastMCP server (``gateway.admin: full``), its parameters from the input schema
(``?``: optional), its annotations, and the first sentence of its description.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastmcp import FastMCP

from fast_mcp_gateway.admin.listed import SPECS, spec_of
from fast_mcp_gateway.admin.mcp_tools import register_admin_tools
from fast_mcp_gateway.config.schema import GatewayOptions

START = "<!-- admin-tools:start -->"
END = "<!-- admin-tools:end -->"
README = Path(__file__).resolve().parents[3] / "README.md"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`])")


async def tool_rows() -> list[tuple[str, str, str, str]]:
    """(name, parameters, annotations, summary) of every admin tool, in declared order."""
    server: FastMCP[Any] = FastMCP("admin-tools-doc")
    # Registration reads only the options; the tools are listed, never called.
    register_admin_tools(server, SimpleNamespace(options=GatewayOptions()))  # type: ignore[arg-type]
    rows = []
    for tool in await server.list_tools():
        wire = tool.to_mcp_tool()
        schema = wire.input_schema or {}
        required = set(schema.get("required") or ())
        params = ", ".join(f"`{p}`" if p in required else f"`{p}?`"
                           for p in schema.get("properties") or {}) or "\N{EM DASH}"
        notes = wire.annotations
        kind = ("read-only" if notes and notes.read_only_hint else
                "destructive" if notes and notes.destructive_hint else
                "idempotent" if notes and notes.idempotent_hint else "\N{EM DASH}")
        rows.append((wire.name, params, kind, summary(wire.description or "")))
    return rows


def specs_text() -> str:
    """``tools.json`` as the declarations make it: every admin tool (``gateway.admin:
    full``) as built, in declared order."""
    built: list[Any] = []
    register_admin_tools(FastMCP("admin-tools-specs"),
                         SimpleNamespace(options=GatewayOptions()),  # type: ignore[arg-type]
                         registered=built.append)
    return json.dumps([spec_of(tool) for tool in built], indent=1, ensure_ascii=False) + "\n"


def summary(description: str) -> str:
    """The first sentence of a description's first paragraph, on one line."""
    paragraph = " ".join(description.strip().split("\n\n")[0].split())
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0].replace("|", "\\|")


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| tool | parameters (`?` optional) | annotations | what it does |",
             "|---|---|---|---|"]
    lines += [f"| `{name}` | {params} | {kind} | {text} |" for name, params, kind, text in rows]
    return "\n".join(lines)


def with_table(readme: str, rendered: str) -> str:
    """``readme`` with the text between the markers replaced by ``rendered``."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the README has no '{START}' ... '{END}' section")
    return f"{head}{START}\n{rendered}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fast_mcp_gateway.admin.doc",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check: exit 1 if the table or tools.json is out of date")
    parser.add_argument("--readme", type=Path, default=README, help="the README to update")
    parser.add_argument("--specs", type=Path, default=SPECS, help="the tools.json to update")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    outputs = [(args.readme, "the admin tool table", current,
                with_table(current, table(asyncio.run(tool_rows())))),
               (args.specs, "the admin tool definitions",
                args.specs.read_text(encoding="utf-8") if args.specs.exists() else "",
                specs_text())]
    stale = [(path, what, wanted) for path, what, now, wanted in outputs if now != wanted]
    for path, what, wanted in stale:
        if args.check:
            print(f"{path}: out of date ({what}); run 'python -m fast_mcp_gateway.admin.doc'",
                  file=sys.stderr)
        else:
            path.write_text(wanted, encoding="utf-8")
            print(f"{path}: {what} updated", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
