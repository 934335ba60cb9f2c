"""A reload that changes what a token may see tells its open sessions their lists changed.

An operator narrowed a token's ``servers`` (or widened it, or took its ``admin``) in
servers.yaml and sent SIGHUP: the token's next ``tools/list`` was right, but its open
handshake-era sessions got no ``list_changed``, so a host that keeps its lists (Claude
Desktop, the Inspector) went on offering tools the token could no longer call, and never
learnt of the ones it was given.  Hosts reach the gateway over real HTTP on 127.0.0.1;
the upstreams are ``tests/servers/watched.py`` (stdio).  The first two tests failed on
the code they were written against; the last one's log too (a reload editing tokens
alone was logged "no change").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from tests.fixtures import WITHIN, make_gateway, serve_http
from tests.test_startup import Changes
from tests.test_subscription_lifetimes import MINE, OPS
from tests.test_subscriptions_across_reloads import entries, reload, writer

pytestmark = pytest.mark.anyio


async def _tools(client: Client) -> set[str]:
    return {tool.name for tool in await client.list_tools()}


async def test_a_reload_narrowing_then_widening_a_token_tells_its_sessions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "servers.yaml"
    write = writer(config)
    servers = entries("watched", "other")
    gateway = make_gateway(servers, options={"auth": write(servers, ["watched", "other"])},
                           config=config)
    async with serve_http(gateway.http_app("http")) as base:
        narrowed, widened = Changes(), Changes()
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=narrowed) as mo:
            assert {n.split("_")[0] for n in await _tools(mo)} == {"watched", "other"}
            write(servers, ["other"])
            with caplog.at_level(logging.INFO, "fast_mcp_gateway.front.reloaded"):
                await reload(gateway)
            assert "gateway.auth reloaded: given other scopes or servers: mo" in caplog.text
            with anyio.fail_after(WITHIN):
                await narrowed.all()   # tools, resources and prompts
            assert {n.split("_")[0] for n in await _tools(mo)} == {"other"}
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=widened) as mo:
            assert {n.split("_")[0] for n in await _tools(mo)} == {"other"}
            write(servers, ["other", "watched"])
            await reload(gateway)
            with anyio.fail_after(WITHIN):
                await widened.all()
            assert {n.split("_")[0] for n in await _tools(mo)} == {"watched", "other"}


async def test_a_reload_taking_a_tokens_admin_tells_its_sessions(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    servers = entries("watched")

    def write(scopes: list[str]) -> dict[str, Any]:
        auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": scopes}]}
        config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": servers}))
        return auth

    gateway = make_gateway(servers, options={"auth": write(["admin"])}, config=config)
    changes = Changes()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS, mode="legacy", message_handler=changes) as ops:
        assert "gateway_list_servers" in await _tools(ops)
        write(["tools"])
        await reload(gateway)
        with anyio.fail_after(WITHIN):
            await changes.seen["tools"].wait()
        assert not any(name.startswith("gateway_") for name in await _tools(ops))


async def test_a_reload_leaving_every_tokens_reach_announces_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A token added, or one renamed, changes no open session's lists: no notice.  The
    log says what changed (the reload's own line said "no change": it counts servers)."""
    config = tmp_path / "servers.yaml"
    servers = entries("watched")
    auth: dict[str, Any] = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": servers}))
    gateway = make_gateway(servers, options={"auth": auth}, config=config)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS, mode="legacy") as ops:
        await _tools(ops)
        auth = {"tokens": [{"name": "operator", "token": OPS, "scopes": ["admin"]},
                           {"name": "mo", "token": MINE, "scopes": ["tools"]}]}
        config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": servers}))
        with caplog.at_level(logging.INFO, "fast_mcp_gateway.front.reloaded"):
            await reload(gateway)
        assert not gateway.hub.lists_pending
    assert ("gateway.auth reloaded: token(s) added: mo; renamed: ops -> operator"
            in caplog.text), caplog.text
    assert OPS not in caplog.text and MINE not in caplog.text
