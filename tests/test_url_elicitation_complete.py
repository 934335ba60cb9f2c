"""An upstream's ``notifications/elicitation/complete`` reaches the host it asked.

A server eliciting in URL mode (MCP 2025-11-25: an ``elicitation/create`` request, or a
call answered -32042 naming the flows) may say when the browser flow is done; the host
then closes its "waiting" view or retries the call.  The gateway relayed the
question and dropped the notification (``upstream/url_asks.py``, trial14).  A raw
handshake-era host (``tests/test_lane.RawHost``) on the stdio lane and the full path,
against the same host talking to the server (mcp 1.x, ``tests/servers/url_asker.py``)
directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures import SERVERS, WITHIN, until
from tests.sdk1_peers import sdk1_python
from tests.test_lane import both_paths, raw_host

pytestmark = pytest.mark.anyio
CAPABILITIES = {"elicitation": {"form": {}, "url": {}}}
COMPLETE = "notifications/elicitation/complete"


async def accept(method: str, params: dict[str, Any]) -> dict[str, Any]:
    assert (method, params.get("mode")) == ("elicitation/create", "url"), (method, params)
    return {"action": "accept"}


def completions(notifications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in notifications if n["method"] == COMPLETE]


async def direct(python: Path) -> list[dict[str, Any]]:
    """What the host is told talking to the server itself over stdio."""
    from tests.test_lane import CLIENT_INFO, RawHost

    process = await anyio.open_process([str(python), str(SERVERS / "url_asker.py")])
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, "legacy", accept)
        tg.start_soon(host.read)
        await host.request("initialize", {"protocolVersion": "2025-11-25",
                                           "capabilities": CAPABILITIES,
                                           "clientInfo": CLIENT_INFO})
        await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert (await host.call("sign_in", {"flow": "f-1"}))["structuredContent"] == \
            {"result": "accept"}
        await host.call("finish", {"flow": "f-1"})
        refused = await host.request("tools/call", {"name": "needs_sign_in",
                                                    "arguments": {"flow": "f-2"}})
        assert refused["error"]["code"] == -32042, refused
        await host.call("finish", {"flow": "f-2"})
        with anyio.fail_after(WITHIN):
            await until(lambda: len(completions(host.notifications)) == 2)
        assert process.stdin is not None
        await process.stdin.aclose()
        tg.cancel_scope.cancel()
    return completions(host.notifications)


async def test_the_host_asked_is_told_the_url_flow_is_complete(tmp_path: Path) -> None:
    python = sdk1_python()
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"servers": {"asker": {
        "command": str(python), "args": [str(SERVERS / "url_asker.py")]}}}))

    async def through(lane: bool, env: dict[str, str]) -> list[dict[str, Any]]:
        async with raw_host(config, "legacy", lane=lane, env=env, capabilities=CAPABILITIES,
                            on_request=accept, listed=("asker_sign_in",)) as host:
            signed = await host.call("asker_sign_in", {"flow": "f-1"})
            assert signed["structuredContent"] == {"result": "accept"}, signed
            await host.call("asker_finish", {"flow": "f-1"})
            # The error path: the flow a -32042 answer named (the host opens it from there)
            refused = await host.request("tools/call", {"name": "asker_needs_sign_in",
                                                        "arguments": {"flow": "f-2"}})
            assert refused["error"]["code"] == -32042, refused
            await host.call("asker_finish", {"flow": "f-2"})
            with anyio.fail_after(WITHIN):
                await until(lambda: len(completions(host.notifications)) == 2)
            # A flow this host was never asked about is not relayed (to no host).
            await host.call("asker_finish", {"flow": "unknown"})
            await host.call("asker_finish", {"flow": "f-1"})  # told once: already done
            return completions(host.notifications)

    expected = await direct(python)
    got = await both_paths(tmp_path, through)
    assert expected == [{"jsonrpc": "2.0", "method": COMPLETE,
                         "params": {"elicitationId": flow}} for flow in ("f-1", "f-2")]
    assert got[True] == expected, got[True]
    assert got[False] == expected, got[False]
