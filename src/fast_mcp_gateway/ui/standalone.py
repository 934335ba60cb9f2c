"""The dashboard of a stdio gateway: served on loopback beside stdio, one-time token.

``serve --dashboard [HOST:PORT]`` (default ``127.0.0.1:8766``) runs ``serve_dashboard``
inside the stdio gateway's task group.  At start it makes a fresh random token (valid
until the gateway stops), writes the login URL to ``dashboard.json`` in the gateway's
data folder (mode 0600: only the user can read it) and prints it to **stderr** --
stdout is the MCP channel and never gets a byte.  ``mcp-gateway dashboard`` prints that
URL (or opens it).  Only loopback addresses are accepted: the dashboard can add
servers, which run commands.  The Host/Origin guard applies as in HTTP mode.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import uvicorn
from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.middleware import Middleware

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.config.settings import default_db_path
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.events import EventBus
from fast_mcp_gateway.ui.app import PREFIX, dashboard_app
from fast_mcp_gateway.ui.session import DashboardAuth

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8766"


def token_file() -> Path:
    """Where a running stdio dashboard leaves its URL (the user's data folder)."""
    return default_db_path().parent / "dashboard.json"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``PORT``) on loopback, else a ``ConfigError`` saying why."""
    host, _, port_text = text.rpartition(":")
    host = (host or "127.0.0.1").strip("[]")
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError.single("--dashboard", None, None, f"'{text}' is not HOST:PORT "
                                 f"(e.g. {DEFAULT_ADDRESS})") from None
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if not loopback:
        raise ConfigError.single("--dashboard", None, None, f"'{host}' is not a loopback "
                                 "address: the stdio dashboard can add servers (run "
                                 "commands), so it listens on 127.0.0.1 or ::1 only")
    return host, port


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the stdio gateway's CLI owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _url_file(url: str) -> Iterator[Path]:
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
        json.dump({"url": url, "pid": os.getpid()}, f)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


async def serve_dashboard(ctx: AdminContext, bus: EventBus, address: str, *,
                          task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
                          ) -> None:
    """Serve the dashboard until cancelled; ``task_status.started(url)`` once listening."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        logger.error("dashboard: cannot listen on %s:%d (%s); serving stdio without it",
                     host, port, exc.strerror)
        task_status.started(None)
        return
    sock.listen(64)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}{PREFIX}/login?token={token}"
    app = dashboard_app(ctx, DashboardAuth.one_time(token), bus, [
        Middleware(HostOriginGuardMiddleware, allowed_hosts=None, allowed_origins=None,
                   mode="strict")])
    server = _QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off",
                                         log_config=None, timeout_graceful_shutdown=1))
    with _url_file(url) as path:
        # stderr only: stdout carries the MCP protocol.
        print(f"mcp-gateway: dashboard at {url}  (also in {path}; "
              "'mcp-gateway dashboard' prints it)", file=sys.stderr, flush=True)
        task_status.started(url)
        try:
            await server.serve([sock])
        finally:
            server.should_exit = True
            bus.close()
            sock.close()
