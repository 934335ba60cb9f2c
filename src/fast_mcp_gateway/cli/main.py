"""``mcp-gateway``: serve the gateway, or check a configuration.

Only this module configures logging, and it logs to stderr: in stdio mode stdout
carries nothing but MCP protocol.  A subcommand's implementation is a module of its own
(``serve``, ``check``, ``reports``, ``tokens``, ``pins``, ``dashboard``), imported only
when that command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.cli.log_format import configure_logging
from fast_mcp_gateway.cli.loop import choose_loop
from fast_mcp_gateway.config.auth import TOKEN_SERVERS_LATER
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import GatewaySettings, default_db_path, settings_problem
from fast_mcp_gateway.errors import ConfigError

DEFAULT_CONFIG = Path("servers.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-gateway", description="One MCP server in front of many MCP servers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Not required=True: argparse's "the following arguments are required: command" named
    # no command (``_parse`` lists them).
    sub = parser.add_subparsers(dest="command")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path, default=None,
                       help="servers.yaml or Claude-Desktop mcpServers file "
                            "(default: $MCP_GATEWAY_CONFIG or ./servers.yaml)")

    def common(p: argparse.ArgumentParser) -> None:
        """What the commands that connect to upstreams take (serve, check)."""
        config_arg(p)
        p.add_argument("--connect-timeout", type=float, default=None,
                       help="seconds to wait for each upstream to connect (default 10)")
        p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       type=str.upper,
                       help="what the gateway logs to stderr (default: $MCP_GATEWAY_LOG_LEVEL "
                            "or INFO)")
        p.add_argument("--log-format", choices=["text", "json"], type=str.lower,
                       help="stderr's lines: text (default), or json, one object per line "
                            "for a log shipper ($MCP_GATEWAY_LOG_FORMAT)")

    serve = sub.add_parser("serve", help="run the gateway (stdio by default)")
    common(serve)
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default=None,
                       help="how hosts reach the gateway: stdio (default; for Claude Desktop "
                            "and other local hosts), streamable HTTP, or legacy SSE")
    serve.add_argument("--host", default=None, help="bind address for http/sse (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port for http/sse (8765)")
    serve.add_argument("--startup-wait", type=float, default=None, metavar="SECONDS",
                       help="how long a host's first lists wait for the upstreams to connect "
                            "(default 2; later ones are announced with list_changed)")
    serve.add_argument("--allowed-host", action="append", default=None, dest="allowed_hosts",
                       help="extra Host header to accept (DNS-rebinding guard); repeatable")
    serve.add_argument("--allow-unauthenticated-admin", action="store_true", default=None,
                       help="http/sse without gateway.auth: let any local caller use the admin "
                            "operations (add servers = run commands); loopback only "
                            "(default: $MCP_GATEWAY_ALLOW_UNAUTHENTICATED_ADMIN or off)")

    serve.add_argument("--dashboard", nargs="?", const="127.0.0.1:8766", default=None,
                       metavar="HOST:PORT",
                       help="stdio: also serve the dashboard in a browser, on loopback "
                            "(default 127.0.0.1:8766), behind one-time login links (one printed "
                            "to stderr; 'mcp-gateway dashboard' prints a fresh one); HTTP mode "
                            "serves it at /ui anyway")

    serve.add_argument("--event-loop", choices=["auto", "asyncio", "uvloop"], default=None,
                       help="the event loop to run on: auto (default: uvloop when installed, "
                            "else asyncio), asyncio or uvloop ($MCP_GATEWAY_EVENT_LOOP)")

    serve.add_argument("--db", default=None,
                       help="the store: a SQLite file, or postgresql://USER@HOST:PORT/DB to "
                            "share registrations, routes, logs and statistics between "
                            "gateways; one that cannot be reached yet is taken once it "
                            f"answers (default: $MCP_GATEWAY_DB or {default_db_path()})")
    serve.add_argument("--no-db", action="store_true",
                       help="run without the store: no call records, and the config file's "
                            "servers alone (those registered at runtime are not loaded, and "
                            "adding one is refused)")
    serve.add_argument("--profile", default=None,
                       help="serve one profile of gateway.profiles (a named subset of the "
                            "catalog); in HTTP mode every profile is also at /mcp/p/NAME")
    serve.add_argument("--instance-id", default=None,
                       help="this gateway's name in call records, health history and "
                            "audit rows; one per gateway on a shared store (default: "
                            "$MCP_GATEWAY_INSTANCE_ID or HOSTNAME-PID)")

    check = sub.add_parser("check", help="validate the config, connect to every upstream, "
                                         "print a table; exit 1 if anything is wrong")
    common(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--allow-signed-out", action="store_true",
                       help="exit 0 when the only problems are servers signed out (auth:), "
                            "naming them: for CI and start scripts")
    check.add_argument("--db", default=None,
                       help="the store whose runtime registrations serve would run too (the "
                            f"same default as serve: $MCP_GATEWAY_DB or {default_db_path()})")
    check.add_argument("--no-db", action="store_true",
                       help="check the config file's servers only, as 'serve --no-db' runs "
                            "them (the store is not opened)")

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=None,
                       help=f"the gateway's store, a file or a URL (default: $MCP_GATEWAY_DB or "
                            f"{default_db_path()})")
        p.add_argument("--since", default=None, help="e.g. 30s, 10m, 2h, 7d")
        p.add_argument("--server", default=None, help="only this server's calls")
        p.add_argument("--json", action="store_true", help="print JSON lines / JSON")

    logs = sub.add_parser("logs", help="the latest calls through the gateway")
    store_args(logs)
    logs.add_argument("--tool", default=None, help="exposed name")
    logs.add_argument("--status", choices=["success", "error", "timeout", "rejected", "cancelled"],
                      help="only calls that ended so")
    logs.add_argument("--limit", type=_at_least_one, default=50,
                      help="how many calls (default 50)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new calls")
    logs.add_argument("--instance", default=None,
                      help="only the calls this gateway served (its --instance-id: gateways "
                           "sharing a store)")

    servers = sub.add_parser("servers", help="the configured servers: the config file merged "
                                             "with runtime registrations")
    config_arg(servers)
    servers.add_argument("--db", default=None,
                         help=f"the gateway's store, a file or a URL (default: $MCP_GATEWAY_DB or "
                              f"{default_db_path()})")
    servers.add_argument("--no-db", action="store_true",
                         help="the config file's servers only, as 'serve --no-db' runs them "
                              "(the store is not opened)")
    servers.add_argument("--json", action="store_true", help="print JSON instead of a table")

    token = sub.add_parser("token", help="make bearer tokens for HTTP mode")
    token_sub = token.add_subparsers(dest="token_command")
    new = token_sub.add_parser("new", help="print a fresh token once, and the sha256 entry "
                                            "to paste into servers.yaml")
    new.add_argument("--name", required=True,
                     help="who holds it: the actor shown in audit and call records")
    new.add_argument("--scopes", default="tools",
                     help="comma-separated: tools (list and call), admin (also manage the "
                          "gateway); default tools")
    new.add_argument("--servers", default=None,
                     help="comma-separated server names this token may see and call "
                          "(default: all)")

    dashboard = sub.add_parser("dashboard", help="print (or open) a fresh one-time login "
                                                  "link to a running 'serve --dashboard'")
    dashboard.add_argument("--open", action="store_true", help="open the link in the browser")

    from fast_mcp_gateway.cli.login import add_parser as add_login
    from fast_mcp_gateway.cli.pins import add_parser as add_pins

    db_help = f"the gateway's store, a file or a URL (default: $MCP_GATEWAY_DB or " \
              f"{default_db_path()})"
    add_pins(sub, db_help)
    add_login(sub, db_help)
    stats = sub.add_parser("stats", help="counts, success rates and latency percentiles")
    store_args(stats)
    stats.add_argument("--by", choices=["server", "tool"], default=None,
                       help="one row per server or per tool (default: one row in all)")
    return parser


def _at_least_one(text: str) -> int:
    """``--limit``'s type: a count of rows (0 or less used to end in a traceback)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


_FLAG_SETTINGS = ("config", "connect_timeout", "log_level", "log_format", "transport", "host",
                  "port",
                  "allowed_hosts", "db", "allow_unauthenticated_admin", "instance_id",
                  "dashboard", "profile", "startup_wait", "event_loop")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags on the command line (they override the variables)."""
    return {key: value for key in _FLAG_SETTINGS
            if (value := getattr(args, key, None)) is not None}


def _settings(args: argparse.Namespace) -> GatewaySettings:
    settings = GatewaySettings(**_flags(args))
    if settings.config is None:
        settings = settings.model_copy(update={"config": DEFAULT_CONFIG})
    if getattr(args, "no_db", False):
        settings = settings.model_copy(update={"record_calls": False})
    elif settings.db is None and args.command in ("serve", "servers", "check"):
        settings = settings.model_copy(update={"db": str(default_db_path())})
    return settings


def _load(settings: GatewaySettings, command: str, *, defaulted: bool = False) -> GatewayConfig:
    """The config file; tokens' servers are checked once the store's runtime
    registrations are read (``config/auth.TOKEN_SERVERS_LATER``) where it is read:
    ``servers`` and ``check`` always, ``serve`` when it has a store.  ``defaulted``: no
    --config nor $MCP_GATEWAY_CONFIG named it ("check the path given" named none)."""
    assert settings.config is not None
    if defaulted and not settings.config.exists():
        raise ConfigError.single(str(settings.config), None, None, (
            f"not found in the working directory ({os.getcwd()}), and no --config was "
            "given: name the config file with --config PATH (a servers.yaml, or an existing "
            "Claude Desktop claude_desktop_config.json), or set $MCP_GATEWAY_CONFIG"))
    later = command in ("servers", "check") or (settings.db is not None
                                                and settings.record_calls)
    token = TOKEN_SERVERS_LATER.set(later)
    try:
        # One server's bad entry leaves that server out (shown as invalid), not all.
        return load_config(settings.config, partial=True)
    finally:
        TOKEN_SERVERS_LATER.reset(token)


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(dict(a.choices) for a in parser._actions
                if isinstance(a, argparse._SubParsersAction))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed.  A missing command is answered with the commands; an option the
    command does not take by that command (with its usage, not the top level's) and the
    closest option it has (``serve --conifg`` was "unrecognized arguments" only)."""
    parser = _parser()
    commands = _commands(parser)
    words = sys.argv[1:] if argv is None else argv
    if words and not words[0].startswith("-") and words[0] not in commands:
        import difflib  # here, not at the top: only a mistyped command needs it

        close = difflib.get_close_matches(words[0], list(commands), n=1)
        parser.error(f"unknown command {words[0]!r}" + (f"; did you mean {close[0]!r}?" if close
                     else "") + f" (the commands: {', '.join(commands)})")
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(commands)} ('mcp-gateway serve --config "
                     "servers.yaml' runs the gateway; 'mcp-gateway COMMAND --help' says more)")
    command = commands[args.command]
    if args.command == "token":
        if args.token_command is None:
            command.error("choose what to do: new ('mcp-gateway token new --name NAME' makes "
                          "a token)")
        command = _commands(command)[args.token_command]
    if extra:
        import difflib  # here, not at the top: only a mistyped option needs it

        options = [o for a in command._actions for o in a.option_strings]
        typed = next((e.split("=", 1)[0] for e in extra if e.startswith("-")), "")
        close = difflib.get_close_matches(typed, options, n=1) if typed else []
        meant = f"; did you mean {close[0]}?" if close else ""
        command.error(f"unrecognized arguments: {' '.join(extra)}{meant} ('{command.prog} "
                      "--help' lists its options)")
    return args


def main(argv: list[str] | None = None) -> int:
    gc.disable()  # the parsers' cycles die young, freed by one pass (none is kept frozen)
    try:
        args = _parse(argv)
    finally:
        gc.enable()
    if args.command == "serve":
        return _run(args)
    try:
        return _run(args)
    except BrokenPipeError:  # ``mcp-gateway pins | head``: the reader left
        from fast_mcp_gateway.cli.reports import stdout_closed

        return stdout_closed()


def _run(args: argparse.Namespace) -> int:
    if args.command == "token":
        from fast_mcp_gateway.cli.tokens import new_token

        return new_token(args)
    if args.command == "dashboard":
        from fast_mcp_gateway.cli.dashboard import show_dashboard

        return show_dashboard(bool(args.open))

    if args.command == "pins":
        from fast_mcp_gateway.cli.pins import run_pins

        return anyio.run(run_pins, args)
    if args.command in ("login", "logout"):
        from fast_mcp_gateway.cli.login import run_login

        configure_logging("WARNING")  # every line masked
        try:
            return anyio.run(run_login, args)
        except KeyboardInterrupt:  # Ctrl-C while waiting for the browser: words, no trace
            print(f"mcp-gateway: {args.command} stopped (Ctrl-C); no sign-in was kept, and "
                  "the link no longer works", file=sys.stderr)
            return 130
    if args.command in ("logs", "stats"):
        from fast_mcp_gateway.cli.reports import run_report

        try:
            return anyio.run(run_report, args)
        except KeyboardInterrupt:
            return 0
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"mcp-gateway: {settings_problem(exc, _flags(args))}", file=sys.stderr)
        return 2
    try:
        configure_logging(settings.log_level, settings.log_format, settings.instance_id,
                          settings.redact_keys)
        config = _load(settings, args.command, defaulted=args.config is None
                       and not os.environ.get("MCP_GATEWAY_CONFIG"))
        if settings.profile is not None:
            from fast_mcp_gateway.front.profiles import check_profile

            check_profile(settings.profile, config.options)
    except ConfigError as exc:
        _say(settings, str(exc))
        return 2
    if args.command in ("servers", "check"):
        from fast_mcp_gateway.store import StorageError, StoreUnavailable

        try:
            if args.command == "servers":
                from fast_mcp_gateway.cli.reports import run_servers

                return anyio.run(run_servers, config, args)
            from fast_mcp_gateway.cli.check import run_check

            db = settings.store  # None with --no-db, as serve runs
            return anyio.run(run_check, config, settings, bool(args.json), db, None,
                             bool(args.allow_signed_out))
        except StorageError as exc:  # the store of runtime registrations: one clear line
            then = ""
            if isinstance(exc, StoreUnavailable):  # serve waits it out; check cannot
                then = ("; 'serve' would start without it, serving the file's servers and "
                        "taking its runtime registrations once it answers (check the file "
                        "alone with --no-db)")
            _say(settings, f"{exc}{then}")
            return 2
    dashboard_at = None
    if settings.dashboard is not None:
        from fast_mcp_gateway.ui.standalone import parse_address

        if settings.transport != "stdio":
            _say(settings, "--dashboard is for stdio mode; over http/sse the dashboard is "
                           "served at /ui")
            return 2
        try:
            dashboard_at = parse_address(settings.dashboard)
        except ConfigError as exc:
            _say(settings, str(exc))
            return 2
    from fast_mcp_gateway.cli.serve import (
        DashboardPortInUse,
        _spawn_first,
        bind_refusal,
        listen,
        listen_dashboard,
    )

    refusal = bind_refusal(settings, authenticated=config.options.auth is not None)
    if refusal is not None:
        _say(settings, str(refusal))
        return 2
    sockets = dashboard = None
    try:
        if settings.transport != "stdio":
            sockets = listen(settings)
        elif dashboard_at is not None:
            dashboard = listen_dashboard(*dashboard_at)
    except DashboardPortInUse as exc:
        from fast_mcp_gateway.cli.dashboard import held_by_a_gateway

        assert dashboard_at is not None  # only the dashboard's listen raises it
        other = held_by_a_gateway(*dashboard_at)
        host, port = dashboard_at
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if other is None:  # another program: the flag cannot be honoured
            _say(settings, str(exc))
            return 2
        # Two hosts starting the same gateway command (Claude Desktop and Claude Code):
        # the second keeps its tools; the first's dashboard stays the user's.
        _say(settings, f"the dashboard's address {address} is served by "
              f"another gateway (pid {other[1]}: {other[0]}), so this one serves its tools "
              "without a dashboard of its own; that one shows its own store, the same as "
              "this gateway's when both use the same --db ('mcp-gateway dashboard' prints a "
              "login link to it).  For a dashboard of this gateway's, pass --dashboard "
              "127.0.0.1:PORT with a free port", level="WARNING")
    except OSError as exc:
        _say(settings, str(exc))
        return 2
    # Opened before serving where a traceback from inside the start-up would follow
    # (uvicorn's lifespan); over stdio a failure to open it is caught below instead
    # (the host waits on the start-up).
    if settings.record_calls and settings.db is not None and (
            _is_shared(settings.db) or settings.transport != "stdio"):
        problem = anyio.run(_check_store, settings.db)
        if problem is not None:
            _say(settings, str(problem))
            return 2
    try:
        loop = choose_loop(settings.event_loop)
    except ConfigError as exc:
        _say(settings, str(exc))
        return 2
    started = time.monotonic()
    failure = None
    with contextlib.suppress(KeyboardInterrupt):
        try:
            failure = anyio.run(_spawn_first, config, settings, loop.name, sockets,
                                dashboard, backend_options=loop.backend_options)
        except Exception as exc:
            problem = _store_problem(exc)
            if problem is None:
                raise
            _say(settings, str(problem))
            return 2
    log = logging.getLogger("fast_mcp_gateway")
    if failure is not None:
        # The last line: a supervisor (systemd, Kubernetes) restarts a non-zero exit.
        log.critical("stopped after %.1fs: %s; exiting with status 1 (to be restarted)",
                     time.monotonic() - started, failure)
        return 1
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0


def _say(settings: GatewaySettings, text: str, *, level: str = "ERROR") -> None:
    """A line of the CLI's own on stderr, in the log's format (``--log-format``)."""
    from fast_mcp_gateway.cli.log_format import say

    print(say(text, as_json=settings.log_format == "json", level=level,
              instance=settings.instance_id), file=sys.stderr)


def _store_problem(exc: BaseException) -> str | None:
    """The store's own words when ``exc`` is (or holds) the failure to open it."""
    from fast_mcp_gateway.store import StorageError

    if isinstance(exc, StorageError):
        return f"cannot open the store: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            problem = _store_problem(inner)
            if problem is not None:
                return problem
    return None


def _is_shared(db: str) -> bool:
    return db.lower().startswith(("postgresql:", "postgres:", "postgresql+asyncpg:"))


async def _check_store(db: str) -> str | None:
    """Open (and migrate) a shared store before serving: a store that cannot be used
    (a bad URL, password, database, role) is one clear line, not a traceback from inside
    the server's start-up.  One that cannot be reached now is no problem: the gateway
    starts without it, says so, and opens it once it answers (``store/deferred.py``)."""
    from fast_mcp_gateway.store import StorageError, StoreUnavailable, open_store

    try:
        store = await open_store(db)
    except StoreUnavailable:
        return None
    except StorageError as exc:
        return _store_problem(exc)
    await store.close()
    return None


if __name__ == "__main__":
    sys.exit(main())
