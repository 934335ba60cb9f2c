"""Upstream fixture for the MCP conformance suite (``@modelcontextprotocol/conformance``).

A FastMCP server implementing the suite's *server* scenarios (conformance 0.1.16):
the exact tool, resource, template and prompt names, URIs and behaviours its checks
look for -- text/image/audio/embedded/mixed content, logging, progress, sampling,
elicitation (including SEP-1034 defaults and SEP-1330 enums), resources and a
template, subscribe/unsubscribe, prompts, completion, a JSON Schema 2020-12 tool
and DNS-rebinding protection.  Run directly, it passes every check of
``--suite all``.  ``tests/conformance/run.py`` also puts it *behind* the gateway
(as a streamable-HTTP and as a stdio upstream, namespace ``""``) and requires
the gateway to pass every check that the fixture passes directly.

Run::

    python tests/conformance/fixture.py PORT               # streamable HTTP, 127.0.0.1:PORT/mcp
    python tests/conformance/fixture.py PORT --resumable   # ... plus an EventStore (SSE polling)
    python tests/conformance/fixture.py --stdio            # stdio

It behaves the same on both protocol eras, because the gateway may reach it on
either one (``protocol: auto`` picks 2026-07-28, while the suite's client speaks
2025-11-25 to the gateway): sampling and elicitation use the session back-channel
on handshake-era connections and ``input_required`` results (SEP-2322) on
2026-07-28 ones; subscriptions are served as ``resources/subscribe`` and as
``subscriptions/listen``.

It only ever binds 127.0.0.1.  Built on fastmcp 4.1.2 / mcp 2.3.0; it uses a few
SDK-level calls that fastmcp does not wrap (raw-schema elicitation, sampling,
resource subscriptions), noted where they occur.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import sys
import warnings
import wave
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.tools.base import Tool, ToolResult
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

HOST = "127.0.0.1"
INPUT_KEY = "input"  # the key of the one input request a tool makes (SEP-2322)

# 1x1 red PNG.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
    "2mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _tiny_wav_b64() -> str:
    """A 10 ms silent mono 16-bit 8 kHz WAV, base64-encoded."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return base64.b64encode(buf.getvalue()).decode()


WAV_B64 = _tiny_wav_b64()


def _image() -> mcp_types.ImageContent:
    return mcp_types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")


def _text(text: str) -> mcp_types.TextContent:
    return mcp_types.TextContent(type="text", text=text)


def _embedded(uri: str, text: str, mime_type: str = "text/plain") -> mcp_types.EmbeddedResource:
    return mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.TextResourceContents(uri=uri, mime_type=mime_type, text=text),
    )


# JSON Schema 2020-12 tool (scenario json-schema-2020-12, SEP-1613). The
# schema must reach tools/list verbatim, so the server is built with
# dereference_schemas=False (the default middleware inlines $ref and drops $defs).
JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


class RawSchemaTool(Tool):
    """A tool whose inputSchema is given verbatim rather than derived from a signature."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=[_text(f"Received: {json.dumps(arguments, sort_keys=True)}")])


def _is_modern(ctx: Context) -> bool:
    """True on a 2026-07-28 connection (no back-channel for server-initiated requests)."""
    rc = ctx.request_context
    return rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS


async def _ask(
    ctx: Context, request: mcp_types.CreateMessageRequest | mcp_types.ElicitRequest
) -> mcp_types.InputResponse | mcp_types.InputRequiredResult:
    """Ask the client for sampling or elicitation, in whichever way its era allows.

    Handshake era (<= 2025-11-25): a server-initiated request on the session's
    back-channel (fastmcp 4.x has no ``ctx.sample()``, and ``ctx.elicit()`` cannot
    take a raw schema).  2026-07-28: the multi-round-trip guard pattern (SEP-2322):
    return an ``InputRequiredResult`` on the first round, and read the client's
    answer from ``ctx.input_responses`` when it retries.
    """
    if _is_modern(ctx):
        answer = (ctx.input_responses or {}).get(INPUT_KEY)
        if answer is not None:
            return answer
        return mcp_types.InputRequiredResult(input_requests={INPUT_KEY: request})
    session = ctx.session
    if isinstance(request, mcp_types.CreateMessageRequest):
        params = request.params
        return await session.create_message(  # ty: ignore[deprecated]
            messages=params.messages,
            max_tokens=params.max_tokens,
            related_request_id=ctx.request_id,
        )
    form = request.params
    assert isinstance(form, mcp_types.ElicitRequestFormParams)
    return await session.elicit(
        message=form.message,
        requested_schema=form.requested_schema,
        related_request_id=ctx.request_id,
    )


def build_server() -> FastMCP:
    mcp = FastMCP("conformance-fixture", version="1.0.0", dereference_schemas=False)

    # ---- tools -----------------------------------------------------------
    @mcp.tool(description="Returns simple text content")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @mcp.tool(description="Returns image content (1x1 PNG)")
    def test_image_content() -> list[mcp_types.ContentBlock]:
        return [_image()]

    @mcp.tool(description="Returns audio content (WAV)")
    def test_audio_content() -> list[mcp_types.ContentBlock]:
        return [mcp_types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]

    @mcp.tool(description="Returns an embedded text resource")
    def test_embedded_resource() -> list[mcp_types.ContentBlock]:
        return [_embedded("test://embedded-resource", "This is an embedded resource content.")]

    @mcp.tool(description="Returns text, image and embedded resource content")
    def test_multiple_content_types() -> list[mcp_types.ContentBlock]:
        return [
            _text("Multiple content types test:"),
            _image(),
            _embedded(
                "test://mixed-content-resource",
                json.dumps({"test": "data", "value": 123}),
                mime_type="application/json",
            ),
        ]

    @mcp.tool(description="Sends three info log notifications while running")
    async def test_tool_with_logging(ctx: Context) -> str:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool(description="Always fails with isError: true")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @mcp.tool(description="Reports progress 0/100, 50/100, 100/100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress, 100)
        return "Tool with progress executed successfully"

    @mcp.tool(description="Requests LLM sampling from the client")
    async def test_sampling(prompt: str, ctx: Context) -> str | mcp_types.InputRequiredResult:
        result = await _ask(
            ctx,
            mcp_types.CreateMessageRequest(
                params=mcp_types.CreateMessageRequestParams(
                    messages=[mcp_types.SamplingMessage(role="user", content=_text(prompt))],
                    max_tokens=100,
                )
            ),
        )
        if isinstance(result, mcp_types.InputRequiredResult):
            return result
        content = getattr(result, "content", None)
        text = content.text if isinstance(content, mcp_types.TextContent) else str(content)
        return f"LLM response: {text}"

    async def _elicit(
        ctx: Context, message: str, schema: dict[str, Any]
    ) -> mcp_types.ElicitResult | mcp_types.InputRequiredResult:
        # Raw-schema elicitation: ctx.elicit() derives the schema from a type,
        # which cannot express defaults/enumNames/titled enums verbatim.
        request = mcp_types.ElicitRequest(
            params=mcp_types.ElicitRequestFormParams(message=message, requested_schema=schema)
        )
        result = await _ask(ctx, request)
        if isinstance(result, mcp_types.InputRequiredResult | mcp_types.ElicitResult):
            return result
        raise ToolError(f"expected an ElicitResult, got {type(result).__name__}")

    @mcp.tool(description="Requests user input (elicitation) from the client")
    async def test_elicitation(message: str, ctx: Context) -> str | mcp_types.InputRequiredResult:
        result = await _elicit(
            ctx,
            message,
            {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            },
        )
        if isinstance(result, mcp_types.InputRequiredResult):
            return result
        return f"User response: action={result.action}, content={json.dumps(result.content)}"

    @mcp.tool(description="Elicitation with defaults for every primitive type (SEP-1034)")
    async def test_elicitation_sep1034_defaults(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        result = await _elicit(
            ctx,
            "Please review and update the form fields with defaults",
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active",
                    },
                    "verified": {"type": "boolean", "description": "Verified", "default": True},
                },
                "required": [],
            },
        )
        if isinstance(result, mcp_types.InputRequiredResult):
            return result
        return (
            f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"
        )

    @mcp.tool(description="Elicitation with all five enum schema variants (SEP-1330)")
    async def test_elicitation_sep1330_enums(
        ctx: Context,
    ) -> str | mcp_types.InputRequiredResult:
        result = await _elicit(
            ctx,
            "Please select options from the enum fields",
            {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"},
                        ],
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"],
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]
                        },
                    },
                },
                "required": [],
            },
        )
        if isinstance(result, mcp_types.InputRequiredResult):
            return result
        return (
            f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"
        )

    mcp.add_tool(
        RawSchemaTool(
            name="json_schema_2020_12_tool",
            description="Tool with JSON Schema 2020-12 features",
            parameters=JSON_SCHEMA_2020_12,
        )
    )

    @mcp.tool(description="Closes the SSE stream mid-call, then returns (SEP-1699)")
    async def test_reconnection(ctx: Context) -> str:
        # No-op unless the app was built with an EventStore (see serve()).
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return "Reconnection test completed"

    # ---- resources -------------------------------------------------------
    @mcp.resource(
        "test://static-text",
        name="static-text",
        description="Static text resource",
        mime_type="text/plain",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource(
        "test://static-binary",
        name="static-binary",
        description="Static binary resource (PNG)",
        mime_type="image/png",
    )
    def static_binary() -> bytes:
        return base64.b64decode(PNG_B64)

    @mcp.resource(
        "test://watched-resource",
        name="watched-resource",
        description="Resource clients may subscribe to",
        mime_type="text/plain",
    )
    def watched_resource() -> str:
        return "Watched resource content"

    @mcp.resource(
        "test://template/{id}/data",
        name="template-data",
        description="Templated resource",
        mime_type="application/json",
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    # resources/subscribe + resources/unsubscribe: fastmcp 4.1.2 has no public
    # API for these; registering the SDK handlers also makes the low-level
    # server advertise capabilities.resources.subscribe.
    subscriptions: set[str] = set()

    async def on_subscribe(
        _ctx: Any, params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        subscriptions.add(str(params.uri))
        return mcp_types.EmptyResult()

    async def on_unsubscribe(
        _ctx: Any, params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        subscriptions.discard(str(params.uri))
        return mcp_types.EmptyResult()

    low_level = mcp._mcp_server
    # The 2026-07-28 era has no resources/subscribe: subscriptions (and list_changed)
    # travel on subscriptions/listen streams, and serving that method is what makes
    # the low-level server advertise resources.subscribe / listChanged on that era.
    low_level.add_request_handler(
        "subscriptions/listen",
        mcp_types.SubscriptionsListenRequestParams,
        ListenHandler(InMemorySubscriptionBus()),
    )
    low_level.add_request_handler(
        "resources/subscribe", mcp_types.SubscribeRequestParams, on_subscribe
    )
    low_level.add_request_handler(
        "resources/unsubscribe", mcp_types.UnsubscribeRequestParams, on_unsubscribe
    )

    # ---- prompts ---------------------------------------------------------
    @mcp.prompt(description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(description="A prompt with two required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    # `resourceUri` is the wire argument name the suite sends.
    @mcp.prompt(description="A prompt embedding a resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        return [
            Message(_embedded(resourceUri, "Embedded resource content for testing.")),
            Message("Please process the embedded resource above."),
        ]

    @mcp.prompt(description="A prompt with image content")
    def test_prompt_with_image() -> list[Message]:
        return [Message(_image()), Message("Please analyze the image above.")]

    # ---- completion ------------------------------------------------------
    @mcp.completion
    def complete(ref: Any, argument: mcp_types.CompletionArgument, _context: Any) -> list[str]:
        if isinstance(ref, mcp_types.PromptReference) and ref.name == "test_prompt_with_arguments":
            options = ["paris", "park", "party", "test", "testValue1"]
            return [o for o in options if o.startswith(argument.value)]
        return []

    return mcp


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def serve_http(port: int, *, resumable: bool = False) -> None:
    mcp = build_server()
    if not resumable:
        # host_origin_protection defaults to False in fastmcp 4.1.2; "auto"
        # validates Host/Origin for loopback-bound servers (dns-rebinding-protection).
        mcp.run(
            transport="http",
            host=HOST,
            port=port,
            show_banner=False,
            host_origin_protection="auto",
        )
        return
    # mcp.run() has no event_store parameter; build the app ourselves so that
    # ctx.close_sse_stream() works and priming events / retry are sent.
    import uvicorn
    from fastmcp.server.event_store import EventStore

    app = mcp.http_app(event_store=EventStore(), retry_interval=500, host_origin_protection="auto")
    uvicorn.run(app, host=HOST, port=port, log_level="warning")


def main(argv: list[str]) -> None:
    # The handshake-era back-channel in _ask() is deprecated as of 2026-07-28; by design.
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - {"--stdio", "--resumable"}
    positional = [a for a in argv if not a.startswith("--")]
    if unknown or len(positional) > 1 or ("--stdio" in flags and (positional or len(flags) > 1)):
        sys.exit("usage: fixture.py [PORT] [--resumable] | fixture.py --stdio")
    if "--stdio" in flags:
        build_server().run(transport="stdio", show_banner=False)
        return
    port = int(positional[0]) if positional else free_port()
    # stderr: stdout is reserved for the protocol in stdio mode, keep both modes alike.
    print(f"conformance fixture on http://{HOST}:{port}/mcp", file=sys.stderr, flush=True)
    serve_http(port, resumable="--resumable" in flags)


if __name__ == "__main__":
    main(sys.argv[1:])
