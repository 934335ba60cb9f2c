"""Helpers for the alert tests: a switchable upstream, a gateway with alerts, and a real
webhook receiver on 127.0.0.1 that can fail or stall on demand."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway, GatewaySettings, parse_config
from fast_mcp_gateway.alerts import Transition
from tests.fixtures import FAST_RESTART, memory_transports


def switch_server(mode: dict[str, bool]) -> FastMCP[Any]:
    """``work`` fails while ``mode["fail"]`` is true (an error result from a real MCP
    server), and succeeds otherwise."""
    mcp = FastMCP("svc")

    @mcp.tool
    def work() -> str:
        if mode["fail"]:
            raise ToolError("svc is failing on purpose")
        return "done"

    return mcp


def alert_gateway(tmp_path: Path, servers: dict[str, Any], alerts: dict[str, Any],
                  memory: dict[str, FastMCP[Any]] | None = None,
                  options: dict[str, Any] | None = None, **settings: Any
                  ) -> tuple[Gateway, list[Transition]]:
    """A gateway with a SQLite store and ``alerts``; returns it and the list every
    transition is appended to (through ``on_transition``)."""
    config = parse_config({"gateway": options or {}, "servers": servers, "alerts": alerts},
                          source="test")
    settings.setdefault("connect_timeout", 60.0)
    gateway = Gateway(config, GatewaySettings(db=tmp_path / "gateway.db", **settings),
                      transport_factory=memory_transports(memory or {}), restart=FAST_RESTART)
    seen: list[Transition] = []
    gateway.alerts.on_transition.append(seen.append)
    return gateway, seen


def states(seen: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.rule, t.server, t.state) for t in seen]


@dataclass
class Receiver:
    """What the webhook receiver saw, and how it answers."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer 503 to this many requests first
    status: int = 200  # then answer this
    location: str | None = None  # a Location header to send with it (a redirect)
    release: threading.Event = field(default_factory=threading.Event)  # stall until set
    stall: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)  # one is stalled
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.requests]


@contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 (its own thread) recording every POST."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            if receiver.stall:
                receiver.stalled.set()
                receiver.release.wait(60)
            with receiver.lock:
                receiver.requests.append({"path": self.path, "body": body,
                                          "headers": dict(self.headers)})
                n = len(receiver.requests)
            code = 503 if n <= receiver.fail_first else receiver.status
            self.send_response(code)
            if receiver.location is not None:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
