"""The call pipeline: every host call of an upstream tool, resource or prompt goes here.

Both fronts use it, whatever serves the host: the typed full path (FastMCP
components, ``components.py``) and the stdio express lane (JSON, ``lane.py``).
They differ only in their ``Encoding`` -- how a call is sent upstream and how its
result or failure is put to the host -- so that anything added here (a scope
check, a metric) holds for every call.  The stages, in order:

1. **route rule** (tools): ``route`` picks the server a matching rule sends the
   call to; a rule naming a server without the tool refuses the call before it
   starts (not observed, as no upstream was chosen; a caller restricted to other
   servers is told ``routed_away``'s words, as in stage 2);
2. **authorization**: a call of a server outside ``call.principal.servers`` is
   refused as if the component did not exist (no names leak); one of its own tools
   that a rule sends to another server (left out of its lists: a host with an older
   list) is refused with ``routed_away``'s reason, naming neither rule nor server;
   then ``authorizer(call)`` may refuse (None: no further check);
3. **curation**: ``curator(call)`` may refuse or rewrite ``call.arguments``
   (None: nothing curated); then ``results.cached`` may answer from the cache;
4. **service call**: the encoding sends it through ``Service`` (rate limits,
   balancing, retries and failover, filling ``call.path``);
5. **asks bridge** (``asks.py``): a 2026-07-28 upstream's questions are put to a
   handshake-era host and the call repeated with the answers; then
   ``results.review`` applies the server's ``max_result_bytes`` and caches;
6. **observers**: each gets a ``CallOutcome`` (server, tool, status, duration,
   ...): the call recorder (``RecordCalls``), stats, metrics; a lane's call tells
   them at the loop's next turn, after its answer went out;
7. **error mapping**: a refusal, ``UpstreamError`` or an upstream's error
   response becomes one ``Failure`` (status and message), which the encoding
   turns into what its host gets (a FastMCP error, or an ``isError`` JSON result).

The ``Call`` itself, ``Failure`` with its mapping (``failure_of``), ``CallRefused``
and ``CallOutcome`` live in ``outcomes.py``; the stages and their order are here.

A cancellation (the host's ``notifications/cancelled``, an HTTP client gone) is
observed with status ``cancelled`` and goes on; anything else raised (a bug) goes to
the caller unobserved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
import mcp_types as types
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from fastmcp.server.dependencies import get_context
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.names import shown_name
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.asks import bridge_asks, send_asking
from fast_mcp_gateway.front.mrtr import Parking
from fast_mcp_gateway.front.outcomes import (
    Call,
    CallObserver,
    CallOutcome,
    CallRefused,
    Failure,
    Status,
    failure_of,
)
from fast_mcp_gateway.front.remembered import Remembered
from fast_mcp_gateway.front.request_ids import follow_cancel
from fast_mcp_gateway.principal import LOCAL, Principal, Standing
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.rules import RouteTable
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.telemetry.arguments import (
    credential_values,
    mask_argument_values,
    names_credentials,
)
from fast_mcp_gateway.telemetry.recorder import Recorder, dumps_arguments
from fast_mcp_gateway.telemetry.redaction import RECENT
from fast_mcp_gateway.telemetry.tracing import current_trace_id, new_traceparent, trace_id_of
from fast_mcp_gateway.upstream.relay import FrontCall

logger = logging.getLogger(__name__)

R = TypeVar("R")
Out = TypeVar("Out")

UNKNOWN_NAME = 512
"""The longest name of an unknown call a record keeps whole (a resource URI may be long;
a host may send any name: one over it is cut to its head and its length)."""
_CANCELLED = "cancelled before it finished (the host cancelled it or went away)"
_CUT_AT_STOP = ("cancelled before it finished: the gateway was stopping (a restart or a "
                "deploy), not the host; it may have run upstream")
_UNKNOWN: dict[str, str] = {"tool": "Unknown tool", "resource": "Unknown resource",
                            "prompt": "Unknown prompt"}

PrincipalResolver = Callable[[], Principal]
"""Who makes the call being served, from the request context (in the call's task).
The gateway's assembly injects HTTP's (``http/access.py``: the verified token, or
the anonymous policy); the default is ``LOCAL``, the stdio host."""


PrincipalStanding = Callable[[], Standing]
"""The caller of the request being served as a lookup for later (``None``: it may use
nothing now): what its session is sent between its requests is filtered by the caller
as the running config has it then.  HTTP's (``Access.standing``) follows a static
token through reloads; the default is the caller as resolved now."""


def local_principal() -> Principal:
    return LOCAL


def routed_away(exposed: str, principal: Principal) -> str:
    """The refusal of a call of tool ``exposed`` that a route rule sends to a server
    outside its caller's ``servers`` (its host listed it before the rule came): why, and
    who can change it, naming neither the rule nor its server."""
    head = f"tool {exposed!r} is not available to this credential: the gateway routes it"
    if principal.kind == "jwt":  # no 'servers' list: its claim names them
        return (f"{head} to a server outside those the JWT's servers claim grants "
                "(gateway.auth.jwt.servers_claim); ask for that server in the claim, or "
                "ask the gateway's operator to change the route")
    return (f"{head} to a server outside the token's `servers`; ask the gateway's "
            "operator to add that server to the token or change the route")


@dataclass(slots=True)
class Answer(Generic[Out]):
    """What an encoding made of a call's result or failure.

    The pipeline hands ``output`` back to the caller, or raises ``raises``; the
    response size comes from ``size`` (an encoded line) or else from ``response``
    (a result model, measured only when an observer asks for it).
    """

    status: Status
    error: str | None = None
    output: Out | None = None
    raises: BaseException | None = None
    response: Any = None
    size: int | None = None


class Encoding(Protocol[R, Out]):
    """How one kind of call travels: typed models (FastMCP) or JSON (the lane).

    The pipeline owns every stage; an encoding only sends (``send``, and the
    ``asks.Asking`` methods for the asks bridge) and shapes the host's answer
    (``finish`` for a result, ``fail`` for a ``Failure``).
    """

    def bridges_asks(self, call: Call) -> bool:
        """Whether the host is one the gateway asks on the upstream's behalf."""
        ...

    async def send(self, call: Call) -> R: ...

    def asks(self, result: R) -> Mapping[str, Any] | None: ...

    def method_of(self, request: Any) -> str: ...

    async def ask(self, call: Call, request: Any) -> Any: ...

    def again(self, call: Call, result: R, answers: dict[str, Any]) -> None: ...

    def shows(self, asked: types.InputRequiredResult) -> R: ...

    def finish(self, call: Call, result: R) -> Answer[Out]: ...

    def fail(self, call: Call, failure: Failure) -> Answer[Out]: ...


Authorizer = Callable[[Call], Awaitable[str | None]]
"""Return None to let ``call`` through, or the reason it is refused (the host's
error text: say what is not allowed and what would allow it).  Runs after the route
rule, before anything is sent upstream, on every path."""

Curator = Callable[[Call], Awaitable[str | None]]
"""Like ``Authorizer``, after it; may also replace ``call.arguments``."""

class ResultStage(Protocol):
    """What happens to a result between the upstream and the encoding's answer (size
    limits, caching: ``front/results.py``); the same for every encoding."""

    def cached(self, call: Call, encoding: Any) -> Any | None:
        """A stored result for ``call`` in ``encoding``'s form (None: send it)."""
        ...

    def review(self, call: Call, encoding: Any, result: Any) -> Any:
        """The result to answer with; raises ``CallRefused`` to refuse it."""
        ...


def actor_name(principal: Principal, front: FrontCall) -> str:
    """Who a record names: a token's or JWT's name, else the host's client id (which
    of them: ``Principal.record_kind``)."""
    return principal.name if principal.kind in ("token", "jwt") else front.client_id


def front_of(context: Context | None = None) -> FrontCall:
    """The host request of a FastMCP call, with a W3C ``traceparent`` in its ``_meta``."""
    try:
        front = follow_cancel(FrontCall.from_context(context or get_context()))
    except RuntimeError:  # no request context (library call outside a request)
        front = FrontCall(session=None)
    meta = dict(front.meta or {})
    # The host's trace, else the one FastMCP's OpenTelemetry span runs in, else a new one.
    meta["traceparent"] = new_traceparent(trace_id_of(meta.get("traceparent"))
                                          or current_trace_id())
    return dataclasses.replace(front, meta=meta)


class RecordCalls:
    """The call recorder as an observer: one ``Invocation`` per call, redacted.  Ids are
    32 hex digits: 80 random bits per recorder and a 48-bit counter (not ``uuid4``)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._prefix = secrets.token_hex(10)
        self._serial = itertools.count(1)

    def __call__(self, outcome: CallOutcome) -> None:
        call, path = outcome.call, outcome.call.path
        route = [{"replica": r, "outcome": o} for r, o in path.attempts]
        self.recorder.record(Invocation(
            id=self._next_id(),
            trace_id=trace_id_of((call.front.meta or {}).get("traceparent")) or "",
            client=actor_name(call.principal, call.front),
            client_kind=call.principal.record_kind, kind=call.kind, exposed=call.exposed,
            server=call.service.name, original=call.original,
            replica=path.attempts[-1][0] if path.attempts else None,
            route=route or None, retries=path.retries,
            started_at=call.started_at, duration_ms=outcome.duration_ms,
            status=outcome.status,
            # An upstream's error may echo its input (pydantic's input_value=...).
            error=mask_argument_values(outcome.error, call.arguments, self.recorder.redact_keys)
            if outcome.error else ("served a stale result" if path.stale else None),
            arguments=dumps_arguments(call.arguments, call.service.config.secrets,
                                      self.recorder.redact_keys),
            rule=call.rule,
            response_bytes=outcome.response_bytes,
            # Stamped here, not by a copy of the record in the writer (per record).
            instance_id=self.recorder.instance_id,
        ))

    def unknown(self, kind: str, name: str, arguments: Any, error: str,
                principal: Principal, front: FrontCall) -> None:
        """A call, read or get of a name no server the caller may use offers: recorded
        ``rejected`` with no server (``server`` and ``original`` empty), so the call log
        shows what a host asked for in vain.  Statistics leave it out (no server's
        request: ``store/stats.aggregate_batch``); ``mcp_gateway_unknown_calls`` counts it."""
        # The name is the host's to make up (any length): it, and the answer quoting it,
        # cut as logs cut a name.
        shown = shown_name(name, UNKNOWN_NAME, UNKNOWN_NAME // 2)
        error = shown_name(error, 4 * UNKNOWN_NAME, 4 * UNKNOWN_NAME)
        self.recorder.record(Invocation(
            id=self._next_id(),
            trace_id=trace_id_of((front.meta or {}).get("traceparent")) or "",
            client=actor_name(principal, front), client_kind=principal.record_kind,
            kind=kind, exposed=shown, server="",
            original="", started_at=time.time(), duration_ms=0.0, status="rejected",
            error=mask_argument_values(error, arguments, self.recorder.redact_keys),
            arguments=None if arguments is None else dumps_arguments(
                arguments, frozenset(), self.recorder.redact_keys),
            instance_id=self.recorder.instance_id))

    def _next_id(self) -> str:
        return f"{self._prefix}{next(self._serial) & 0xFFFFFFFFFFFF:012x}"


class CallPipeline:
    """The stages every call goes through (see the module docstring).

    ``routes``, ``resolve_principal`` (and ``standing``), ``authorizer``, ``curator``
    and ``observers`` may be changed at any time; a call uses what is set when it
    reaches each stage.
    """

    def __init__(self, manager: UpstreamManager) -> None:
        self.manager = manager
        self.routes = RouteTable()
        self.resolve_principal: PrincipalResolver = local_principal
        self.standing: PrincipalStanding = self._standing_now
        self.authorizer: Authorizer | None = None
        self.curator: Curator | None = None
        self.results: ResultStage | None = None
        # How a name the caller cannot reach is answered (the provider's: front/unknown.py).
        self.unknown: Callable[[str, str], str] = lambda kind, name: (
            f"{_UNKNOWN[kind]}: {name!r}")
        # What that answer adds while the runtime registrations are unread ("" if read):
        # a gateway started without its store does not know their names yet.
        self.unread: Callable[[], str] = lambda: ""
        self.observers: list[CallObserver] = []
        self.stopping = False  # set as the gateway stops: what a cancellation then means
        self._recording: RecordCalls | None = None
        # MRTR: 2026-07-28 hosts' calls that may meet pushed requests (front/mrtr.py).
        self._parking: Parking | None = None
        # The redaction keys, and per exposed tool whether its schema names a credential.
        self._credential_tools: tuple[tuple[str, ...], Remembered[Any, bool]] | None = None

    def _standing_now(self) -> Standing:
        principal = self.resolve_principal()
        return Standing(lambda: principal)

    @property
    def parking(self) -> Parking | None:
        return self._parking

    @parking.setter
    def parking(self, parking: Parking | None) -> None:
        """Park 2026-07-28 hosts' asked calls in ``parking``; a parked call that ends
        with no host round to answer (its question or result expired) is observed here."""
        self._parking = parking
        if parking is not None:
            parking.abandoned = self._abandoned

    @property
    def recorder(self) -> Recorder | None:
        return self._recording.recorder if self._recording is not None else None

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        """Record calls with ``recorder`` (None: stop recording)."""
        if self._recording is not None:
            self.observers.remove(self._recording)
        self._recording = recording = RecordCalls(recorder) if recorder is not None else None
        self.observers.extend([recording] if recording is not None else [])

    def unknown_called(self, kind: str, name: str, arguments: Any, error: str) -> None:
        """Record the current request's call of a name it cannot reach (``error``: what
        its host is told), when calls are recorded (``RecordCalls.unknown``)."""
        if self._recording is not None:
            self._recording.unknown(kind, name, arguments, error, self.resolve_principal(),
                                    front_of())

    def route(self, exposed: str, owner: Service, original: str) -> tuple[Service, str | None]:
        """The server a route rule sends tool ``exposed`` to (and the rule), or ``owner``;
        ``ToolError`` when the rule's server has no tool ``original``."""
        rule = self.routes.rule_for(exposed)
        if rule is None:
            return owner, None
        target = self.manager.services.get(rule.target)
        if target is None or not any(t.name == original for t in target.catalog.tools):
            if not (principal := self.resolve_principal()).may_use(rule.target):
                # A caller restricted to other servers learns neither the rule nor its
                # server: as ``_admit`` refuses a working such rule.
                raise ToolError(routed_away(exposed, principal) if principal.may_use(owner.name)
                                else self.unknown("tool", exposed))
            # A rule outlives its server (removed since, or renamed): only the rule can
            # be changed then.
            why = ("is not configured (removed since the rule was made?); change the "
                   f"rule's target or delete it: admin tool gateway_delete_route "
                   f'{{"route_id": {rule.id}}} (HTTP mode: DELETE /api/v1/routes/{rule.id})'
                   if target is None else f"has no tool '{original}'")
            raise ToolError(f"route #{rule.id} ({rule.match} '{rule.pattern}') sends "
                            f"'{exposed}' to server '{rule.target}', which {why}")
        return target, f"#{rule.id} {rule.match} '{rule.pattern}' -> {rule.target}"

    async def run(self, call: Call, encoding: Encoding[Any, Out]) -> Out:
        """Take ``call`` through the stages after routing; the encoding's answer.

        Returns the encoding's output, or raises what the encoding made of a failure
        (or ``mrtr.AnsweredEarly``: a lazily parked call's host request was answered
        from the task of the upstream's first question, through ``conclude``).
        """
        try:
            await self._admit(call)
            stage = self.results
            result = stage.cached(call, encoding) if stage is not None else None
            if result is None:
                result = await send_asking(self.parking, call, encoding, self.conclude)
                if encoding.bridges_asks(call):
                    result = await bridge_asks(call.service.name, call, encoding, result)
                if stage is not None:
                    result = stage.review(call, encoding, result)
            asking = encoding.asks(result) is not None
            answer = encoding.finish(call, result)
        except anyio.get_cancelled_exc_class():
            # The host cancelled the call (notifications/cancelled) or went away (an
            # HTTP disconnect), or the gateway is stopping: recorded as cancelled, not
            # as an error, and the cancellation goes on.  (A parked call whose host
            # request was answered early was recorded then.)
            if not getattr(call.front, "answered", False):
                self._observe(call, Answer("cancelled", _CUT_AT_STOP if self.stopping
                                           else _CANCELLED))
            raise
        except (CallRefused, UpstreamError, MCPError) as exc:
            return self._failed(call, encoding, exc)
        return self._answered(call, answer, asking)

    def refuse(self, call: Call, encoding: Encoding[Any, Out], reason: str) -> Out:
        """``call`` refused before any stage (``route`` found its rule broken): answered
        as a refusal and observed as ``rejected``, as ``run`` does a stage's refusal."""
        return self._failed(call, encoding, CallRefused(reason))

    def conclude(self, call: Call, encoding: Encoding[Any, Out], result: Any) -> Out:
        """The tail of ``run`` for a result sent elsewhere (MRTR's first round of a
        lazily parked call): results stage, the encoding's answer, observers."""
        try:
            stage = self.results
            if stage is not None:
                result = stage.review(call, encoding, result)
            asking = encoding.asks(result) is not None
            answer = encoding.finish(call, result)
        except (CallRefused, UpstreamError, MCPError) as exc:
            return self._failed(call, encoding, exc)
        return self._answered(call, answer, asking)

    def _failed(self, call: Call, encoding: Encoding[Any, Out],
                exc: CallRefused | UpstreamError | MCPError) -> Out:
        answer = encoding.fail(call, failure_of(call, exc))
        self._observe(call, answer, exc)
        if answer.raises is exc:
            raise exc
        if answer.raises is not None:
            raise answer.raises from exc
        return cast(Out, answer.output)

    def _answered(self, call: Call, answer: Answer[Out], asking: bool = False) -> Out:
        # A round that shows the host questions (``input_required``) is not the call's
        # outcome: the round that ends the call is observed, once, as the whole call
        # (for a parked call, from its first round's start: ``Parking.send``).
        if not asking:
            self._observe(call, answer)
        if answer.raises is not None:
            raise answer.raises
        return cast(Out, answer.output)

    async def _admit(self, call: Call) -> None:
        principal = call.principal
        if not principal.has("tools"):
            # A verified token that grants neither scope (e.g. a JWT without a known
            # scope): it may not use the catalog, as REST and /metrics also refuse it.
            raise CallRefused(f"this token lacks the scope 'tools' needed to use "
                              f"{call.kind}s; ask for a token with scope tools or admin")
        if principal.servers is not None and not (
            call.owner.name in principal.servers and call.service.name in principal.servers
        ):
            # Worded as for a component that does not exist: a restricted caller
            # must not learn which servers the gateway fronts.  (One of its own that a
            # rule routes to another server: why, naming neither; its lists leave it
            # out, so only a host with an older list calls it.)
            raise CallRefused(self.unknown(call.kind, call.exposed)
                              if call.owner.name not in principal.servers
                              else routed_away(call.exposed, principal))
        if self.authorizer is not None and (reason := await self.authorizer(call)) is not None:
            raise CallRefused(reason)
        if self.curator is not None and (reason := await self.curator(call)) is not None:
            raise CallRefused(reason)
        if call.kind == "tool" and call.arguments:
            # (without a store: the setting still, as the manager has it)
            keys = self.recorder.redact_keys if self.recorder is not None \
                else self.manager.redact_keys
            if self._names_credentials(call.exposed, keys):
                # Masked from now on wherever the upstream may echo them first (its
                # stderr as it crashes, last_error), not only in this call's error.
                RECENT.add(credential_values(call.arguments, keys))

    def _names_credentials(self, exposed: str, keys: tuple[str, ...]) -> bool:
        """Whether tool ``exposed``'s input schema names a credential-like property
        (remembered per schema: ~0.3 us a call for the others)."""
        entry = self.manager.view.tools.get(exposed)
        schema = entry[1].input_schema if entry is not None else None
        memo = self._credential_tools
        if memo is None or memo[0] is not keys:  # other keys (a reload): start over
            memo = self._credential_tools = (keys, Remembered[Any, bool](
                lambda schema: names_credentials(schema, keys)))
        return memo[1](exposed, schema)

    def _abandoned(self, call: Any, status: str, error: str) -> None:
        """A parked call that ended with no host round to answer: its one record."""
        self._observe(call, Answer(cast(Status, status), error))

    def _observe(self, call: Call, answer: Answer[Any],
                 cause: BaseException | None = None) -> None:
        if not self.observers or call.observed:
            return
        call.observed = True
        outcome = CallOutcome(call, answer.status, answer.error,
                              (time.perf_counter() - call.t0) * 1000, answer.response,
                              answer.size, cause)
        if call.front.observed_after_answer:  # a lane writes before its task yields
            asyncio.get_running_loop().call_soon(self._tell, outcome)
        else:
            self._tell(outcome)

    def _tell(self, outcome: CallOutcome) -> None:
        call = outcome.call
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:  # an observer's bug must not fail the call it watched
                logger.exception("call observer %r failed on %s %s", observer, call.method,
                                 call.exposed)
