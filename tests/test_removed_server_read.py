"""``GET /api/v1/servers/<name>`` of a server removed at runtime says so.

It answered the 404 of a name never known ("no server named ..."): now the message says
it was removed, by whom and when (the audit's), and how to add it back, in the API's
error shape (``admin/removed.py``).  Real HTTP on 127.0.0.1, a real SQLite store, a
real config file reloaded."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.admin import removed
from fast_mcp_gateway.store import open_store
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, serve_http
from tests.test_rest import ALICE, AUTH, OPS, Api, assert_error

pytestmark = pytest.mark.anyio


async def test_a_read_of_a_removed_server_says_it_was_removed(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    entries = {"notes": memory_entry("notes"), "alpha": memory_entry("alpha")}
    config.write_text(json.dumps({"gateway": {"auth": AUTH}, "servers": entries}))
    gateway = make_gateway(entries, {"notes": alpha_server(), "alpha": alpha_server(),
                                     "beta": beta_server()},
                           options={"auth": AUTH}, config=config, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        api = Api(http, base)
        # A file server removed at runtime: kept removed by the store.
        assert (await api("DELETE", "/servers/alpha", OPS)).status_code == 200
        error = assert_error(await api("GET", "/servers/alpha", OPS), 404, "not_found")
        assert error["message"].startswith("server 'alpha' was removed at runtime by 'ops' "
                                           "at 20"), error
        assert error["message"].endswith(
            "; add it back with POST /api/v1/servers (body: name and config); its "
            "servers.yaml entry stays removed until then")
        assert error["details"]["server"] == "alpha"
        assert error["details"]["removed_by"] == "ops"
        assert error["details"]["removed_at"].endswith("+00:00")
        # A runtime registration, added then removed.
        added = await api("POST", "/servers", OPS,
                          json={"name": "beta", "config": memory_entry("beta")})
        assert added.status_code == 201, added.text
        assert (await api("DELETE", "/servers/beta", OPS)).status_code == 200
        error = assert_error(await api("GET", "/servers/beta", OPS), 404, "not_found")
        assert "server 'beta' was removed at runtime by 'ops'" in error["message"]
        assert "stays removed" not in error["message"]
        # A file entry a reload removed.
        config.write_text(json.dumps({"gateway": {"auth": AUTH}, "servers": {}}))
        assert (await gateway.reload_config()).removed == ["notes"]
        error = assert_error(await api("GET", "/servers/notes", OPS), 404, "not_found")
        assert error["message"].startswith(
            "server 'notes' was removed by a config reload by 'library' at 20"), error
        assert "add it back to the file" in error["message"]
        # A caller that may not use it, and a name never known: the 404 of an unknown name.
        unknown = assert_error(await api("GET", "/servers/beta", ALICE), 404, "not_found")
        assert "removed" not in unknown["message"]
        never = assert_error(await api("GET", "/servers/gamma", OPS), 404, "not_found")
        assert never["message"].startswith("no server named 'gamma'")


async def test_a_404_reads_no_reload_report_that_does_not_name_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each 404 of a name not running parsed every reload report among the newest 500
    audit entries (and formatted each entry's time): ~2.9 of its 7.5 ms of CPU with 250
    reports of 1.5 kB (review27); now only a report naming it is parsed."""
    store = await open_store(tmp_path / "audit.db")
    try:
        report = json.dumps({"added": [], "removed": ["old-notes"],
                             "restarted": [f"server-{i}" for i in range(40)]})
        for _ in range(20):
            await store.add_audit("ops", "reload_config", "/etc/servers.yaml", None, report)
        parsed: list[str] = []
        loads = json.loads

        def counted(text: str, **kw: Any) -> Any:
            parsed.append(text)
            return loads(text, **kw)

        monkeypatch.setattr(removed.json, "loads", counted)
        ctx = SimpleNamespace(store=store)
        assert await removed.removal(ctx, "gamma") is None  # type: ignore[arg-type]
        assert parsed == []
        found = await removed.removal(ctx, "old-notes")  # type: ignore[arg-type]
        assert found is not None and found.reload and found.by == "ops"
        assert len(parsed) == 1
    finally:
        await store.close()
