"""A runtime registration and a server sharing a namespace (``admin/clashes.py``): the
warning ran at start only, so a clash a hot reload of ``servers.yaml`` made (the file's
``cafe`` enabled beside the stored ``café``, namespaced ``cafe`` since
transliteration) went unsaid, and one with a disabled server, which runs nothing, was
warned of.  Now it is checked on every merge, counting enabled servers only, and said
once per clash, not once per reload.  A real ``mcp-gateway serve`` (stdio), its
servers real subprocesses, the registration in a real SQLite file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from fast_mcp_gateway.store import SQLiteStore
from tests.stdio_gateway import stdio_gateway

CLOCK = {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.clock"]}
SAID = "now has the namespace 'cafe'"


async def put(db: Path) -> None:
    store = await SQLiteStore.open(db)
    try:  # registered before names were transliterated: 'caf_' then
        await store.put_server("café", CLOCK, True)
    finally:
        await store.close()


def register(db: Path) -> None:
    anyio.run(put, db)


def write(config: Path, cafe: dict[str, Any]) -> None:
    config.write_text(yaml.safe_dump({"servers": {"other": CLOCK, "cafe": cafe}},
                                     allow_unicode=True))


@pytest.mark.timeout(180)
def test_a_clash_a_reload_makes_is_said_once_and_a_disabled_server_makes_none(
        tmp_path: Path) -> None:
    db, config = tmp_path / "gateway.db", tmp_path / "servers.yaml"
    register(db)
    write(config, {**CLOCK, "enabled": False})
    with stdio_gateway("--config", str(config), "--db", str(db)) as gateway:
        gateway.wait_for("gateway_list_servers", lambda r: all(
            s["state"] in ("ready", "disabled") for s in r["servers"]))
        write(config, CLOCK)   # enabled: both run under 'cafe' now
        assert not gateway.call("gateway_reload_config").get("error")
        write(config, {**CLOCK, "description": "the file's cafe"})   # another reload
        assert not gateway.call("gateway_reload_config").get("error")
        err = gateway.stop()
    # Said neither at start (the file's 'cafe' disabled) nor at the second reload.
    started, _, reloaded = err.partition("serving 3 upstream(s)")
    assert reloaded and SAID not in started, err
    said = [line for line in reloaded.splitlines() if SAID in line]
    assert len(said) == 1, err
    assert "server 'café', registered at runtime in " in said[0]
    assert "which server 'cafe' has too" in said[0]


@pytest.mark.anyio
async def test_a_refused_reload_warns_of_no_clash_in_the_config_it_never_applied(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload a veto refuses (HTTP: ``gateway.auth`` added or removed) keeps the running
    config: merged before the veto, it warned of a clash the refused file made."""
    from fastmcp import Client

    from fast_mcp_gateway import Gateway, GatewaySettings, load_config
    from tests.fixtures import alpha_server, memory_entry, memory_transports

    db, config = tmp_path / "gateway.db", tmp_path / "servers.yaml"
    await put(db)
    write(config, {**memory_entry("alpha"), "enabled": False})
    gateway = Gateway(load_config(config), GatewaySettings(config=config, db=db,
                                                           reload_interval=0),
                      transport_factory=memory_transports({"alpha": alpha_server()}))
    async with Client(gateway.server):
        gateway.control.reload_vetoes.append(lambda running, new: "refused for the test")
        write(config, memory_entry("alpha"))   # enabled: it would clash with 'café'
        caplog.clear()
        assert (await gateway.reload_config()).error == "refused for the test"
        assert SAID not in caplog.text
        gateway.control.reload_vetoes.clear()   # the same file applied: said
        assert not (await gateway.reload_config()).error
        assert SAID in caplog.text
