"""Exposed-name bindings between gateways on one PostgreSQL: a release reaches the others
while they run.

Servers 'a_b' (tool 'c') and 'a' (tool 'b_c') both make 'a_b_c'; 'a_b' holds it, 'a' is
suffixed.  A release (a server removed, or one found in neither the config nor the
registrations at a gateway's start, or a binding trimmed) was written to the store
only: another gateway learnt of it at its next restart.  Until then

* a gateway that runs the server went on serving the name while the store no longer
  held it (any gateway could give it to another component meanwhile), and re-claimed it
  only at its restart;
* a gateway that does not run the server (another profile) kept the binding in memory:
  the name stayed reserved there (its calls refused as the removed server's) though
  every other gateway had freed it.

Now a release or a forget notes a change in the shared feed (as registrations and
routes do): the other gateways re-claim the bindings of the servers they run, and drop
the others'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.store import open_store
from tests.fixtures import make_gateway, memory_entry
from tests.test_name_bindings import droppable

pytestmark = pytest.mark.anyio
GUARD = 30  # seconds: a hang guard only
BOTH = {"a_b": memory_entry("a_b"), "a": memory_entry("a")}


def _gateway(url: str, instance: str) -> Gateway:
    return make_gateway(BOTH, {"a_b": droppable("c"), "a": droppable("b_c")}, db=url,
                        instance_id=instance)


@asynccontextmanager
async def _serving(*gateways: Gateway) -> AsyncIterator[list[Client[Any]]]:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(g.server)) for g in gateways]
        for gateway, client in zip(gateways, clients, strict=True):
            await client.list_tools()
            assert await gateway.manager.names.flushed(GUARD)
        yield clients


def _holder(gateway: Gateway) -> str | None:
    bound = gateway.manager.names.binding("tool", "a_b_c")
    return None if bound is None else bound.server


async def test_a_release_by_another_gateway_is_reclaimed_by_those_running_the_server(
        pg_url: str) -> None:
    """Another gateway released 'a_b''s names (as one does at its start when 'a_b' is in
    neither its config nor the registrations: ``instance_lease.release_unknown_names``);
    A and B run 'a_b' and serve 'a_b_c' to their hosts.  They write the bindings back
    at once, not at their next restart: meanwhile any gateway could have given
    'a_b_c' to another component, and A's and B's hosts would call another tool."""
    a, b = _gateway(pg_url, "A"), _gateway(pg_url, "B")
    async with _serving(a, b) as (host_a, _host_b):
        other = await open_store(pg_url)   # another gateway's store: its own origin
        try:
            assert {x.exposed: x.server for x in await other.name_bindings()}[
                "a_b_c"] == "a_b"
            assert await other.release_names("a_b") == 2   # a_b_c, a_b_toggle
            # Each follows the change; the first to apply it claims the names again
            # (the other then finds them stored: nothing to claim).
            assert await a.control.remote_applied.wait_until(
                lambda: a.manager.names.reclaimed + b.manager.names.reclaimed >= 2, GUARD), \
                "the release did not reach the gateways serving the names"
            for gateway in (a, b):
                assert await gateway.manager.names.flushed(GUARD)
            stored = {x.exposed: x.server for x in await other.name_bindings()}
            assert stored["a_b_c"] == "a_b" and stored["a_b_toggle"] == "a_b", stored
        finally:
            await other.close()
        assert _holder(a) == _holder(b) == "a_b"
        assert "a_b_c" in {t.name for t in await host_a.list_tools()}


async def test_a_release_by_another_gateway_frees_the_names_where_the_server_is_not_run(
        pg_url: str) -> None:
    """B serves a profile without 'a_b' and holds its bindings as the store had them at
    its start.  A removes 'a_b': B frees its names at once (it kept them reserved
    until its restart, the calls refused as the removed server's)."""
    a, b = _gateway(pg_url, "A"), _gateway(pg_url, "B")
    b.manager.restrict({"a"})   # serve --profile: a_b is in the file, not run here
    async with _serving(a, b) as (host_a, host_b):
        assert _holder(b) == "a_b"
        await host_a.call_tool("gateway_remove_server", {"name": "a_b"})
        assert _holder(a) is None
        assert await b.control.remote_applied.wait_until(lambda: _holder(b) is None, GUARD), \
            "B still holds the removed server's name"
        assert b.manager.names.binding("tool", "a_b_toggle") is None
        called = await host_b.call_tool_mcp("a_b_c", {})
        assert called.is_error and "Unknown tool" in called.content[0].text, called.content
