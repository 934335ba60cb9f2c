"""Resource URIs stay bound to the server that was first given them, as tool names do.

Two servers with ``namespace: ""`` offering the same URI: the first in config order
exposes it as is, the other under its own name (``urn:b/cfg``).  When the first was slow
to start after a gateway restart, the URI went to the other server: a host reading
``urn:cfg`` as it was listed got the other server's resource.  Now the URI is bound (in
the store, across restarts) and a read while its server lacks it is refused, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client, FastMCP
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.routing.bindings import NameBook
from fast_mcp_gateway.routing.naming import Origin, allocate_uris
from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import held_until, make_gateway, memory_entry

pytestmark = pytest.mark.anyio
GUARD = 30  # seconds: a hang guard only


def config_server(name: str, lifespan: Any = None) -> FastMCP[Any]:
    """A resource ``urn:cfg`` and a template ``urn:cfg/{key}``, both saying whose they are."""
    server: FastMCP[Any] = FastMCP(name, lifespan=lifespan)

    @server.resource("urn:cfg")
    def cfg() -> str:
        return f"config of {name}"

    @server.resource("urn:item/{key}")
    def item(key: str) -> str:
        return f"{key} of {name}"

    return server


def servers(memory: dict[str, FastMCP[Any]], **settings: Any) -> Any:
    return make_gateway({"a": memory_entry("a", namespace=""),
                         "b": memory_entry("b", namespace="")}, memory, **settings)


async def read(client: Client[Any], uri: str) -> str:
    return str((await client.read_resource(uri))[0].text)  # type: ignore[union-attr]


async def test_a_server_slow_to_start_after_a_restart_keeps_its_uris(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    first = servers({"a": config_server("a"), "b": config_server("b")}, db=db)
    async with Client(first.server) as client:
        assert await read(client, "urn:cfg") == "config of a"
        assert await read(client, "urn:b/cfg") == "config of b"
        templates = {str(t.uriTemplate) for t in await client.list_resource_templates()}
        assert templates == {"urn:item/{key}", "urn:b/item/{key}"}, templates
        assert await first.manager.names.flushed(GUARD)

    gate = anyio.Event()
    second = servers({"a": config_server("a", held_until(gate)), "b": config_server("b")}, db=db,
                     startup_wait=0.0, connect_timeout=GUARD)
    second.manager.startup_hold = 0   # serve at once, as HTTP does: a is still starting
    second.startup.lookup_wait = 0
    async with Client(second.server) as client:
        manager = second.manager
        assert await manager.changed.wait_until(lambda: any(
            origin.server == "b" for origin, _ in manager.view.resources.values()), GUARD)
        assert manager.get("a").state is UpstreamState.STARTING
        # b keeps the URIs it had: a's are nobody else's while a starts.
        assert {str(r.uri) for r in await client.list_resources()} == {"urn:b/cfg"}
        templates = {str(t.uriTemplate) for t in await client.list_resource_templates()}
        assert templates == {"urn:b/item/{key}"}, templates
        with pytest.raises(MCPError) as refused:
            await read(client, "urn:cfg")
        text = str(refused.value)
        assert "config of b" not in text
        assert "server 'a'" in text and "it is still starting" in text, text
        assert await read(client, "urn:b/cfg") == "config of b"
        assert await read(client, "urn:b/item/k") == "k of b"
        gate.set()
        assert await manager.changed.wait_until(
            lambda: any(origin.server == "a" for origin, _ in manager.view.resources.values()),
            GUARD)
        assert await read(client, "urn:cfg") == "config of a"
        assert await read(client, "urn:item/k") == "k of a"
        assert await read(client, "urn:b/cfg") == "config of b"


def test_a_bound_uri_keeps_its_origin_and_is_nobody_elses() -> None:
    # b was given urn:cfg (a was not there); a, back, does not take it.
    table = allocate_uris([("a", "", "urn:cfg"), ("b", "", "urn:cfg")],
                          bound={"urn:cfg": Origin("b", "urn:cfg")})
    assert table.by_exposed["urn:cfg"] == Origin("b", "urn:cfg")
    assert table.by_exposed["urn:a/cfg"] == Origin("a", "urn:cfg")
    [rename] = table.renames
    assert rename.server == "a" and "collides with" in rename.reason
    # A bound URI whose server lists nothing now is still held.
    held = allocate_uris([("b", "", "urn:cfg")], bound={"urn:cfg": Origin("a", "urn:cfg")})
    assert held.by_exposed["urn:cfg"] == Origin("a", "urn:cfg")
    assert held.by_exposed["urn:b/cfg"] == Origin("b", "urn:cfg")
    # The fallback itself bound to another server: salted, never shared.
    salted = allocate_uris([("a", "", "urn:cfg"), ("b", "", "urn:cfg")],
                           bound={"urn:b/cfg": Origin("c", "urn:x")})
    b_uri = next(uri for uri, origin in salted.by_exposed.items() if origin.server == "b")
    assert b_uri.startswith("urn:b-") and b_uri.endswith("/cfg"), b_uri


async def test_a_uri_too_long_for_the_store_is_bound_in_this_process_only(pg_url: str) -> None:
    """PostgreSQL indexes at most ~2.7 kB a row: one resource URI past that (a long file
    path or query) failed the round's claims, retried for ever -- no name of any server
    reached the store again.  Such a binding is kept in this process only, never claimed
    (nor claimed again by ``sync``, as if another gateway had released it)."""
    store = await open_store(pg_url)
    try:
        book = NameBook()
        book.persistent = True
        long_uri = "file:///" + "".join(f"{i:04x}" for i in range(1_000))  # 4 kB
        book.allocate("tool", [("a", "a", "now")], namespaces={"a": "a"}, separator="_",
                      max_length=64)
        book.allocate("resource", [("a", "", long_uri), ("a", "", "urn:cfg")],
                      namespaces={"a": ""}, separator="_", max_length=64)
        async with anyio.create_task_group() as tg:
            tg.start_soon(book.keep, lambda: store, lambda: None)
            assert await book.flushed(GUARD), "the claims never reached the store"
            tg.cancel_scope.cancel()
        rows = await store.name_bindings()
        assert {(b.kind, b.exposed) for b in rows} == {("tool", "a_now"),
                                                       ("resource", "urn:cfg")}
        found = book.binding("resource", long_uri)
        assert found is not None and found.server == "a"   # bound here all the same
        assert not book.sync(rows, running={"a"})
        assert book.reclaimed == 0 and not book.pending
    finally:
        await store.close()


async def test_a_renamed_templates_resources_keep_its_name() -> None:
    """b's template ``urn:item/{key}`` is exposed as ``urn:b/item/{key}`` (a's has the
    URI): a link b's result gave to its ``urn:item/k``, and b's update of it, were named
    ``urn:item/k`` -- a's: a host reading the link got a's resource, and one subscribed
    to ``urn:b/item/k`` was never told.  Both take the name b's template has."""
    gateway = servers({"a": config_server("a"), "b": config_server("b")})
    updated: list[str] = []
    gateway.manager.on_resource_updated(lambda exposed, *_: updated.append(exposed))
    async with Client(gateway.server) as client:
        linked = gateway.provider.links.expose("b", "urn:item/k")
        assert linked == "urn:b/item/k"
        assert await read(client, linked) == "k of b"
        assert gateway.provider.links.expose("a", "urn:item/k") == "urn:item/k"
        assert gateway.provider.links.expose("b", "urn:cfg") == "urn:b/cfg"  # listed
        b = gateway.manager.get("b")
        gateway.manager.resource_updated(b, "urn:item/k?v=1")
        assert updated == ["urn:b/item/k?v=1"]


def many_resources(count: int) -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("many")

    def doc(n: int) -> Any:
        return lambda: f"doc {n}"

    for n in range(count):
        server.resource(f"urn:doc/{n}", name=f"doc{n}")(doc(n))
    return server


async def test_an_unknown_uri_is_looked_up_without_normalizing_every_bound_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of a URI nothing exposes looked for it among the bound URIs by normalizing
    each (``NameBook.binding``), and for what was meant among the listed resources by
    normalizing each one's upstream URI (``unknown._meant_uri``): two pydantic URL parses
    per resource the gateway exposes, on every such read.  Both are index lookups now
    (the view's index made once per catalog generation, on its first unknown read), with
    the same answers: a bound URI in another form, and the URI meant."""
    from fast_mcp_gateway.routing import bindings, view

    gateway = make_gateway({"many": memory_entry("many")}, {"many": many_resources(300)})
    parsed: list[str] = []
    normalize = view.normalize_uri

    def counted(uri: str) -> str:
        parsed.append(uri)
        return normalize(uri)

    async with Client(gateway.server) as client:
        assert len(await client.list_resources()) == 300
        for module in (bindings, view):
            monkeypatch.setattr(module, "normalize_uri", counted)
        for _ in range(2):
            parsed.clear()
            with pytest.raises(MCPError) as refused:
                await read(client, "urn:doc/7")   # its upstream URI: the namespace missing
            assert "did you mean 'urn:many/doc/7'" in str(refused.value)
        assert len(parsed) <= 4, len(parsed)
        book = gateway.manager.names
        parsed.clear()
        assert book.binding("resource", "nowhere://x") is None
        assert len(parsed) <= 1, len(parsed)
        # A bound URI in a form that normalizes alike is still found.
        found = book.binding("resource", "URN:many/doc/7")
        assert found is not None and found.original == "urn:doc/7", found
