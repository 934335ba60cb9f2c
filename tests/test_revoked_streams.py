"""A session's event stream ends when a reload removes the token it was opened with
(``http/revoked_streams.py``).  Found revoking a token as an operator: its requests
were refused (401) from the reload on, but its open handshake-era event stream (and in
SSE mode its ``/sse`` stream) stayed open, pinged, for as long as the host kept it.
Real HTTP on 127.0.0.1, the config reloaded from a real file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.fixtures import WITHIN, make_gateway
from tests.fixtures import serve_http as serve
from tests.test_http_stream_quota import HANDSHAKE, _get_stream, _headers, _session

pytestmark = pytest.mark.anyio
OPS = "mgw_revoked-ops-6b2d9e1f4a"
BOB = "mgw_revoked-bob-3c7a0e5d8f"


def _write(config: Path, *names: str) -> dict[str, Any]:
    tokens = {"ops": {"name": "ops", "token": OPS, "scopes": ["admin"]},
              "bob": {"name": "bob", "token": BOB, "scopes": ["tools"]}}
    auth = {"tokens": [tokens[name] for name in names]}
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": {}}))
    return auth


async def _ended(stream: httpx2.Response) -> None:
    """Read ``stream`` (pings and all) until it ends."""
    with anyio.fail_after(WITHIN):
        async for _ in stream.aiter_bytes():
            pass


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_revoked_tokens_event_stream_ends(tmp_path: Path, transport: str) -> None:
    config = tmp_path / "servers.yaml"
    gateway = make_gateway({}, options={"auth": _write(config, "ops", "bob")}, config=config)
    async with serve(gateway.http_app(transport)) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        if transport == "http":
            url = f"{base}/mcp"
            streams = [_headers(token, **{"Mcp-Session-Id": await _session(http, base, token),
                                          "MCP-Protocol-Version": HANDSHAKE})
                       for token in (BOB, OPS)]
        else:
            url = f"{base}/sse"
            streams = [{"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
                       for token in (BOB, OPS)]
        async with _get_stream(http, url, streams[0]) as bob, \
                _get_stream(http, url, streams[1]) as ops:
            assert bob.status_code == ops.status_code == 200
            _write(config, "ops")   # bob's token revoked
            report = await gateway.reload_config()
            assert report.error is None, report
            await _ended(bob)
            assert not ops.is_closed   # a token the reload kept keeps its stream
            again = await http.get(url, headers=streams[0])
            assert again.status_code == 401, again.text
