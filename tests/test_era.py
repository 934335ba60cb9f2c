"""The protocol era of upstream sessions (``protocol: auto | legacy | 2026-07-28``).

Whatever era an upstream session is in, a host of either era sees the same thing:
the same tool results, the same questions asked and answered, the same logs and the
same progress.  ``auto`` opens the handshake era (cheaper for the server per call)
and moves to 2026-07-28 only when a need for it is known; the choice and its reason
are shown in ``gateway_server_detail`` and ``gateway_list_servers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Context, FastMCP
from fastmcp.client import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StdioTransport
from fastmcp.tools.base import InputRequiredToolResult
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.store import EraNeed, open_store
from fast_mcp_gateway.upstream.era_memory import start_of
from fast_mcp_gateway.upstream.session import Era, needs_modern
from tests.fixtures import PY, SERVERS, interactive_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}},
               "required": ["name"]}


def era_server() -> FastMCP[Any]:
    """A server that serves both eras well: it asks the way its session's era asks."""
    mcp = FastMCP("dual")

    @mcp.tool
    def echo(text: str) -> dict[str, Any]:
        return {"text": text, "length": len(text)}

    @mcp.tool
    async def steps(count: int, ctx: Context) -> str:
        for step in range(1, count + 1):
            await ctx.report_progress(step, count, f"step {step}")
        return f"{count} steps"

    @mcp.tool
    async def chatty(ctx: Context) -> str:
        await ctx.info("working on it")
        await ctx.warning("almost there")
        return "done"

    @mcp.tool
    async def greet(ctx: Context) -> Any:
        """Ask the host for a name: a pushed request on a handshake-era session, an
        ``InputRequiredResult`` on a 2026-07-28 one."""
        if ctx.request_context.protocol_version in MODERN_PROTOCOL_VERSIONS:
            answer = (ctx.input_responses or {}).get("name")
            if answer is None:
                return InputRequiredToolResult(types.InputRequiredResult(input_requests={
                    "name": types.ElicitRequest(params=types.ElicitRequestFormParams(
                        message="Your name?", requested_schema=NAME_SCHEMA))}))
        else:
            answer = await ctx.session.elicit(message="Your name?",
                                              requested_schema=NAME_SCHEMA,
                                              related_request_id=ctx.request_id)
        return f"hello {(answer.content or {}).get('name')} ({answer.action})"

    return mcp


def guard_server() -> FastMCP[Any]:
    """A server written for 2026-07-28 only: its tool asks with an InputRequiredResult."""
    mcp = FastMCP("guard")

    @mcp.tool
    async def guarded(ctx: Context) -> Any:
        answer = (ctx.input_responses or {}).get("name")
        if answer is None:
            return InputRequiredToolResult(types.InputRequiredResult(input_requests={
                "name": types.ElicitRequest(params=types.ElicitRequestFormParams(
                    message="Your name?", requested_schema=NAME_SCHEMA))}))
        return f"guarded {(answer.content or {}).get('name')}"

    return mcp


async def _elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
    return ElicitResult(action="accept", content={"name": "Ada"})


# The connection stamp (the gateway's own serverInfo), and the gateway's account of the
# upstream requests a call took: a handshake-era host's question answered through a
# 2026-07-28 upstream takes two (the call is repeated with the answer), through a
# handshake-era one a single request (the question is pushed during it).
_GATEWAY_META = ("io.modelcontextprotocol/serverInfo", "io.github.fast-mcp-gateway/route")


def _result(result: types.CallToolResult) -> dict[str, Any]:
    """What the host got, without the gateway's own ``_meta`` (``_GATEWAY_META``)."""
    data = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    meta = {k: v for k, v in (data.pop("_meta", None) or {}).items()
            if k not in _GATEWAY_META}
    return {**data, "_meta": meta}


async def _session_as_seen(host: str, upstream: str) -> tuple[dict[str, Any], str | None]:
    """Everything a host of era ``host`` sees through an upstream connected with
    ``protocol: upstream``, and the era the upstream session is in."""
    gateway = make_gateway({"dual": memory_entry("dual", protocol=upstream)},
                           {"dual": era_server()})
    logs: list[tuple[str, Any]] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(message: Any) -> None:
        logs.append((message.level, message.data))

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    mode = {"handshake": "legacy", "modern": "auto"}[host]
    async with Client(gateway.server, mode=mode, elicitation_handler=_elicit,
                      log_handler=on_log, progress_handler=on_progress) as client:
        assert client.protocol_version == (LEGACY if host == "handshake" else MODERN)
        seen: dict[str, Any] = {
            name: _result(await client.call_tool_mcp(f"dual_{name}", arguments))
            for name, arguments in [("echo", {"text": "héllo"}), ("steps", {"count": 3}),
                                    ("chatty", {}), ("greet", {})]
        }
        tools = await client.list_tools()
        await until(lambda: len(logs) >= 2 and len(progress) >= 3)  # handlers' own tasks
        seen["tools"] = sorted(json.dumps(t.model_dump(mode="json", exclude_none=True),
                                          sort_keys=True) for t in tools
                               if t.name.startswith("dual_"))
        seen["logs"], seen["progress"] = logs, progress
        version = gateway.manager.get("dual").replicas[0].protocol_version
    return seen, version


@pytest.mark.parametrize("host", ["handshake", "modern"])
async def test_a_host_sees_the_same_through_an_upstream_of_either_era(host: str) -> None:
    legacy, legacy_era = await _session_as_seen(host, "legacy")
    modern, modern_era = await _session_as_seen(host, MODERN)
    auto, auto_era = await _session_as_seen(host, "auto")
    assert (legacy_era, modern_era, auto_era) == (LEGACY, MODERN, LEGACY)
    assert legacy["greet"]["content"][0]["text"] == "hello Ada (accept)"
    assert legacy["steps"]["content"][0]["text"] == "3 steps"
    assert legacy["progress"] == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"),
                                  (3.0, 3.0, "step 3")]
    assert [level for level, _ in legacy["logs"]] == ["info", "warning"]
    assert legacy == modern
    assert auto == legacy


async def test_the_chosen_era_and_why_are_shown_in_status_and_detail() -> None:
    gateway = make_gateway(
        {"cheap": memory_entry("cheap"), "pinned": memory_entry("pinned", protocol=MODERN),
         "old": memory_entry("old", protocol="legacy")},
        {"cheap": era_server(), "pinned": era_server(), "old": era_server()})
    async with Client(gateway.server, mode="legacy") as client:
        detail = (await client.call_tool("gateway_server_detail", {"name": "cheap"})
                  ).structured_content
        assert detail is not None
        assert (detail["protocol"], detail["protocol_version"]) == ("auto", LEGACY)
        assert detail["protocol_reason"] == (
            "auto: the handshake era costs the server less per call")
        status = (await client.call_tool("gateway_list_servers", {"detail": True})
                  ).structured_content
        assert status is not None
        rows = {row["name"]: row for row in status["servers"]}
        assert (rows["pinned"]["protocol"], rows["pinned"]["protocol_version"],
                rows["pinned"]["protocol_reason"]) == (MODERN, MODERN, f"protocol: {MODERN}")
        assert (rows["old"]["protocol_version"], rows["old"]["protocol_reason"]) == (
            LEGACY, "protocol: legacy")


async def test_the_gateway_wide_default_applies_to_servers_that_set_none() -> None:
    gateway = make_gateway(
        {"inherits": memory_entry("inherits"), "own": memory_entry("own", protocol="auto")},
        {"inherits": era_server(), "own": era_server()}, options={"protocol": MODERN})
    async with Client(gateway.server, mode="legacy"):
        inherits = gateway.manager.get("inherits").replicas[0]
        own = gateway.manager.get("own").replicas[0]
        assert (inherits.protocol_mode, inherits.protocol_version) == (MODERN, MODERN)
        assert (own.protocol_mode, own.protocol_version) == ("auto", LEGACY)


@pytest.mark.parametrize("host", ["handshake", "modern"])
async def test_auto_moves_to_2026_when_a_tool_asks_the_2026_way(host: str) -> None:
    """A guard-style tool cannot answer on a handshake-era session: ``auto`` learns it
    from the upstream's refusal, reconnects in 2026-07-28 and sends the call again, so
    the host gets its question as if the session had been 2026-07-28 from the start."""
    gateway = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()})
    mode = {"handshake": "legacy", "modern": "auto"}[host]
    async with Client(gateway.server, mode=mode, elicitation_handler=_elicit) as client:
        replica = gateway.manager.get("guard").replicas[0]
        assert replica.protocol_version == LEGACY
        result = await client.call_tool("guard_guarded", {})
        assert result.content[0].text == "guarded Ada"  # type: ignore[union-attr]
        assert replica.protocol_version == MODERN
        stats = replica.statistics()
        assert stats.protocol_reason is not None
        assert "tool 'guarded' asks for input with an InputRequiredResult" in (
            stats.protocol_reason)
        # Learned for this replica: the next call goes straight to the 2026 session.
        connects = replica.connects
        again = await client.call_tool("guard_guarded", {})
        assert again.content[0].text == "guarded Ada"  # type: ignore[union-attr]
        assert replica.connects == connects


async def test_legacy_and_pinned_eras_never_move() -> None:
    era = Era("legacy")
    assert not era.learn("a tool needs it") and era.needs is None
    pinned = Era(MODERN)
    assert not pinned.learn("a tool needs it")
    auto = Era("auto")
    assert auto.learn("a tool needs it") and auto.needs == "a tool needs it"
    assert not auto.learn("another")  # the first need stays the reason


def test_only_the_2026_refusal_counts_as_a_need() -> None:
    refusal = MCPError(code=types.INVALID_PARAMS, message=(
        "Tool 'x' returned an InputRequiredResult to request client input, but the "
        "multi-round-trip result type (SEP-2322) only exists at MCP 2026-07-28; this "
        "connection negotiated '2025-11-25'."))
    assert needs_modern(refusal)
    assert not needs_modern(MCPError(code=types.INVALID_PARAMS, message="bad argument"))
    assert not needs_modern(MCPError(code=types.INTERNAL_ERROR, message=refusal.error.message))
    assert not needs_modern(ValueError("only exists at MCP 2026-07-28"))


def test_protocol_is_checked_with_a_clear_error() -> None:
    config = parse_config({"gateway": {"protocol": "legacy"},
                           "servers": {"a": {"command": "x"}}}, source="t")
    assert config.options.protocol == "legacy" and config.servers["a"].protocol is None
    with pytest.raises(Exception, match="protocol"):
        parse_config({"servers": {"a": {"command": "x", "protocol": "2025"}}}, source="t")


async def test_freshness_hints_need_a_2026_session_so_auto_cannot_pass_them_on() -> None:
    """Why ``auto`` is not free for a server that hints its lists: ``ttlMs`` and
    ``cacheScope`` exist only on 2026-07-28 wires, so through a handshake-era session
    the server's hint is unknown and counts as 0 ("stale now", the safe direction).
    Such a server needs ``protocol: 2026-07-28`` for 2026 hosts to see its hint."""
    seen = {}
    for protocol in ("auto", MODERN):
        upstream: FastMCP[Any] = FastMCP("hinted", cache_ttl=60, cache_scope="public")
        upstream.tool(lambda x: x, name="a")
        gateway = make_gateway({"hinted": memory_entry("hinted", protocol=protocol)},
                               {"hinted": upstream})
        async with Client(gateway.server) as client:
            assert client.protocol_version == MODERN
            listed = await client.list_tools_mcp()
            seen[protocol] = (listed.ttl_ms, listed.cache_scope,
                              gateway.manager.get("hinted").replicas[0].protocol_version)
    assert seen == {"auto": (0, "private", LEGACY), MODERN: (60000, "public", MODERN)}


def test_an_unquoted_version_in_yaml_is_the_version(tmp_path: Any) -> None:
    """YAML reads ``2026-07-28`` as a date; it used to be refused as not '2026-07-28'."""
    from fast_mcp_gateway.config.loader import load_config

    path = tmp_path / "servers.yaml"
    path.write_text("gateway:\n  protocol: 2026-07-28\n"
                    "servers:\n  a:\n    command: x\n    protocol: 2026-07-28\n")
    config = load_config(path)
    assert (config.options.protocol, config.servers["a"].protocol) == (MODERN, MODERN)


@pytest.mark.parametrize("host", ["handshake", "modern"])
async def test_a_tool_that_pushes_its_question_works_only_on_a_handshake_session(
        host: str) -> None:
    """The other side of the choice: ``ctx.elicit()`` (FastMCP's way of asking) needs a
    back-channel, which 2026-07-28 sessions do not have.  ``auto`` keeps it working."""
    mode = {"handshake": "legacy", "modern": "auto"}[host]
    seen = {}
    for protocol in ("auto", MODERN):
        gateway = make_gateway({"inter": memory_entry("inter", protocol=protocol)},
                               {"inter": interactive_server()})
        async with Client(gateway.server, mode=mode, elicitation_handler=_elicit_value) as c:
            result = await c.call_tool_mcp("inter_ask", {})
            seen[protocol] = (result.is_error, result.content[0].text)  # type: ignore[union-attr]
    assert seen["auto"] == (False, "accept:Ada")
    assert seen[MODERN][0] is True
    assert "unavailable on 2026-07-28 connections" in seen[MODERN][1]


async def _elicit_value(message: str, response_type: Any, params: Any, context: Any) -> Any:
    (field,) = params.requested_schema["properties"]  # "value": ctx.elicit(str)
    return ElicitResult(action="accept", content={field: "Ada"})


async def test_calls_that_meet_the_refusal_together_all_go_on_in_2026() -> None:
    gateway = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()})
    texts: list[str] = []

    async def call(client: Client[Any]) -> None:
        result = await client.call_tool("guard_guarded", {})
        texts.append(result.content[0].text)  # type: ignore[union-attr]

    async with Client(gateway.server, mode="legacy", elicitation_handler=_elicit) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call, client)
        replica = gateway.manager.get("guard").replicas[0]
        assert replica.protocol_version == MODERN
    assert texts == ["guarded Ada"] * 3


async def test_what_auto_learned_holds_across_a_restart(tmp_path: Any) -> None:
    """Learning a need costs a refused call and a reconnect: it is kept in the store, so
    the next run opens the server in that era at once (store/eras.py), unless the server
    is now started another way."""
    db = str(tmp_path / "gateway.db")
    first = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()}, db=db)
    async with Client(first.server, mode="legacy", elicitation_handler=_elicit) as client:
        assert (await client.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        replica = first.manager.get("guard").replicas[0]
        assert replica.protocol_version == MODERN and replica.connects == 2  # the switch
    again = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()}, db=db)
    async with Client(again.server, mode="legacy", elicitation_handler=_elicit) as client:
        replica = again.manager.get("guard").replicas[0]
        assert replica.protocol_version == MODERN and replica.connects == 1
        reason = replica.statistics().protocol_reason or ""
        assert "tool 'guarded' asks for input with an InputRequiredResult" in reason
        assert "learned in an earlier run" in reason
        assert (await client.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        assert replica.connects == 1  # no refusal, no reconnect
    moved = make_gateway({"guard": memory_entry("guard-elsewhere")},
                         {"guard": guard_server()}, db=db)
    async with Client(moved.server, mode="legacy", elicitation_handler=_elicit):
        replica = moved.manager.get("guard").replicas[0]
        assert replica.protocol_version == LEGACY  # another address: learned again


class _Memory:
    def __init__(self, kept: tuple[str, str] | None) -> None:
        self.kept, self.told = kept, []

    def recall(self) -> Any:
        return self.kept

    def learned(self, era: str, reason: str) -> None:
        self.told.append((era, reason))


def test_a_kept_need_applies_to_auto_only_and_never_over_one_learned_now() -> None:
    push = _Memory(("handshake", "tool 'ask' asks for input by push"))
    era = Era("auto", push)
    era.recall()
    assert era.needs_handshake == "tool 'ask' asks for input by push (learned in an earlier run)"
    assert era.needs is None and push.told == []  # recalled, not learned again
    assert era.learn("tool 'guarded' asks with an InputRequiredResult")  # a newer need wins
    assert push.told == [("2026-07-28", "tool 'guarded' asks with an InputRequiredResult")]
    era.recall()  # a need known now is never replaced by a kept one
    assert era.needs == "tool 'guarded' asks with an InputRequiredResult"
    pinned = Era(MODERN, _Memory(("handshake", "x")))
    pinned.recall()
    assert pinned.needs is None and pinned.needs_handshake is None
    fresh = Era("auto", _Memory(None))
    fresh.recall()
    assert fresh.needs is None and fresh.needs_handshake is None
    assert fresh.learn_handshake("tool 'ask' asks for input by push")
    assert fresh.memory is not None and fresh.memory.told == [  # type: ignore[attr-defined]
        ("handshake", "tool 'ask' asks for input by push")]


async def _until(condition: Any, within: float = 30.0) -> None:
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - another task's progress: nothing to wait on
            await anyio.sleep(0.02)


async def test_a_need_the_store_cannot_take_stops_nothing_else(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A SQLite error writing a learned need (here: its table is gone) is logged; the
    gateway's other background work (the call log's writer among it) goes on."""
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()},
                           db=str(db))
    async with Client(gateway.server, mode="legacy", elicitation_handler=_elicit) as client:

        def drop() -> None:  # in a thread: the gateway's writes go on meanwhile
            with contextlib.closing(sqlite3.connect(db, timeout=60)) as conn:
                conn.execute("DROP TABLE era_needs")

        await anyio.to_thread.run_sync(drop)
        assert (await client.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        await _until(lambda: "could not keep what server 'guard' needs" in caplog.text)
        recorder = gateway.recorder
        assert recorder is not None
        await client.call_tool("guard_guarded", {})
        assert await recorder.flushed(within=30)
        assert recorder.written >= 2


async def test_a_real_stdio_gateway_recalls_a_need_before_its_first_connect(
        tmp_path: Any) -> None:
    """``mcp-gateway serve`` (stdio) with a store file: the store is attached before the
    upstreams' first connects, so the second run's first session is in the era learned
    by the first run; nothing given in args or env reaches the store."""
    secret = "sk-era-args-0123456789abcdef"
    env_secret = "sk-era-env-fedcba9876543210"
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"pusher": {
        "command": PY, "args": [str(SERVERS / "pusher.py"), f"--token={secret}"],
        "env": {"PUSHER_TOKEN": env_secret}}}}))
    db = tmp_path / "gateway.db"

    def gateway() -> StdioTransport:
        return StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(config),
                                   "--db", str(db), "--log-level", "WARNING"],
                              keep_alive=False, env=dict(os.environ))

    def kept() -> list[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return list(conn.execute("SELECT server, era FROM era_needs"))

    async def status(client: Client[Any]) -> dict[str, Any]:
        servers = (await client.call_tool("gateway_list_servers", {"detail": True})
                   ).structured_content
        assert servers is not None
        (pusher,) = [s for s in servers["servers"] if s["name"] == "pusher"]
        return pusher  # type: ignore[no-any-return]

    async def answer(message: str, response_type: Any, params: Any, context: Any) -> Any:
        return ElicitResult(action="accept", content={"name": message})

    async with Client(gateway(), mode="legacy", elicitation_handler=answer) as client:
        assert (await status(client))["protocol_version"] == LEGACY
        result = await client.call_tool("pusher_guard", {})
        assert result.content[0].text == "guard:Your name?:Your color?"  # type: ignore[union-attr]
        assert (await status(client))["protocol_version"] == MODERN
        await _until(lambda: kept() == [("pusher", MODERN)])
    async with Client(gateway(), mode="legacy", elicitation_handler=answer) as client:
        first = await status(client)
        assert first["protocol_version"] == MODERN and first["restarts"] == 0
        assert "learned in an earlier run" in first["protocol_reason"]
        assert (await client.call_tool("pusher_guard", {})).content[0].text == \
            "guard:Your name?:Your color?"  # type: ignore[union-attr]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert secret.encode() not in stored and env_secret.encode() not in stored


async def test_a_per_client_servers_host_sessions_keep_and_recall_the_need(
        tmp_path: Any) -> None:
    """``isolation: per_client``: the calls run on each host's own session, so that is
    where a need is learned; it is kept, and the next run's host session opens in that
    era at once, with no refused call and no reconnect."""
    db = tmp_path / "gateway.db"

    def run() -> Any:
        return make_gateway({"guard": memory_entry("guard", isolation="per_client")},
                            {"guard": guard_server()}, db=str(db))

    def kept() -> list[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return list(conn.execute("SELECT server, era FROM era_needs"))

    async with Client(run().server, mode="legacy", elicitation_handler=_elicit) as host:
        assert (await host.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        await _until(lambda: kept() == [("guard", MODERN)])
    again = run()
    async with Client(again.server, mode="legacy", elicitation_handler=_elicit) as host:
        assert (await host.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        clients = again.manager.get("guard").clients
        assert clients is not None
        (session,) = clients.upstreams
        assert session.protocol_version == MODERN and session.connects == 1


async def test_instances_at_other_addresses_share_one_kept_need(tmp_path: Any) -> None:
    """``instances`` of one server (the same server at several addresses): one need is
    kept per server, so each instance learning it wrote its own address over the
    other's, and the next run recalled it for one instance only."""
    db = tmp_path / "gateway.db"

    def run() -> Any:
        return make_gateway({"guard": {"instances": [
            {"url": "http://127.0.0.1:9/in-memory/one"},
            {"url": "http://127.0.0.1:9/in-memory/two"}]}},
            {"one": guard_server(), "two": guard_server()}, db=str(db))

    def kept() -> list[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return list(conn.execute("SELECT server, era FROM era_needs"))

    first = run()
    replicas = first.manager.get("guard").replicas
    async with Client(first.server, mode="legacy", elicitation_handler=_elicit) as host:
        while not all(r.protocol_version == MODERN for r in replicas):  # round robin
            assert (await host.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        await _until(lambda: kept() == [("guard", MODERN)])
    again = run()
    async with Client(again.server, mode="legacy", elicitation_handler=_elicit):
        replicas = again.manager.get("guard").replicas
        assert [(r.protocol_version, r.connects) for r in replicas] == [(MODERN, 1)] * 2


async def test_a_recalled_handshake_need_gives_way_to_a_guard_tool(tmp_path: Any) -> None:
    """An earlier run learned the handshake era (a tool asked by push); a guard-style
    tool then needs 2026-07-28: the replica moves (no deadlock between the recalled and
    the live need), and the newer need is what is kept."""
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"guard": memory_entry("guard")}, {"guard": guard_server()},
                           db=str(db))
    store = await open_store(str(db))
    try:
        await store.put_era_need(EraNeed(
            server="guard", start=start_of(gateway.manager.get("guard").config),
            era="handshake", reason="tool 'ask' asks for input by push (ctx.elicit())",
            at=1.0))
    finally:
        await store.close()

    def kept() -> list[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return list(conn.execute("SELECT server, era FROM era_needs"))

    async with Client(gateway.server, mode="legacy", elicitation_handler=_elicit) as client:
        replica = gateway.manager.get("guard").replicas[0]
        assert replica.protocol_version == LEGACY
        assert "learned in an earlier run" in (replica.statistics().protocol_reason or "")
        with anyio.fail_after(60):
            assert (await client.call_tool("guard_guarded", {})).content[0].text == "guarded Ada"  # type: ignore[union-attr]
        assert replica.protocol_version == MODERN and replica.connects == 2
        await _until(lambda: kept() == [("guard", MODERN)])
