"""An HTTP upstream's session is ended (``DELETE``) when the gateway lets it go.

A handshake-era streamable-HTTP session has an id the upstream keeps until it expires.
The SDK's client sends its ``DELETE`` on the way out, but under the cancellation that
ends the session (a stop, a removal, a restart) it was never sent: a remote upstream
kept the gateway's session.  The gateway now ends each session itself, shielded and
bounded (``upstream/http_session_end.py``).  A real upstream on 127.0.0.1 records the
session ids it gives out and the ``DELETE`` requests it gets.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from fastmcp import Client

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.errors import UpstreamTimeout
from fast_mcp_gateway.upstream.replica import Upstream
from tests.fixtures import WITHIN, alpha_server, make_gateway, serve_http, until

pytestmark = pytest.mark.anyio


class SessionLedger:
    """A handshake-era upstream (stateful, JSON answers) recording the session ids it
    gives out (``opened``) and those a ``DELETE`` names (``deleted``).  With ``hold``,
    a ``DELETE`` is answered only once ``hold`` is set (an upstream that does not
    answer it) -- or, with ``stall``, a ``POST`` whose body holds ``stall`` instead;
    ``delete_seen`` is set on the first ``DELETE``."""

    def __init__(self, hold: anyio.Event | None = None, stall: bytes | None = None) -> None:
        self.opened: list[str] = []
        self.deleted: list[str] = []
        self.delete_seen = anyio.Event()
        self.hold, self.stall = hold, stall
        self.app = alpha_server().http_app(path="/mcp", json_response=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "DELETE":
            self.deleted.append(_session_id(scope["headers"]))
            self.delete_seen.set()
            if self.hold is not None and self.stall is None:
                await self.hold.wait()
        if scope["type"] == "http" and scope["method"] == "POST" and self.stall is not None:
            receive = await self._stalled(receive)

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                given = _session_id(message.get("headers", []))
                if given and given not in self.opened:
                    self.opened.append(given)
            await send(message)

        await self.app(scope, receive, sending)


    async def _stalled(self, receive: Any) -> Any:
        """``receive`` for a POST read whole, after ``hold`` if it holds ``stall``."""
        messages, more = [], True
        while more:
            messages.append(message := await receive())
            more = message.get("more_body", False)
        if self.stall is not None and self.hold is not None and \
                self.stall in b"".join(m.get("body", b"") for m in messages):
            await self.hold.wait()

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        return replay


def _session_id(headers: list[tuple[bytes, bytes]]) -> str:
    return dict(headers).get(b"mcp-session-id", b"").decode()


def _entry(base: str) -> dict[str, Any]:
    return {"url": f"{base}/mcp", "protocol": "legacy"}


async def test_a_stopped_serve_ends_its_http_upstream_session(tmp_path: Path) -> None:
    ledger = SessionLedger()
    async with serve_http(ledger, startup=False) as base:
        config = tmp_path / "servers.yaml"
        config.write_text(f"servers:\n  kept:\n    url: {base}/mcp\n    protocol: legacy\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        said: list[str] = []
        async with await anyio.open_process(
                [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
                 "--transport", "http", "--port", str(port), "--db", str(tmp_path / "g.db")],
                stdin=None, stdout=None) as proc:
            assert proc.stderr is not None
            lines = _lines(TextReceiveStream(proc.stderr))
            try:
                with anyio.fail_after(WITHIN):
                    async for line in lines:
                        said.append(line)
                        if "upstream kept: starting -> ready" in line:
                            break
                assert len(ledger.opened) == 1, "".join(said)
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(WITHIN):
                    said += [line async for line in lines]
                    assert await proc.wait() == 0, "".join(said)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    # The session it held was ended before the gateway exited, without a word.
    assert ledger.deleted == ledger.opened, "".join(said)
    assert not [line for line in said if "not ended" in line or " WARNING " in line], said


async def _lines(stream: TextReceiveStream) -> Any:
    pending = ""
    async for chunk in stream:
        pending += chunk
        *done, pending = pending.split("\n")
        for line in done:
            yield line + "\n"
    if pending:
        yield pending


async def test_a_removed_or_restarted_server_ends_its_session(tmp_path: Path) -> None:
    ledger = SessionLedger()
    async with serve_http(ledger, startup=False) as base:
        gateway = make_gateway({"kept": _entry(base)}, db=tmp_path / "g.db")
        async with Client(gateway.server) as client:
            assert len(ledger.opened) == 1
            await client.call_tool("gateway_reconnect_server", {"name": "kept"})
            await until(lambda: len(ledger.opened) == 2)
            # The first session ended before the second was opened.
            assert ledger.deleted == ledger.opened[:1]
            await client.call_tool("gateway_remove_server", {"name": "kept"})
            assert ledger.deleted == ledger.opened  # by the time the removal answered


async def test_an_unanswered_delete_does_not_hold_the_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    hold = anyio.Event()
    ledger = SessionLedger(hold)
    caplog.set_level(logging.INFO, "fast_mcp_gateway")
    async with serve_http(ledger, startup=False) as base:
        try:
            gateway = make_gateway({"kept": _entry(base)})
            with anyio.fail_after(WITHIN):
                async with Client(gateway.server) as client:
                    await client.list_tools()
                    assert len(ledger.opened) == 1
                # The gateway stopped while the upstream still holds its DELETE.
                assert ledger.delete_seen.is_set() and not hold.is_set()
            assert ledger.deleted == ledger.opened
        finally:
            hold.set()  # uvicorn's own stop waits for the request
    said = [r.getMessage() for r in caplog.records if "not ended" in r.getMessage()]
    assert said == ["upstream kept: its session on the server was not ended: no answer "
                    "within 2 s (the server ends it once it expires)"], said
    (record,) = [r for r in caplog.records if "not ended" in r.getMessage()]
    assert record.levelno == logging.INFO


async def test_a_session_cut_by_a_connect_timeout_is_ended_and_the_text_unchanged() -> None:
    """The ``DELETE`` after a connect that timed out is not the answer the timeout's
    text names (``HttpFacts``: the last answer the session got)."""
    hold = anyio.Event()
    ledger = SessionLedger(hold, stall=b'"tools/list"')
    async with serve_http(ledger, startup=False) as base:
        try:
            config = parse_config({"servers": {"up": _entry(base)}}, source="test")
            upstream = Upstream(config.servers["up"], connect_timeout=5.0)
            with anyio.fail_after(WITHIN), pytest.raises(UpstreamTimeout):
                await upstream.probe()
        finally:
            hold.set()
    assert len(ledger.opened) == 1 and ledger.deleted == ledger.opened
    error = upstream.last_error or ""
    assert "but sent no MCP answer to the catalog listing within 5 s" in error, error
    assert "DELETE" not in error, error
