"""What an upstream says during a call reaches the calling host, and only it."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.messages import MessageHandler

from tests.fixtures import (
    alpha_server,
    interactive_server,
    make_gateway,
    memory_entry,
    until,
)

pytestmark = pytest.mark.anyio


async def test_concurrent_callers_each_get_only_their_own_progress() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    seen: dict[str, list[str]] = {"A": [], "B": []}

    async def caller(tag: str) -> None:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen[tag].append(message or "")

        async with Client(gateway.server, progress_handler=on_progress) as client:
            result = await client.call_tool("alpha_progress", {"steps": 10, "tag": tag})
            assert result.data == f"{tag} done"
            await until(lambda: len(seen[tag]) >= 10)  # handlers run as their own tasks

    # One client keeps the gateway (and its upstream session) up across both callers.
    async with Client(gateway.server), anyio.create_task_group() as tg:
        tg.start_soon(caller, "A")
        tg.start_soon(caller, "B")
    assert seen["A"] == [f"A:{i}" for i in range(1, 11)]
    assert seen["B"] == [f"B:{i}" for i in range(1, 11)]


async def test_logs_reach_the_single_caller_and_never_a_stranger() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    logs: dict[str, list[str]] = {"A": [], "B": []}

    def handler(tag: str) -> Any:
        async def on_log(message: Any) -> None:
            logs[tag].append(str(message.data.get("msg") if isinstance(message.data, dict)
                                 else message.data))
        return on_log

    async with Client(gateway.server, log_handler=handler("A")) as a:
        await a.call_tool("alpha_progress", {"steps": 3, "tag": "A"})
        await until(lambda: len(logs["A"]) >= 3)  # handlers run as their own tasks
        assert logs["A"] == ["A log 1", "A log 2", "A log 3"]
        async with (Client(gateway.server, log_handler=handler("B")) as b,
                    anyio.create_task_group() as tg):
            tg.start_soon(a.call_tool, "alpha_progress", {"steps": 5, "tag": "A"})
            tg.start_soon(b.call_tool, "alpha_progress", {"steps": 5, "tag": "B"})
    assert all(line.startswith("A") for line in logs["A"])
    assert all(line.startswith("B") for line in logs["B"])


async def _elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
    (field,) = params.requested_schema["properties"]  # "value" (ctx.elicit(str)) or "name"
    return ElicitResult(action="accept", content={field: "Ada"})


async def _sample(messages: Any, params: Any, context: Any) -> str:
    return "sampled-by-host"


async def test_handshake_era_sampling_elicitation_and_roots_are_relayed() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="legacy")},
                           {"inter": interactive_server()})
    async with Client(gateway.server, mode="legacy", elicitation_handler=_elicit,
                      sampling_handler=_sample, roots=["file:///work/project"]) as client:
        assert client.protocol_version == "2025-11-25"
        assert (await client.call_tool("inter_ask", {})).data == "accept:Ada"
        assert (await client.call_tool("inter_sample", {})).data.endswith(":sampled-by-host")
        assert (await client.call_tool("inter_roots", {})).data == ["file:///work/project"]


async def test_sampling_without_a_capable_host_is_a_clear_error() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="legacy")},
                           {"inter": interactive_server()})
    async with Client(gateway.server, mode="legacy") as client:
        result = await client.call_tool_mcp("inter_sample", {})
        assert result.is_error
        assert "no connected host that supports sampling" in result.content[0].text


async def test_2026_asks_are_relayed_as_input_required_results() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="2026-07-28")},
                           {"inter": interactive_server()})
    async with Client(gateway.server, elicitation_handler=_elicit) as client:
        assert client.protocol_version == "2026-07-28"
        assert gateway.manager.get("inter").replicas[0].protocol_version == "2026-07-28"
        result = await client.call_tool("inter_ask_guard", {})
        assert result.content[0].text == "guard:accept:Ada"
        # The upstream's connection metadata is not relayed; the gateway stamps its own.
        assert result.meta["io.modelcontextprotocol/serverInfo"]["name"] == "fast-mcp-gateway"


async def test_host_cancellation_reaches_the_upstream() -> None:
    events = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway({"inter": memory_entry("inter", protocol="2026-07-28")},
                           {"inter": interactive_server(events)})
    async with Client(gateway.server) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool_mcp, "inter_wait_for_cancel", {})
        with anyio.fail_after(10):
            await events["started"].wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(10):
        await events["cancelled"].wait()


class _Recorder(MessageHandler):
    def __init__(self) -> None:
        self.tools_changed = anyio.Event()

    async def on_tool_list_changed(self, message: types.ToolListChangedNotification) -> None:
        self.tools_changed.set()


async def test_upstream_list_changed_refreshes_and_notifies_handshake_hosts() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="legacy")},
                           {"inter": interactive_server()})
    recorder = _Recorder()
    async with Client(gateway.server, mode="legacy", message_handler=recorder) as client:
        assert "inter_fresh" not in {t.name for t in await client.list_tools()}
        await client.call_tool("inter_grow", {"name": "fresh"})
        with anyio.fail_after(10):
            await recorder.tools_changed.wait()
        assert "inter_fresh" in {t.name for t in await client.list_tools()}
        assert (await client.call_tool("inter_fresh", {})).data == "fresh works"


async def test_catalog_changes_reach_2026_hosts_on_their_listen_stream() -> None:
    from mcp.client.subscriptions import listen

    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        assert client.protocol_version == "2026-07-28"
        async with listen(client.session, tools_list_changed=True) as subscription:
            await client.call_tool("gateway_disable_server", {"name": "alpha"})
            with anyio.fail_after(10):
                event = await subscription.__anext__()
        assert type(event).__name__ == "ToolsListChanged"
        assert not any(t.name.startswith("alpha_") for t in await client.list_tools())


async def test_completions_are_forwarded_for_prompts_and_templates() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="2026-07-28")},
                           {"inter": interactive_server()})
    async with Client(gateway.server) as client:
        result = await client.complete(types.PromptReference(type="ref/prompt",
                                                             name="inter_poem"),
                                       {"name": "theme", "value": "n"})
        assert result.values == ["nature", "night"]
        result = await client.complete(
            types.ResourceTemplateReference(type="ref/resource", uri="docs://inter/{section}"),
            {"name": "section", "value": "in"},
        )
        assert result.values == ["intro", "install"]


async def test_2026_asks_are_answered_through_a_handshake_era_host() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="2026-07-28")},
                           {"inter": interactive_server()})
    async with Client(gateway.server, mode="legacy", elicitation_handler=_elicit) as client:
        assert client.protocol_version == "2025-11-25"
        assert gateway.manager.get("inter").replicas[0].protocol_version == "2026-07-28"
        result = await client.call_tool("inter_ask_guard", {})
        assert result.content[0].text == "guard:accept:Ada"


async def test_an_ask_the_host_cannot_answer_is_a_clear_error() -> None:
    gateway = make_gateway({"inter": memory_entry("inter", protocol="2026-07-28")},
                           {"inter": interactive_server()})
    async with Client(gateway.server, mode="legacy") as client:  # no elicitation handler
        result = await client.call_tool_mcp("inter_ask_guard", {})
        assert result.is_error
        assert "asked the host for elicitation/create, which failed" in result.content[0].text
