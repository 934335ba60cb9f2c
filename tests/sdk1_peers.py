"""The mcp 1.x SDK server of ``tests/servers/sdk1.py`` on each transport 1.x offers, and
what a FastMCP 4 host observes of it, directly or through a gateway.

``observe`` drives one session through everything the server does and returns what the
host saw, with the gateway's namespace taken off names and URIs, so a direct session's
observation and a relayed one's compare equal when the relay is faithful.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import SSETransport, StdioTransport, StreamableHttpTransport

from tests import py_tools
from tests.fixtures import SERVERS, stopped, until

SCRIPT = SERVERS / "sdk1.py"
TRANSPORTS = ["stdio", "sse", "http"]
MODEL_REPLY = "a reply from the host's model"


def sdk1_python() -> Path:
    """The Python with mcp 1.x (installed on first use); without it a skip saying how to
    get it, a failure under ``CI=true`` (``.ci/run`` installs it before the tests)."""
    try:
        return py_tools.ensure()
    except py_tools.PyToolsError as failed:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{failed} -- CI must run the mcp 1.x SDK tests", pytrace=False)
        pytest.skip(str(failed))


@asynccontextmanager
async def sdk1_server(python: Path, transport: str, tmp_path: Path
                      ) -> AsyncIterator[dict[str, Any]]:
    """The server on ``transport``; yields its gateway config entry (a stdio entry is
    started by whoever uses it; an SSE or HTTP one is listening on 127.0.0.1)."""
    if transport == "stdio":
        yield {"command": str(python), "args": [str(SCRIPT), "stdio"]}
        return
    port_file = tmp_path / f"sdk1-{transport}.port"
    port_file.unlink(missing_ok=True)
    process = await anyio.open_process([str(python), str(SCRIPT), transport, str(port_file)],
                                       stdout=None, stderr=None)
    try:
        await until(lambda: port_file.exists() and port_file.read_text() != "", within=60)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        yield ({"url": f"{base}/sse", "transport": "sse"} if transport == "sse"
               else {"url": f"{base}/mcp"})
    finally:
        await stopped(process)


def direct_transport(entry: dict[str, Any]) -> Any:
    """A FastMCP client transport straight to the server of ``entry``."""
    if "command" in entry:
        return StdioTransport(entry["command"], entry["args"], keep_alive=False)
    if entry.get("transport") == "sse":
        return SSETransport(entry["url"])
    return StreamableHttpTransport(entry["url"])


class Seen:
    """What the host's handlers were given: asks, logs, progress."""

    def __init__(self) -> None:
        self.asks: list[tuple[str, Any]] = []
        self.logs: list[tuple[str, Any]] = []
        self.progress: list[tuple[float, float | None, str | None]] = []
        self.errors: dict[str, str] = {}

    async def sample(self, messages: Any, params: Any, context: Any) -> str:
        self.asks.append(("sampling", [m.content.text for m in messages]))
        return MODEL_REPLY

    async def elicit(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asks.append(("elicitation", (message, params.requested_schema)))
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def log(self, message: types.LoggingMessageNotificationParams) -> None:
        self.logs.append((message.level, message.data))

    async def on_progress(self, progress: float, total: float | None,
                          message: str | None) -> None:
        self.progress.append((progress, total, message))

    def client(self, target: Any, mode: Any = "auto") -> Client[Any]:
        return Client(target, mode=mode, sampling_handler=self.sample,
                      elicitation_handler=self.elicit, log_handler=self.log,
                      progress_handler=self.on_progress, timeout=60)


def _plain(item: Any) -> Any:
    """``item`` as JSON, less the serverInfo a 2026-07-28 session stamps on each result."""
    plain = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    meta = plain.get("_meta") or {}
    meta.pop("io.modelcontextprotocol/serverInfo", None)
    if "_meta" in plain and not meta:
        del plain["_meta"]
    return plain


async def observe(client: Client[Any], seen: Seen, prefix: str = "",
                  uri: tuple[str, str] = ("", "")) -> dict[str, Any]:
    """Everything the 1.x server does, through ``client``: names carry ``prefix`` and
    URIs start with ``uri[1]`` in place of ``uri[0]`` when relayed; both are taken off."""
    def bare(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: bare(v) for k, v in value.items()}
        if isinstance(value, list):
            return [bare(v) for v in value]
        if isinstance(value, str) and uri[1] and value.startswith(uri[1]):
            return uri[0] + value[len(uri[1]):]
        return value

    def named(items: list[Any], prefixed: bool = True) -> list[Any]:
        out = [bare(_plain(i)) for i in items if not prefixed or i.name.startswith(prefix)]
        for i in out:  # the gateway's own tools are not the server's
            if prefixed:
                i["name"] = i["name"][len(prefix):]
        return sorted(out, key=lambda i: i.get("name", ""))

    seen_of: dict[str, Any] = {
        "tools": named(await client.list_tools()),
        "resources": named(await client.list_resources(), prefixed=False),
        "templates": named(await client.list_resource_templates(), prefixed=False),
        "prompts": named(await client.list_prompts()),
    }
    calls: dict[str, Any] = {}
    for name, arguments in [("add", {"a": 2, "b": 40}), ("weather", {"city": "Oslo"}),
                            ("echo", {"text": "héllo ✓"}), ("greet", {}),
                            ("summarize", {"text": "a long text"}),
                            ("fail", {"reason": "asked"}), ("add", {"a": "x"})]:
        result = await client.call_tool_mcp(prefix + name, arguments)
        calls[f"{name}{sorted(arguments.items())}"] = bare(_plain(result))
    count = await client.call_tool_mcp(prefix + "count", {"steps": 3})
    calls["count"] = _plain(count)
    await until(lambda: len(seen.progress) >= 3 and len(seen.logs) >= 3)
    seen_of["calls"] = calls
    greeting = await client.read_resource_mcp(uri[1] + "data://sdk1/greeting"[len(uri[0]):]
                                              if uri[1] else "data://sdk1/greeting")
    seen_of["greeting"] = bare(_plain(greeting))
    item_uri = "data://sdk1/items/pear"
    read = await client.read_resource_mcp(uri[1] + item_uri[len(uri[0]):] if uri[1] else item_uri)
    seen_of["item"] = bare(_plain(read))
    seen_of["review"] = _plain(await client.get_prompt_mcp(
        prefix + "review", {"code": "x = 1", "language": "perl"}))
    seen_of["hello"] = _plain(await client.get_prompt_mcp(prefix + "hello"))
    seen_of["complete_prompt"] = _plain(await client.complete_mcp(
        types.PromptReference(type="ref/prompt", name=prefix + "review"),
        {"name": "language", "value": "p"}))
    errors = {}
    for label, attempt in [
            ("unknown prompt", client.get_prompt_mcp(prefix + "nope")),
            ("unknown resource", client.read_resource_mcp(
                (uri[1] + "data://sdk1/nope"[len(uri[0]):]) if uri[1] else "data://sdk1/nope"))]:
        try:
            await attempt
        except Exception as error:  # noqa: BLE001 - compared, not handled
            # The code; the words are the gateway's where it knows better (a prompt it
            # does not list is refused naming the server's prompts).
            errors[label] = getattr(getattr(error, "error", None), "code", repr(error))
            seen.errors[label] = str(error)
        else:
            errors[label] = "no error"
    seen_of["errors"] = errors
    seen_of["asks"] = seen.asks
    seen_of["logs"] = seen.logs
    seen_of["progress"] = seen.progress
    return seen_of
