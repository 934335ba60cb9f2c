"""An edit of the config file that cannot apply is said (``admin/clashes.FileEdits``):
the entry of a server that runs its runtime registration (``gateway_update_server`` of
a file's server), or of one removed at runtime, was changed in the file and the reload
answered "no change" without a word, the edit dropped (found trying the gateway as an
operator: ``time2`` registered over REST, then edited in servers.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings, load_config
from tests.fixtures import alpha_server, memory_entry, memory_transports

pytestmark = pytest.mark.anyio
OVERRIDDEN = "the config file's entry of server 'alpha' changed, but the edit does not apply"
REMOVED = "the config file's entry of server 'beta' changed, but it does not run"


def write(config: Path, alpha: dict[str, Any], beta: dict[str, Any]) -> None:
    config.write_text(yaml.safe_dump({"servers": {"alpha": alpha, "beta": beta}}))


async def test_an_edit_of_an_overridden_or_removed_entry_is_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, config = tmp_path / "gateway.db", tmp_path / "servers.yaml"
    alpha, beta = memory_entry("alpha"), memory_entry("beta")
    write(config, alpha, beta)
    gateway = Gateway(load_config(config), GatewaySettings(config=config, db=db,
                                                           reload_interval=0),
                      transport_factory=memory_transports({"alpha": alpha_server(),
                                                           "beta": alpha_server()}))
    async with Client(gateway.server) as client:
        updated = await client.call_tool("gateway_update_server", {
            "name": "alpha", "config": {**alpha, "description": "registered"}})
        assert updated.structured_content["updated"] == ["alpha"]
        await client.call_tool("gateway_remove_server", {"name": "beta"})
        assert not (await gateway.reload_config()).error   # the file as it was: nothing
        assert OVERRIDDEN not in caplog.text and REMOVED not in caplog.text
        write(config, {**alpha, "description": "edited"}, {**beta, "description": "edited"})
        assert not (await gateway.reload_config()).error
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert sum(OVERRIDDEN in line for line in said) == 1, said
        assert sum(REMOVED in line for line in said) == 1, said
        assert not (await gateway.reload_config()).error   # the same edit: said once
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert sum(OVERRIDDEN in line for line in said) == 1, said
        servers = (await client.call_tool("gateway_list_servers", {})).structured_content
    overriding = next(line for line in said if OVERRIDDEN in line)
    assert "gateway_update_server" in overriding and str(db) in overriding
    assert "gateway_add_server" in next(line for line in said if REMOVED in line)
    # What runs is as it was: the registration, and no beta.
    assert {s["name"]: s.get("description") for s in servers["servers"]} == {
        "alpha": "registered"}
