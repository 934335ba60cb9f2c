"""Property-based: hypothesis calls every admin tool with arbitrary arguments, through a
real MCP client, against a gateway with a real SQLite store.  Every answer is a result
or an error that says what is wrong -- never an internal error text -- and the store
stays intact."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastmcp import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS
from tests.fixtures import beta_server, make_gateway, memory_entry

# Registering a server runs its command: the fuzzer must not invent commands to run
# (those tools' validation is fuzzed through the config layer, tests/test_config_corpus.py).
NOT_FUZZED = {"gateway_add_server", "gateway_update_server", "gateway_import_servers"}
INTERNAL = ("Traceback", "'NoneType' object", "object has no attribute", "KeyError",
            "too large to convert", "sqlite3.", "IntegrityError", "TypeError", "ValueError(")

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
_names = st.sampled_from(["beta", "nope", "", "gateway", "beta#0", "x" * 300, "\u202e"])


# Plausible values, so that a draw reaches past argument validation into the operation.
PLAUSIBLE: dict[str, Any] = {"name": "beta", "target": "beta", "pattern": "beta_*",
                             "match": "wildcard", "priority": 1, "route_id": 1,
                             "replica": 0, "tool": "add", "arguments": {"a": 1, "b": 2},
                             "uri": "mem://beta/x", "prompt": "p", "limit": 5}
_huge = st.sampled_from([2**63, -(2**63) - 1, 2**100, 10**30, -1, 0, 1.5, float("inf")])


def _arguments(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """The tool's parameters, each plausible or replaced by an arbitrary value."""
    fn = next(t for t in ADMIN_TOOLS if t.name == tool).fn
    params = fn.__code__.co_varnames[1:fn.__code__.co_argcount + fn.__code__.co_kwonlyargcount]
    base = {p: PLAUSIBLE[p] for p in params if p in PLAUSIBLE}
    keys = st.sampled_from([*params, "unexpected"]) if params else st.just("unexpected")
    wild = st.dictionaries(keys, st.one_of(_huge, _json, _names), max_size=2)
    return st.builds(lambda over: {**base, **over}, wild)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[BlockingPortal, Client[Any], Path]]:
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"beta": memory_entry("beta")}, {"beta": beta_server()}, db=db)
    with start_blocking_portal() as portal:
        mcp = Client(gateway.server)
        portal.call(mcp.__aenter__)
        try:
            yield portal, mcp, db
        finally:
            portal.call(mcp.__aexit__, None, None, None)


@pytest.mark.timeout(300)
def test_admin_tools_never_answer_with_internal_errors(
    client: tuple[BlockingPortal, Client[Any], Path],
) -> None:
    portal, mcp, db = client
    tools = sorted(t.name for t in ADMIN_TOOLS if t.name not in NOT_FUZZED)
    seen: dict[str, int] = {}

    @given(data=st.data())
    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(data: st.DataObject) -> None:
        tool = data.draw(st.sampled_from(tools))
        arguments = data.draw(_arguments(tool))

        async def call() -> Any:
            with anyio.fail_after(60):
                return await mcp.call_tool(tool, arguments, raise_on_error=False)

        result = portal.call(call)
        seen[tool] = seen.get(tool, 0) + 1
        text = " ".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            assert text.strip(), f"{tool}({arguments!r}): an error without a message"
        assert not any(marker in text for marker in INTERNAL), (
            f"{tool}({arguments!r}) answered with an internal error: {text[:500]}")

    check()
    assert len(seen) >= len(tools) // 2  # the draw reached most tools
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
