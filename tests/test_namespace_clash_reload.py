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


def register(db: Path) -> None:
    async def put() -> None:
        store = await SQLiteStore.open(db)
        try:  # registered before names were transliterated: 'caf_' then
            await store.put_server("café", CLOCK, True)
        finally:
            await store.close()

    anyio.run(put)


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
