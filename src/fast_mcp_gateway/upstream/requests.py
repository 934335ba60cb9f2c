"""Requests on one replica's live session, each with a deadline and accounting.

Every request goes through the one persistent session (never a reconnect per call).
``call_tool`` and ``call_tool_raw`` are the two encodings of ``tools/call`` (typed
models for the full path, JSON for the stdio express lane); both, and every other
request, go through ``Requests.request``, the one place that counts calls in flight,
feeds the health window, breaker and EWMA, and maps transport faults.

A request the server refused because it no longer knows the session (HTTP 404 on a
streamable-HTTP session: ``http_session_end.SessionEnd.refused``) was not run there:
the server answers so before any session could run it.  The supervisor opens a new
session at once; the request waits for it (within its call timeout, or until an
attempt at it failed) and is sent there, once, whatever the tool's idempotency, with
what is left of its call timeout (not a new one: a slow renewal and a slow call took
up to twice it; late, it fails saying both) and of its ``max_total``, until its first
progress, which gives it the whole call timeout again (``deadline.SPENT``).  It
counts neither as a success nor as a failure (one restart of the server is not one
failure per call that met it); without a new session, or refused on the new one as
well, it fails as ``UpstreamUnavailable`` saying so (never run: the service may send
it to another replica).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from pydantic import TypeAdapter, ValidationError

from fast_mcp_gateway._compat import (
    DECLARING,
    NO_HOST,
    narrowing_stamp,
    send_raw_request,
    stamp_request,
)
from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.errors import UpstreamRequestFailed, UpstreamTimeout, UpstreamUnavailable
from fast_mcp_gateway.policies import BreakerState
from fast_mcp_gateway.telemetry.arguments import mask_echo
from fast_mcp_gateway.upstream.asking import ASKED, Asked
from fast_mcp_gateway.upstream.deadline import PACE, SPENT, Pace, progress_bounded
from fast_mcp_gateway.upstream.failures import bearer_refusal, lost_with, process_end, timed_out
from fast_mcp_gateway.upstream.lifting import text_of
from fast_mcp_gateway.upstream.model import Catalog, UpstreamState, describe_error
from fast_mcp_gateway.upstream.relay import CURRENT_CALL, STDIO_HOST, FrontCall, InFlight
from fast_mcp_gateway.upstream.session import TRANSPORT_ERRORS, add_extensions, connection_lost
from fast_mcp_gateway.upstream.signals import ChangeSignal
from fast_mcp_gateway.upstream.stats import ReplicaAccounting
from fast_mcp_gateway.upstream.stdio_tap import RawTap
from fast_mcp_gateway.upstream.stdout_lines import INVALID_RESPONSE
from fast_mcp_gateway.upstream.supervisor import Supervisor

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.http_session_end import SessionEnd
    from fast_mcp_gateway.upstream.http_tap import HttpTap

T = TypeVar("T")
_READ_RESULT: TypeAdapter[types.ReadResourceResult | types.InputRequiredResult] = TypeAdapter(
    types.ReadResourceResult | types.InputRequiredResult)
_PROMPT_RESULT: TypeAdapter[types.GetPromptResult | types.InputRequiredResult] = TypeAdapter(
    types.GetPromptResult | types.InputRequiredResult)


class _Forgotten(Exception):
    """A request met the server's refusal of a session it no longer knows."""

    def __init__(self, session: ClientSession, end: SessionEnd) -> None:
        self.session, self.why = session, end.lost or "the server forgot the session"


class Requests:
    """The requests a replica forwards, over ``supervisor``'s live session."""

    def __init__(self, supervisor: Supervisor, accounting: ReplicaAccounting,
                 inflight: InFlight, call_timeout: float,
                 on_idle: Callable[[], None] | None = None,
                 max_total: float | None = None,
                 changed: ChangeSignal | None = None,
                 redact_keys: tuple[str, ...] | None = None) -> None:
        self.redact_keys = DEFAULT_REDACT_KEYS if redact_keys is None else redact_keys
        self._changed = changed or ChangeSignal()  # told of the supervisor's changes
        self._sup = supervisor
        self._stats = accounting
        self._inflight = inflight
        self.call_timeout = call_timeout
        # A tools/call that reports progress lives up to this long (upstream/deadline.py)
        self.max_total = max_total
        self._on_idle = on_idle  # the last request in flight ended (drains wait on it)

    async def request(
        self, what: str, front: FrontCall | None, op: Callable[[ClientSession], Awaitable[T]],
        watched: bool = True, arguments: Any = None,
    ) -> T:
        """Run ``op`` on the live session, mapping transport faults into ``UpstreamError``.

        Error *responses* from the upstream (``MCPError`` with the upstream's code and
        message) propagate unchanged, so the host sees what the upstream said.  A host's
        request (with a ``front``) is ``watched`` for stalls unless told otherwise.  One
        refused for a session the server forgot goes again on the next session (the
        module docstring).  Its message is masked (``mask_echo``) with ``arguments``
        under ``redact_keys`` (the gateway's ``redact_keys`` setting, as call records).
        """
        begun = time.monotonic()  # (anyio's clock looks the loop up: a getpid on 3.11)
        try:
            return await self._once(what, front, op, watched, arguments)
        except _Forgotten as lost:
            sup, first, tried = self._sup, lost, self._stats.attempts

        def left() -> float:  # of the call timeout, which the renewal does not restart
            return self.call_timeout - (time.monotonic() - begun)

        # Until the new session, or an attempt at one ended (a failed one: its reason).
        came = await self._changed.wait_until(
            lambda: sup.session not in (None, first.session)
            or self._stats.attempts > tried or sup.state in _NO_SESSION_COMING,
            max(left(), 0.0))
        if not came or left() <= 0:
            now = f": it {sup.unavailable_reason()}" if sup.session is None else ""
            raise UpstreamUnavailable(sup.label, f"{what} was not run: {first.why}; its call "
                                      f"timeout ({self.call_timeout:g}s) ran out before a "
                                      f"new session was ready{now}")
        if sup.session is None:
            raise UpstreamUnavailable(sup.label, f"{what} was not run: {first.why}; no new "
                                      f"session yet: it {sup.unavailable_reason()}")
        within = left()
        leaving = SPENT.set(self.call_timeout - within)  # its deadlines run from its start
        try:
            return await self._once(what, front, op, watched, arguments)
        except _Forgotten as again:
            raise UpstreamUnavailable(sup.label, f"{what} was not run: {again.why} (its "
                                      "new session was refused too)") from None
        except UpstreamTimeout as exc:  # both reasons: the refusal, then the time left
            raise UpstreamTimeout(
                sup.label, f"{exc.detail}; it was sent again on a new session with the "
                f"{within:.3g}s left of its call timeout ({self.call_timeout:g}s), the first "
                f"having been refused: {first.why}", still_running=exc.still_running,
            ) from exc
        finally:
            SPENT.reset(leaving)

    def _budget(self) -> float:
        """What is left of a request's call timeout (all of it, unless sent again)."""
        return self.call_timeout - SPENT.get()

    async def _once(
        self, what: str, front: FrontCall | None, op: Callable[[ClientSession], Awaitable[T]],
        watched: bool, arguments: Any = None,
    ) -> T:
        """``request`` on the session live now; ``_Forgotten`` if the server forgot it."""
        sup = self._sup
        session, end = sup.session, sup.end
        if session is None:
            raise UpstreamUnavailable(sup.label, sup.unavailable_reason())
        stats = self._stats
        started = stats.clock()
        stats.active += 1
        ok = False
        # Inbound messages related to this request (streamable HTTP, in memory) are
        # handled in a copy of this context: how asks and logs find their call.  A
        # stdio session (the one kind with a ``RawTap``) reads them in its own reader
        # task, which never sees it.  An HTTP session's tap delivers in this context.
        tap = sup.tap  # this session's (a stdio one tells how its process ended)
        current = None if isinstance(tap, RawTap) else CURRENT_CALL.set(front)
        # A 2026-07-28 request declares the client capabilities per request: those the
        # host of the call declared (that the gateway can relay), not all the gateway's,
        # so that the upstream never plans an ask the host cannot answer.
        declaring = None
        if sup.is_modern:
            narrowing_stamp(session)
            declaring = DECLARING.set(front if front is not None else NO_HOST)
        tracked = self._inflight.enter(front)
        # What the server made of it (a streamable-HTTP session: ``upstream/asking.py``)
        asked = Asked() if end is not None else None
        sending = ASKED.set(asked) if asked is not None else None
        pace = Pace()
        pacing = PACE.set(pace)
        if front is not None:
            front.paces.append(pace)
        given_up = forgotten = False
        unanswered: str | None = None  # how a host's request went without an answer
        # A host's request may be a suspect replica's trial call (policies/stalls.py);
        # what the replica was heard to say since it started tells a stall.
        heard, stalls = stats.heard, stats.stalls
        watched = watched and front is not None
        trial = watched and stalls.trial_at is not None and stalls.start(started)
        # A call started while the breaker is half-open took a probe slot (the service's
        # ``admit``): the one kind that gives a slot back when its host gives up.
        breaker = stats.breaker
        probe = breaker.trips if breaker.state is BreakerState.HALF_OPEN else -1
        learned: str | None = None  # what a complete answer teaches its tool's time of
        try:
            try:
                result = await op(session)
                ok = True
                if watched and _complete(result):
                    learned = what
                return result
            except anyio.get_cancelled_exc_class():
                # The caller gave up (a host's cancel, a host gone, an ask left
                # unanswered, the gateway stopping): it says nothing of the upstream.
                # Counted as a failure, five cancels by one impatient host opened the
                # breaker for every caller.  The call timeout is an exception, not this.
                # Only a long wait with nothing heard from the replica is a stall.
                given_up, unanswered = True, "cancelled"
                raise
            except MCPError as exc:
                if end is not None and end.refused(exc, asked):  # not run: sent again (above)
                    forgotten = True
                    raise _Forgotten(session, end) from exc
                cause = sup.tap.fatal if sup.tap is not None else None  # the stdio reader's
                if connection_lost(exc, cause):  # not an upstream's own -32000 answer
                    detail, intact = lost_with(exc, cause)
                    reason = f"connection closed during {what}{detail}"
                    if not intact:  # (an HTTP tap's own; an idle close: http_resend)
                        sup.mark_broken(reason)
                    ended = "" if cause else await process_end(tap)
                    raise UpstreamRequestFailed(
                        sup.label, f"{reason}{ended}{sup.stderr_hint()}") from exc
                if exc.error.code == types.REQUEST_TIMEOUT:
                    unanswered = "timed out"
                    raise timed_out(sup.label, what, self._budget(), exc,
                                    sup.config) from exc
                if exc.error.message.startswith(INVALID_RESPONSE):  # the tap's, not its
                    raise UpstreamRequestFailed(sup.label,
                                                f"{what}: {exc.error.message}") from exc
                if (refused := bearer_refusal(exc, sup, asked)) is not None:
                    raise UpstreamRequestFailed(sup.label, f"{what}: {refused}") from exc
                ok = True  # an error *response*: the upstream is alive and answering
                # Its text goes to the host, the call record and the logs: mask secrets
                # the upstream echoed, and the call's credential arguments (a prompt's
                # "token X is not valid" reached the host whole: review24; error path).
                exc.error.message = mask_echo(exc.error.message, arguments,
                                              self.redact_keys)
                if exc.error.code == types.URL_ELICITATION_REQUIRED and front is not None:
                    self._inflight.url_asks.required(exc.error.data, front, sup.label)
                raise
            except ValidationError as exc:  # an answer the SDK could not read: not the
                # host's arguments (FastMCP would answer -32602 for it), the server's fault
                raise UpstreamRequestFailed(
                    sup.label, f"{what} returned an invalid result: {describe_error(exc)}"
                ) from exc
            except TRANSPORT_ERRORS as exc:  # (an HTTP tap's own connection: this call's)
                if not getattr(exc, "session_intact", False):
                    sup.mark_broken(f"transport failed during {what}: {describe_error(exc)}")
                raise UpstreamRequestFailed(
                    sup.label, f"transport failed during {what}: {describe_error(exc)}"
                ) from exc
            finally:
                if current is not None:
                    CURRENT_CALL.reset(current)
                if sending is not None:
                    ASKED.reset(sending)
                if declaring is not None:
                    DECLARING.reset(declaring)
                PACE.reset(pacing)
                pace.moved.clear()  # its deadlines are over (each holds it: a cycle)
                if front is not None:
                    front.paces.remove(pace)
                stats.active -= 1
                if given_up or forgotten:
                    stats.given_up(probe)
                else:
                    stats.record(ok, started, watched, learned, pace)
                if not ok and watched and not forgotten:
                    assert front is not None
                    stats.unanswered(what, started, heard, _host_key(front), unanswered,
                                     trial, self.call_timeout)
                if not stats.active and self._on_idle is not None:
                    self._on_idle()
        finally:
            self._inflight.leave(tracked, front)

    async def bounded(
        self, what: str, front: FrontCall | None, op: Callable[[ClientSession], Awaitable[T]]
    ) -> T:
        """``request`` with the call timeout applied here (for SDK calls that take none)."""
        async def within(session: ClientSession) -> T:
            try:
                with anyio.fail_after(self._budget()):
                    return await op(session)
            except TimeoutError:
                raise MCPError(code=types.REQUEST_TIMEOUT, message="timed out") from None

        return await self.request(what, front, within)

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """``on_progress``: where its progress goes, if not to ``front`` (a retried
        call's, passing on only progress that rises: ``routing.attempts.rising``)."""
        progress = on_progress or (
            front.progress if front is not None and front.session is not None else None)
        sup = self._sup

        async def op(session: ClientSession) -> Any:
            async def send(report: ProgressFnT | None, within: float) -> Any:
                return await session.call_tool(  # type: ignore[misc]
                    name,
                    arguments,
                    read_timeout_seconds=within,
                    progress_callback=report,
                    meta=front.meta if front else None,  # type: ignore[arg-type]
                    input_responses=front.input_responses if front and sup.is_modern
                    else None,
                    request_state=front.request_state if front and sup.is_modern else None,
                    allow_input_required=True,
                )

            return await progress_bounded(self.call_timeout, self.max_total, progress, send,
                                          self._stats.progressed)

        result: types.CallToolResult | types.InputRequiredResult = await self.request(
            f"tools/call '{name}'", front, op, arguments=arguments)
        if isinstance(result, types.CallToolResult) and result.is_error:
            for block in result.content:
                if isinstance(block, types.TextContent):
                    block.text = mask_echo(block.text, arguments, self.redact_keys)
        return result

    async def call_tool_raw(
        self, params: dict[str, Any], front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """``tools/call`` with ``params`` as JSON, answered as JSON (the stdio express lane).

        The same session, stamp, timeout, cancellation and bookkeeping as
        ``call_tool``; only the typed result models are skipped (their validation and
        re-encoding cost more than the rest of a relayed call).  ``params`` is sent as
        given after this session's own ``_meta`` stamp (era, client info, capabilities).
        """
        name = params["name"]
        result = await self.request(f"tools/call '{name}'", front,
                                    self._raw_op("tools/call", params, on_progress, name),
                                    arguments=params.get("arguments"))
        if result.get("isError") and isinstance(result.get("content"), list):
            for block in result["content"]:
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    # A lifted text (upstream/lifting.py) decoded first: masked as its
                    # token, it reached the host as the token.
                    block["text"] = mask_echo(text_of(block["text"]), params.get("arguments"),
                                              self.redact_keys)
        return result

    async def request_raw(
        self, method: str, params: dict[str, Any], front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Request ``method`` with ``params`` as JSON on the live session; JSON back.

        Extension opt-ins the caller puts under ``_meta``'s client capabilities
        (``{"extensions": {id: settings}}``, e.g. the tasks extension) are added to the
        session's own capabilities on a 2026-07-28 session, where extensions are
        negotiated per request; a handshake-era session never sends them.
        """
        # Not watched for stalls: a task's requests may wait on its long run by design.
        return await self.request(method, front, self._raw_op(method, params, on_progress),
                                  watched=False, arguments=params.get("arguments"))

    def _raw_op(self, method: str, params: dict[str, Any], on_progress: ProgressFnT | None,
                name: str | None = None) -> Callable[[ClientSession], Awaitable[dict[str, Any]]]:
        async def op(session: ClientSession) -> dict[str, Any]:
            # A copy per attempt: the stamp writes into _meta, and a retry may go to a
            # replica of another era.
            meta = dict(params.get("_meta") or {})
            asked = meta.pop(types.CLIENT_CAPABILITIES_META_KEY, None)
            data: dict[str, Any] = {"method": method, "params": {**params, "_meta": meta}}
            budget = self.call_timeout  # (a request sent again: ``SPENT`` says the rest)
            opts: CallOptions = {"timeout": budget}
            stamp_request(session, data, opts)
            if asked is not None:
                add_extensions(data["params"]["_meta"], asked)
            tap = self._sup.tap
            # stdio: beside the session, on the same pipe; HTTP: the tap sends what was
            # just stamped (headers included: a second stamp would make them again).
            # Not with extension opt-ins: the session sends those, as it always has.
            # (``stamped`` marks an HttpTap: importing the class would load fastmcp.client)
            if asked is None and getattr(tap, "stamped", False):
                http = cast("HttpTap", tap)
                if http.session is session:
                    return await http.send_stamped(method, data["params"], opts, on_progress,
                                                   self.max_total)
            if tap is not None and asked is None:
                return await tap.request(method, data["params"], budget,
                                         on_progress, self.max_total)
            if name is not None:
                opts.setdefault("headers", {}).setdefault(MCP_NAME_HEADER,
                                                          encode_header_value(name))

            async def send(report: ProgressFnT | None, within: float) -> dict[str, Any]:
                opts["timeout"] = within
                if report is not None:
                    opts["on_progress"] = report
                return await send_raw_request(session, method, data["params"], opts)

            return await progress_bounded(budget, self.max_total, on_progress,
                                          send, self._stats.progressed)

        return op

    async def list_catalog(self) -> Catalog:
        return await self.bounded("catalog listing", None, self._sup.fetch_catalog)

    async def read_resource(
        self, uri: str, front: FrontCall | None, on_progress: ProgressFnT | None = None,
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """Under the progress rule of ``call_tool`` (``progress_bounded``), as ``get_prompt``:
        a read that reports progress is alive; ``on_progress`` as in ``call_tool``."""
        asked = front if front is not None and self._sup.is_modern else None
        params = types.ReadResourceRequestParams(
            uri=uri, _meta=front.meta if front else None,  # type: ignore[arg-type]
            input_responses=asked.input_responses if asked else None,
            request_state=asked.request_state if asked else None)
        return await self.request(f"resources/read '{uri}'", front, self._progressing(
            types.ReadResourceRequest(params=params), _READ_RESULT, front, on_progress))

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, front: FrontCall | None,
        on_progress: ProgressFnT | None = None,
    ) -> types.GetPromptResult | types.InputRequiredResult:
        asked = front if front is not None and self._sup.is_modern else None
        params = types.GetPromptRequestParams(
            name=name, arguments=arguments, _meta=front.meta if front else None,  # type: ignore[arg-type]
            input_responses=asked.input_responses if asked else None,
            request_state=asked.request_state if asked else None)
        return await self.request(f"prompts/get '{name}'", front, self._progressing(
            types.GetPromptRequest(params=params), _PROMPT_RESULT, front, on_progress),
            arguments=arguments)

    def _progressing(self, request: Any, result: TypeAdapter[Any], front: FrontCall | None,
                     on_progress: ProgressFnT | None) -> Callable[[ClientSession], Awaitable[Any]]:
        """``request`` sent by the session (as its ``read_resource``/``get_prompt`` do)
        under the progress rule; an ``InputRequiredResult`` only for a 2026-07-28 host."""
        progress = on_progress or (
            front.progress if front is not None and front.session is not None else None)
        asking = self._sup.is_modern and front is not None

        async def op(session: ClientSession) -> Any:
            async def send(report: ProgressFnT | None, within: float) -> Any:
                return await session.send_request(request, result,
                                                  request_read_timeout_seconds=within,
                                                  progress_callback=report)

            answer = await progress_bounded(self.call_timeout, self.max_total, progress, send,
                                            self._stats.progressed)
            if isinstance(answer, types.InputRequiredResult) and not asking:
                raise UpstreamRequestFailed(self._sup.label, f"{request.method} asked for "
                                            "input without a 2026-07-28 host to answer it")
            return answer

        return op

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        async def op(session: ClientSession) -> types.CompleteResult:
            return await session.complete(ref, argument, context_arguments=context_arguments)

        return await self.bounded("completion/complete", None, op)


# States in which no new session is coming (a forgotten one's request stops waiting).
_NO_SESSION_COMING = frozenset({UpstreamState.FAILED, UpstreamState.DISABLED,
                                UpstreamState.STOPPED})


def _complete(result: Any) -> bool:
    """Whether ``result`` (typed or raw JSON) is a complete answer: not an error, nor a
    2026-07-28 ``input_required`` round (neither tells how long the tool works)."""
    if isinstance(result, dict):
        return not result.get("isError") and result.get("resultType") != "input_required"
    return not getattr(result, "is_error", False) \
        and not isinstance(result, types.InputRequiredResult)


def _host_key(front: FrontCall) -> int:
    """Who made a request, as the stall count tells hosts apart: a number, so that the
    count keeps no host connection alive (one that is not hashable: its identity).
    A 2026-07-28 host without credentials has no connection: its full-path requests
    are each a host of their own (``FrontCall.asked_as``), so they are one host here,
    as on the express lane (``host`` None) -- else its one stop of three stuck calls
    counted three stalls, and made the replica suspect at once."""
    host = front.asked_as
    if front.caller is None and host != STDIO_HOST and front.is_modern:
        host = None
    try:
        return hash(host)
    except TypeError:
        return id(host)
