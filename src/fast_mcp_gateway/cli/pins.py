"""``mcp-gateway pins``: review and approve pinned definitions in the store.

``pins`` (or ``pins status``) lists the definitions a gateway found changed, new or
flagged, with diffs; ``pins approve SERVER [NAME ...]`` approves them (all of the
server's, or those named).  It works on the store alone, so it needs no running
gateway; one that is running releases what was approved within a few seconds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.telemetry.redaction import escape_controls


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], db_help: str) -> None:
    pins = sub.add_parser("pins", help="review and approve changed tool definitions "
                                       "(pinning)")
    pins.add_argument("action", nargs="?", choices=["status", "approve"], default="status",
                      help="status (default): the changed, new or flagged definitions, with "
                           "diffs; approve: approve a server's (all, or the names given)")
    pins.add_argument("server", nargs="?", help="the server (required for approve)")
    pins.add_argument("names", nargs="*", help="upstream names to approve (default: all)")
    pins.add_argument("--db", default=None, help=db_help)
    pins.add_argument("--json", action="store_true", help="print JSON")


async def run_pins(args: argparse.Namespace) -> int:
    # Here, not at the top: ``add_parser`` is imported for every command, ``serve``
    # included, which must spawn its upstreams before the server stack is loaded.
    from fast_mcp_gateway.admin.pins import (
        approve_stored,
        check_pinned,
        pending_in_store,
        stored_diff,
    )
    from fast_mcp_gateway.cli.reports import _db_path, _missing
    from fast_mcp_gateway.store import StorageError, open_store

    path = _db_path(args)
    if await _missing(path):
        print(f"mcp-gateway: no store at {path} (has the gateway run with a store?)",
              file=sys.stderr)
        return 2
    if args.action == "approve" and not args.server:
        print("mcp-gateway: pins approve needs a server: mcp-gateway pins approve SERVER "
              "[NAME ...]", file=sys.stderr)
        return 2
    try:
        store = await open_store(path)
        try:
            if args.action == "approve":
                rows = await approve_stored(store, args.server, args.names or None,
                                            "cli")
                for r in rows:
                    print(json.dumps({"approved": f"{r.kind}:{r.name}", "server": r.server})
                          if args.json else
                          f"approved {r.kind} '{_shown(r.name)}' of {_shown(r.server)}")
                return 0
            pending = await pending_in_store(store, args.server)
            if not pending and args.server:
                await check_pinned(store, args.server)
            if args.json:
                print(json.dumps([{"server": p.server, "kind": p.kind, "name": p.name,
                                   "state": p.actor, "markers": p.markers,
                                   "diff": stored_diff(p, a)} for p, a in pending]))
            elif not pending:
                print("nothing to approve: every definition seen is the approved one")
            for p, a in [] if args.json else pending:
                markers = "; ".join(p.markers)
                print(f"{_shown(p.server)}: {p.kind} '{_shown(p.name)}' is {p.actor}"
                      + (f" (injection markers: {_shown(markers)})" if markers else ""))
                print(escape_controls(stored_diff(p, a)) or "(no approved definition)")
                print(f"  approve: mcp-gateway pins approve {_shell_word(p.server)} "
                      f"{_shell_word(p.name)}\n")
        finally:
            await store.close()
    except (StorageError, AdminError) as exc:
        print(f"mcp-gateway: {escape_controls(str(exc))}", file=sys.stderr)
        return 2
    return 0


def _shown(text: str) -> str:
    """A name an upstream chose, for the terminal: its escape sequences shown, not run."""
    return escape_controls(text)


def _shell_word(text: str) -> str:
    """``text`` as one word of the command line to paste (a tool named 'get weather')."""
    return escape_controls(shlex.quote(text))
