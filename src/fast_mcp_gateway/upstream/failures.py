"""Why one connect attempt failed, in words that name the cause and the fix.

The supervisor hands over what it saw of the attempt (the exception, the step it was
waiting for, the stdout violations the stdio reader counted, the stderr tail, the
transport: a stdio server's exit code, an HTTP endpoint's last status); the first fact
that explains the failure wins over the generic text of the exception.  An HTTP or
SSE endpoint's facts (``transports.HttpFacts``: connected or not, the last status and
content type) also word a connect timeout (``http_timeout_text``) and an answer that is
no MCP answer (an HTML page).  ``timed_out`` words a request's timeout: which limit
ended it, and the setting that gives more time where the server was configured (an
``mcpServers`` entry takes none of its own: ``gateway.timeouts``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import UpstreamTimeout
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.deadline import DeadlineReached
from fast_mcp_gateway.upstream.model import (
    UpstreamState,
    bare_url,
    describe_error,
    http_status_text,
    idle_closed,
)
from fast_mcp_gateway.upstream.session import ConnectFailed, StepFailed

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport

    from fast_mcp_gateway.config.schema import ServerConfig
    from fast_mcp_gateway.upstream.processes import ConnectWatch
    from fast_mcp_gateway.upstream.transports import HttpFacts

# The JSON-RPC errors the SDK's streamable HTTP client makes up for an HTTP error status
# without a JSON-RPC body: the server said nothing in JSON-RPC, the status is the story.
_HTTP_STAND_INS = {(types.METHOD_NOT_FOUND, "Not Found"),
                   (types.INTERNAL_ERROR, "Server returned an error response")}
# ... and the ones it makes up for a 2xx answer that is no JSON-RPC (a web page).
_NOT_MCP_STAND_INS = {types.INVALID_REQUEST: "Unexpected content type: ",
                      types.PARSE_ERROR: "Failed to parse JSON response: "}
_OPENING = ("initialize", "server/discover")
# What a handshake-era server answers the 2026-07-28 opening request.
_NO_DISCOVER = {types.INVALID_PARAMS, types.METHOD_NOT_FOUND, types.INVALID_REQUEST}

_MCP_URL_HINT = ("check the path in 'url' (MCP servers usually serve streamable HTTP at /mcp, "
                 "or SSE at /sse)")
STDIO_HINT = ("check that 'command' and 'args' start an MCP server that talks over stdio "
              "(run it in a terminal: it should wait for input)")


def explain_connect_failure(
    exc: BaseException | None, text: str | None, *, config: ServerConfig,
    stderr: Sequence[str], step: str | None, notice: str | None, violations: int,
    transport: ClientTransport | None,
) -> str:
    """One line for ``last_error``: ``exc`` (or ``text`` when the held session ended
    without one) explained by the facts of the attempt.  ``notice``: the first stdout
    violation of the attempt (``violations`` in all)."""
    kind, own_ca = config.kind, config.tls is not None and config.tls.ca_file is not None
    text = text or (describe_error(exc, bare_url(getattr(transport, "url", None)), own_ca)
                    if exc is not None else "failed")
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    failed = _step_failure(exc)
    answered = isinstance(exc, ConnectFailed) and exc.answered
    if failed is not None and kind == "http":
        refusal = _http_refusal(failed, transport)
        if refusal is not None:
            return refusal
    if failed is not None and failed.method == "server/discover" \
            and _error_code(failed) in _NO_DISCOVER:
        # A handshake-only server (an mcp 1.x SDK's: it refuses a method it has no
        # model for with -32602) says only that the request was wrong.
        return (f"{text}: the server does not speak the 2026-07-28 protocol era (it knows "
                "only the initialize handshake); set 'protocol: auto' (or 'legacy') for it")
    if kind == "sse":
        not_sse = _not_an_sse_stream(exc, transport)
        if not_sse is not None:
            return not_sse
        if _refused_sse_get(exc):
            return (f"{text}; if the URL serves streamable HTTP, set 'transport: http' for "
                    "this server (a streamable HTTP endpoint refuses an SSE client's GET)")
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
    lines = stderr_excerpt(stderr)
    if lines and not answered:  # an error *response* is the whole story
        text += " | stderr: " + " / ".join(lines)
    return text


# The line that says what went wrong, as runtimes print it: Node and Python
# (``Error: Cannot find module '...'``, ``Error [ERR_MODULE_NOT_FOUND]: ...``,
# ``ModuleNotFoundError: No module named 'x'``), Rust, Go, uv, git (``error: ...``,
# ``panic: ...``, ``fatal: ...``).
_HEADLINE = re.compile(r"(?:[A-Za-z_][\w.]*)?(?:Error|Exception)(?: \[[\w-]+\])?: \S"
                       r"|(?i:error|fatal|panic)(?:\[\w+\])?: \S")
# Python's markers under a traceback's code line (``^^^^``, ``~~~^^^``): nothing on one line.
_MARKERS = re.compile(r"[~^\s]+")
STDERR_LINES = 5  # how many of the last lines an error text carries


# How long a request that lost its stdio server waits at most to learn how the process
# ended, while it is exiting (``processes.exiting``: its stdout closed as it died, it is
# reaped a moment later); where /proc cannot tell a server that closed only its stdout,
# that one's call waits this long.
EXIT_WAIT = 2.0
CLOSED_GRACE = 1.0
"""Seconds a request that lost its stdio server waits at most for an exit that /proc did
not show yet: a server closing its stdout and exiting a moment later (~1 ms) was not
exiting when looked at, and was told as one that runs on, its exit code lost.  Woken by
the exit (a pidfd), or by the gateway beginning to stop the server (its stdin closed:
an exit after that may be the gateway's doing), which follows at once the connection's
end: a server that runs on is told so within a few ms, not this."""


async def process_end(tap: object) -> str:
    """How a stdio server that ended the connection itself ended, for a request it
    dropped (``tap``: its session's ``RawTap``; "" for another transport, or when the
    gateway ended the session): its exit code or signal, never its command or env."""
    from fast_mcp_gateway.upstream.processes import exiting
    from fast_mcp_gateway.upstream.stdio_tap import RawTap

    if not isinstance(tap, RawTap):
        return ""
    process = tap.process
    if tap.server_ended and process is not None and process.returncode is None \
            and exiting(process.pid) is False \
            and not await exits(process.pid, CLOSED_GRACE, tap.stopping):
        # Not exiting (a dying process is, before its files close), nor within the grace:
        # it closed its stdout and runs on.  Its call waited EXIT_WAIT for an exit that
        # did not come.
        return (": the server closed its output (stdout) while its process still runs; "
                "the gateway restarts it")
    code = await tap.exit_status(EXIT_WAIT)
    if code is None:
        return ""
    how = f"exited with code {code}" if code >= 0 else f"was ended by signal {_signal(-code)}"
    return f": the server's process {how}; the gateway restarts it (unless it keeps crashing)"


async def exits(pid: int, within: float, stopping: asyncio.Event) -> bool:
    """Whether our child ``pid`` exits (or has) within ``within`` seconds, before the
    gateway begins to stop it (``stopping``: its stdin about to close, an exit from then
    on maybe the gateway's doing; one begun by then is the server's).  Woken by the
    exit: a pidfd is readable once the process has ended, reaped or not (Linux 5.3+;
    False where there is none: told as running on, as before)."""
    import os
    import select

    from fast_mcp_gateway.upstream.processes import exiting

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # reaped already
    except (AttributeError, OSError):
        return False
    exited = False
    try:
        # poll, not select: select refuses a file number past 1023 (ValueError), and a
        # gateway with that many open (hosts' sockets, servers' pipes) had the call
        # end in that error instead of in how its server ended.
        ready = select.poll()
        ready.register(pidfd, select.POLLIN)
        if ready.poll(0):
            return True  # ended already, whatever the gateway began since
        if stopping.is_set():
            return False

        async def exit_seen() -> None:
            nonlocal exited
            await anyio.wait_readable(pidfd)
            exited = True
            tg.cancel_scope.cancel()

        async def stop_seen() -> None:
            nonlocal exited
            await stopping.wait()
            # Woken before the stdin is closed (a closing pipe's fd is closed a turn of
            # the loop later): an exit seen now is the server's own.
            exited = exiting(pid) is not False
            tg.cancel_scope.cancel()

        with anyio.move_on_after(within):
            async with anyio.create_task_group() as tg:
                tg.start_soon(exit_seen)
                tg.start_soon(stop_seen)
        return exited
    finally:
        os.close(pidfd)


def _signal(number: int) -> str:
    import signal

    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)


def stderr_excerpt(stderr: Sequence[str], keep: int = STDERR_LINES) -> list[str]:
    """The last ``keep`` lines of ``stderr`` worth reading, and, when none of them says
    what went wrong, the latest earlier line that does, then ``...``: Node prints its
    error *above* a stack trace and a footer (``code: 'MODULE_NOT_FOUND'`` ... ``Node.js
    v22``), which alone name no cause."""
    lines = [line.strip() for line in stderr
             if line.strip() and not _MARKERS.fullmatch(line.strip())]
    tail, earlier = lines[-keep:], lines[:-keep]
    if any(_HEADLINE.match(line) for line in tail):
        return tail
    headline = next((line for line in reversed(earlier) if _HEADLINE.match(line)), None)
    return tail if headline is None else [headline, "...", *tail]


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


def _facts(transport: ClientTransport | None) -> HttpFacts | None:
    from fast_mcp_gateway.upstream.transports import HttpFacts

    facts = getattr(transport, "facts", None)
    return facts if isinstance(facts, HttpFacts) else None


def _http_refusal(failed: StepFailed, transport: ClientTransport | None) -> str | None:
    """The HTTP answer behind the SDK's stand-in error for the opening request: an
    error status, or a 2xx answer that is no JSON-RPC (an HTML page)."""
    cause = failed.__cause__
    facts = _facts(transport)
    status = facts.last_status if facts is not None else None
    if failed.method not in _OPENING or status is None or not isinstance(cause, MCPError):
        return None
    code, reason, url = status
    if code in (401, 403) and getattr(transport, "auth", None) is not None:  # auth: (OAuth)
        return (f"connect: {failed.method} got HTTP {code} at {url} with a token just "
                "granted: the server refuses its authorization server's tokens for the "
                "gateway; check auth.scopes and that auth names the server's own "
                "authorization server")
    if code >= 400 and (cause.error.code, cause.error.message) in _HTTP_STAND_INS:
        return f"connect: {failed.method} got {http_status_text(code, reason, url)}"
    prefix = _NOT_MCP_STAND_INS.get(cause.error.code)
    if code < 300 and prefix is not None and cause.error.message.startswith(prefix):
        return mask_text(
            f"connect: {failed.method} got HTTP {code}{' ' + reason if reason else ''} at "
            f"{url} with {_body_of(facts)}, not a JSON-RPC answer: not an MCP endpoint; "
            f"{_MCP_URL_HINT}")
    return None


def bearer_refusal(exc: MCPError, sup: Any, asked: Any = None) -> str | None:
    """The words for a call whose request the server answered 401 and the bearer could
    not cure (it ended the session: ``sup`` is restarting): the SDK's stand-in for that
    answer ("Server returned an error response") is not the server's own error; or 403
    ``insufficient_scope`` (``asked.scope``, ``asking.lacking``): the scopes to grant."""
    auth = sup.config.auth
    if auth is not None and asked is not None and asked.scope is not None:
        name, scopes = sup.config.name, mask_text(asked.scope)  # (the server's words)
        again = (f"then sign in again (call the gateway_sign_in tool with server '{name}',"
                 f" or run 'mcp-gateway login {name}')" if auth.type == "oauth" else
                 "then reload the config (the gateway then asks for a token with them)")
        wanted = f"it asks for scope {scopes!r}" if scopes else "it names no scope"
        return (f"the server refused the call for want of a scope the gateway's token "
                f"lacks (HTTP 403 insufficient_scope; {wanted}): add "
                f"{'it' if scopes else 'the scope its documentation names'} to auth.scopes "
                f"of server '{name}' in the config, {again}")
    if auth is None or (exc.error.code, exc.error.message) not in _HTTP_STAND_INS:
        return None
    why = sup.unavailable_reason()
    if sup.state is UpstreamState.SIGNED_OUT:  # signed out meanwhile (``bearer.py``)
        return f"the call was not run: the server refused the gateway's token (HTTP 401): {why}"
    return (f"the server refused the gateway's token (HTTP 401; the call was not run) and "
            f"{why}") if why.startswith("is restarting (") else None


def _body_of(facts: HttpFacts | None) -> str:
    kind = (facts.content_type if facts is not None else None) or ""
    kind = kind.partition(";")[0].strip()
    return f"a {kind} body" if kind else "a body of no Content-Type"


def _not_an_sse_stream(exc: BaseException | None, transport: ClientTransport | None
                       ) -> str | None:
    """An SSE URL that answers 2xx with something else than an event stream (the SDK
    says only "Expected response with content type 'text/event-stream'")."""
    import httpx2

    facts = _facts(transport)
    if not isinstance(exc, httpx2.SSEError) or facts is None or facts.last_status is None:
        return None
    code, reason, url = facts.last_status
    if code >= 300:
        return None
    return mask_text(f"HTTP {code}{' ' + reason if reason else ''} at {url} with "
                     f"{_body_of(facts)}, not an SSE stream: not an MCP SSE endpoint; "
                     f"{_MCP_URL_HINT}")


def _refused_sse_get(exc: BaseException | None) -> bool:
    """What a streamable HTTP endpoint answers the GET that opens an SSE session: 400 (no
    session id: the SDKs' stateful servers), 405 (stateless ones) or 406."""
    import httpx2

    for current in (exc, getattr(exc, "__cause__", None)):
        if isinstance(current, httpx2.HTTPStatusError):
            return current.response.status_code in (400, 405, 406)
    return False


def connect_timeout_text(transport: ClientTransport | None, step: str | None,
                         watch: ConnectWatch, connect_timeout: float, timeouts: int | None
                         ) -> str:
    """Why the attempt's deadline (``watch``) passed; ``timeouts``: earlier ones in a
    row (each doubles the next window, up to 8x), None when no attempt follows (the
    one-shot probe of ``mcp-gateway check``: no next window to tell)."""
    later = None if timeouts is None else connect_timeout * min(2 ** (timeouts + 1), 8)
    return (http_timeout_text(transport, step, watch.window, connect_timeout, later)
            or watch.timeout_text(step, later))


def http_timeout_text(transport: ClientTransport | None, step: str | None, window: float,
                      connect_timeout: float, next_window: float | None) -> str | None:
    """A connect timeout towards an HTTP or SSE endpoint, said from what it did: no TCP
    connection, a connection but no answer, or an answer but no MCP message.  ``None``
    when ``transport`` keeps no facts (stdio: ``ConnectWatch`` words those)."""
    facts = _facts(transport)
    url = getattr(transport, "url", None)
    if facts is None or url is None:
        return None
    what = step or "the SSE stream's endpoint event"
    scaled = "" if window <= connect_timeout else f", x{window / connect_timeout:g} after timeouts"
    within = f"within {window:g} s (timeouts.connect{scaled})"
    ask = "; is it an MCP server, and is it overloaded?"
    if facts.last_status is not None:
        code, reason, at = facts.last_status
        said = (f"{url} answered HTTP {code}{' ' + reason if reason else ''} "
                f"({facts.last_method} {at}) but sent no MCP answer to {what} {within}{ask}")
    elif facts.connected:
        said = (f"{url} accepted the connection but sent no answer to "
                f"{step or 'the SSE stream request'} {within}{ask}")
    else:
        said = (f"no connection to {url} {within}: the host does not answer on that port; "
                "check the host and port in 'url' and any firewall between")
    later = "" if next_window is None else f" (the next attempt waits {next_window:g} s)"
    return mask_text(said + later)


_REMEDIES = {"enable": "admin tool gateway_enable_server (HTTP mode: PUT "
                       "/api/v1/servers/{}/enable)",
             "restart": "admin tool gateway_reconnect_server (HTTP mode: POST "
                        "/api/v1/servers/{}/restart)"}


def remedy(action: str, server: str) -> str:
    """How to ``enable`` or ``restart`` a server, on the surfaces with no button for it
    (the admin tools, REST); a dashboard page words it for itself (``reword_remedies``)."""
    return _REMEDIES[action].format(server)


# Each remedy as written into a text (group: its action), its server's name captured.
_NAME = r"([^/()\s]+)"
_REMEDY_IN_TEXT = re.compile("|".join(
    "(?P<" + action + ">" + re.escape(words).replace(re.escape("{}"), _NAME) + ")"
    for action, words in _REMEDIES.items()))


def reword_remedies(text: str, words: Callable[[str, str], str]) -> str:
    """``text`` (a last error, a refusal) with each ``remedy`` in it replaced by
    ``words(action, server)``: how the surface showing it says the same."""
    def reworded(found: re.Match[str]) -> str:
        action = found.lastgroup or ""
        server = next(g for g in found.groups()[found.re.groupindex[action]:] if g)
        return words(action, server)

    return _REMEDY_IN_TEXT.sub(reworded, text)


def unavailable_text(state: UpstreamState, name: str, last_error: str | None,
                     next_retry_at: float | None, ended: str | None) -> str:
    """Why a replica in ``state`` takes no request now (its ``unavailable_reason``);
    ``ended``: why its session ended, while the supervisor has yet to notice."""
    if state is UpstreamState.DISABLED:
        return f"is disabled; enable it: {remedy('enable', name)}"
    if state is UpstreamState.STARTING:
        return "is still starting"
    if state is UpstreamState.RECONNECTING:
        retry = ""
        if next_retry_at is not None:
            retry = f", next attempt in {max(0.0, next_retry_at - time.time()):.1f}s"
        return f"is reconnecting ({last_error or 'connection lost'}{retry})"
    if state is UpstreamState.FAILED:
        return f"has failed: {last_error}"
    if state is UpstreamState.SIGNED_OUT:
        return last_error or f"needs sign-in: call the gateway_sign_in tool or run " \
            f"'mcp-gateway login {name}'"
    if state is UpstreamState.READY and ended is not None:
        return f"is restarting ({ended})"
    return f"is {state}"


def timed_out(label: str, what: str, call: float, exc: MCPError,
              config: ServerConfig | None = None) -> UpstreamTimeout:
    """The timeout ``exc`` of request ``what`` (on a server configured as ``config``),
    saying which limit ended it and what to raise (``DeadlineReached`` says; the SDK's
    own timeouts are ``timeouts.call``)."""
    limit, seconds, progress = (
        (exc.limit, exc.seconds, exc.progress) if isinstance(exc, DeadlineReached)
        else ("call", call, 0))
    # An mcpServers entry (Claude Desktop's shape) cannot take a 'timeouts' of its own.
    shared = config is not None and config.mcp_servers_entry
    own = (" (an mcpServers entry takes no timeouts of its own: to give this server its "
           "own, move the servers under 'servers:')") if shared else ""
    if limit == "max_total":
        setting = "gateway.timeouts.max_total" if shared else "timeouts.max_total"
        whose = "" if shared else "the server's "
        # No progress: a question it put to its host held it there (``deadline.Pace``).
        doing = ("was still reporting progress" if progress else "was still waiting on "
                 "its host's answer to a question it asked (elicitation, sampling or roots)")
        return UpstreamTimeout(
            label, f"{what} {doing} when it reached {whose}{setting} "
            f"of {seconds:g}s (the request was cancelled upstream); if it needs longer, "
            f"raise {setting}{own}", still_running=True)
    setting = "gateway.timeouts.call" if shared else "the server's timeouts.call"
    if progress:
        return UpstreamTimeout(
            label, f"{what} reported progress {progress} time{'s' if progress > 1 else ''}, "
            f"then nothing for {seconds:g}s ({'gateway.' if shared else ''}timeouts.call; "
            "the request was cancelled "
            f"upstream); if its steps are only slow, raise {setting}{own}")
    return UpstreamTimeout(
        label, f"{what} did not answer within {seconds:g}s (the request was cancelled "
        f"upstream); if it is only slow, raise {setting}{own}")


def lost_with(exc: MCPError, cause: str | None) -> tuple[str, bool]:
    """For a request lost with its connection (``connection_lost``): what follows
    "connection closed during <what>" -- why the session ended, if it did (``cause``),
    or the SDK's client's words for an idle close -- and whether the session is left as
    it was: an HTTP tap's own connection (``session_intact``), or a request the SDK's
    client did not send again after a server's idle close met it (``http_resend``)."""
    idle = idle_closed(exc)
    detail = f": {cause}" if cause else f": {exc.error.message}" if idle else ""
    return detail, bool(getattr(exc, "session_intact", False)) or idle
