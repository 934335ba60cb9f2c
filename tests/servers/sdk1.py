"""An upstream written with the mcp 1.x SDK's FastMCP, as most PyPI servers still are.

Run with the Python of ``tests/py_tools.py`` (mcp 1.x), never the test venv's (2.x):
``python tests/servers/sdk1.py stdio`` or ``... sse PORT_FILE`` / ``... http PORT_FILE``
(127.0.0.1, a free port written to PORT_FILE once it listens; endpoints ``/sse`` and
``/mcp``).  What 1.x offers, each once: plain and structured tool output, progress,
logs, elicitation, sampling, a tool error, resources, a template, prompts, completions.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel, Field

mcp = FastMCP("sdk1", instructions="A server of the mcp 1.x SDK.")
LANGUAGES = ["python", "pascal", "perl", "rust"]
ITEMS = ["apple", "apricot", "banana"]


class Weather(BaseModel):
    city: str
    celsius: float = Field(description="Temperature in degrees Celsius")
    conditions: list[str]


class Name(BaseModel):
    name: str = Field(description="Your name")


@mcp.tool(title="Add two numbers")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def weather(city: str) -> Weather:
    """Structured output with an output schema."""
    return Weather(city=city, celsius=21.5, conditions=["sunny", "dry"])


@mcp.tool()
def echo(text: str) -> str:
    """Unstructured text only (a str return is wrapped as {"result": ...} too)."""
    return f"echo: {text}"


@mcp.tool()
async def count(steps: int, ctx: Context[Any, Any, Any]) -> str:
    """Progress and a log line per step."""
    for step in range(1, steps + 1):
        await ctx.info(f"step {step} of {steps}")
        await ctx.report_progress(step, steps, f"step {step}")
    return f"counted {steps}"


@mcp.tool()
async def greet(ctx: Context[Any, Any, Any]) -> str:
    """Elicitation: asks the host for a name."""
    answer = await ctx.elicit("What is your name?", Name)
    if answer.action == "accept":
        return f"hello {answer.data.name}"
    return f"no name ({answer.action})"


@mcp.tool()
async def summarize(text: str, ctx: Context[Any, Any, Any]) -> str:
    """Sampling: asks the host's model."""
    reply = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=f"sum up: {text}"))],
        max_tokens=20)
    assert isinstance(reply.content, TextContent)
    return f"model said: {reply.content.text}"


@mcp.tool()
def fail(reason: str) -> str:
    """A tool error (isError), in the SDK's own words."""
    raise ToolError(f"failed on purpose: {reason}")


@mcp.tool()
async def wait(marker: str) -> str:
    """Waits until cancelled; writes ``started``, then ``cancelled``, to ``marker``."""
    await anyio.Path(marker).write_text("started")
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.Path(marker).write_text("cancelled")
    return "never"


@mcp.resource("data://sdk1/greeting", mime_type="text/plain")
def greeting() -> str:
    """A static resource."""
    return "hello from 1.x"


@mcp.resource("data://sdk1/items/{item}", title="An item")
def item(item: str) -> str:
    """A resource template."""
    return f"item {item}"


@mcp.prompt(title="Review code")
def review(code: str, language: str = "python") -> str:
    """A prompt with arguments (one completed)."""
    return f"Review this {language} code:\n{code}"


@mcp.prompt()
def hello() -> str:
    """A prompt without arguments."""
    return "Say hello."


@mcp.completion()
async def complete(ref: PromptReference | ResourceTemplateReference,
                   argument: CompletionArgument,
                   context: CompletionContext | None) -> Completion | None:
    if argument.name == "language":
        values = [v for v in LANGUAGES if v.startswith(argument.value)]
    elif argument.name == "item":
        values = [v for v in ITEMS if v.startswith(argument.value)]
    else:
        return None
    return Completion(values=values, total=len(values), hasMore=False)


async def main(transport: str, port_file: str | None) -> None:
    if transport == "stdio":
        await mcp.run_stdio_async()
        return
    from loopback_http import serve

    assert port_file is not None, "sse and http need a PORT_FILE"
    await serve(mcp.sse_app() if transport == "sse" else mcp.streamable_http_app(), port_file)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
