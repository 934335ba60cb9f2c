"""``mcp-gateway``: serve the gateway, or check a configuration.

Only this module configures logging, and it logs to stderr: in stdio mode stdout
carries nothing but MCP protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.settings import GatewaySettings, default_db_path
from fast_mcp_gateway.errors import ConfigError

DEFAULT_CONFIG = Path("servers.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-gateway", description="One MCP server in front of many MCP servers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path, default=None,
                       help="servers.yaml or Claude-Desktop mcpServers file "
                            "(default: $MCP_GATEWAY_CONFIG or ./servers.yaml)")
        p.add_argument("--connect-timeout", type=float, default=None,
                       help="seconds to wait for each upstream to connect (default 10)")
        p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    serve = sub.add_parser("serve", help="run the gateway (stdio by default)")
    common(serve)
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default=None)
    serve.add_argument("--host", default=None, help="bind address for http/sse (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port for http/sse (8765)")
    serve.add_argument("--allowed-host", action="append", default=None, dest="allowed_hosts",
                       help="extra Host header to accept (DNS-rebinding guard); repeatable")

    serve.add_argument("--db", type=Path, default=None,
                       help="SQLite file for call records (default: $MCP_GATEWAY_DB or "
                            f"{default_db_path()})")
    serve.add_argument("--no-db", action="store_true", help="do not record calls")

    check = sub.add_parser("check", help="validate the config, connect to every upstream, "
                                         "print a table; exit 1 if anything is wrong")
    common(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=None,
                       help=f"the gateway's store (default: $MCP_GATEWAY_DB or "
                            f"{default_db_path()})")
        p.add_argument("--since", default=None, help="e.g. 30s, 10m, 2h, 7d")
        p.add_argument("--server", default=None)
        p.add_argument("--json", action="store_true", help="print JSON lines / JSON")

    logs = sub.add_parser("logs", help="the latest calls through the gateway")
    store_args(logs)
    logs.add_argument("--tool", default=None, help="exposed name")
    logs.add_argument("--status", choices=["success", "error", "timeout", "rejected"])
    logs.add_argument("--limit", type=int, default=50)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new calls")

    servers = sub.add_parser("servers", help="the configured servers: the config file merged "
                                             "with runtime registrations")
    common(servers)
    servers.add_argument("--db", type=Path, default=None,
                         help=f"the gateway's store (default: $MCP_GATEWAY_DB or "
                              f"{default_db_path()})")
    servers.add_argument("--json", action="store_true")

    stats = sub.add_parser("stats", help="counts, success rates and latency percentiles")
    store_args(stats)
    stats.add_argument("--by", choices=["server", "tool"], default=None)
    return parser


def _settings(args: argparse.Namespace) -> GatewaySettings:
    overrides: dict[str, Any] = {}
    for key in ("config", "connect_timeout", "log_level", "transport", "host", "port",
                "allowed_hosts", "db"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    settings = GatewaySettings(**overrides)
    if settings.config is None:
        settings = settings.model_copy(update={"config": DEFAULT_CONFIG})
    if getattr(args, "no_db", False):
        settings = settings.model_copy(update={"record_calls": False})
    elif settings.db is None and args.command in ("serve", "servers"):
        settings = settings.model_copy(update={"db": default_db_path()})
    return settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # FastMCP's per-request chatter is traffic, not state; keep it out unless debugging.
    if level != "DEBUG":
        logging.getLogger("fastmcp").setLevel(logging.WARNING)
        logging.getLogger("mcp").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("logs", "stats"):
        from fast_mcp_gateway.cli.reports import run_report

        try:
            return anyio.run(run_report, args)
        except KeyboardInterrupt:
            return 0
    try:
        settings = _settings(args)
        _configure_logging(settings.log_level)
        assert settings.config is not None
        config = load_config(settings.config)
    except ConfigError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "servers":
        from fast_mcp_gateway.cli.reports import run_servers

        return anyio.run(run_servers, config, args)
    if args.command == "check":
        from fast_mcp_gateway.cli.check import run_check

        return anyio.run(run_check, config, settings, bool(args.json))
    from fast_mcp_gateway.gateway import Gateway

    gateway = Gateway(config, settings)
    started = time.monotonic()
    logging.getLogger("fast_mcp_gateway").info(
        "serving %d upstream(s) from %s over %s", len(config.servers), settings.config,
        settings.transport,
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_serve, gateway)
    logging.getLogger("fast_mcp_gateway").info("stopped after %.1fs", time.monotonic() - started)
    return 0


async def _serve(gateway: Any) -> None:
    """Serve; on SIGTERM/SIGINT terminate the upstreams at once and stop.

    The SDK's stdio server reads stdin in a worker thread that cancellation cannot
    interrupt, so if an orderly stop has not finished after ``_EXIT_GRACE`` seconds the
    process exits hard (its upstream processes are already gone by then).
    """
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                            signal.SIGHUP) as signals:
                async for received in signals:
                    if received == signal.SIGHUP:
                        tg.start_soon(gateway.reload_config)
                        continue
                    logging.getLogger("fast_mcp_gateway").info(
                        "received %s: stopping", signal.Signals(received).name)
                    gateway.kill_upstreams()
                    timer = threading.Timer(_EXIT_GRACE, _hard_exit)
                    timer.daemon = True
                    timer.start()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)
        await gateway.run_async()
        tg.cancel_scope.cancel()


_EXIT_GRACE = 2.0


def _hard_exit() -> None:
    from fast_mcp_gateway.front.stdio import restore_blocking

    restore_blocking()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
