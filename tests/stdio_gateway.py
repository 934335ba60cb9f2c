"""A real ``mcp-gateway serve`` over stdio, driven with raw JSON-RPC lines (tests only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fast_mcp_gateway"]


class StdioGateway:
    """One running gateway; ``call`` a tool, ``stop`` with SIGTERM and read stderr."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._ids = iter(range(1, 1_000_000))
        self.stderr = ""

    def send(self, message: dict[str, Any]) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        if "id" not in message:
            return None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the gateway closed its stdout"
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == message["id"]:
                return reply

    def initialize(self) -> None:
        self.send({"jsonrpc": "2.0", "id": next(self._ids), "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, tool: str, **arguments: Any) -> Any:
        reply = self.send({"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call",
                           "params": {"name": tool, "arguments": arguments}})
        assert reply is not None and "result" in reply, reply
        return reply["result"].get("structuredContent")

    def wait_for(self, tool: str, condition: Callable[[Any], bool], within: float = 60.0
                 ) -> Any:
        """Call ``tool`` until its result meets ``condition`` (each call is a round trip
        through the gateway, the event waited for is in its answer)."""
        deadline = time.monotonic() + within
        while True:
            result = self.call(tool)
            if condition(result):
                return result
            assert time.monotonic() < deadline, f"{tool} never met the condition: {result}"

    def stop(self) -> str:
        """SIGTERM (what a host does at quit), wait for the exit; the whole stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        self.stderr = err
        return err


@contextmanager
def stdio_gateway(*args: str, env: dict[str, str | None] | None = None, umask: int = 0o022
                  ) -> Iterator[StdioGateway]:
    """``mcp-gateway serve ARGS`` started and initialized; stopped (SIGTERM) at the end.
    ``env`` overrides the test's environment (``None``: unset that variable)."""
    merged: dict[str, str | None] = {**os.environ, **(env or {})}
    proc = subprocess.Popen([*CLI, "serve", *args], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in merged.items() if v is not None},
                            umask=umask)
    gateway = StdioGateway(proc)
    try:
        gateway.initialize()
        yield gateway
    finally:
        if proc.poll() is None:
            gateway.stop()
