"""Rotating a static token without cutting its holder off (trial13).

A team rotating alice's token wants the new one accepted next to the old until every
host of hers uses it, then the old one removed.  A second entry named ``alice`` stopped
the reload ("token names must be unique; repeated: alice"), and a new name made her
another caller: her calls recorded under it, the calls made with the old token no longer
hers to read.  One name may now hold several tokens granting the same scopes and servers.
Real HTTP on 127.0.0.1, a real SQLite store, servers.yaml reloaded as an edit would be.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from pydantic import ValidationError

from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http.session_quota import several_callers
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_rotation-ops-5b7e0c93d1"
OLD = "mgw_rotation-alice-old-2f9a64"
NEW = "mgw_rotation-alice-new-8c31d7"
SERVERS = {"alpha": memory_entry("alpha")}


def _alice(token: str) -> dict[str, Any]:
    return {"name": "alice", "token": token, "scopes": ["tools"], "servers": ["alpha"]}


def _write(config: Path, *alices: str) -> dict[str, Any]:
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       *(_alice(token) for token in alices)]}
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": SERVERS}))
    return auth


async def _add(base: str, token: str) -> None:
    async with Client(f"{base}/mcp", auth=token) as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3


async def _own_calls(http: httpx2.AsyncClient, base: str, token: str) -> list[str]:
    answer = await http.get(f"{base}/api/v1/logs/invocations",
                            headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return [item["client"] for item in answer.json()["calls"]]


async def test_a_token_is_rotated_with_both_accepted_meanwhile(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "servers.yaml"
    gateway = make_gateway(SERVERS, {"alpha": alpha_server()},
                           options={"auth": _write(config, OLD)}, config=config,
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        await _add(base, OLD)
        _write(config, OLD, NEW)  # the new token next to the old one
        with caplog.at_level(logging.INFO, "fast_mcp_gateway.front.reloaded"):
            report = await gateway.reload_config()
        assert report.error is None, report.error
        assert "gateway.auth reloaded: token(s) added: alice" in caplog.text, caplog.text
        await _add(base, OLD)  # hosts not moved yet go on
        await _add(base, NEW)
        # One caller: the new token reads the calls the old one made, as alice's.
        assert gateway.recorder is not None and await gateway.recorder.flushed(within=30)
        calls = await _own_calls(http, base, NEW)
        assert calls == ["alice"] * 3, calls

        _write(config, NEW)  # every host moved: the old token goes
        caplog.clear()
        with caplog.at_level(logging.INFO, "fast_mcp_gateway.front.reloaded"):
            assert (await gateway.reload_config()).error is None
        assert "token(s) removed: alice (a token of that name stays)" in caplog.text, \
            caplog.text
        refused = await http.get(f"{base}/api/v1/servers",
                                 headers={"Authorization": f"Bearer {OLD}"})
        assert refused.status_code == 401 and "a config reload removed it" in refused.text
        await _add(base, NEW)
    assert OLD not in caplog.text and NEW not in caplog.text


def test_one_names_tokens_must_grant_the_same() -> None:
    """Two tokens of one name are one caller: other scopes or servers are refused,
    naming the name and the fix; the same reach is one caller for the session quota."""
    same = AuthConfig.model_validate({"tokens": [_alice(OLD), _alice(NEW)]})
    assert not several_callers(same)  # one caller: no per-caller share of sessions
    for other in ({"scopes": ["admin"]}, {"servers": ["beta"]}, {"servers": None}):
        with pytest.raises(ValidationError) as refused:
            AuthConfig.model_validate({"tokens": [_alice(OLD), {**_alice(NEW), **other}]})
        text = str(refused.value)
        assert "token name 'alice' is repeated with other scopes or servers" in text, text
        assert "give the other token its own name" in text and NEW not in text
    # The order of the lists does not matter.
    AuthConfig.model_validate({"tokens": [
        {**_alice(OLD), "scopes": ["tools", "admin"], "servers": ["a", "b"]},
        {**_alice(NEW), "scopes": ["admin", "tools"], "servers": ["b", "a"]}]})


def test_an_in_place_replacement_is_logged_as_one() -> None:
    """The digest swapped in place (no overlap) was logged "token(s) added: alice;
    token(s) removed: alice"."""
    from fast_mcp_gateway.config.auth import auth_changes

    old = AuthConfig.model_validate({"tokens": [_alice(OLD)]})
    new = AuthConfig.model_validate({"tokens": [_alice(NEW)]})
    assert auth_changes(old, new) == "token(s) replaced (the old one is refused): alice"
