"""The FastMCP server class the gateway runs, the start-up gate, and host tracking.

Start-up: hosts are never held for longer than ``startup_wait`` seconds.  The
``StartupGate`` opens when every replica made its first connect attempt, or when the
wait is over, whichever comes first; until then the catalog lists wait on it.  A call,
read or get of a name the catalog does not know yet waits, during start-up, for the
first attempts to end (bounded by the call timeout): its server may be connecting.
A server that connects later reaches hosts through ``list_changed`` (``FrontHub``).
``initialize`` itself never waits on the gate: it names no upstream component.

Answer first: a stdio ``serve`` answers ``initialize`` (or a 2026-07-28 host's
``server/discover``) before it finishes its own
start-up (``Deferred``: registering the ``gateway_*`` tools, ~60 ms of CPU), and
reads no further line of the host's until that is done (``AnswerFirst``), so no request
ever sees a gateway without them.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from fastmcp.exceptions import NotFoundError, ToolError
from fastmcp.prompts import Prompt
from fastmcp.prompts.base import PromptResult
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.resources.base import ResourceResult
from fastmcp.server.dependencies import get_context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import Tool
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.versions import VersionSpec
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway._compat import (
    PreferredToolServer,
    connection_of,
    current_transport,
    low_level_server,
)
from fast_mcp_gateway.front.early import OPENING_RESULT_KEYS, differences
from fast_mcp_gateway.front.encodings import RelayedError
from fast_mcp_gateway.front.form_schemas import FormSchemas
from fast_mcp_gateway.front.hints import hint_lists
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.front.invalid_params import NamedInvalidParams
from fast_mcp_gateway.front.meta_nulls import MetaNulls, noted
from fast_mcp_gateway.front.outbox import caller_name
from fast_mcp_gateway.front.provider import GatewayProvider
from fast_mcp_gateway.front.tasks import GatewayTasks
from fast_mcp_gateway.front.unknown import Kind
from fast_mcp_gateway.principal import Standing
from fast_mcp_gateway.routing.manager import UpstreamManager

logger = logging.getLogger(__name__)


class StartupGate:
    """Whether the upstreams' first connect attempts are over, and how long hosts wait.

    ``attempted`` is set once every replica present when ``run`` starts made its first
    attempt (ready, failed, timed out or skipped): ``/ready`` says ``starting`` until
    then.  ``opened`` is set at that moment too, or ``wait`` seconds after ``run``
    started, whichever is first: what a host's first list waits for.
    """

    def __init__(self, manager: UpstreamManager, wait: float, lookup_wait: float) -> None:
        self.manager = manager
        self.wait = wait
        self.lookup_wait = lookup_wait
        self.attempted = anyio.Event()
        self.opened = anyio.Event()

    @property
    def over(self) -> bool:
        """Every first attempt is done (the ``/ready`` start-up phase is over)."""
        return self.attempted.is_set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        self.manager.renew()  # served again: new sessions, before their replicas are read
        replicas = self.manager.replicas
        if self.opened.is_set():  # served again: a new start-up
            self.attempted, self.opened = anyio.Event(), anyio.Event()
        task_status.started()
        async with anyio.create_task_group() as tg:
            async def bound() -> None:
                await anyio.sleep(self.wait)
                if not self.opened.is_set():
                    waiting = [u.label for u in replicas if u.state != "ready"]
                    logger.info("start-up wait (%gs) over; answering hosts with what is "
                                "ready; still connecting: %s", self.wait, ", ".join(waiting))
                self._open()

            tg.start_soon(bound)
            for upstream in replicas:
                await upstream.wait_first_attempt()
            self.attempted.set()
            self._open()
            tg.cancel_scope.cancel()

    def _open(self) -> None:
        if not self.opened.is_set():
            self.opened.set()
            # The names hosts can see from now on are bound for good (routing/bindings.py):
            # before, servers that came up together were named in config order.
            self.manager.bind_names()

    async def passed(self) -> None:
        """Return once hosts need no longer wait (at once after start-up)."""
        if not self.opened.is_set():
            await self.opened.wait()

    async def settled(self) -> None:
        """For a name the catalog does not know during start-up: return once every first
        attempt is over (its server may be one still connecting), at most
        ``lookup_wait`` seconds (a request's own deadline)."""
        if not self.attempted.is_set():
            with anyio.move_on_after(self.lookup_wait):
                await self.attempted.wait()


class GatewayServer(PreferredToolServer):
    """FastMCP with upstream tools resolved from the gateway's table first (the
    provider's O(1) table; see ``PreferredToolServer``), and catalog lists held at the
    start-up gate (if one is set)."""

    gate: StartupGate | None = None
    tasks: GatewayTasks | None = None
    provider: GatewayProvider | None = None

    def use_provider(self, provider: GatewayProvider) -> None:
        self.provider = provider
        lookup = provider.get_tool

        async def prefer(name: str) -> Tool | None:
            tool = await lookup(name)
            gate = self.gate
            if tool is None and gate is not None and not gate.attempted.is_set():
                if name in provider.own_names:
                    # The gateway's own (no upstream may take their names) wait as a
                    # list does, at most startup_wait: gateway_server_detail of a server
                    # still starting waited call_timeout for every first attempt.
                    await gate.passed()
                else:
                    # A host may call a tool it knows from an earlier session before its
                    # server has connected: wait (bounded) rather than answer "unknown".
                    await gate.settled()
                    tool = await lookup(name)
            if tool is None and await provider.until_offered(
                    name, gate.lookup_wait if gate is not None else 0.0):
                # Its server is (re)starting: a reload restarted it (tests/test_reload_calls).
                tool = await lookup(name)
            return tool

        self.prefer_tool = prefer
        hint_lists(self, provider)   # ttlMs / cacheScope of the aggregate lists
        # Malformed params named, not the SDK's bare "Invalid request parameters"; an
        # upstream's null _meta members, which the SDK's 2026-07-28 dump leaves out, and
        # its forms' own keys, which the SDK's sieve drops (form_schemas.py).
        low_level_server(self).middleware += [NamedInvalidParams(), MetaNulls(), FormSchemas()]
        self.tasks = GatewayTasks(provider)  # MCP tasks relayed (front/tasks.py)
        self.add_extension(self.tasks)

    async def _at_gate(self) -> None:
        if self.gate is not None:
            await self.gate.passed()

    async def list_tools(self, *, run_middleware: bool = True) -> Sequence[Tool]:
        await self._at_gate()
        return await super().list_tools(run_middleware=run_middleware)

    async def list_resources(self, *, run_middleware: bool = True) -> Sequence[Resource]:
        await self._at_gate()
        return await super().list_resources(run_middleware=run_middleware)

    async def list_resource_templates(self, *, run_middleware: bool = True
                                      ) -> Sequence[ResourceTemplate]:
        await self._at_gate()
        return await super().list_resource_templates(run_middleware=run_middleware)

    async def list_prompts(self, *, run_middleware: bool = True) -> Sequence[Prompt]:
        await self._at_gate()
        return await super().list_prompts(run_middleware=run_middleware)

    # A host may read a resource or get a prompt it knows from an earlier session (the
    # Inspector CLI reads without listing) before its server connected: "unknown" is
    # only the answer once the first attempts are over (``StartupGate.settled``).  Then
    # it says what is wrong and how to fix it (``_unknown``): FastMCP's handlers would
    # answer a ``NotFoundError`` with a bare "Resource not found" / "Unknown prompt".

    def _unknown(self, kind: Kind, name: str, arguments: Any = None) -> str:
        if self.provider is None:
            return f"Unknown {kind}: {name!r}"
        return self.provider.unknown_call(kind, name, arguments)

    def _settled(self) -> bool:
        return self.gate is None or self.gate.attempted.is_set()

    async def _settle(self) -> None:
        if self.gate is not None:
            await self.gate.settled()

    async def read_resource(self, uri: str, *, version: VersionSpec | None = None,
                            run_middleware: bool = True) -> ResourceResult:
        settled = self._settled()
        try:
            return await super().read_resource(uri, version=version,
                                               run_middleware=run_middleware)
        except NotFoundError:
            if settled:
                raise self._unknown_resource(uri) from None
        await self._settle()
        try:
            return await super().read_resource(uri, version=version,
                                               run_middleware=run_middleware)
        except NotFoundError:
            raise self._unknown_resource(uri) from None

    def _unknown_resource(self, uri: str) -> MCPError:
        # SEP-2164, as FastMCP answers: invalid params, the URI in ``data``.
        return MCPError(code=types.INVALID_PARAMS, message=self._unknown("resource", uri),
                        data={"uri": uri})

    async def render_prompt(self, name: str, arguments: dict[str, Any] | None = None, *,
                            version: VersionSpec | None = None,
                            run_middleware: bool = True) -> PromptResult:
        settled = self._settled()
        try:
            return await super().render_prompt(name, arguments, version=version,
                                               run_middleware=run_middleware)
        except NotFoundError:
            if settled:
                raise MCPError(code=types.INVALID_PARAMS,
                               message=self._unknown("prompt", name, arguments)) from None
        await self._settle()
        try:
            return await super().render_prompt(name, arguments, version=version,
                                               run_middleware=run_middleware)
        except NotFoundError:
            raise MCPError(code=types.INVALID_PARAMS,
                           message=self._unknown("prompt", name, arguments)) from None

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        version: VersionSpec | None = None,
                        run_middleware: bool = True) -> ToolResult:
        """FastMCP's, except that an upstream's error response reaches the host as the
        JSON-RPC error it was (``RelayedError``), not as an ``isError`` result."""
        try:
            result = await super().call_tool(name, arguments, version=version,
                                             run_middleware=run_middleware)
        except RelayedError as exc:
            raise exc.response from None
        except NotFoundError:
            # An error result, as FastMCP's handler makes of "Unknown tool".
            raise ToolError(self._unknown("tool", name, arguments)) from None
        noted(result)
        return result


def caller_may_use(provider: GatewayProvider, standing: Standing | None = None
                   ) -> Callable[[str], bool]:
    """Whether the caller of the current request may use a server, asked whenever the
    result is called (``CallPipeline.standing``, or ``standing`` if given: a reload that
    narrows a token's ``servers`` narrows it at once), within the request's profile:
    what its session is sent between its requests (logs, resource updates) is filtered
    by it."""
    if standing is None:
        standing = provider.pipeline.standing()
    active = provider.active_profile()

    def may_use(server: str) -> bool:
        principal = standing()
        return (principal is not None and principal.has("tools") and principal.may_use(server)
                and (active is None or active.shows_server(server)))

    return may_use


def track_current_host(hub: FrontHub, provider: GatewayProvider) -> None:
    """Remember the connection of the host making the current request (if any), and
    which servers' logs it may be sent between its requests (``caller_may_use``)."""
    try:
        ctx = get_context()
    except RuntimeError:
        return
    if ctx.request_context is not None:
        hub.track(connection_of(ctx.session), sole_host=current_transport() == "stdio",
                  may_use=caller_may_use(provider), who=caller_name(provider))


class CallerStanding(Middleware):
    """Each request of a host the hub asks about before sending it anything between its
    requests (logs, resource updates: ``FrontHub.knows``) makes its caller's credential
    of now the one that stands (``FrontHub.refresh``): a client that refreshes its JWT,
    or sends the token a rotation put in place of the one it listed with, keeps being
    told; one whose token expired or was removed and that sends nothing is not."""

    def __init__(self, hub: FrontHub, provider: GatewayProvider) -> None:
        self.hub, self.provider = hub, provider

    async def on_request(self, context: MiddlewareContext[Any],
                         call_next: CallNext[Any, Any]) -> Any:
        try:
            ctx = get_context()
        except RuntimeError:
            ctx = None
        if ctx is not None and ctx.request_context is not None:
            connection = connection_of(ctx.session)
            if self.hub.knows(connection):
                self.hub.refresh(connection, caller_may_use(self.provider))
        return await call_next(context)


class Deferred:
    """Start-up work that may wait until ``initialize`` is answered: each of ``steps``
    (the event loop serves other tasks between two), then ``then()``.  ``run`` does it
    once (whoever calls first: the stdio front after its answer, a fallback, the
    lifespan); every other caller waits until it is done.  ``done`` is set then, also
    when it failed (the failure is raised to the first caller)."""

    def __init__(self, steps: Iterator[object], then: Callable[[], None]) -> None:
        self._steps, self._then = steps, then
        self._begun = False
        self.done = anyio.Event()

    def run_now(self) -> None:
        """Do it all at once, from synchronous code (nobody is waiting yet)."""
        self._begun = True
        collections.deque(self._steps, 0)
        self._then()
        self.done.set()

    async def run(self) -> None:
        if self._begun:
            await self.done.wait()
            return
        self._begun = True
        try:
            for _ in self._steps:
                await anyio.lowlevel.checkpoint()
            self._then()
        finally:
            self.done.set()

    def hold(self, lines: _Lines, output: _Output,
             answered: dict[str, Any] | None = None) -> AnswerFirst:
        """The stdio front's lines and output, holding the host's second line until this
        work is done (``AnswerFirst``; ``answered``: the reply ``early.py`` sent)."""
        return AnswerFirst(lines, output, self, answered)

    def and_done(self, event: anyio.Event) -> Callable[[], bool]:
        """A check that ``event`` is set and this work is done: the stdio express lane
        answers lists itself only then (a list taken meanwhile would lack what this work
        adds; until then the line goes to ``AnswerFirst``, which runs the work first)."""
        return lambda: event.is_set() and self.done.is_set()

    async def run_after(self, event: anyio.Event) -> None:
        """``run`` once ``event`` is set (a fallback: a host that sends nothing still
        gets a started gateway)."""
        await event.wait()
        await self.run()


class _Lines(Protocol):
    def __aiter__(self) -> _Lines: ...
    async def __anext__(self) -> str: ...


class _Output(Protocol):
    async def write(self, text: str) -> None: ...
    async def flush(self) -> None: ...


OPENINGS = ("initialize", "server/discover")
"""The requests a host opens a session with: the handshake era's ``initialize`` and the
2026-07-28 era's ``server/discover`` (what fastmcp's ``Client`` sends first in its
default ``auto`` mode).  Neither answer names a component: the capabilities, server
info and instructions are the same before and after the admin tools are added."""


def is_opening(line: str) -> bool:
    """Whether ``line`` is one of the ``OPENINGS`` requests (JSON-RPC, with an id)."""
    if '"initialize"' not in line and '"server/discover"' not in line:
        return False
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") in OPENINGS \
        and "id" in message


async def _first_of(*events: anyio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


class AnswerFirst:
    """The host's lines and the gateway's output as the SDK's stdio server sees them,
    holding every line after the first until ``after`` has run.

    A first line that opens the session (``is_opening``: ``initialize`` or
    ``server/discover``) is handed on at once; the next line
    is read only once something was flushed to the host (the answer) or ``after`` was
    run by someone else, and ``after.run()`` returned.  Any other first line runs
    ``after`` before it is handed on.  So the host gets its answer as early as from a
    bare server, and whatever it sends next (even in the same write) is read by a
    gateway whose start-up is complete.

    ``answered``: the reply ``early.py`` sent to the first line before the SDK was
    loaded.  The SDK's own reply to it (the first it writes with that id) is compared
    with it and not written again.
    """

    def __init__(self, lines: _Lines, output: _Output, after: Deferred,
                 answered: dict[str, Any] | None = None) -> None:
        self._lines, self._output, self._after = lines, output, after
        self._first = True
        self._answered = anyio.Event()
        self._early = answered
        # Awaited at the end of the host's lines, before the SDK sees it and waits for
        # the requests in flight (``Gateway._admin_ops_ended``: an admin tool's
        # operation, shielded, held the exit of a gateway whose host had left).
        self.on_end: Callable[[], Awaitable[object]] | None = None

    def __aiter__(self) -> AnswerFirst:
        return self

    async def __anext__(self) -> str:
        if self._first:
            self._first = False
            line = await self._next()
            if not is_opening(line):
                await self._after.run()
            return line
        if not self._after.done.is_set():
            await _first_of(self._answered, self._after.done)
            await self._after.run()
        return await self._next()

    async def _next(self) -> str:
        try:
            return await self._lines.__anext__()
        except StopAsyncIteration:
            if self.on_end is not None:
                await self.on_end()
            raise

    async def write(self, text: str) -> None:
        if self._early is not None and self._answered_early(text):
            answered = getattr(self._output, "answered", None)  # LineWriter: frees the id
            if answered is not None:
                answered(text)
            return
        await self._output.write(text)

    def _answered_early(self, text: str) -> bool:
        """Whether ``text`` is the SDK's reply to the request answered early (checked,
        then dropped)."""
        assert self._early is not None
        try:
            message = json.loads(text)
        except ValueError:
            return False
        if not isinstance(message, dict) or "method" in message \
                or message.get("id") != self._early["id"]:
            return False
        result = message.get("result")
        if isinstance(result, dict) and not (OPENING_RESULT_KEYS & result.keys()):
            return False  # another request's, with the id reused (the host had its answer)
        sent, self._early = self._early, None
        changed = differences(sent, message)
        if changed:
            logger.warning("the answer sent to the host's opening request before the server "
                           "stack was loaded differs from the server's own in %s (the host "
                           "keeps the first; please report this with the gateway's version)",
                           ", ".join(changed))
        else:
            logger.debug("the server's own answer to the opening request is the one sent "
                         "early")
        return True

    async def flush(self) -> None:
        await self._output.flush()
        self._answered.set()
