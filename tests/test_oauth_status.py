"""Status surfaces say a server's sign-in (``auth:``; upstream/sign_in_status.py):
``sign_in: {state, expires_at, issuer, scopes}`` in ``gateway_list_servers``, REST
``/api/v1/servers`` and ``mcp-gateway check --json`` -- never a token; and ``check
--allow-signed-out`` exits 0 when the only problems are signed-out servers, naming
them.  Real loopback authorization server and protected MCP server, real SQLite file,
real HTTP and CLI subprocesses."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.admin.alerts import ActiveAlert
from fast_mcp_gateway.admin.models import CallRecord
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.sign_in_status import SignInStatus
from tests.fixtures import serve_http
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_cli_login import cli
from tests.test_oauth_sign_in import free_port, gateway, running, sign_in, state_is

pytestmark = pytest.mark.anyio


async def listed(client: Any) -> dict[str, Any]:
    answer = await client.call_tool("gateway_list_servers", {"detail": True})
    (server,) = answer.structured_content["servers"]
    return dict(server)


async def test_the_sign_in_is_in_every_status_without_a_token(tmp_path: Path) -> None:
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert (await listed(client))["sign_in"]["state"] == "signed_out"
            link = await sign_in(client)
            assert (await listed(client))["sign_in"]["state"] == "pending"
            await person_signs_in(link)
            await state_is(gw, UpstreamState.READY)
            server = await listed(client)
            sign = server["sign_in"]
            assert sign["state"] == "signed_in" and sign["scopes"] == ["read"]
            assert sign["issuer"].startswith("http://127.0.0.1:")
            assert time.time() + 3000 < sign["expires_at"] <= time.time() + 3600
            text = json.dumps(server)
            for token in [*provider.access_tokens, *provider.refresh_tokens]:
                assert token not in text
        async with serve_http(gw.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
            await state_is(gw, UpstreamState.READY)
            rest = (await http.get(base + "/api/v1/servers")).json()
            (row,) = rest["servers"] if isinstance(rest, dict) else rest
            assert row["sign_in"]["state"] == "signed_in"


async def test_check_allow_signed_out_exits_0_and_names_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    async with signing_upstream() as (_provider, url):
        config = tmp_path / "servers.yaml"
        await anyio.Path(config).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}}}\n")
        args = ["check", "--config", str(config), "--db", str(tmp_path / "g.db"), "--json"]
        strict = await anyio.run_process(cli(*args), env=env, check=False)
        assert strict.returncode == 1
        (row,) = json.loads(strict.stdout)["servers"]
        assert row["sign_in"]["state"] == "signed_out"
        assert row["status"] == "signed_out" and "needs sign-in" in row["error"]
        # The probe's state says what the row says: no "starting -> failed" warning
        # for a server that only waits for a person (oauth4).
        assert b"-> failed" not in strict.stderr and b"WARNING" not in strict.stderr, \
            strict.stderr
        allowed = await anyio.run_process(cli(*args, "--allow-signed-out"), env=env,
                                          check=False)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["signed_out_allowed"] == ["tickets"]
        assert "signed out, allowed by --allow-signed-out: tickets (not connected until " \
               "signed in: 'mcp-gateway login tickets'" in allowed.stderr.decode()


def test_expires_at_is_unix_seconds_as_the_other_times_and_the_readme_says_so() -> None:
    """``sign_in.expires_at`` is a number of unix seconds, as every other time in the
    status and REST outputs is (ISO 8601 strings only in a removal's or reload's
    words); the README says which (oauth4: it did not)."""
    said = {name: model.model_fields[field] for name, model, field in (
        ("expires_at", SignInStatus, "expires_at"), ("started_at", CallRecord, "started_at"),
        ("since", ActiveAlert, "since"))}
    for name, info in said.items():
        assert info.annotation in (float, float | None), name
        assert "unix seconds" in (info.description or ""), name
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`expires_at` is when its access token ends (renewed before by itself), in " \
           "unix seconds" in readme
