"""Call records in the store: trace ids, redaction, queries and stats through admin tools;
the batch writer behind the call log."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.store import Invocation, MemoryStore
from fast_mcp_gateway.telemetry.recorder import BatchWriter, Recorder
from tests.fixtures import (
    alpha_server,
    make_gateway,
    memory_entry,
    traced_server,
    write_through,
)

pytestmark = pytest.mark.anyio
SECRET = "hunter2-very-secret-value"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_calls_are_recorded_with_trace_ids_and_redacted_arguments(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"traced": memory_entry("traced")}, {"traced": traced_server(seen)},
                           db=db)
    async with Client(gateway.server) as client:
        await client.call_tool("traced_echo", {"text": "hi", "password": SECRET},
                               meta={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
        await client.call_tool("traced_echo", {"text": "again"})
        failed = await client.call_tool_mcp("traced_fail", {})
        assert failed.is_error
        page = (await client.call_tool("gateway_calls", {"limit": 10})).structured_content
    calls = page["calls"]
    assert [c["exposed"] for c in calls] == ["traced_fail", "traced_echo", "traced_echo"]
    assert [c["status"] for c in calls] == ["error", "success", "success"]
    assert calls[0]["error"] == "it broke"
    first = calls[2]
    assert first["trace_id"] == TRACE and first["server"] == "traced"
    assert first["replica"] == "traced" and first["retries"] == 0
    assert '"password": "***"' in first["arguments"] and SECRET not in first["arguments"]
    assert re.fullmatch(r"[0-9a-f]{32}", calls[1]["trace_id"]) and calls[1]["trace_id"] != TRACE
    # The upstream gets the host's trace; without one, the trace the gateway started.
    assert seen[0]["traceparent"].startswith(f"00-{TRACE}-")
    assert seen[1]["traceparent"].startswith(f"00-{calls[1]['trace_id']}-")
    for path in await _files(tmp_path):  # the db, its WAL and shm files
        assert SECRET.encode() not in await path.read_bytes(), path


async def test_a_call_of_a_name_no_server_offers_is_in_the_call_log(tmp_path: Path) -> None:
    """A host calling a made-up name left no record (only a metric): the operator looking
    at the call log for why a host's calls fail saw nothing.  Recorded as ``rejected``,
    with no server, what the host was told and its redacted arguments; no statistics."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        refused = await client.call_tool_mcp(
            "alpha_ad", {"a": 1, "password": SECRET},
            meta={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
        assert refused.is_error
        with pytest.raises(Exception, match="Unknown prompt"):
            await client.get_prompt("alpha_nope", {"topic": "x"})
        with pytest.raises(Exception, match="Unknown resource"):
            await client.read_resource("nope://nowhere")
        await client.call_tool("alpha_add", {"a": 1, "b": 2})
        page = (await client.call_tool("gateway_calls", {"limit": 10})).structured_content
        stats = (await client.call_tool("gateway_stats", {"group_by": "server"})
                 ).structured_content
        rejected = (await client.call_tool("gateway_calls", {"status": "rejected"})
                    ).structured_content["calls"]
    calls = {c["exposed"]: c for c in page["calls"]}
    assert set(calls) == {"alpha_ad", "alpha_nope", "nope://nowhere", "alpha_add"}
    tool = calls["alpha_ad"]
    assert (tool["kind"], tool["status"], tool["server"], tool["original"]) == (
        "tool", "rejected", "", "")
    assert tool["trace_id"] == TRACE
    assert "alpha_add" in tool["error"]  # what the host was told: the name it meant
    assert '"password": "***"' in tool["arguments"] and SECRET not in tool["arguments"]
    assert calls["alpha_nope"]["kind"] == "prompt" and calls["alpha_nope"]["status"] == "rejected"
    assert calls["nope://nowhere"]["kind"] == "resource"
    assert [c["exposed"] for c in rejected] == ["nope://nowhere", "alpha_nope", "alpha_ad"]
    # Statistics are per server: the one call alpha took, no '' group.
    assert [(g["key"], g["count"]) for g in stats["groups"]] == [("alpha", 1)]


async def test_an_unknown_name_of_any_length_is_recorded_cut(tmp_path: Path) -> None:
    """The name of an unknown call is the host's to make up: a megabyte of it was stored
    whole (twice: the name and the answer quoting it) and shown on the dashboard."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    name = "alpha_" + "x" * 100_000
    async with Client(gateway.server) as client:
        assert (await client.call_tool_mcp(name, {})).is_error
        (record,) = (await client.call_tool("gateway_calls", {"status": "rejected"})
                     ).structured_content["calls"]
    assert record["exposed"] == f"{name[:256]}... ({len(name)} characters)"
    assert record["error"].startswith("Unknown tool") and len(record["error"]) < 2100


async def test_the_call_log_of_one_gateway(tmp_path: Path) -> None:
    """``gateway_calls(instance=...)``: the calls one gateway on a shared store served."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db", instance_id="gw-1")
    async with Client(gateway.server) as client:
        await client.call_tool("alpha_add", {"a": 1, "b": 2})
        mine = (await client.call_tool("gateway_calls", {"instance": "gw-1"})
                ).structured_content["calls"]
        other = (await client.call_tool("gateway_calls", {"instance": "gw-2"})
                 ).structured_content["calls"]
        too_long = await client.call_tool_mcp("gateway_calls", {"instance": "g" * 129})
    assert [(c["exposed"], c["instance_id"]) for c in mine] == [("alpha_add", "gw-1")]
    assert other == []
    assert too_long.is_error and "128" in str(too_long.content)


async def _files(folder: Path) -> list[anyio.Path]:
    return [path async for path in anyio.Path(folder).iterdir()]


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_stats_and_paging_through_admin_tools(tmp_path: Path, backend: str) -> None:
    db = tmp_path / "g.db" if backend == "sqlite" else Path("memory://")
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()}, db=db)
    async with Client(gateway.server) as client:
        for i in range(25):
            await client.call_tool("alpha_add", {"a": i, "b": 1})
        for _ in range(5):
            await client.call_tool_mcp("alpha_fail", {"message": "no"})
        await client.read_resource("data://alpha/config")
        stats = (await client.call_tool("gateway_stats", {})).structured_content
        (total,) = stats["groups"]
        assert total["count"] == 31 and total["errors"] == 5
        assert total["p50_ms"] is not None and total["p99_ms"] >= total["p50_ms"]
        assert stats["recorder"]["dropped"] == 0
        by_tool = (await client.call_tool("gateway_stats",
                                          {"group_by": "tool"})).structured_content
        counts = {g["key"]: g["count"] for g in by_tool["groups"]}
        assert counts == {"alpha_add": 25, "alpha_fail": 5, "data://alpha/config": 1}
        ids: list[str] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"limit": 7, "tool": "alpha_add"}
            if cursor:
                args["cursor"] = cursor
            page = (await client.call_tool("gateway_calls", args)).structured_content
            ids += [c["id"] for c in page["calls"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(ids) == len(set(ids)) == 25
        errors = (await client.call_tool("gateway_calls", {"status": "error"})).structured_content
        assert {c["exposed"] for c in errors["calls"]} == {"alpha_fail"}


async def test_without_a_store_the_log_tools_say_how_to_turn_it_on() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError, match="runs without one"):
            await client.call_tool("gateway_calls", {})


async def test_health_history_keeps_state_transitions(tmp_path: Path) -> None:
    from tests.fixtures import stdio_entry

    gateway = make_gateway({"well": stdio_entry("well.py"), "alpha": memory_entry("alpha")},
                           {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_disable_server", {"name": "well"})
        await client.call_tool("gateway_enable_server", {"name": "well"})
        store = gateway.store
        assert store is not None

        records = (await client.call_tool("gateway_health_history",
                                          {"name": "well"})).structured_content["records"]
        states = [r for r in reversed(records) if r["status"].islower()]  # oldest first
        # Enabled, it starts again ('starting': no "down" alert for an operator's enable).
        assert [r["status"] for r in states] == ["ready", "disabled", "starting", "ready"]
        assert states[1]["detail"] == "ready -> disabled"
        assert all(r["replica"] == "well" and r["server"] == "well" for r in records)
        everything = (await client.call_tool("gateway_health_history",
                                             {})).structured_content["records"]
        assert {r["server"] for r in everything} == {"well", "alpha"}



async def test_redaction_keys_are_configurable(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    gateway = make_gateway({"traced": memory_entry("traced")}, {"traced": traced_server(seen)},
                           db=tmp_path / "g.db", redact_keys=["text"])
    async with Client(gateway.server) as client:
        await client.call_tool("traced_echo", {"text": "confidential", "password": "visible"})
        (call,) = (await client.call_tool("gateway_calls", {})).data.calls
    assert '"text": "***"' in call.arguments and '"password": "visible"' in call.arguments


def call(i: int, at: float = 0.0) -> Invocation:
    return Invocation(id=f"c{i}", trace_id="t", client="stdio", kind="tool", exposed="a_x",
                      server="a", original="x", started_at=at or time.time(),
                      duration_ms=1.0, status="success")


async def test_the_recorder_writes_batches_and_applies_retention() -> None:
    store = MemoryStore()
    await store.add_invocations([call(i, at=1.0) for i in range(5)])  # long expired
    recorder = Recorder(store, batch_size=3, retention_seconds=3600, retention_rows=None,
                        prune_every=3600)
    retention = recorder.retention
    assert retention is not None
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run)
        assert await retention.ended(1)  # the first prune, at the start
        assert (await store.invocations())[0] == []
        for i in range(10, 17):
            recorder.record(call(i))
        assert await recorder.flushed(within=10)
        await store.add_invocations([call(i, at=1.0) for i in range(5)])
        retention.now()  # the next prune, asked for (else after prune_every)
        assert await retention.ended(2)
        recorder.record(call(17))
        assert await recorder.flushed(within=10)
        tg.cancel_scope.cancel()
    assert (retention.runs, retention.failures, retention.removed) == (2, 0, 10)
    rows, _ = await store.invocations(limit=100)
    assert sorted(r.id for r in rows) == [f"c{i}" for i in range(10, 18)]
    assert recorder.stats() == {"recorded": 8, "dropped": 0, "failed_writes": 0, "queued": 0,
                                "retention_runs": 2, "retention_failures": 0,
                                "retention_skipped": 0, "retention_removed": 10}


async def test_a_full_queue_drops_and_a_failed_write_is_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(MemoryStore(), capacity=2)
    for i in range(5):
        recorder.record(call(i))  # never blocks: nothing drains the queue yet
    assert recorder.stats() == {"recorded": 0, "dropped": 3, "failed_writes": 0, "queued": 2,
                                "retention_runs": 0, "retention_failures": 0,
                                "retention_skipped": 0, "retention_removed": 0}
    assert "queue full: 1 records dropped" in caplog.text

    async def broken(batch: list[int]) -> None:
        raise OSError("disk full")

    writer = BatchWriter[int](broken, what="numbers", flush_interval=0)
    await write_through(writer, 1, 2)
    assert writer.failed_writes == 2 and writer.written == 0
    assert "could not write" in caplog.text and "numbers: disk full" in caplog.text


async def test_a_batch_is_written_once_full_or_at_the_flush_interval_and_at_stop() -> None:
    """The writer sleeps between batches (not woken per item, which cost every call two
    turns of the event loop): a full batch wakes it at once, a partial one waits for the
    flush interval (an hour here) or the stop, which writes it."""
    batches: list[list[int]] = []

    async def write(batch: list[int]) -> None:
        batches.append(list(batch))

    writer = BatchWriter[int](write, what="numbers", batch_size=3, flush_interval=3600)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        writer.put(1)
        for _ in range(20):  # the writer has taken 1 and sleeps: nothing is written
            await anyio.lowlevel.checkpoint()
        assert batches == [] and writer.pending == 1
        writer.put(2)
        writer.put(3)
        assert await writer.flushed(within=30)
        assert batches == [[1, 2, 3]]
        for n in range(4, 10):
            writer.put(n)
        assert await writer.flushed(within=30)  # two full batches' worth: no hour's wait
        writer.put(10)
        tg.cancel_scope.cancel()
    assert batches == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]] and writer.pending == 0


def _refusing_server(tag: str) -> Any:
    """Answers a prompt get and a resource read with a JSON-RPC error (not a result)."""
    from fastmcp import FastMCP
    mcp: Any = FastMCP(f"refusing-{tag}")

    @mcp.prompt
    def pick(kind: str) -> str:
        raise ValueError(f"Invalid kind: {kind}. Must be Text or Blob.")

    @mcp.resource("data://broken")
    def broken() -> str:
        raise ValueError("cannot read it")

    return mcp


async def test_an_upstream_error_answer_names_the_replica_that_gave_it(tmp_path: Path) -> None:
    """A prompt get or resource read the upstream answered with a JSON-RPC error was
    recorded with no ``replica`` and no ``route``: on a server of several replicas the
    operator could not tell which one refused (found behind server-everything's
    ``resource-prompt``)."""
    gateway = make_gateway({"svc": {"instances": [
        {"url": "http://127.0.0.1:9/in-memory/a"}]}},
        {"a": _refusing_server("a")}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        with pytest.raises(Exception, match="Invalid kind"):
            await client.get_prompt("svc_pick", {"kind": "x"})
        with pytest.raises(Exception, match="cannot read it"):
            await client.read_resource("data://svc/broken")
        calls = (await client.call_tool("gateway_calls", {"status": "error"})
                 ).structured_content["calls"]
    assert {c["exposed"] for c in calls} == {"svc_pick", "data://svc/broken"}
    for record in calls:
        assert record["replica"] == "svc", record
        assert record["route"] == [{"replica": "svc", "outcome": "ok"}], record
