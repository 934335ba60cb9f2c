"""Admin operations called directly, over a small fake AdminContext (no FastMCP, no MCP).

The fleet is a real ``UpstreamManager`` that is never started (its services are real,
their replicas never connect); starting and stopping servers is recorded instead. The
store is a real SQLite file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from fast_mcp_gateway.admin import history, routes, servers
from fast_mcp_gateway.admin.context import Actor
from fast_mcp_gateway.admin.control import ControlPlane
from fast_mcp_gateway.admin.in_flight import InFlight
from fast_mcp_gateway.admin.in_force import routes_in_force
from fast_mcp_gateway.admin.models import ChangeReport
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.registrations import TOMBSTONE
from fast_mcp_gateway.config.schema import GatewayOptions, ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings, default_db_path
from fast_mcp_gateway.errors import AdminError, ConfigError, UpstreamError
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.pinning import PinBook
from fast_mcp_gateway.routing.rules import Route, RouteTable
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView
from fast_mcp_gateway.store import HealthRecord, Invocation, Store, open_store
from fast_mcp_gateway.telemetry.recorder import Recorder

pytestmark = pytest.mark.anyio

ADA = Actor("ada")


def url(name: str) -> str:
    return f"http://127.0.0.1:9/never-dialled/{name}"


def services_of(servers_: Mapping[str, dict[str, Any]]) -> dict[str, Service]:
    """Real services whose replicas are never started."""
    return UpstreamManager(parse_config({"servers": dict(servers_)}, source="test")).services


class FakeFleet:
    def __init__(self, servers_: Mapping[str, dict[str, Any]]) -> None:
        self.services = services_of(servers_)
        self.view = CatalogView()
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.pins = PinBook()

    def refresh_catalog(self) -> None:
        pass

    def get(self, name: str) -> Service:
        if name not in self.services:
            raise AdminError(f"no server named '{name}' (known: {', '.join(self.services)})")
        return self.services[name]

    async def replace_server(self, server: ServerConfig) -> Service:
        service = services_of({server.name: server.model_dump(
            mode="json", exclude_defaults=True, exclude={"name", "secrets"})})[server.name]
        self.services[server.name] = service
        self.started.append(server.name)
        return service

    async def remove_server(self, name: str) -> None:
        del self.services[name]
        self.stopped.append(name)


class FakeContext:
    def __init__(self, servers_: Mapping[str, dict[str, Any]], store: Store | None,
                 options: GatewayOptions | None = None) -> None:
        self.manager = FakeFleet(servers_)
        self.options = options or GatewayOptions()
        self.file_servers = parse_config({"servers": dict(servers_)}, source="test").servers
        self.store = store
        self.settings = GatewaySettings(config=None, db=None)
        self.recorder = None if store is None else Recorder(store)
        self.audits: list[tuple[str, str, str | None]] = []
        self.routes_loaded = 0
        self.routes = RouteTable()
        self.health_waits = 0
        self.in_flight = InFlight()

    async def health_flushed(self, within: float) -> bool:
        self.health_waits += 1
        return True

    async def load_routes(self, written: Route | int | None = None) -> None:
        self.routes_loaded += 1
        if self.store is not None:  # as the gateway's (admin/control.py)
            self.routes = await routes_in_force(self.store, self.routes, written)

    async def reload_config(self, actor: Actor) -> ChangeReport:
        self.audits.append((actor.id, "reload_config", None))
        return ChangeReport(unchanged=list(self.manager.services))

    async def audit(self, actor: Actor, action: str, target: str | None,
                    arguments: Any = None, result: str | None = None) -> None:
        self.audits.append((actor.id, action, target))

    async def audit_first(self, actor: Actor, action: str, target: str | None,
                          arguments: Any = None) -> None:
        self.audits.append((actor.id, action, target))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path / "g.db")
    try:
        yield store
    finally:
        await store.close()


FILE = {"alpha": {"url": url("alpha")}, "beta": {"url": url("beta"), "namespace": "b"}}


async def test_registrations_validate_persist_and_audit(store: Store) -> None:
    ctx = FakeContext(FILE, store)
    added = await servers.add_server(ctx, ADA, "gamma", {"url": url("gamma")})
    assert added == ChangeReport(added=["gamma"]) and ctx.manager.started == ["gamma"]
    with pytest.raises(AdminError, match="server 'gamma' already exists; use "
                                         "gateway_update_server"):
        await servers.add_server(ctx, ADA, "gamma", {"url": url("gamma")})
    with pytest.raises(ConfigError, match="field 'comand': unknown field; did you mean"):
        await servers.add_server(ctx, ADA, "delta", {"comand": "python"})
    with pytest.raises(ConfigError, match="namespace 'b' is already used by server 'beta'"):
        await servers.add_server(ctx, ADA, "delta", {"url": url("d"), "namespace": "b"})
    with pytest.raises(AdminError, match="no server named 'delta'; use gateway_add_server"):
        await servers.update_server(ctx, ADA, "delta", {"url": url("d")})
    updated = await servers.update_server(ctx, ADA, "alpha", {"url": url("a2")})
    assert updated == ChangeReport(restarted=["alpha"])

    # A file-defined server leaves a tombstone; a runtime one is forgotten.
    assert await servers.remove_server(ctx, ADA, "beta") == ChangeReport(removed=["beta"])
    assert await servers.remove_server(ctx, ADA, "gamma") == ChangeReport(removed=["gamma"])
    with pytest.raises(AdminError, match="no server named 'gamma'"):
        await servers.remove_server(ctx, ADA, "gamma")
    stored = {row.name: row.config for row in await store.servers()}
    assert stored == {"alpha": {"url": url("a2")}, "beta": TOMBSTONE}
    assert ctx.manager.stopped == ["beta", "gamma"]
    assert ctx.audits == [("ada", "add_server", "gamma"), ("ada", "update_server", "alpha"),
                          ("ada", "remove_server", "beta"), ("ada", "remove_server", "gamma")]


async def test_import_and_export(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_TOKEN", "sekrit-123456")
    ctx = FakeContext({"alpha": {"url": url("alpha"),
                                 "headers": {"X-Key": "${ALPHA_TOKEN}"}}}, store)
    exported = servers.export(ctx, "yaml")
    assert "sekrit" not in exported
    assert yaml.safe_load(exported)["servers"]["alpha"]["headers"] == {"X-Key": "***"}
    report = await servers.import_servers(
        ctx, ADA, "servers:\n  alpha:\n    url: http://x/a\n  beta:\n    url: http://x/b\n")
    assert report == ChangeReport(added=["beta"], unchanged=["alpha"])
    report = await servers.import_servers(
        ctx, ADA, '{"mcpServers": {"alpha": {"url": "http://x/a"}}}', replace_existing=True)
    assert report == ChangeReport(restarted=["alpha"])
    with pytest.raises(ConfigError, match="gateway_import_servers"):
        await servers.import_servers(ctx, ADA, "servers:\n  x:\n    comand: nope\n")


async def test_status_reads_and_unknown_names() -> None:
    ctx = FakeContext(FILE, None)
    listing = servers.list_servers(ctx)
    assert [s.name for s in listing.servers] == ["alpha", "beta"]
    assert listing.total == 2 and listing.ready == 0
    assert servers.health(ctx).total == 2
    detail = servers.server_detail(ctx, "beta")
    assert detail.namespace == "b" and detail.config["url"] == url("beta")
    with pytest.raises(AdminError, match=r"no server named 'nope' \(known: alpha, beta\)"):
        servers.server_detail(ctx, "nope")
    with pytest.raises(UpstreamError, match="has no replica 3"):
        servers.server_detail(ctx, "alpha", replica=3)
    status = await servers.reset_breaker(ctx, ADA, "alpha")
    assert status.replicas[0].breaker == "closed"
    assert ctx.audits == [("ada", "reset_breaker", "alpha")]
    assert (await servers.reload_config(ctx, ADA)).unchanged == ["alpha", "beta"]


async def test_operations_that_need_the_store_say_how_to_turn_it_on() -> None:
    ctx = FakeContext(FILE, None)
    for call, what in ((servers.add_server(ctx, ADA, "x", {"url": url("x")}),
                        "servers added or changed at runtime"),
                       (servers.remove_server(ctx, ADA, "alpha"), "servers removed at runtime"),
                       (routes.list_routes(ctx), "route rules"),
                       (history.audit_log(ctx), "the audit log"),
                       (history.calls(ctx), "call records"),
                       (history.inspector_history(ctx), "inspector history")):
        # What needs the store, named: --no-db turns all of it off, not call logging only.
        with pytest.raises(AdminError, match=rf"^{what}: kept in the gateway's store, and "
                                             r"this gateway runs without one \(--no-db.*"
                                             r"serve with a store \(--db PATH"):
            await call
    assert ctx.manager.stopped == [] and ctx.audits == []


async def test_route_rules(store: Store) -> None:
    ctx = FakeContext(FILE, store)
    with pytest.raises(AdminError, match=r"no server named 'nope' to route to "
                                         r"\(known: alpha, beta\)"):
        await routes.add_route(ctx, ADA, "alpha_*", "nope", "wildcard")
    first = await routes.add_route(ctx, ADA, "alpha_add", "beta")
    assert first == {"id": first["id"], "pattern": "alpha_add", "match": "exact",
                     "target": "beta", "priority": 0, "created_at": first["created_at"]}
    assert first["created_at"] > 0  # the rule as stored
    second = await routes.add_route(ctx, ADA, "alpha_", "beta", "prefix", priority=5)
    listed = await routes.list_routes(ctx)
    assert [r["id"] for r in listed["routes"]] == [second["id"], first["id"]]
    with pytest.raises(AdminError, match="no route #999"):
        await routes.update_route(ctx, ADA, 999, "x", "beta")
    await routes.update_route(ctx, ADA, first["id"], "alpha_add", "beta", priority=9)
    listed = await routes.list_routes(ctx)
    assert [r["id"] for r in listed["routes"]] == [first["id"], second["id"]]
    assert await routes.delete_route(ctx, ADA, second["id"]) == {"deleted": second["id"]}
    with pytest.raises(AdminError, match=f"no route #{second['id']}"):
        await routes.delete_route(ctx, ADA, second["id"])
    assert ctx.routes_loaded == 4  # after each change that took effect, and only then
    assert [a[1] for a in ctx.audits] == ["add_route", "add_route", "update_route",
                                          "delete_route"]


async def test_history_pages_and_clears(store: Store) -> None:
    ctx = FakeContext(FILE, store)
    for i in range(3):
        await store.add_inspection("alpha" if i else "beta", "x", "tools/call", f"t{i}",
                                   None, "success", 1.0, None)
        await store.add_audit("someone", f"action{i}", None, None, None)
    await store.add_health_records([
        HealthRecord(at=time.time(), server="alpha", replica="alpha", status="READY"),
        HealthRecord(at=time.time(), server="beta", replica="beta", status="FAILED",
                     detail="boom")])

    page = await history.inspector_history(ctx, limit=2)
    assert [e["target"] for e in page.entries] == ["t2", "t1"]
    older = await history.inspector_history(ctx, limit=2, before_id=page.next_before_id)
    assert [e["target"] for e in older.entries] == ["t0"] and older.next_before_id is None
    assert len((await history.inspector_history(ctx, server="alpha")).entries) == 2
    assert await history.inspector_clear(ctx, ADA, "alpha") == {"removed": 2}
    assert [e["target"] for e in (await history.inspector_history(ctx)).entries] == ["t0"]
    assert ctx.audits == [("ada", "inspector_clear", "alpha")]

    audit = await history.audit_log(ctx, limit=2)
    assert [a["action"] for a in audit["entries"]] == ["action2", "action1"]
    assert audit["next_before_id"] is not None

    records = await history.health_history(ctx, server="beta")
    assert ctx.health_waits == 1
    assert [(r["status"], r["detail"]) for r in records["records"]] == [("FAILED", "boom")]


async def test_calls_and_stats(store: Store) -> None:
    ctx = FakeContext(FILE, store)
    now = time.time()
    await store.add_invocations([
        Invocation(id=f"c{i}", trace_id="t", client="stdio", kind="tool", exposed="alpha_add",
                   server="alpha", original="add", started_at=now - i, duration_ms=10.0 * i,
                   status="error" if i == 2 else "success")
        for i in range(1, 4)])
    page = await history.calls(ctx, limit=2)
    assert [c.id for c in page.calls] == ["c1", "c2"] and page.next_cursor
    rest = await history.calls(ctx, limit=2, cursor=page.next_cursor)
    assert [c.id for c in rest.calls] == ["c3"]
    assert [c.id for c in (await history.calls(ctx, status="error")).calls] == ["c2"]
    with pytest.raises(AdminError, match="pass `next_cursor` from a previous page"):
        await history.calls(ctx, cursor="not-a-cursor")  # the caller's mistake, not the store's
    report = await history.stats(ctx, group_by="server")
    (group,) = report.groups
    assert (group.key, group.count, group.errors) == ("alpha", 3, 1)
    assert report.inflight == {"alpha": 0, "beta": 0}


async def test_the_control_plane_audits_the_actor_and_redacts(store: Store) -> None:
    config = parse_config({"servers": FILE}, source="test")
    applied: list[RouteTable] = []
    control = ControlPlane(config, GatewaySettings(db=None), UpstreamManager(config),
                           apply_routes=applied.append)
    await control.attach(store, Recorder(store))
    assert len(applied) == 1  # the store's (empty) rules reach the call path
    await control.audit(Actor("host-7"), "inspect_call_tool", "alpha/add",
                        {"token": "t0p-s3cret", "a": 1})
    (entry,) = await store.audit()
    assert entry.actor == "host-7" and "t0p-s3cret" not in (entry.arguments or "")
    report = await control.reload_config()
    assert report.error == "the gateway was not started from a config file"
    control.detach()
    await control.audit(Actor("host-7"), "ignored", None)  # no store: nothing recorded
    assert len(await store.audit()) == 1


async def test_runtime_registrations_may_only_use_allowed_variables(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registration must not be able to send the gateway's secrets anywhere."""
    monkeypatch.setenv("GW_TEST_SECRET", "s3cret-value")
    monkeypatch.setenv("GW_TEST_ALLOWED", "fine-value")
    ctx = FakeContext({"alpha": {"url": url("alpha")}}, store)
    leak = {"url": "http://127.0.0.1:9/mcp", "headers": {"X": "${GW_TEST_SECRET}"}}
    with pytest.raises(ConfigError) as refused:
        await servers.add_server(ctx, ADA, "leak", leak)
    assert "GW_TEST_SECRET" in str(refused.value) and "env_allow" in str(refused.value)
    assert "s3cret-value" not in str(refused.value)
    with pytest.raises(ConfigError, match="GW_TEST_SECRET"):
        await servers.import_servers(ctx, ADA, yaml.safe_dump({"servers": {"leak": leak}}))
    assert "leak" not in ctx.manager.services
    allowed = FakeContext({"alpha": {"url": url("alpha")}}, store,
                          GatewayOptions(env_allow=("GW_TEST_ALLOWED",)))
    ok = {"url": "http://127.0.0.1:9/mcp", "headers": {"X": "${GW_TEST_ALLOWED}"}}
    assert await servers.add_server(allowed, ADA, "ok", ok) == ChangeReport(added=["ok"])
    stored = {row.name: row.config for row in await store.servers()}
    assert stored["ok"] == ok  # kept as written: the value is never stored expanded


@pytest.mark.parametrize(("mode", "expected"), [
    ("full", {"gateway_list_servers", "gateway_add_server", "gateway_inspect_call_tool"}),
    ("read_only", {"gateway_list_servers"}),
    ("off", set()),
])
async def test_the_admin_mode_limits_the_registered_tools(mode: str, expected: set[str]) -> None:
    from fastmcp import FastMCP

    from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS, register_admin_tools

    server: FastMCP[Any] = FastMCP("x")
    ctx = FakeContext({}, None, GatewayOptions.model_validate({"admin": mode}))
    reserved = register_admin_tools(server, ctx)  # type: ignore[arg-type]
    assert reserved == {t.name for t in ADMIN_TOOLS}
    registered = {t.name for t in await server.list_tools()}
    assert expected <= registered
    if mode != "full":
        mutating = {t.name for t in ADMIN_TOOLS if not t.annotations.read_only_hint}
        assert not registered & mutating
    if mode == "off":
        assert registered == set()


async def test_an_import_is_all_or_nothing(store: Store) -> None:
    """A namespace clash on the second server leaves the first unregistered too."""
    ctx = FakeContext(FILE, store)
    content = yaml.safe_dump({"servers": {"gamma": {"url": url("gamma")},
                                          "delta": {"url": url("delta"), "namespace": "b"}}})
    with pytest.raises(ConfigError, match="namespace 'b' is already used by server 'beta'"):
        await servers.import_servers(ctx, ADA, content)
    assert "gamma" not in ctx.manager.services and ctx.manager.started == []
    assert [row.name for row in await store.servers()] == []


async def test_a_shown_secret_sent_back_keeps_the_stored_value(store: Store) -> None:
    """Read (secrets shown as ***), change one field, write back: the stored secrets stay
    (the server had started with API_KEY=***).  Only where the value still goes where
    it went, and only for a mask sent unchanged; any other *** is refused by field."""
    ctx = FakeContext({}, store)
    await servers.add_server(ctx, ADA, "k", {
        "url": url("k") + "?api_key=sk-q-123456", "headers": {"Authorization": "Bearer sk-h-1"},
        "description": "one"})
    shown = servers.server_detail(ctx, "k").config
    assert "sk-" not in str(shown)
    sent = {k: v for k, v in shown.items() if k != "name"} | {"description": "two"}
    assert await servers.update_server(ctx, ADA, "k", sent) == ChangeReport(restarted=["k"])
    stored = {row.name: row.config for row in await store.servers()}["k"]
    assert stored["headers"] == {"Authorization": "Bearer sk-h-1"}
    assert stored["url"] == url("k") + "?api_key=sk-q-123456"
    assert stored["description"] == "two"
    # Another host: the hidden header is not sent there.
    moved = sent | {"url": "http://127.0.0.2:9/other"}
    with pytest.raises(ConfigError, match=r"server 'k', field 'headers': Authorization: the "
                                          r"URL's host changed"):
        await servers.update_server(ctx, ADA, "k", moved)
    # A mask under a new name, or in a new server: nothing to keep.
    with pytest.raises(ConfigError, match=r"field 'headers': X-New: \*\*\* stands for a "
                                          r"hidden value"):
        await servers.update_server(ctx, ADA, "k", sent | {"headers": {
            "Authorization": "***", "X-New": "***"}})
    with pytest.raises(ConfigError, match=r"server 'n', field 'headers'"):
        await servers.add_server(ctx, ADA, "n", {"url": url("n"), "headers": {"A": "***"}})
    assert {row.name: row.config for row in await store.servers()}["k"] == stored


async def test_an_exported_config_imported_back_keeps_its_secrets(store: Store) -> None:
    ctx = FakeContext({}, store)
    await servers.add_server(ctx, ADA, "k", {"url": url("k"), "headers": {"X-Api-Key": "sk-1"}})
    exported = servers.export(ctx, "yaml")
    assert "sk-1" not in exported
    report = await servers.import_servers(ctx, ADA, exported, replace_existing=True)
    assert report == ChangeReport(unchanged=["k"])  # the same settings: not restarted
    assert {row.name: row.config for row in await store.servers()}["k"]["headers"] == {
        "X-Api-Key": "sk-1"}
    # All or nothing: a mask that cannot be kept stops the import before any save.
    with pytest.raises(ConfigError, match="server 'new', field 'headers'"):
        await servers.import_servers(ctx, ADA, exported.replace("  k:", "  new:") + (
            "  a:\n    url: http://127.0.0.1:9/a\n"), replace_existing=True)
    assert {row.name for row in await store.servers()} == {"k"}


async def test_a_registration_that_would_run_this_gateway_again_is_refused(
        store: Store, tmp_path: Path) -> None:
    """A runtime registration of 'mcp-gateway serve' on this gateway's config, or on its
    store (which holds the registration: the nested gateway loads it and starts itself
    again, without end), is refused, by add and by import (an imported Claude Desktop
    file listing this gateway did it); a gateway with a store of its own is a chain."""
    config, db = tmp_path / "servers.yaml", tmp_path / "g.db"
    ctx = FakeContext({}, store)
    ctx.settings = GatewaySettings(config=config, db=str(db))
    gateway = [sys.executable, "-m", "fast_mcp_gateway", "serve"]
    for args, problem in (
            ([*gateway[1:], "--config", str(config)], "runs this gateway itself"),
            ([*gateway[1:], "--config", "other.yaml", "--db", str(db)],
             "runs a gateway on this gateway's own store"),
            ([*gateway[1:], "-c", str(config), "--no-db"], "runs this gateway itself")):
        with pytest.raises(ConfigError, match=rf"server 'nest', field 'command': {problem}"):
            await servers.add_server(ctx, ADA, "nest", {"command": gateway[0], "args": args})
    claude = json.dumps({"mcpServers": {"gateway": {
        "command": gateway[0], "args": [*gateway[1:], "--config", str(config)]}}})
    # An import says to leave the entry out: the file's other servers import without it.
    with pytest.raises(ConfigError, match=r"runs this gateway itself.*; or leave this entry "
                       r"out of the text imported: it runs this gateway, and the file's "
                       r"other servers import without it"):
        await servers.import_servers(ctx, ADA, claude)
    assert await store.servers() == []
    # Without --db a nested gateway uses the default store: not this one (set above).
    chained = {"command": gateway[0], "args": [*gateway[1:], "--config", "other.yaml"]}
    assert await servers.add_server(ctx, ADA, "chain", chained) == ChangeReport(added=["chain"])
    # ... unless this one runs on the default store too.
    ctx.settings = GatewaySettings(config=config, db=str(default_db_path()))
    with pytest.raises(ConfigError, match="runs a gateway on this gateway's own store"):
        await servers.add_server(ctx, ADA, "nest", chained)
    own = {**chained, "args": [*chained["args"], "--db", str(tmp_path / "nested.db")]}
    assert await servers.add_server(ctx, ADA, "nest", own) == ChangeReport(added=["nest"])


async def test_a_null_command_does_not_carry_a_kept_secret_to_another_host(
        store: Store) -> None:
    """'command': null beside a new URL is no stdio server whose command stayed the
    same: the hidden header must not be sent to the new host."""
    ctx = FakeContext({}, store)
    await servers.add_server(ctx, ADA, "k", {"url": url("k"),
                                             "headers": {"Authorization": "Bearer sk-h-1"}})
    shown = servers.server_detail(ctx, "k").config
    sent = {k: v for k, v in shown.items() if k != "name"}
    moved = sent | {"command": None, "url": "http://127.0.0.2:9/attacker"}
    with pytest.raises(ConfigError, match=r"field 'headers': Authorization: the"):
        await servers.update_server(ctx, ADA, "k", moved)
    assert {row.name: row.config for row in await store.servers()}["k"]["url"] == url("k")


async def test_a_shown_secret_of_an_instance_is_never_stored_as_the_mask(store: Store) -> None:
    """An instance's header is shown as *** too: written back, it is refused naming the
    field (it is not kept per instance), never stored as the literal '***'."""
    ctx = FakeContext({}, store)
    await servers.add_server(ctx, ADA, "k", {"instances": [
        {"url": url("k"), "headers": {"Authorization": "Bearer sk-h-1"}}]})
    shown = servers.server_detail(ctx, "k").config
    assert "sk-h-1" not in str(shown)
    sent = {k: v for k, v in shown.items() if k != "name"} | {"description": "two"}
    with pytest.raises(ConfigError, match=r"server 'k', field 'instances'"):
        await servers.update_server(ctx, ADA, "k", sent)
    stored = {row.name: row.config for row in await store.servers()}["k"]
    assert stored["instances"][0]["headers"] == {"Authorization": "Bearer sk-h-1"}


async def test_a_url_of_this_gateways_own_address_is_refused(store: Store) -> None:
    """An HTTP gateway given its own MCP endpoint as a server listed its own tools under
    that server's name, then those again (chain_chain_..., thousands within seconds,
    without end); the address is refused, and another port or a stdio gateway is not."""
    ctx = FakeContext({}, store)
    ctx.settings = GatewaySettings(transport="http", port=8765,
                                   public_url="https://mcp.example.com/team")
    for url in ("http://127.0.0.1:8765/mcp", "http://localhost:8765/mcp",
                "http://[::1]:8765/sse", "https://mcp.example.com/team/mcp"):
        with pytest.raises(ConfigError, match=r"server 'self', field 'url': .* is this "
                           r"gateway's own address: it would list its own tools again under "
                           r"this server's name, and those again, without end"):
            await servers.add_server(ctx, ADA, "self", {"url": url, "enabled": False})
    for url in ("http://127.0.0.1:8766/mcp", "https://mcp.example.com/other/mcp"):
        assert await servers.add_server(ctx, ADA, "other", {"url": url, "enabled": False}) \
            == ChangeReport(added=["other"])
        await servers.remove_server(ctx, ADA, "other")
    # Bound to every address: another machine's gateway on the same port is a chain.
    ctx.settings = GatewaySettings(transport="http", host="0.0.0.0", port=8765)
    with pytest.raises(ConfigError, match="is this gateway's own address"):
        await servers.add_server(ctx, ADA, "self", {"url": "http://127.0.0.1:8765/mcp",
                                                    "enabled": False})
    assert await servers.add_server(ctx, ADA, "other", {
        "url": "http://10.0.0.5:8765/mcp", "enabled": False}) == ChangeReport(added=["other"])
    await servers.remove_server(ctx, ADA, "other")
    ctx.settings = GatewaySettings(transport="stdio", port=8765)
    assert await servers.add_server(ctx, ADA, "other", {
        "url": "http://127.0.0.1:8765/mcp", "enabled": False}) == ChangeReport(added=["other"])
