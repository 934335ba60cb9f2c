"""Shared fakes: small real MCP upstream servers and helpers to put a gateway in front.

In-memory upstreams are real FastMCP servers reached through fastmcp's in-memory
transport; their config entries carry a loopback URL that is never dialled, because
``memory_transports`` maps the server name to the in-memory server instead.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import anyio
import mcp_types as types
from fastmcp import Context, FastMCP
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import ClientTransport, FastMCPTransport
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import ToolResult

from fast_mcp_gateway import Gateway, GatewaySettings, parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.replica import RestartPolicy, default_transport

SERVERS = Path(__file__).parent / "servers"
PY = sys.executable
WITHIN = 40.0  # generous bound for a loaded two-core machine; waits end on conditions


async def until(condition: Callable[[], object], within: float = WITHIN) -> None:
    """Wait (bounded) until ``condition()`` holds: state another process or task changes
    with no event to wait on (a host's log and progress handlers run as their own tasks,
    so a call's answer can reach the caller before its notifications are handled)."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - no event tells us
            await anyio.sleep(0.02)


async def cancel_once_started(client: Any, events: dict[str, Any], within: float = 30) -> None:
    """Call ``interactive_server(events)``'s ``inter_wait_for_cancel`` through ``client``
    and, once the upstream runs it (``events["started"]``, made anew with ``cancelled``),
    cancel the call: a host giving up on it.  ``events["cancelled"]`` tells the upstream's end."""
    events.update(started=anyio.Event(), cancelled=anyio.Event())
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool_mcp, "inter_wait_for_cancel", {})
        with anyio.fail_after(within):
            await events["started"].wait()
        tg.cancel_scope.cancel()


class ToolsChanged(MessageHandler):
    """Counts a host's ``tools/list_changed`` notifications; ``next(within)`` waits for
    the first one since the previous ``next``, at most ``within`` seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.event = anyio.Event()

    async def on_tool_list_changed(self, message: object) -> None:
        self.count += 1
        self.event.set()

    async def next(self, within: float) -> None:
        with anyio.fail_after(within):
            await self.event.wait()
        self.event = anyio.Event()


async def stopped(process: Any, within: float = 10) -> None:
    """End a test's server ``process`` (an anyio ``Process``): SIGTERM, and SIGKILL if it
    has not ended ``within`` seconds later."""
    process.terminate()
    with anyio.move_on_after(within):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


def memory_transports(servers: Mapping[str, FastMCP[Any]]):
    """A transport factory: named servers in memory, everything else for real."""

    def factory(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
        if config.url and "/in-memory/" in config.url:
            key = config.url.rsplit("/in-memory/", 1)[1]
            if key in servers:
                return FastMCPTransport(servers[key])
        if config.name in servers:
            return FastMCPTransport(servers[config.name])
        return default_transport(config, stderr)

    return factory


def held_until(gate: anyio.Event) -> Any:
    """A FastMCP ``lifespan`` that holds the server's sessions until ``gate`` is set (a
    server slow to start, for as long as a test wants)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastMCP[Any]) -> AsyncIterator[dict[str, Any]]:
        await gate.wait()
        yield {}

    return lifespan


def memory_entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"url": f"http://127.0.0.1:9/in-memory/{name}", **extra}


def stdio_entry(script: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"command": PY, "args": [str(SERVERS / script), *args], **extra}


FAST_RESTART = RestartPolicy(initial=0.05, maximum=0.2, jitter=0.0, crash_limit=3,
                             crash_window=30.0)


def as_schema_version(patch: Any, version: int) -> None:
    """With ``patch`` (a ``monkeypatch`` or its ``context()``): SQLite stores are opened
    as a gateway of schema ``version`` opened them -- the first ``version`` migrations,
    and no check against the current ``COLUMNS`` (the current version's) -- to make a
    file exactly as that version left it."""
    from fast_mcp_gateway.store import sqlite_schema

    async def no_check(db: Any, path: str) -> None:
        """An older version's columns are not the current ones."""

    patch.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:version])
    patch.setattr(sqlite_schema, "SCHEMA_VERSION", version)
    patch.setattr(sqlite_schema, "_check_columns", no_check)


async def write_through(writer: Any, *items: Any) -> None:
    """Run ``writer`` (a ``BatchWriter``), put ``items``, and stop it once they are all
    taken care of (written, or their write failed: ``flushed``)."""
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        for item in items:
            writer.put(item)
        assert await writer.flushed(within=10)
        tg.cancel_scope.cancel()


def make_gateway(
    servers: Mapping[str, dict[str, Any]],
    memory: Mapping[str, FastMCP[Any]] | None = None,
    *,
    options: dict[str, Any] | None = None,
    restart: RestartPolicy = FAST_RESTART,
    **settings: Any,
) -> Gateway:
    config = parse_config({"gateway": options or {}, "servers": dict(servers)}, source="test")
    settings.setdefault("connect_timeout", 10.0)
    settings.setdefault("db", None)  # no store unless a test asks for one
    # In-process tests start serving once every upstream made its first attempt (an
    # event, not a time): the bound is only a guard.  tests/test_startup.py sets it.
    settings.setdefault("startup_wait", 600.0)
    return Gateway(
        config,
        GatewaySettings(**settings),
        transport_factory=memory_transports(memory or {}),
        restart=restart,
    )


def alpha_server() -> FastMCP[Any]:
    """Tools with every kind of result, resources, a template, a prompt, completions."""
    mcp = FastMCP("alpha", instructions="alpha upstream")

    @mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": True}, meta={"team": "a"},
              title="Add numbers")
    def add(a: int, b: int) -> int:
        """Add two ints."""
        return a + b

    @mcp.tool(annotations={"destructiveHint": True})
    def wipe() -> str:
        """Pretend to wipe everything."""
        return "wiped"

    @mcp.tool
    def fail(message: str) -> str:
        """Always fails with the given message."""
        raise ToolError(message)

    @mcp.tool
    def media() -> ToolResult:
        """Return one content block of every kind."""
        return ToolResult(
            content=[
                types.TextContent(type="text", text="héllo ✓"),
                types.ImageContent(type="image", data="aW1n", mime_type="image/png"),
                types.AudioContent(type="audio", data="YXVk", mime_type="audio/wav"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(uri="data://x", text="embedded",
                                                       mime_type="text/plain"),
                ),
            ],
            structured_content={"ok": True, "n": 4},
            meta={"origin": "alpha"},
        )

    @mcp.tool
    async def progress(ctx: Context, steps: int = 5, tag: str = "") -> str:
        """Report `steps` progress notifications and logs."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"{tag}:{i + 1}")
            await ctx.info(f"{tag} log {i + 1}")
            await anyio.sleep(0.001)
        return f"{tag} done"

    @mcp.tool
    async def slow(seconds: float) -> str:
        """Sleep, then answer (for timeouts and cancellation)."""
        await anyio.sleep(seconds)
        return "slept"

    @mcp.resource("data://config", mime_type="application/json")
    def config() -> dict[str, str]:
        return {"name": "alpha"}

    @mcp.resource("urn:alpha:settings")
    def urn_settings() -> str:
        return "urn-alpha"

    @mcp.resource("data://items/{item_id}")
    def item(item_id: str) -> str:
        return f"item-{item_id}"

    @mcp.resource("bin://blob", mime_type="application/octet-stream")
    def blob() -> bytes:
        return b"\x00\x01\x02"

    @mcp.prompt(title="Greeting")
    def greet(name: str, mood: str = "happy") -> str:
        """Greet someone."""
        return f"Hello {name}, you seem {mood}"

    return mcp


def beta_server() -> FastMCP[Any]:
    """A second upstream whose names collide with alpha's when unprefixed."""
    mcp = FastMCP("beta")

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add, the beta way."""
        return a + b + 1000

    @mcp.tool
    def echo(text: str) -> str:
        return text

    @mcp.resource("urn:alpha:settings")
    def urn_settings() -> str:
        return "urn-beta"

    @mcp.prompt
    def greet(name: str) -> str:
        return f"Hi {name} from beta"

    return mcp


def interactive_server(events: dict[str, Any] | None = None) -> FastMCP[Any]:
    """An upstream that asks its client things: elicitation, sampling, roots, guards."""
    mcp = FastMCP("inter")
    seen = events if events is not None else {}

    @mcp.tool
    async def ask(ctx: Context) -> str:
        """Handshake era: elicit a name with a pushed request."""
        result = await ctx.elicit("Your name?", response_type=str)
        return f"{result.action}:{getattr(result, 'data', None)}"

    @mcp.tool
    async def sample(ctx: Context) -> str:
        """Handshake era: ask the host's model."""
        result = await ctx.session.create_message(
            messages=[types.SamplingMessage(role="user",
                                            content=types.TextContent(type="text", text="hi"))],
            max_tokens=10,
        )
        return f"{result.model}:{result.content.text}"

    @mcp.tool
    async def roots(ctx: Context) -> list[str]:
        """Handshake era: the host's roots."""
        listed = await ctx.session.list_roots()
        return [str(r.uri) for r in listed.roots]

    @mcp.tool
    async def ask_guard(ctx: Context) -> Any:
        """2026-07-28: return an ask, answer once the client retries with responses."""
        answers = ctx.input_responses or {}
        if "name" in answers:
            answer = answers["name"]
            return f"guard:{answer.action}:{(answer.content or {}).get('name')}"
        from fastmcp.tools.base import InputRequiredToolResult

        return InputRequiredToolResult(types.InputRequiredResult(
            input_requests={"name": types.ElicitRequest(params=types.ElicitRequestFormParams(
                message="Your name?",
                requested_schema={"type": "object",
                                  "properties": {"name": {"type": "string"}},
                                  "required": ["name"]},
            ))},
            request_state="asked-once",
        ))

    @mcp.tool
    async def wait_for_cancel(ctx: Context) -> str:
        """Block until cancelled, and record that the cancellation arrived."""
        seen["started"].set()
        try:
            await anyio.sleep_forever()
        finally:
            seen["cancelled"].set()
        return "unreachable"

    @mcp.tool
    async def grow(ctx: Context, name: str) -> str:
        """Add a tool at runtime and tell the client its list changed."""

        def extra() -> str:
            return f"{name} works"

        mcp.tool(extra, name=name)
        await ctx.send_notification(types.ToolListChangedNotification())
        return f"added {name}"

    @mcp.prompt
    def poem(theme: str) -> str:
        return f"Write a poem about {theme}"

    @mcp.resource("docs://{section}")
    def docs(section: str) -> str:
        return f"docs for {section}"

    @mcp.completion
    def complete(ref: Any, argument: Any, context: Any) -> list[str] | None:
        if isinstance(ref, types.PromptReference) and argument.name == "theme":
            return [o for o in ("nature", "night", "love") if o.startswith(argument.value)]
        if isinstance(ref, types.ResourceTemplateReference) and argument.name == "section":
            return [o for o in ("intro", "install") if o.startswith(argument.value)]
        return None

    return mcp


@contextlib.asynccontextmanager
async def serve_http(app: Any, *, startup: bool = True, http: Any = "auto",
                     keep_alive: int = 5) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port); yield its base URL.

    The gateway's app serves before its upstreams connect; with ``startup`` this waits
    (on the start-up gate's event) until each upstream made its first attempt.  ``http``
    is uvicorn's protocol (``serve`` passes ``http/slow_clients.protocol_with_timeout``),
    ``keep_alive`` its ``timeout_keep_alive``."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           log_config=None, http=http,
                                           timeout_keep_alive=keep_alive))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            gate = getattr(app.state, "startup_gate", None) if startup else None
            if gate is not None:
                await gate.attempted.wait()
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
    sock.close()


def watched_server() -> FastMCP[Any]:
    """An upstream with resource subscriptions and a 2026-07-28 listen stream.

    FastMCP serves neither by itself, so this registers the SDK's handlers, as a
    hand-written server would.
    """
    from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

    mcp = FastMCP("watch")
    state = {"count": 0}
    subscribers: list[Any] = []
    bus = InMemorySubscriptionBus()

    @mcp.resource("watch://counter")
    def counter() -> str:
        return str(state["count"])

    @mcp.tool
    async def bump() -> int:
        state["count"] += 1
        for connection in subscribers:
            await connection.send_resource_updated("watch://counter")
        return state["count"]

    @mcp.tool
    async def grow(name: str) -> str:
        mcp.tool(lambda: f"{name} works", name=name)
        await bus.publish(ToolsListChanged())
        return f"added {name}"

    async def on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscribers.append(ctx.session._connection)
        return types.EmptyResult()

    async def on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        subscribers.clear()
        return types.EmptyResult()

    low = mcp._mcp_server
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                            on_unsubscribe)
    low.add_request_handler("subscriptions/listen", types.SubscriptionsListenRequestParams,
                            ListenHandler(bus))
    return mcp


def long_named_server() -> FastMCP[Any]:
    mcp = FastMCP("long")
    for suffix in ("alpha", "beta"):
        name = "summarize_the_quarterly_financial_report_for_the_board_" + suffix

        def make(s: str = suffix) -> str:
            return s

        mcp.tool(make, name=name)
    return mcp


def replica_server(tag: str, calls: list[str] | None = None) -> FastMCP[Any]:
    """A replica that says who it is; ``calls`` records every call it ran."""
    mcp = FastMCP(f"replica-{tag}")
    ran = calls if calls is not None else []

    @mcp.tool(annotations={"readOnlyHint": True})
    def whoami(user_id: str = "") -> str:
        ran.append(tag)
        return tag

    @mcp.tool
    def write(value: str) -> str:
        """Not idempotent."""
        ran.append(f"{tag}:{value}")
        return tag

    @mcp.tool(annotations={"readOnlyHint": True})
    async def slow(seconds: float) -> str:
        await anyio.sleep(seconds)
        return tag

    return mcp


def flaky_server() -> FastMCP[Any]:
    """Every other call ends in an error result (an answer, not a transport fault)."""
    mcp = FastMCP("flaky")
    count = {"n": 0}

    @mcp.tool(annotations={"readOnlyHint": True})
    def coin() -> str:
        count["n"] += 1
        if count["n"] % 2 == 0:
            raise ToolError(f"upstream failure #{count['n']}")
        return f"ok #{count['n']}"

    return mcp


def traced_server(seen: list[dict[str, Any]]) -> FastMCP[Any]:
    """Records the ``_meta`` each call arrived with (to check trace propagation)."""
    mcp = FastMCP("traced")

    @mcp.tool
    def echo(ctx: Context, text: str, password: str = "") -> str:
        seen.append(dict(ctx.request_context.meta or {}))
        return text

    @mcp.tool
    def fail() -> str:
        raise ToolError("it broke")

    return mcp
