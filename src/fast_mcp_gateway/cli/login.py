"""``mcp-gateway login SERVER`` / ``logout SERVER`` / ``login --list``: a person's
sign-in to a server with ``auth: {type: oauth}``, from a terminal.

``login`` runs the same sign-in as the admin tool ``gateway_sign_in``
(``upstream/sign_in.py``) in this process: it prints the link to open on stderr (and
opens it with ``--open``), waits for the browser to come back to the loopback callback
(``MCP_GATEWAY_OAUTH_CALLBACK_PORT``, default 8767) and stores the sign-in, sealed, in
the gateway's store (``--db``, as ``serve`` uses it).  A gateway running on that store
takes it within seconds (a signed-out server reads its row while it waits).  ``logout``
revokes and forgets it; ``login --list`` shows the stored sign-ins without any value.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], db_help: str) -> None:
    login = sub.add_parser("login", help="sign in to a server with auth: {type: oauth} "
                                         "(prints the link to open)")
    login.add_argument("server", nargs="?", help="the server to sign in to")
    login.add_argument("--list", action="store_true",
                       help="the stored sign-ins: server, issuer, expiry (no values)")
    login.add_argument("--open", action="store_true", help="open the link in the browser")
    logout = sub.add_parser("logout", help="forget (and revoke) a server's sign-in")
    logout.add_argument("server", help="the server to sign out of")
    for parser in (login, logout):
        parser.add_argument("--config", "-c", type=Path, default=None,
                            help="the gateway's config file (default: $MCP_GATEWAY_CONFIG "
                                 "or ./servers.yaml)")
        parser.add_argument("--db", default=None, help=db_help)


def _say(text: str) -> None:
    print(f"mcp-gateway: {text}", file=sys.stderr)


async def run_login(args: argparse.Namespace) -> int:
    from fast_mcp_gateway.config.loader import load_config
    from fast_mcp_gateway.config.settings import GatewaySettings, default_db_path
    from fast_mcp_gateway.errors import ConfigError, GatewayError
    from fast_mcp_gateway.store import open_store

    settings = GatewaySettings(**{k: v for k, v in (("config", args.config), ("db", args.db))
                                  if v is not None})
    db = settings.db or str(default_db_path())
    settings = settings.model_copy(update={"db": db, "record_calls": True})
    try:
        store = await open_store(db)
    except GatewayError as exc:
        _say(str(exc))
        return 2
    try:
        if args.command == "login" and args.list:
            return await _list(store)
        if not args.server:
            _say("login needs a server: mcp-gateway login SERVER (or --list)")
            return 2
        try:
            config = load_config(settings.config or Path("servers.yaml"), partial=True)
        except ConfigError as exc:
            _say(str(exc))
            return 2
        return await _sign(args, settings, store, config)
    finally:
        await store.close()


async def _sign(args: argparse.Namespace, settings: Any, store: Any, config: Any) -> int:
    import anyio

    from fast_mcp_gateway.errors import GatewayError
    from fast_mcp_gateway.store.credentials import OWNER_GATEWAY
    from fast_mcp_gateway.upstream.sign_in import SignIns
    from fast_mcp_gateway.upstream.sign_in_page import back, valid_for

    server = config.servers.get(args.server)
    oauth = server is not None and server.auth is not None and server.auth.type == "oauth"
    sign_ins = SignIns(settings, lambda: store)
    # Also a server no longer in the file, whose sign-in the store keeps for it (sec29:
    # nothing could forget or revoke it); audited as the tool is (sec29: it was not).
    if args.command == "logout" and (oauth or await store.credential(args.server,
                                                                     OWNER_GATEWAY)):
        gone = await sign_ins.sign_out(args.server, server.tls if server else None)
        await store.add_audit("cli", "sign_out", args.server, None,
                              "forgotten" if gone else "none held")
        print(f"'{args.server}' is signed out" if gone else f"'{args.server}' held no "
              "sign-in", file=sys.stderr)
        return 0
    if not oauth:
        names = [n for n, s in config.servers.items() if s.auth and s.auth.type == "oauth"]
        _say(f"no server '{args.server}' with auth: {{type: oauth}} in {config.source} "
             f"(those with one: {', '.join(names) or 'none'})")
        return 2
    async with anyio.create_task_group() as tg:
        await tg.start(sign_ins.run)
        try:
            pending = await sign_ins.start(server, "cli")
        except GatewayError as exc:
            _say(str(exc))
            tg.cancel_scope.cancel()
            return 1
        print(f"Open this link to sign in to '{args.server}' "
              f"({valid_for(pending.expires_at, time.time())}):\n"
              f"{pending.url}\n{back(sign_ins.port)}", file=sys.stderr, flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(pending.url)
        error = await sign_ins.finished(args.server)
        tg.cancel_scope.cancel()
    if error is not None:
        _say(str(error))
        return 1
    await store.add_audit("cli", "sign_in", args.server, None, "signed in")
    print(f"Signed in to '{args.server}'; the sign-in is kept in {settings.db}",
          file=sys.stderr)
    return 0


async def _list(store: Any) -> int:
    rows = await store.credentials()
    if not rows:
        print("no stored sign-ins", file=sys.stderr)
        return 0
    for row in rows:
        expires = "-" if row.expires_at is None else datetime.fromtimestamp(
            row.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{row.server}\towner={row.owner}\tissuer={row.issuer or '-'}\t"
              f"token expires {expires}\tby {row.updated_by}")
    return 0
