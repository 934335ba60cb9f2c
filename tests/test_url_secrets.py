"""An upstream URL whose path is its credential (Zapier's ``/api/mcp/s/<key>/mcp``,
Pipedream's ``/<uuid>/<app>``, a Slack webhook's last segment) is masked wherever the URL
is shown: a failed connection's error names the URL, and that error is every server
reader's (a tools token's ``last_error`` and health history), the log's and the store's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.telemetry.redaction import url_credentials
from tests.fixtures import make_gateway, serve_http

KEY = "Zq7xK2mP9vR4tY8wB3nC6dF1gH5jL0sA"
OPS = "mgw_urlsecret-ops-7c1d9e2b4a"
BOB = "mgw_urlsecret-bob-3e8f0a6c1d"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]}]}


@pytest.mark.parametrize(("url", "found"), [
    (f"https://mcp.zapier.com/api/mcp/s/{KEY}/mcp", [KEY]),
    ("https://mcp.pipedream.net/3f2a9c1e-7b4d-4e2a-9f1c-0a1b2c3d4e5f/github",
     ["3f2a9c1e-7b4d-4e2a-9f1c-0a1b2c3d4e5f"]),
    ("https://x.test/mcp?customerId=3f2a9c1e-7b4d-4e2a-9f1c-0a1b2c3d4e5f&page=2",
     ["3f2a9c1e-7b4d-4e2a-9f1c-0a1b2c3d4e5f"]),
    ("https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
     ["abcdEFGHijklMNOPqrstUVWX"]),
    # Words, versions, short ids: where a server is, not a key.
    ("https://x.test/docs/release-notes-2024/openapi.v1.json", []),
    ("https://mcp.example.com/organizations/ExampleOrganization/mcp", []),
    ("https://api.githubcopilot.com/mcp/x/repos/readonly", []),
    ("http://127.0.0.1:8000/mcp/p/engineering_tools_2024", []),
])
def test_key_like_path_segments_and_query_values_are_found(url: str, found: list[str]) -> None:
    assert url_credentials(url) == found


@pytest.fixture
def refusing() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 refusing every request with 401 (a key revoked)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        do_GET = do_DELETE = do_POST

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_a_urls_key_reaches_no_reader_of_the_servers_error(
        tmp_path: Path, refusing: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"{refusing}/api/mcp/s/{KEY}/mcp"
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"zap": {"url": url}}, options={"auth": AUTH}, db=db)
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        seen = []
        for token, path in ((BOB, "/servers"), (BOB, "/servers/zap"), (BOB, "/logs/health"),
                            (OPS, "/servers/zap")):
            answer = await http.get(f"{base}/api/v1{path}",
                                    headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            seen.append(answer.text)
        assert "/api/mcp/s/***/mcp" in seen[1]  # the error still says where
        assert all(KEY not in text for text in seen), seen
        async for path in anyio.Path(tmp_path).iterdir():  # the store's health history
            assert KEY.encode() not in await path.read_bytes(), path
        # The admin's view shows the URL masked; written back, it keeps the key (the
        # registration, in the store, holds it as written, as it holds headers).
        config = json.loads(seen[3])["config"]
        assert config["url"] == f"{refusing}/api/mcp/s/***/mcp"
        changed = await http.put(f"{base}/api/v1/servers/zap",
                                 json={"config": {**config, "description": "Zapier"}},
                                 headers={"Authorization": f"Bearer {OPS}"})
        assert changed.status_code == 200 and KEY not in changed.text, changed.text
        assert gateway.manager.services["zap"].config.url == url
    assert KEY not in caplog.text
