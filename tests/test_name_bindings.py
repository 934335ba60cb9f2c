"""Exposed names stay bound to the (server, tool) they were first given to.

Servers 'a_b' (tool 'c') and 'a' (tool 'b_c') both make 'a_b_c'.  Whichever was named
first keeps it; the other gets 'a_b_c_<hash>'.  The name moved when its owner was slow
to start (after a gateway restart) or dropped the tool for a while: a host calling
'a_b_c' as it was listed ran the other server's tool.  Now the binding is kept (in the
store, across restarts) and a call while its owner lacks the tool is refused, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client, Context, FastMCP

from fast_mcp_gateway.routing import bindings
from fast_mcp_gateway.routing.bindings import NameBook
from fast_mcp_gateway.store import MemoryStore, open_store
from fast_mcp_gateway.store.names import NameBinding
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import held_until, make_gateway, memory_entry

pytestmark = pytest.mark.anyio
GUARD = 30  # seconds: a hang guard only


def droppable(name: str, lifespan: Any = None) -> FastMCP[Any]:
    """One tool ``name`` and ``toggle``, which removes it or puts it back (list_changed)."""
    server: FastMCP[Any] = FastMCP(name, lifespan=lifespan)

    def run() -> str:
        return f"ran {name}"

    server.tool(run, name=name)

    @server.tool
    async def toggle(ctx: Context) -> str:
        if any(t.name == name for t in await server.list_tools()):
            server.local_provider.remove_tool(name)
        else:
            server.tool(run, name=name)
        await ctx.send_notification(types.ToolListChangedNotification())
        return "toggled"

    return server


def gated(name: str, gate: anyio.Event) -> FastMCP[Any]:
    """``droppable(name)`` whose sessions start only once ``gate`` is set."""
    return droppable(name, held_until(gate))


def servers(memory: dict[str, FastMCP[Any]], **settings: Any) -> Any:
    return make_gateway({"a_b": memory_entry("a_b"), "a": memory_entry("a")}, memory,
                        **settings)


def offers(manager: Any, server: str, tool: str) -> bool:
    return any(t.name == tool for t in manager.get(server).catalog.tools)


async def names(client: Client[Any]) -> set[str]:
    return {t.name for t in await client.list_tools() if t.name.startswith("a_b_c")}


async def test_a_tool_dropped_for_a_while_keeps_its_name() -> None:
    gateway = servers({"a_b": droppable("c"), "a": droppable("b_c")})
    async with Client(gateway.server) as client:
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        suffixed = next(n for n in await names(client) if n != "a_b_c")
        manager = gateway.manager
        await client.call_tool("a_b_toggle", {})   # a_b drops 'c'
        assert await manager.changed.wait_until(lambda: not offers(manager, "a_b", "c"), GUARD)
        assert await names(client) == {suffixed}   # 'a_b_c' is not handed to a's 'b_c'
        called = await client.call_tool_mcp("a_b_c", {})
        assert called.is_error, called.content
        text = called.content[0].text
        assert "ran b_c" not in text
        assert "server 'a_b'" in text and "'c'" in text and "not offering it" in text, text
        assert (await client.call_tool(suffixed, {})).data == "ran b_c"
        await client.call_tool("a_b_toggle", {})   # and puts it back
        assert await manager.changed.wait_until(lambda: "a_b_c" in manager.view.tools, GUARD)
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        assert (await client.call_tool(suffixed, {})).data == "ran b_c"


async def test_a_server_slow_to_start_after_a_restart_keeps_its_names(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    first = servers({"a_b": droppable("c"), "a": droppable("b_c")}, db=db)
    async with Client(first.server) as client:
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        suffixed = next(n for n in await names(client) if n != "a_b_c")
        assert await first.manager.names.flushed(GUARD)

    gate = anyio.Event()
    second = servers({"a_b": gated("c", gate), "a": droppable("b_c")}, db=db,
                     startup_wait=0.0, connect_timeout=GUARD)
    second.manager.startup_hold = 0   # serve at once, as HTTP does: a_b is still starting
    second.startup.lookup_wait = 0    # (a call by a name waits for start-up, at most this)
    async with Client(second.server) as client:
        manager = second.manager
        assert await manager.changed.wait_until(lambda: any(
            origin.server == "a" for origin, _ in manager.view.tools.values()), GUARD)
        assert manager.view.tools[suffixed][0].server == "a"
        assert manager.get("a_b").state is UpstreamState.STARTING
        assert await names(client) == {suffixed}
        called = await client.call_tool_mcp("a_b_c", {})
        assert called.is_error and "ran b_c" not in str(called.content), called.content
        assert "server 'a_b'" in called.content[0].text
        assert "it is still starting" in called.content[0].text, called.content[0].text
        gate.set()
        assert await manager.changed.wait_until(lambda: "a_b_c" in manager.view.tools, GUARD)
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        assert (await client.call_tool(suffixed, {})).data == "ran b_c"


async def test_a_removed_server_frees_its_names_and_the_others_keep_theirs(
        tmp_path: Path) -> None:
    gateway = servers({"a_b": droppable("c"), "a": droppable("b_c")}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        suffixed = next(n for n in await names(client) if n != "a_b_c")
        await client.call_tool("gateway_disable_server", {"name": "a_b"})
        assert gateway.manager.names.binding("tool", "a_b_c") is not None  # down: kept
        await client.call_tool("gateway_remove_server", {"name": "a_b"})
        assert gateway.manager.names.binding("tool", "a_b_c") is None
        assert await names(client) == {suffixed}   # a's name does not move either
        called = await client.call_tool_mcp("a_b_c", {})
        assert called.is_error and "Unknown tool" in called.content[0].text
        assert await gateway.manager.names.flushed(GUARD)
        stored = await gateway.store.name_bindings()   # type: ignore[union-attr]
        assert {b.server for b in stored} == {"a"}


async def test_two_gateways_binding_one_name_at_once_agree_on_the_first() -> None:
    """Two gateways on one store each gave 'a_b_c' away before either wrote: the second
    to write adopts the stored binding and names its own tool anew."""
    store = MemoryStore()
    first, second = NameBook(), NameBook()
    first.persistent = second.persistent = True
    rebuilt = anyio.Event()

    def allocate(book: NameBook, server: str, namespace: str, tool: str) -> dict[str, str]:
        table = book.allocate("tool", [(server, namespace, tool)], namespaces={
            "a_b": "a_b", "a": "a"}, separator="_", max_length=64)
        return {e: o.server for e, o in table.by_exposed.items()}

    assert allocate(first, "a_b", "a_b", "c") == {"a_b_c": "a_b"}
    assert allocate(second, "a", "a", "b_c") == {"a_b_c": "a"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.keep, lambda: store, lambda: None)
        assert await first.flushed(GUARD)
        tg.start_soon(second.keep, lambda: store, rebuilt.set)
        with anyio.fail_after(GUARD):
            await rebuilt.wait()
        renamed = allocate(second, "a", "a", "b_c")
        assert renamed["a_b_c"] == "a_b" and len(renamed) == 2
        assert await second.flushed(GUARD)
        tg.cancel_scope.cancel()
    assert {(b.exposed, b.server) for b in await store.name_bindings()} == {
        ("a_b_c", "a_b"), (next(e for e, s in renamed.items() if s == "a"), "a")}


def test_a_new_namespace_replaces_the_binding_and_a_gateway_name_shadows_one() -> None:
    book = NameBook()

    def allocate(namespace: str, reserved: tuple[str, ...] = ()) -> dict[str, str]:
        table = book.allocate("tool", [("a_b", namespace, "c")], namespaces={
            "a_b": namespace}, separator="_", max_length=64, reserved=reserved)
        return {e: o.original for e, o in table.by_exposed.items() if o.server == "a_b"}

    assert allocate("a_b") == {"a_b_c": "c"}
    assert allocate("x") == {"x_c": "c"}   # the operator renamed the namespace
    assert book.binding("tool", "a_b_c") is None and book.binding("tool", "x_c") is not None
    # A name the gateway takes for itself later (search exposure's meta-tools) is its
    # own; the component gets another name for now and keeps its binding for later.
    (meanwhile,) = allocate("x", reserved=("x_c",))
    assert meanwhile.startswith("x_c_") and book.binding("tool", meanwhile) is None
    assert book.binding("tool", "x_c") is not None
    assert allocate("x") == {"x_c": "c"}


async def test_servers_coming_up_within_the_start_up_wait_are_named_in_config_order() -> None:
    """Bound at once, 'a_b_c' went to whichever server was ready first ('a', while 'a_b',
    first in the config, still started): names are bound once hosts can see them."""
    gate = anyio.Event()
    gateway = servers({"a_b": gated("c", gate), "a": droppable("b_c")})
    manager = gateway.manager

    async def release() -> None:
        assert await manager.changed.wait_until(lambda: any(
            origin.server == "a" for origin, _ in manager.view.tools.values()), GUARD)
        assert manager.names.binding("tool", "a_b_c") is None   # shown to no host yet
        gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        async with Client(gateway.server) as client:
            assert (await client.call_tool("a_b_c", {})).data == "ran c"
    binding = manager.names.binding("tool", "a_b_c")
    assert binding is not None and binding.server == "a_b"


async def test_a_server_inventing_names_keeps_only_so_many_it_no_longer_offers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each name a server ever offered stayed bound (a server inventing names in a loop
    grew the table by a row a name): past ``UNOFFERED_KEPT`` of the names a listing
    server does not offer now, the least recently offered are released, never one that
    another component asks for (so no name given now changes)."""
    monkeypatch.setattr(bindings, "UNOFFERED_KEPT", 3)
    ticks = iter(range(1_000))
    book, store = NameBook(clock=lambda: float(next(ticks))), MemoryStore()
    book.persistent = True
    other = ("a", "a", "b_c")   # asks for 'a_b_c' all along

    def offer(*tools: str, servers: tuple[str, ...] = ("a_b", "a")) -> dict[str, str]:
        entries = [*(("a_b", "a_b", t) for t in tools), other]
        table = book.allocate("tool", [e for e in entries if e[0] in servers], namespaces={
            "a_b": "a_b", "a": "a", "z": "z"}, separator="_", max_length=64)
        return {e: f"{o.server}.{o.original}" for e, o in table.by_exposed.items()}

    book.load([NameBinding(kind="tool", exposed=f"z_{i}", server="z", original=str(i),
                           base=f"z_{i}", at=0.0) for i in range(5)])   # z lists nothing
    first = offer("c", "keep")
    suffixed = next(e for e, o in first.items() if o == "a.b_c")
    for i in range(8):
        offer(f"n{i}", "keep")
    offer("n9", "n1")
    # 'keep' and 'n7' were offered last: 'n5' and 'n6' go; 'c', offered first, stays
    # (a's 'b_c' asks for its name), and so does every name z (listing nothing) bound.
    assert {b.exposed for b in book.bound.values() if b.server == "a_b"} == {
        "a_b_c", "a_b_n9", "a_b_n1", "a_b_n7", "a_b_keep"}
    assert len([b for b in book.bound.values() if b.server == "z"]) == 5
    assert offer("c")["a_b_c"] == "a_b.c" and offer()[suffixed] == "a.b_c"
    assert len([b for b in book.bound.values() if b.server == "a_b"]) == 4
    offer(servers=("a",))   # a_b lists nothing now (starting): nothing of it goes
    assert len([b for b in book.bound.values() if b.server == "a_b"]) == 4
    async with anyio.create_task_group() as tg:
        tg.start_soon(book.keep, lambda: store, lambda: None)
        assert await book.flushed(GUARD)
        tg.cancel_scope.cancel()
    assert await store.name_bindings() == sorted(   # (z's were loaded, not claimed)
        (b for b in book.bound.values() if b.server != "z"), key=lambda b: b.exposed)


async def test_a_server_removed_while_no_gateway_ran_frees_its_names_at_start(
        tmp_path: Path) -> None:
    """A server dropped from the file while no gateway ran kept its names for ever
    (unlisted, refused, never free).  At start the bindings of servers neither in the
    config nor registered in the store go; those of servers outside this process's
    profile (in the file) and of runtime registrations stay."""
    db = tmp_path / "g.db"
    both = {"a_b": memory_entry("a_b"), "a": memory_entry("a")}
    first = make_gateway(both, {"a_b": droppable("c"), "a": droppable("b_c")}, db=db)
    async with Client(first.server) as client:
        suffixed = next(n for n in await names(client) if n != "a_b_c")
        assert await first.manager.names.flushed(GUARD)
    store = await open_store(db)
    try:   # 'r', registered at runtime, offered 'old' once
        await store.put_server("r", memory_entry("r"), True)
        await store.claim_names([NameBinding(kind="tool", exposed="r_old", server="r",
                                             original="old", base="r_old", at=1.0)])
    finally:
        await store.close()
    memory = {"a_b": droppable("c"), "a": droppable("b_c"), "r": droppable("t")}
    profiled = make_gateway(both, memory, db=db)
    profiled.manager.restrict({"a"})   # serve --profile: a_b is in the file, not run here
    async with Client(profiled.server):
        assert profiled.manager.names.binding("tool", "a_b_c") is not None
    later = make_gateway({"a": memory_entry("a")}, memory, db=db)   # a_b left the file
    async with Client(later.server) as client:
        book = later.manager.names
        assert book.binding("tool", "a_b_c") is None
        assert book.binding("tool", "r_old") is not None
        assert await names(client) == {suffixed}   # a's name does not move
        called = await client.call_tool_mcp("a_b_c", {})
        assert called.is_error and "Unknown tool" in called.content[0].text, called.content
        assert await book.flushed(GUARD)
        stored = await later.store.name_bindings()   # type: ignore[union-attr]
        assert {b.server for b in stored} == {"a", "r"}


async def test_a_release_while_a_claim_is_written_is_not_undone_by_its_answer() -> None:
    """The store answers a claim with the bindings holding its names; a server removed
    while that write was on its way got its binding back from the answer (in memory:
    the name stayed reserved, its calls refused as the removed server's, until a
    restart; test_a_removed_server_frees_its_names_and_the_others_keep_theirs failed
    so on a loaded machine)."""
    store = MemoryStore()
    writing, answer = anyio.Event(), anyio.Event()

    class Slow:   # the store, its claims' answers held until the test says
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def claim_names(self, claims: Any) -> Any:
            writing.set()
            await answer.wait()
            return await store.claim_names(claims)

    book = NameBook()
    book.persistent = True
    book.allocate("tool", [("a_b", "a_b", "c"), ("a", "a", "x")],
                  namespaces={"a_b": "a_b", "a": "a"}, separator="_", max_length=64)
    async with anyio.create_task_group() as tg:
        tg.start_soon(book.keep, Slow, lambda: None)
        with anyio.fail_after(GUARD):
            await writing.wait()
        book.release("a_b")   # removed while the claim is on its way
        answer.set()
        assert await book.flushed(GUARD)
        tg.cancel_scope.cancel()
    assert book.binding("tool", "a_b_c") is None
    assert book.binding("tool", "a_x") is not None
    assert {b.server for b in await store.name_bindings()} == {"a"}
