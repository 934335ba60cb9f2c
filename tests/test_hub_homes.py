"""An upstream's ``notifications/resources/updated`` reaches the URIs held at its
server by that URI through an index (``front/homes.py``): the hub no longer looks at
every home held, and the index agrees with a look at every home after any sequence of
subscriptions, moves, let-gos and server removals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fast_mcp_gateway.front.homes import Home, Homes
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.routing.view import normalize_uri

pytestmark = pytest.mark.anyio


class CountedHome(Home):
    """A home that counts the reads of its fields."""

    __slots__ = ()
    reads = 0

    def __getattribute__(self, name: str) -> Any:
        if name in ("server", "original"):
            CountedHome.reads += 1
        return super().__getattribute__(name)


def _anyone(_server: str) -> bool:
    return True


async def test_an_update_looks_only_at_the_homes_of_its_uri() -> None:
    """Each upstream update looked at every home held (``server`` and ``original`` of
    each: 2,000 reads here for one update); now it looks its URI up at its server,
    including the form FastMCP hands back (``normalize_uri``), and the exposed URI
    the catalog names."""
    hub = FrontHub()
    for n in range(1000):
        for server in ("files", "other"):
            hub.listen(f"{server}+note://{n}", CountedHome(server, f"note://{n}"), _anyone)
    hub.listen("files+wide://a b", CountedHome("files", normalize_uri("wide://a b")), _anyone)
    hub.listen("alias://7", CountedHome("files", "note://7"), _anyone)
    CountedHome.reads = 0
    hub.resource_updated("files+note://7", "files", "note://7")
    hub.resource_updated("files+wide://a b", "files", "wide://a b")
    assert CountedHome.reads == 0
    assert hub._updated == [("alias://7", "files"), ("files+note://7", "files"),
                            ("files+wide://a b", "files")]


async def test_a_removed_server_takes_only_its_own_homes() -> None:
    hub = FrontHub()
    for n in range(100):
        hub.listen(f"a+x://{n}", CountedHome("a", f"x://{n}"), _anyone)
        hub.listen(f"b+x://{n}", CountedHome("b", f"x://{n}"), _anyone)
    CountedHome.reads = 0
    hub.server_removed("a")
    assert CountedHome.reads == 0
    assert sorted(hub._homes) == sorted((f"b+x://{n}", "b") for n in range(100))
    hub.resource_updated("a+x://1", "a", "x://1")
    assert hub._updated == []


URIS = st.sampled_from(["u://1", "u://2", "u://3", "v://1"])
SERVERS = st.sampled_from(["a", "b", "c"])
ORIGINALS = st.sampled_from(["o://1", "o://2", "O://1"])
OPS = st.lists(st.one_of(
    st.tuples(st.just("place"), URIS, SERVERS, ORIGINALS),
    st.tuples(st.just("pop"), URIS, SERVERS),
    st.tuples(st.just("drop"), SERVERS)), max_size=40)


@given(OPS)
@settings(max_examples=300, deadline=None, database=None)
def test_the_index_agrees_with_a_look_at_every_home(ops: list[tuple[str, ...]]) -> None:
    homes, model = Homes(), {}
    for op, *args in ops:
        if op == "place":
            uri, server, original = args
            assert homes.place(uri, Home(server, original)) == model.get((uri, server))
            model[(uri, server)] = Home(server, original)
        elif op == "pop":
            uri, server = args
            assert homes.pop(uri, server) == model.pop((uri, server), None)
        else:
            homes.drop_server(args[0])
            model = {k: h for k, h in model.items() if h.server != args[0]}
        assert dict(homes.items()) == model
        for server in ("a", "b", "c"):
            for forms in ({"o://1"}, {"o://2", "O://1"}, {"o://1", "o://2", "O://1"}):
                assert homes.holding(server, forms) == {
                    uri for (uri, at), home in model.items()
                    if at == server and home.original in forms}
    assert not homes._exposed or all(homes._exposed.values())   # nothing empty kept
