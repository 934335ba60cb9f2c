"""Why one connect attempt failed, in words that name the cause and the fix.

The supervisor hands over what it saw of the attempt (the exception, the step it was
waiting for, the stdout violations the stdio reader counted, the stderr tail, the
transport: a stdio server's exit code, an HTTP endpoint's last status); the first fact
that explains the failure wins over the generic text of the exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import mcp_types as types
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import UpstreamTimeout
from fast_mcp_gateway.upstream.model import describe_error, http_status_text
from fast_mcp_gateway.upstream.session import ConnectFailed, StepFailed

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport

# The JSON-RPC errors the SDK's streamable HTTP client makes up for an HTTP error status
# without a JSON-RPC body: the server said nothing in JSON-RPC, the status is the story.
_HTTP_STAND_INS = {(types.METHOD_NOT_FOUND, "Not Found"),
                   (types.INTERNAL_ERROR, "Server returned an error response")}
_OPENING = ("initialize", "server/discover")
STDIO_HINT = ("check that 'command' and 'args' start an MCP server that talks over stdio "
              "(run it in a terminal: it should wait for input)")


def explain_connect_failure(
    exc: BaseException | None, text: str | None, *, kind: str, stderr: Sequence[str],
    step: str | None, notice: str | None, violations: int,
    transport: ClientTransport | None,
) -> str:
    """One line for ``last_error``: ``exc`` (or ``text`` when the held session ended
    without one) explained by the facts of the attempt.  ``notice``: the first stdout
    violation of the attempt (``violations`` in all)."""
    text = text or (describe_error(exc) if exc is not None else "failed")
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    failed = _step_failure(exc)
    answered = isinstance(exc, ConnectFailed) and exc.answered
    if failed is not None and kind == "http":
        refusal = _http_refusal(failed, transport)
        if refusal is not None:
            return refusal
    if kind != "stdio":
        return text
    junk = _junk(notice, violations)
    exit_code = getattr(transport, "exit_code", None)
    closed = failed is not None and _error_code(failed) == types.CONNECTION_CLOSED
    if failed is not None and closed and isinstance(exit_code, int) and exit_code >= 0:
        text = (f"connect: the server exited with code {exit_code} before answering "
                f"{failed.method}{junk}; {STDIO_HINT}")
    elif isinstance(exc, UpstreamTimeout) and junk:
        text = (f"connect: no answer to {step or 'initialize'} in time{junk}; stdout is for "
                "MCP messages: check that 'command' and 'args' start an MCP server over "
                "stdio, and that it writes its logs to stderr")
    elif junk and exc is not None and not answered:
        text += junk
    elif (exc is None and isinstance(exit_code, int) and exit_code >= 0
          and text.startswith(("process exited", "connection closed"))):
        # The server went away by itself (we stop it with a signal or EOF only later).
        text = (f"the server process exited with code {exit_code}" if text == "process exited"
                else f"{text}: the server process exited with code {exit_code}")
    lines = [line.strip() for line in stderr if line.strip()]
    if lines and not answered:  # an error *response* is the whole story
        text += " | stderr: " + " / ".join(lines)
    return text


def _junk(notice: str | None, violations: int) -> str:
    if not notice:
        return ""
    first = notice.removeprefix("upstream wrote a line on stdout that is ")
    lines = "a line" if violations <= 1 else f"{violations} lines"
    return f"; it wrote {lines} on stdout that MCP cannot read (the first: {first})"


def _step_failure(exc: BaseException | None) -> StepFailed | None:
    cause = exc.__cause__ if isinstance(exc, ConnectFailed) else exc
    return cause if isinstance(cause, StepFailed) else None


def _error_code(failed: StepFailed) -> int | None:
    cause = failed.__cause__
    return cause.error.code if isinstance(cause, MCPError) else None


def _http_refusal(failed: StepFailed, transport: ClientTransport | None) -> str | None:
    """The HTTP status behind the SDK's stand-in error for the opening request."""
    cause = failed.__cause__
    status = getattr(transport, "last_status", None)
    if (failed.method not in _OPENING or status is None or status[0] < 400
            or not isinstance(cause, MCPError)
            or (cause.error.code, cause.error.message) not in _HTTP_STAND_INS):
        return None
    code, reason, url = status
    return f"connect: {failed.method} got {http_status_text(code, reason, url)}"
