"""Names bound before a naming rule changed keep their spelling, and say why truly.

Accented names are transliterated (``café`` -> ``cafe``, session 24); before, each
character outside ``[A-Za-z0-9_-]`` became ``_``.  A runtime registration ``café``
saved with its tools' names bound as ``caf__lookup`` lost them at the next start: the
binding's base (its old spelling) no longer matched, so the tool became ``cafe_lookup``
and hosts calling the name they knew got "Unknown tool" -- though the design (and its
docs) keep a name once given.  And a name kept against the rules of now (a shorter
``max_name_length``) was said to keep "the name it was given when it collided", which
it never did.  A real SQLite store file, the gateway's own tools.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway.routing.bindings import NameBook
from fast_mcp_gateway.routing.naming import _digest
from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.names import NameBinding
from tests.fixtures import make_gateway, memory_entry

pytestmark = pytest.mark.anyio


def cafe() -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("café")

    @server.tool
    def lookup() -> str:
        return "found"

    @server.tool
    def order() -> str:   # new since the upgrade: named by the rule of now
        return "ordered"

    return server


async def test_a_name_bound_before_transliteration_keeps_its_spelling(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    store = await open_store(db)
    try:   # as the gateway before transliteration left them
        await store.put_server("café", memory_entry("café"), True)
        await store.claim_names([NameBinding(kind="tool", exposed="caf__lookup", server="café",
                                             original="lookup", base="caf__lookup", at=1.0)])
    finally:
        await store.close()
    gateway = make_gateway({}, {"café": cafe()}, db=db)
    async with Client(gateway.server) as client:
        names = {t.name for t in await client.list_tools()} - set(gateway.manager.meta_names)
        assert {n for n in names if not n.startswith("gateway_")} == {
            "caf__lookup", "cafe_order"}, names
        assert (await client.call_tool("caf__lookup", {})).data == "found"
        detail = (await client.call_tool("gateway_server_detail", {"name": "café"})
                  ).structured_content
        assert detail is not None
        why = {e["exposed"]: e["renamed_because"] for e in detail["exposed"]}
        assert why["caf__lookup"] == (
            "keeps the name it was given before accented letters were transliterated: "
            "each character outside [A-Za-z0-9_-] became '_'; by the rules of now it "
            "would be 'cafe_lookup'"), why
        assert why["cafe_order"] is None, why


def test_a_name_kept_from_a_longer_limit_says_so() -> None:
    original = "a_really_long_tool_name_that_goes_on_and_on_for_quite_a_while_x"
    book = NameBook()
    first = book.allocate("tool", [("srv", "srv", original)], namespaces={"srv": "srv"},
                          separator="_", max_length=64)
    kept = next(iter(first.by_exposed))
    later = book.allocate("tool", [("srv", "srv", original)], namespaces={"srv": "srv"},
                          separator="_", max_length=48)
    assert list(later.by_exposed) == [kept] and len(kept) == 64
    assert [r.reason for r in later.renames] == [
        "keeps the name it was given when names were shortened past 64 characters; "
        "max_name_length is 48 now"]


def test_a_name_shortened_to_its_head_before_says_so() -> None:
    # Bound when a long namespace left no room for the tool's own name: kept, and the
    # detail says why it is not the name of now (not "when it collided").
    ns = "a_server_with_a_really_quite_long_descriptive_name_for_tests"
    old = f"{ns[:55]}_{_digest('long', 'echo')}"
    book = NameBook()
    book.load([NameBinding(kind="tool", exposed=old, server="long", original="echo",
                           base=f"{ns}_echo", at=1.0)])
    table = book.allocate("tool", [("long", ns, "echo")], namespaces={"long": ns},
                          separator="_", max_length=64)
    assert list(table.by_exposed) == [old]
    (rename,) = table.renames
    assert rename.reason.startswith(
        "keeps the name it was given when a name was shortened to its head"), rename.reason
    assert "_echo_" in rename.reason.rsplit("'", 2)[1]


def test_a_name_kept_after_its_rival_left_says_it_collided() -> None:
    book = NameBook()

    def allocate(*servers: str) -> Any:
        entries = [(s, s, t) for s, t in (("a_b", "c"), ("a", "b_c")) if s in servers]
        return book.allocate("tool", entries, namespaces={s: s for s in servers},
                             separator="_", max_length=64)

    suffixed = next(n for n in allocate("a_b", "a").by_exposed if n != "a_b_c")
    book.release("a_b")   # removed: its name is free, a's stays
    table = allocate("a")
    assert list(table.by_exposed) == [suffixed]
    assert [r.reason for r in table.renames] == ["keeps the name it was given when it collided"]


def test_a_uri_bound_before_transliteration_keeps_its_spelling() -> None:
    book = NameBook()
    book.load([NameBinding(kind="resource", exposed="notes://caf_/menu", server="café",
                           original="notes://menu", base="notes://caf_/menu", at=1.0)])
    table = book.allocate("resource", [("café", "cafe", "notes://menu")],
                          namespaces={"café": "cafe"}, separator="_", max_length=64)
    assert list(table.by_exposed) == ["notes://caf_/menu"]
    assert [r.reason for r in table.renames] == [
        "keeps the URI it was given before accented letters were transliterated: each "
        "character outside [A-Za-z0-9_-] became '_'; by the rules of now it would be "
        "'notes://cafe/menu'"]


async def test_a_registration_whose_namespace_now_clashes_is_warned_of(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """'café' (namespaced 'caf_' when it was registered) and the file's 'cafe' share the
    namespace 'cafe' now: the check that refuses two such servers ran when it was added,
    and at start nothing said so (their new tools and resources collide)."""
    caplog.set_level(logging.WARNING, logger="fast_mcp_gateway")
    db = tmp_path / "g.db"
    store = await open_store(db)
    try:
        await store.put_server("café", memory_entry("café"), True)
    finally:
        await store.close()
    gateway = make_gateway({"cafe": memory_entry("cafe")}, {"café": cafe(), "cafe": cafe()},
                           db=db)
    async with Client(gateway.server):
        said = [r.getMessage() for r in caplog.records if "namespace 'cafe'" in r.getMessage()]
    assert said == [
        "server 'café', registered at runtime in " + str(db) + ", now has the namespace "
        "'cafe' (accented letters are written without their accents), which server 'cafe' "
        "has too: components of both named alike collide (the later gets a hash suffix); "
        "give one of them a 'namespace:' (gateway_update_server)"], said


def test_the_namespace_check_at_start_reads_each_servers_namespace_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The start-up check compared each runtime registration with every server, working
    out each one's namespace again (transliterating its name): 1,000 registrations took
    a million, seconds of a start with the event loop held.  Now once a server."""
    from fast_mcp_gateway.admin.clashes import NamespaceClashes
    from fast_mcp_gateway.config.schema import ServerConfig
    from fast_mcp_gateway.store import Registration

    caplog.set_level(logging.WARNING, logger="fast_mcp_gateway")
    servers = {f"svc-{n}": ServerConfig(name=f"svc-{n}", command="x") for n in range(300)}
    servers["café"] = ServerConfig(name="café", command="x")
    servers["cafe"] = ServerConfig(name="cafe", command="x")
    counted = {"n": 0}
    real = ServerConfig.effective_namespace

    def counting(self: ServerConfig) -> str:
        counted["n"] += 1
        return real.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(ServerConfig, "effective_namespace", property(counting))
    runtime = [name for name in servers if name != "cafe"]
    rows = [Registration(name=name, config={"command": "x"}, enabled=True, updated_at=0.0)
            for name in runtime]
    NamespaceClashes().check({"cafe": servers["cafe"]}, rows, servers, None)
    assert counted["n"] <= 2 * len(servers) + len(runtime), counted
    said = [r.getMessage() for r in caplog.records if "now has the namespace" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("server 'café', registered at runtime in "
                                                 "the store, now has the namespace 'cafe'")


async def test_a_collision_is_logged_once_however_its_reason_is_said_later(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two servers whose tools join to one name ('a' + 'b_c', 'a_b' + 'c'): the later
    is renamed and said once.  The next rebuild says the same rename as "keeps the name
    it was given when it collided" (bound now): it was logged a second time."""
    def one(name: str, tool: str) -> FastMCP[Any]:
        server: FastMCP[Any] = FastMCP(name)
        server.tool(name=tool)(lambda: "x")
        return server

    gateway = make_gateway({"a": memory_entry("a"), "a_b": memory_entry("a_b")},
                           {"a": one("a", "b_c"), "a_b": one("a_b", "c")})
    with caplog.at_level(logging.WARNING, "fast_mcp_gateway.routing.manager"):
        async with Client(gateway.server) as client:
            names = {t.name for t in await client.list_tools()}
            gateway.manager.refresh_catalog()   # another rebuild: nothing new to say
    renamed = [n for n in names if n.startswith("a_b_c_")]
    assert len(renamed) == 1 and "a_b_c" in names, names
    said = [r.getMessage() for r in caplog.records if renamed[0] in r.getMessage()]
    assert len(said) == 1 and "collides with 'b_c' of server 'a'" in said[0], said
