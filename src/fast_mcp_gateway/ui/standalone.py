"""The dashboard of a stdio gateway: served on loopback beside stdio, one-time links.

``serve --dashboard [HOST:PORT]`` (default ``127.0.0.1:8766``) runs ``serve_dashboard``
inside the stdio gateway's task group.  At start it makes a random link key
(``ui.login_links``), writes the dashboard's address and that key to ``dashboard.json``
in the user's data folder (mode 0600, replaced atomically: only the user can read it)
and prints one one-time login link to **stderr** -- stdout is the MCP channel and never
gets a byte.  ``mcp-gateway dashboard`` reads the file and derives a fresh link from the
key (no request to the gateway); each link logs in one browser once.  Only loopback
addresses are accepted: the dashboard can add servers, which run commands.  The
Host/Origin guard applies as in HTTP mode.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import uvicorn
from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.middleware import Middleware

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.http.fetch_site import FetchSiteMiddleware
from fast_mcp_gateway.http.no_websockets import RefusedWebSocket
from fast_mcp_gateway.store.files import private_dir
from fast_mcp_gateway.telemetry.events import EventBus
from fast_mcp_gateway.ui.app import PREFIX, dashboard_app
from fast_mcp_gateway.ui.login_links import LoginLinks, login_url, token_file
from fast_mcp_gateway.ui.session import DashboardAuth

logger = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8766"


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
    if host.lower() == "localhost.":  # the root-anchored name: /etc/hosts has no dot
        host = host[:-1]
    loopback = host.lower() == "localhost"
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
def _key_file(base: str, key: bytes) -> Iterator[Path]:
    path = token_file()
    private_dir(path.parent)
    # mkstemp makes the file 0600 and never follows a planted link; the rename makes it
    # appear whole, so 'mcp-gateway dashboard' never reads half of it.
    fd, temp = tempfile.mkstemp(prefix=".dashboard-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 2, "base": base, "key": key.hex(), "pid": os.getpid()}, f)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


async def serve_dashboard(ctx: AdminContext, bus: EventBus, address: str, *,
                          sock: socket.socket | None = None,
                          task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
                          ) -> None:
    """Serve the dashboard until cancelled; ``task_status.started(url)`` (a one-time
    login link) once listening.  ``sock``: bound to ``address`` already (``serve``
    binds it before anything starts, and stops on a port in use); without it, the
    address is bound here, and when it is taken ``started(None)``."""
    host, port = parse_address(address)
    if sock is None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
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
    links = LoginLinks()
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}{PREFIX}"
    url = login_url(base, links.key)
    app = dashboard_app(ctx, DashboardAuth.one_time(links), bus, [
        Middleware(FetchSiteMiddleware, navigable=True),  # as the HTTP app's guard
        Middleware(HostOriginGuardMiddleware, allowed_hosts=None, allowed_origins=None,
                   mode="strict")])
    # ws: upgrades refused without loading the websockets library (as HTTP mode does).
    server = _QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off",
                                         log_config=None, timeout_graceful_shutdown=1,
                                         ws=RefusedWebSocket))
    with _key_file(base, links.key):
        # stderr only: stdout carries the MCP protocol.
        print(f"mcp-gateway: dashboard at {base}/ ; one-time login link: {url}  "
              "('mcp-gateway dashboard' prints a fresh link at any time)",
              file=sys.stderr, flush=True)
        task_status.started(url)
        try:
            await server.serve([sock])
        finally:
            server.should_exit = True
            bus.close()
            sock.close()
