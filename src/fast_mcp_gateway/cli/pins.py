"""``mcp-gateway pins``: review and approve pinned definitions in the store.

``pins`` (or ``pins status``) lists the definitions a gateway found changed, new or
flagged, with diffs; ``pins approve SERVER [NAME ...]`` approves them (all of the
server's, or those named).  It works on the store alone, so it needs no running
gateway; one that is running releases what was approved within a few seconds.

Given the gateway's config file (``--config`` or $MCP_GATEWAY_CONFIG: never guessed, a
review must not hide findings for a file that happened to be in the folder), what is
kept of a server no longer configured (not in it, nor registered at runtime in the
store) is not listed but counted in one line.  ``pins forget SERVER`` drops it (audited
as ``cli``) and refuses a server that is configured (docs/ARCHITECTURE.md, "Pinning"),
there or in the config file of another gateway running on the store: it needs the
config file (named, or ./servers.yaml).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fast_mcp_gateway.errors import AdminError, ConfigError
from fast_mcp_gateway.telemetry.redaction import escape_controls

if TYPE_CHECKING:
    from fast_mcp_gateway.store import Store


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], db_help: str) -> None:
    pins = sub.add_parser("pins", help="review and approve changed tool definitions "
                                       "(pinning)")
    pins.add_argument("action", nargs="?", choices=["status", "approve", "forget"],
                      default="status",
                      help="status (default): the changed, new or flagged definitions, with "
                           "diffs; approve: approve a server's (all, or the names given); "
                           "forget: drop what is kept of a server no longer configured")
    pins.add_argument("server", nargs="?", help="the server (required for approve and forget)")
    pins.add_argument("names", nargs="*", help="upstream names to approve (default: all)")
    pins.add_argument("--db", default=None, help=db_help)
    pins.add_argument("--config", "-c", type=Path, default=None,
                      help="the gateway's config file, to tell the servers configured "
                           "(default: $MCP_GATEWAY_CONFIG; for forget, else ./servers.yaml)")
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
    if args.action in ("approve", "forget") and not args.server:
        print(f"mcp-gateway: pins {args.action} needs a server: mcp-gateway pins "
              f"{args.action} SERVER" + (" [NAME ...]" if args.action == "approve" else ""),
              file=sys.stderr)
        return 2
    try:
        store = await open_store(path)
        try:
            configured = await _configured(args, store, args.action == "forget")
            if args.action == "forget":
                return await _forget(store, args.server, configured, args.json,
                                     _config_file(args))
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
                                   "configured": None if configured is None
                                   else p.server in configured,
                                   "diff": stored_diff(p, a)} for p, a in pending]))
                return 0
            kept = [] if configured is None else sorted(
                {p.server for p, _ in pending} - configured)
            pending = [(p, a) for p, a in pending if p.server not in kept]
            if not pending:
                print("nothing to approve: every definition seen is the approved one"
                      + (" on the servers configured" if kept else ""))
            for p, a in pending:
                markers = "; ".join(p.markers)
                print(f"{_shown(p.server)}: {p.kind} '{_shown(p.name)}' is {p.actor}"
                      + (f" (injection markers: {_shown(markers)})" if markers else ""))
                print(escape_controls(stored_diff(p, a)) or "(no approved definition)")
                print(f"  approve: mcp-gateway pins approve {_shell_word(p.server)} "
                      f"{_shell_word(p.name)}\n")
            if kept:
                await _kept_line(store, kept)
        finally:
            await store.close()
    except (StorageError, AdminError, ConfigError) as exc:
        print(f"mcp-gateway: {escape_controls(str(exc))}", file=sys.stderr)
        return 2
    return 0


async def _configured(args: argparse.Namespace, store: Store, forget: bool
                      ) -> set[str] | None:
    """The servers a gateway with this config file and store runs (the file's merged
    with the runtime registrations, invalid entries included); None without a config
    file named (``forget``: or ./servers.yaml)."""
    from fast_mcp_gateway.config.loader import load_config
    from fast_mcp_gateway.config.registrations import merge
    from fast_mcp_gateway.config.schema import InvalidServer

    named = args.config or os.environ.get("MCP_GATEWAY_CONFIG")
    if not named and not forget:
        return None
    path = Path(named) if named else Path("servers.yaml")
    if not path.exists():
        why = ("pins forget checks that the server is not configured there: " if forget
               else "")
        raise AdminError(f"{path}: no such config file; {why}name the gateway's config "
                         "file with --config PATH (or $MCP_GATEWAY_CONFIG)")
    config = load_config(path, partial=True)  # a ConfigError names the file and field
    invalid: dict[str, InvalidServer] = {}
    servers, _ = merge(dict(config.servers), await store.servers(),
                       config.options.env_allow, invalid)
    return {*servers, *invalid, *config.invalid}


async def _kept_line(store: Store, servers: list[str]) -> None:
    rows = [r for s in servers for r in await store.pins(s)]
    counts = ", ".join(
        f"{_shown(s)} ({sum(r.server == s and r.status == 'pending' for r in rows)} pending, "
        f"{sum(r.server == s and r.status == 'approved' for r in rows)} approved)"
        for s in servers)
    print(f"not listed: the definitions kept of server(s) no longer configured (kept so that "
          f"one added again is checked against them): {counts}; 'mcp-gateway pins forget "
          "SERVER' drops them")


async def _forget(store: Store, server: str, configured: set[str] | None,
                  as_json: bool, config_file: str | None) -> int:
    from fast_mcp_gateway.admin.pins import check_pinned, configured_elsewhere, refusal
    from fast_mcp_gateway.store.records import forgotten

    if configured is None or server in configured:  # None: never (``_configured``)
        print(f"mcp-gateway: {escape_controls(refusal(server))}", file=sys.stderr)
        return 2
    elsewhere = await configured_elsewhere(store, server, None, config_file)
    if elsewhere is not None:
        print(f"mcp-gateway: {escape_controls(elsewhere)}", file=sys.stderr)
        return 2
    # The rows and the audit entry in one transaction: deleted first and audited after,
    # an audit write that failed (the store gone, locked past its busy timeout between)
    # left them forgotten unaudited -- the admin operation holds its entry until the
    # store takes it (``held_audit``), a command that ends now has nothing to hold it.
    approved, pending = await store.forget_pins(server, "cli")
    if not approved + pending:
        await check_pinned(store, server)  # NotFound naming the store's servers
    result = forgotten(approved, pending)
    print(json.dumps({"server": server, "approved": approved, "pending": pending})
          if as_json else f"server '{_shown(server)}': {result}; added again, it is "
                          "trusted on first use")
    return 0


def _config_file(args: argparse.Namespace) -> str:
    """The config file ``_configured`` read, as a gateway's lease names it (absolute)."""
    return os.path.abspath(args.config or os.environ.get("MCP_GATEWAY_CONFIG")
                           or "servers.yaml")


def _shown(text: str) -> str:
    """A name an upstream chose, for the terminal: its escape sequences shown, not run."""
    return escape_controls(text)


def _shell_word(text: str) -> str:
    """``text`` as one word of the command line to paste (a tool named 'get weather')."""
    return escape_controls(shlex.quote(text))
