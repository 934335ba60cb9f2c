"""A reload that removes ``gateway.auth`` from an HTTP gateway is refused, said, and
leaves every rule that depends on it as it runs.

Applied, such a reload left the tokens in force (``GatewayVerifier`` kept its last
``gateway.auth`` until a restart) while the per-caller shares of sessions and streams,
which read the config, stopped at once: one token could open every session again.  The
log said so only at the next request.  Now the reload is refused like an invalid file
(``http/auth.presence_refusal``), and the shares read the verifier's own
``gateway.auth``.  A real ``mcp-gateway serve`` reloaded by SIGHUP; the shares in
process (the SDK's bound of 10,000 sessions made small).
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.http.session_quota import session_manager_of
from tests.fixtures import serve_http
from tests.test_http_session_quota import BOB, INITIALIZE, OPS, _headers
from tests.test_ops_process_metrics import ready
from tests.test_store_outage import BEARER, serving

pytestmark = pytest.mark.anyio
TWO_TOKENS = ("gateway:\n  auth:\n    tokens:\n"
              f"      - {{name: ops, token: {OPS}, scopes: [admin]}}\n"
              f"      - {{name: bob, token: {BOB}, scopes: [tools]}}\n"
              "servers: {}\n")
REFUSED = ("config reload (signal:SIGHUP) rejected, keeping the running config: "
           "gateway.auth cannot be turned off by a reload: this gateway keeps requiring "
           "its tokens, as it started; restart it to serve without gateway.auth, or put "
           "the section back")


@pytest.mark.timeout(240)
async def test_a_sighup_that_removes_auth_is_refused_and_said(tmp_path: Path) -> None:
    with serving(tmp_path, str(tmp_path / "gateway.db")) as gateway:
        async with httpx2.AsyncClient(timeout=30) as http:
            await ready(http, gateway)
            # gateway.auth and the notes server removed: the whole reload is refused.
            (tmp_path / "servers.yaml").write_text("servers: {}\n")
            gateway.proc.send_signal(signal.SIGHUP)
            await gateway.said(REFUSED)
            # Kept: its server runs on, and a request without the token is refused.
            assert (await http.get(f"{gateway.base}/api/v1/servers")).status_code == 401
            servers = await http.get(f"{gateway.base}/api/v1/servers", headers=BEARER)
            assert servers.status_code == 200, servers.text
            assert [s["name"] for s in servers.json()["servers"]] == ["notes"]
        assert gateway.stop() == 0, gateway.text
    assert "gateway.auth was removed from the config" not in gateway.text


async def test_the_per_caller_shares_hold_while_the_tokens_do(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text(TWO_TOKENS)
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    app = gateway.http_app("http")
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http:
        manager = session_manager_of(app.mcp_app, "/mcp")()
        manager.max_sessions = 16  # an eighth of them: 2 per caller
        path.write_text("servers: {}\n")  # gateway.auth removed
        report = await gateway.reload_config()
        assert (report.error or "").startswith(
            "gateway.auth cannot be turned off by a reload"), report
        opened = [await http.post(f"{base}/mcp", json=INITIALIZE, headers=_headers(BOB))
                  for _ in range(3)]
        # Its token still taken, bob is still held to its share (before: 200, 200, 200).
        assert [r.status_code for r in opened] == [200, 200, 429], opened[-1].text
        assert (await http.post(f"{base}/mcp", json=INITIALIZE,
                                headers=_headers("mgw_nobody"))).status_code == 401


def test_an_app_built_again_asks_the_veto_once(tmp_path: Path) -> None:
    # http_app() per run_async: each build appended the same veto (a list growing per run).
    path = tmp_path / "servers.yaml"
    path.write_text(TWO_TOKENS)
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    for _ in range(3):
        gateway.http_app("http")
    assert len(gateway.control.reload_vetoes) == 1, gateway.control.reload_vetoes
