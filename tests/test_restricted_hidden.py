"""An update that sends back a hidden argument (``--api-key=***``) as it was shown keeps
it, for an admin restricted to that server as for any admin; where it cannot -- the
value comes from an environment variable in servers.yaml, and the store never gets a
copy of one -- both are told so, and how to go on (it said only "holds a hidden part
(***) that cannot be kept here", which read as a restriction of the token).  Real HTTP
on 127.0.0.1, the demo clock as a real subprocess, a real SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.types import TextContent

from tests.test_rest import OPS, demo, serving

pytestmark = pytest.mark.anyio
CLOCK_ADMIN = "mgw_clock-admin-5e0a2c81f4"
OPTIONS = {"env_allow": ["CLOCK_KEY"], "auth": {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "dave", "token": CLOCK_ADMIN, "scopes": ["admin"], "servers": ["clock"]},
]}}
SECRET = "sk-hidden-5e0a2c81f4aa"
FROM_FILE = ("field 'args': '--api-key=***': its value comes from an environment variable "
             "in servers.yaml, and an edit here is saved in the gateway's store, which never "
             "holds a copy of one: change it in servers.yaml, or type the value again, or "
             "write ${VAR} for an allowed environment variable")


@pytest.mark.parametrize("token", [OPS, CLOCK_ADMIN], ids=["unrestricted", "restricted"])
@pytest.mark.parametrize("written", [SECRET, "${CLOCK_KEY}"], ids=["literal", "variable"])
async def test_an_update_keeps_a_hidden_argument_or_says_why_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, written: str) -> None:
    monkeypatch.setenv("CLOCK_KEY", SECRET)
    clock = demo("clock")
    clock["args"] = [*clock["args"], f"--api-key={written}"]
    async with serving(tmp_path, {"clock": clock}, auth=False, options=OPTIONS) as (api, base):
        async with Client(f"{base}/mcp", auth=token) as admin:

            async def update(config: dict[str, Any]) -> str | None:
                answer = await admin.call_tool("gateway_update_server",
                                               {"name": "clock", "config": config},
                                               raise_on_error=False)
                return ("".join(c.text for c in answer.content if isinstance(c, TextContent))
                        if answer.is_error else None)

            shown = (await admin.call_tool("gateway_server_detail", {"name": "clock"})
                     ).structured_content
            assert shown is not None
            config: dict[str, Any] = dict(shown["config"])
            assert "--api-key=***" in config["args"] and SECRET not in str(shown)
            config["description"] = "the clock, described"
            if written == SECRET:  # kept: the same program, as it was
                assert await update(config) is None
            else:  # the same answer for both tokens, saying why and what to do
                refused = await update(config)
                assert refused is not None and FROM_FILE in refused, refused
                # The way out it names: the variable, stored as a reference.
                config["args"] = [*config["args"][:-1], "--api-key=${CLOCK_KEY}"]
                assert await update(config) is None
        detail = (await api("GET", "/servers/clock", OPS)).json()
        assert detail["config"]["description"] == "the clock, described"
    stored = (tmp_path / "gateway.db").read_bytes()
    assert (SECRET.encode() in stored) == (written == SECRET)  # never a copy of the env's
