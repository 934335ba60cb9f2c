"""``mcp-gateway``: serve the gateway, or check a configuration.

Only this module configures logging, and it logs to stderr: in stdio mode stdout
carries nothing but MCP protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.cli.loop import choose_loop
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import GatewaySettings, default_db_path, settings_problem
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.redaction import OneLineErrors, install_log_filter

DEFAULT_CONFIG = Path("servers.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-gateway", description="One MCP server in front of many MCP servers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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
                       help="what the gateway logs to stderr (default: $MCP_GATEWAY_LOG_LEVEL "
                            "or INFO)")

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
                            f"gateways (default: $MCP_GATEWAY_DB or {default_db_path()})")
    serve.add_argument("--no-db", action="store_true", help="do not record calls")
    serve.add_argument("--profile", default=None,
                       help="serve one profile of gateway.profiles (a named subset of the "
                            "catalog); in HTTP mode every profile is also at /mcp/p/NAME")
    serve.add_argument("--instance-id", default=None,
                       help="this gateway's name in call records (default: "
                            "$MCP_GATEWAY_INSTANCE_ID or HOSTNAME-PID)")

    check = sub.add_parser("check", help="validate the config, connect to every upstream, "
                                         "print a table; exit 1 if anything is wrong")
    common(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--db", default=None,
                       help="the store whose runtime registrations serve would run too (the "
                            f"same default as serve: $MCP_GATEWAY_DB or {default_db_path()})")

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
    logs.add_argument("--limit", type=int, default=50, help="how many calls (default 50)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new calls")

    servers = sub.add_parser("servers", help="the configured servers: the config file merged "
                                             "with runtime registrations")
    config_arg(servers)
    servers.add_argument("--db", default=None,
                         help=f"the gateway's store, a file or a URL (default: $MCP_GATEWAY_DB or "
                              f"{default_db_path()})")
    servers.add_argument("--json", action="store_true", help="print JSON instead of a table")

    token = sub.add_parser("token", help="make bearer tokens for HTTP mode")
    token_sub = token.add_subparsers(dest="token_command", required=True)
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

    from fast_mcp_gateway.cli.pins import add_parser as add_pins

    add_pins(sub, f"the gateway's store, a file or a URL (default: $MCP_GATEWAY_DB or "
                  f"{default_db_path()})")
    stats = sub.add_parser("stats", help="counts, success rates and latency percentiles")
    store_args(stats)
    stats.add_argument("--by", choices=["server", "tool"], default=None,
                       help="one row per server or per tool (default: one row in all)")
    return parser


def _settings(args: argparse.Namespace) -> GatewaySettings:
    overrides: dict[str, Any] = {}
    for key in ("config", "connect_timeout", "log_level", "transport", "host", "port",
                "allowed_hosts", "db", "allow_unauthenticated_admin", "instance_id",
                "dashboard", "profile", "startup_wait", "event_loop"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    settings = GatewaySettings(**overrides)
    if settings.config is None:
        settings = settings.model_copy(update={"config": DEFAULT_CONFIG})
    if getattr(args, "no_db", False):
        settings = settings.model_copy(update={"record_calls": False})
    elif settings.db is None and args.command in ("serve", "servers", "check"):
        settings = settings.model_copy(update={"db": str(default_db_path())})
    return settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every record, the HTTP client's too (httpx logs request URLs), passes the masking.
    install_log_filter()
    # FastMCP's per-request chatter is traffic, not state; keep it out unless debugging.
    if level != "DEBUG":
        logging.getLogger("fastmcp").setLevel(logging.WARNING)
        logging.getLogger("mcp").setLevel(logging.WARNING)
        logging.getLogger("asyncpg.pool").addFilter(OneLineErrors())  # the store says why


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        from fast_mcp_gateway.cli.tokens import new_token

        return new_token(args)
    if args.command == "dashboard":
        from fast_mcp_gateway.cli.dashboard import show_dashboard

        return show_dashboard(bool(args.open))

    if args.command == "pins":
        from fast_mcp_gateway.cli.pins import run_pins

        return anyio.run(run_pins, args)
    if args.command in ("logs", "stats"):
        from fast_mcp_gateway.cli.reports import run_report

        try:
            return anyio.run(run_report, args)
        except KeyboardInterrupt:
            return 0
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"mcp-gateway: {settings_problem(exc)}", file=sys.stderr)
        return 2
    try:
        _configure_logging(settings.log_level)
        assert settings.config is not None
        config = load_config(settings.config)
        if settings.profile is not None:
            from fast_mcp_gateway.front.profiles import check_profile

            check_profile(settings.profile, config.options)
    except ConfigError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    if args.command in ("servers", "check"):
        from fast_mcp_gateway.store import StorageError

        try:
            if args.command == "servers":
                from fast_mcp_gateway.cli.reports import run_servers

                return anyio.run(run_servers, config, args)
            from fast_mcp_gateway.cli.check import run_check

            assert settings.db is not None
            return anyio.run(run_check, config, settings, bool(args.json), settings.db)
        except StorageError as exc:  # the store of runtime registrations: one clear line
            print(f"mcp-gateway: {exc}", file=sys.stderr)
            return 2
    if settings.dashboard is not None:
        from fast_mcp_gateway.ui.standalone import parse_address

        if settings.transport != "stdio":
            print("mcp-gateway: --dashboard is for stdio mode; over http/sse the dashboard "
                  "is served at /ui", file=sys.stderr)
            return 2
        try:
            parse_address(settings.dashboard)
        except ConfigError as exc:
            print(f"mcp-gateway: {exc}", file=sys.stderr)
            return 2
    refusal = bind_refusal(settings, authenticated=config.options.auth is not None)
    if refusal is not None:
        print(f"mcp-gateway: {refusal}", file=sys.stderr)
        return 2
    if settings.record_calls and settings.db is not None and _is_shared(settings.db):
        problem = anyio.run(_check_store, settings.db)
        if problem is not None:
            print(f"mcp-gateway: {problem}", file=sys.stderr)
            return 2
    try:
        loop = choose_loop(settings.event_loop)
    except ConfigError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_spawn_first, config, settings, loop.name,
                  backend_options=loop.backend_options)
    logging.getLogger("fast_mcp_gateway").info("stopped after %.1fs", time.monotonic() - started)
    return 0


def early_starts(config: GatewayConfig, settings: GatewaySettings | None = None
                 ) -> list[tuple[str, list[str], dict[str, str], str | None]]:
    """What every enabled stdio replica of ``config`` is started from (over stdio with
    ``--profile``: of the profile's servers only, as ``Gateway`` runs no others)."""
    only = None
    if settings is not None and settings.transport == "stdio" and settings.profile is not None:
        # Only with a profile: front.profiles loads FastMCP, which a plain serve must
        # not wait for before spawning.
        from fast_mcp_gateway.front.profiles import profile_servers

        only = profile_servers(settings.profile, config.options)
    starts = []
    for server in config.servers.values():
        if not server.enabled or (only is not None and server.name not in only):
            continue
        for replica, _weight in server.replica_configs():
            if replica.kind == "stdio" and replica.command is not None:
                starts.append((replica.command, list(replica.args), dict(replica.env),
                               replica.cwd))
    return starts


async def _spawn_first(config: GatewayConfig, settings: GatewaySettings,
                       loop: str = "asyncio") -> None:
    """Start the stdio upstreams, then import and build the gateway while they start.

    The server stack takes seconds to import on a small machine, and each upstream
    takes as long to start: doing both at once halves the wait.  Each replica's first
    connect adopts its process (``upstream/processes.py``); one nobody adopts (a runtime
    registration replaced or disabled its server) is stopped after the first attempts.
    """
    from fast_mcp_gateway.upstream.processes import discard_early, spawn_early

    await spawn_early(early_starts(config, settings))
    try:
        # Importing the server stack allocates much and frees little: the collector's
        # full passes over it cost ~15 % of the CPU to the initialize answer.  What it
        # made lives as long as the process, so it is frozen (moved where no collection
        # scans it): left in the generations, the first young collection walked all of
        # it (~180,000 objects, ~45 ms of CPU) just before the answer, and every full
        # one after.  Only young passes run meanwhile (each object is walked once, in
        # its first pass, then left alone): they free the import's cyclic garbage as it
        # is made (pydantic's signature of a builtin default factory leaves a copy of
        # sys.modules in a cycle, ~20 of them), which a disabled collector let
        # gc.freeze keep for good (~0.4 MB; issue 15), at no measurable CPU.
        thresholds = gc.get_threshold()
        gc.set_threshold(2000, _NEVER, _NEVER)
        try:
            from fast_mcp_gateway.gateway import Gateway
        finally:
            gc.freeze()
            gc.set_threshold(*thresholds)

        gateway = Gateway(config, settings, answer_first=settings.transport == "stdio")
        logging.getLogger("fast_mcp_gateway").info(
            "starting %d upstream(s) from %s over %s (event loop: %s)", len(config.servers),
            settings.config, settings.transport, loop,
        )
        for line in announcement(settings, len(config.servers),
                                 interactive=sys.stdin.isatty(),
                                 authenticated=config.options.auth is not None):
            print(f"mcp-gateway: {line}", file=sys.stderr, flush=True)
        async with anyio.create_task_group() as tg:

            async def discard_unadopted() -> None:
                await gateway.startup.attempted.wait()
                await discard_early()

            tg.start_soon(discard_unadopted)
            await _serve(gateway)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await discard_early()


_NEVER = 1 << 30  # a collector threshold never reached: that generation is not collected


def _is_shared(db: str) -> bool:
    return db.lower().startswith(("postgresql:", "postgres:", "postgresql+asyncpg:"))


async def _check_store(db: str) -> str | None:
    """Open (and migrate) a shared store before serving: a database that cannot be
    reached is one clear line, not a traceback from inside the server's start-up."""
    from fast_mcp_gateway.store import StorageError, open_store

    try:
        store = await open_store(db)
    except StorageError as exc:
        return str(exc)
    await store.close()
    return None


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


HOW_TO_ADD_A_TOKEN = ("make a token with 'mcp-gateway token new --name ops --scopes admin' "
                      "and paste the printed entry under gateway.auth.tokens in servers.yaml")


def bind_refusal(settings: GatewaySettings, *, authenticated: bool) -> str | None:
    """Why ``serve`` must not start as configured, or ``None``: HTTP/SSE without
    ``gateway.auth`` is for this machine only (anyone reaching the port could call
    every tool, or with ``--allow-unauthenticated-admin`` run any command)."""
    if settings.transport == "stdio" or authenticated or is_loopback(settings.host):
        return None
    return (f"refusing to listen on {settings.host} without authentication: anyone who can "
            f"reach it could use the gateway. Either {HOW_TO_ADD_A_TOKEN}, or serve on "
            "loopback (--host 127.0.0.1).")


def announcement(settings: GatewaySettings, servers: int, *, interactive: bool,
                 authenticated: bool | None = None) -> list[str]:
    """What ``serve`` tells a person at start-up (on stderr; stdout is the protocol's).

    Over stdio the host normally launched the gateway and nobody reads stderr live, so
    only a terminal user (stdin is a TTY) gets the explanation.  ``authenticated``:
    ``gateway.auth`` is configured (``None``: not known, no line about access).
    """
    lines: list[str] = []
    if settings.transport == "stdio":
        if interactive:
            lines += [
                f"serving {servers} server(s) from {settings.config} over stdio.",
                "this terminal is now the MCP host: the gateway expects JSON-RPC on stdin.",
                "to use it, add this command to an MCP host (README: 'Claude Desktop'), or try "
                "it with 'mcp-gateway check' or the MCP Inspector.",
                "stop with Ctrl-C.",
            ]
        return lines
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    path = settings.path if settings.transport == "http" else "/sse"
    lines.append(f"serving {servers} server(s) from {settings.config} at "
                 f"http://{host}:{settings.port}{path} ({settings.transport}); stop with Ctrl-C.")
    if authenticated:
        lines.append("every request needs a bearer token (gateway.auth).")
    elif not is_loopback(settings.host):
        lines.append(f"WARNING: listening on {settings.host}, reachable from other machines; "
                     "anyone who can reach this port can use the gateway's tools.")
    elif settings.allow_unauthenticated_admin:
        lines.append("WARNING: --allow-unauthenticated-admin: any program on this machine can "
                     "manage the gateway, including adding servers that run commands.")
    elif authenticated is False:
        lines.append("no gateway.auth: programs on this machine may list and call tools; admin "
                     f"operations are refused until you add a token ({HOW_TO_ADD_A_TOKEN}).")
    return lines


async def _serve(gateway: Any) -> None:
    """Serve until the host goes away or a signal says stop; stop quietly either way.

    stdio: on SIGTERM/SIGINT the upstreams are terminated at once and serving is
    cancelled.  The SDK's stdio server may read stdin in a worker thread that
    cancellation cannot interrupt, so if an orderly stop has not finished after
    ``_EXIT_GRACE`` seconds the process exits hard (its upstreams are gone by then).
    HTTP/SSE: uvicorn stops gracefully on the same signals (open connections, then the
    lifespan, which stops the upstreams); the hard exit is only a backstop.
    A host that closes the gateway's stdout is a normal end, not a crash.
    """
    http = gateway.settings.transport != "stdio"
    log = logging.getLogger("fast_mcp_gateway")
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                            signal.SIGHUP) as signals:
                async for received in signals:
                    if received == signal.SIGHUP:
                        tg.start_soon(gateway.reload_on_signal, "SIGHUP")
                        continue
                    log.info("received %s: stopping", signal.Signals(received).name)
                    timer = threading.Timer(_HTTP_EXIT_GRACE if http else _EXIT_GRACE,
                                            _hard_exit, args=(gateway,))
                    timer.daemon = True
                    timer.start()
                    if http:
                        gateway.request_stop()
                        return
                    gateway.kill_upstreams()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)
        try:
            await gateway.run_async()
        except* (BrokenPipeError, ConnectionResetError):
            log.info("the host closed the gateway's stdout: stopping")
            gateway.kill_upstreams()
        tg.cancel_scope.cancel()


_EXIT_GRACE = 2.0
_HTTP_EXIT_GRACE = 15.0


def _hard_exit(gateway: Any) -> None:
    """The backstop for a stop that hangs; it never cuts the call log's final flush
    short (that is bounded by ``shutdown_flush_timeout`` itself)."""
    from fast_mcp_gateway.front.stdio import restore_blocking

    recorder = gateway.recorder
    deadline = time.monotonic() + gateway.settings.shutdown_flush_timeout
    while (recorder is not None and not recorder.stopped and recorder.pending
           and time.monotonic() < deadline):
        time.sleep(0.05)  # a daemon thread: the event loop may still be writing
    restore_blocking()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
