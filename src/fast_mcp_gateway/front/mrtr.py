"""Multi round-trip requests (MRTR) for 2026-07-28 hosts in front of pushing upstreams.

A handshake-era upstream asks for input *during* a call, with a pushed request
(``elicitation/create``, ``sampling/createMessage``, ``roots/list``) that it waits on.
A 2026-07-28 host is sessionless: nothing can be pushed to it.  It is asked by
answering its call with an ``InputRequiredResult``; it then calls again with
``inputResponses`` and the echoed ``requestState``.

``Parking`` joins the two.  A 2026 host's call of an upstream that may push is sent
from a task the parking owns (a ``ParkedCall``), with a ``ParkedFront`` as its host:
the relay (``upstream/relay.py``) hands a pushed request to it as to any host, and it
*parks* the request instead of sending it.  The host's request then answers with
every question parked so far (``InputRequiredResult``, ``requestState`` = the
parked call's token), while the upstream's request and call stay open.  When the
host calls again with that token, its answers go to the waiting upstream requests
and the host waits for what the upstream does next: the final result, or more
questions (another round).

Bounds and endings:

* a question unanswered ``ask_timeout`` seconds after the host was shown it
  cancels the upstream call (``notifications/cancelled``), logs a warning, and a
  later call with that token is told so; the upstream's own call timeout still
  applies to the whole call;
* a host that cancels a round (or whose HTTP request ends) cancels the upstream call;
* a token is bound to the caller (principal) and the component it called, and a
  round is served to one host request at a time;
* at most ``max_parked`` calls are held; beyond that a call fails with a clear error.

A parked call lives in this process: behind several gateway instances a
2026-07-28 host's continuation must reach the instance that answered its first
request, else it is told the question is not held here.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.abc
import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.service import CallPath, Service
from fast_mcp_gateway.upstream.relay import FrontCall

logger = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
TOKEN_PREFIX = "gw-mrtr."
"""How the gateway's own ``requestState`` starts (anything else is an upstream's)."""
DEFAULT_ASK_TIMEOUT = 120.0
DEFAULT_MAX_PARKED = 1024
_TOMBSTONES = 1024  # ended tokens remembered, to tell a late host what happened


class Parkable(Protocol):
    """What parking reads and writes on a pipeline ``Call`` (``calls.Call``)."""

    kind: str
    exposed: str
    service: Service
    front: FrontCall
    principal: Principal
    path: CallPath

    @property
    def method(self) -> str: ...


class Sending(Protocol[R_co]):
    """The encoding's side (``asks.Asking``): send the call, show questions as ``R``."""

    async def send(self, call: Any) -> R_co: ...

    def shows(self, asked: types.InputRequiredResult) -> R_co: ...


@runtime_checkable
class Declaring(Protocol):
    """A host request that knows the capabilities its host declared (the express
    lane's, from a 2026-07-28 request envelope)."""

    def declares(self, capability: str) -> bool: ...


def declares(front: FrontCall, capability: str) -> bool:
    """Whether the host of ``front`` declared ``sampling`` / ``elicitation`` / ``roots``."""
    if isinstance(front, Declaring):
        return front.declares(capability)
    if front.session is None:
        return False
    try:  # a 2026-07-28 request's own envelope, a handshake-era session's initialize
        caps = front.session.client_capabilities
    except Exception:  # noqa: BLE001 - no capabilities known on this transport
        return False
    return caps is not None and getattr(caps, capability, None) is not None


@dataclass(eq=False)
class _Ask:
    """One pushed request the upstream is waiting on."""

    request: types.CreateMessageRequest | types.ElicitRequest | types.ListRootsRequest
    result_type: Any
    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: Any = None
    error: types.ErrorData | None = None

    def settle(self, answer: Any = None, error: types.ErrorData | None = None) -> None:
        if not self.answered.is_set():
            self.answer, self.error = answer, error
            self.answered.set()


@dataclass(eq=False)
class ParkedFront(FrontCall):
    """The host of a parked call, as the upstream relay sees it: asks are parked,
    progress and logs go to the host request being served now (none between rounds)."""

    parked: ParkedCall | None = None

    @property
    def reachable(self) -> bool:
        return True

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        current = self.parked.current if self.parked is not None else None
        if current is not None:
            await current.progress(progress, total, message)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        current = self.parked.current if self.parked is not None else None
        if current is not None:
            await current.log(params)

    def can_ask(self, capability: str) -> bool:
        return self.parked is not None and self.parked.declares(capability)

    async def create_message(self, params: types.CreateMessageRequestParams) -> Any:
        assert self.parked is not None
        result_type: Any = (types.CreateMessageResultWithTools if params.tools
                            else types.CreateMessageResult)
        return await self.parked.ask(types.CreateMessageRequest(params=params), result_type)

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert self.parked is not None
        result: types.ElicitResult = await self.parked.ask(types.ElicitRequest(params=params),
                                                           types.ElicitResult)
        return result

    async def list_roots(self) -> types.ListRootsResult:
        assert self.parked is not None
        result: types.ListRootsResult = await self.parked.ask(types.ListRootsRequest(),
                                                              types.ListRootsResult)
        return result


class ParkedCall:
    """One upstream call held across a 2026-07-28 host's rounds (see the module doc)."""

    def __init__(self, token: str, owner: tuple[str, str, str], what: str, server: str,
                 host: FrontCall, path: CallPath, ask_timeout: float) -> None:
        self.token, self.owner, self.what, self.server = token, owner, what, server
        self.path = path
        self.ask_timeout = ask_timeout
        self.current: FrontCall | None = None  # the host request being served now
        self._declaring = host
        self._asks: dict[str, _Ask] = {}
        self._shown: set[str] = set()
        self._keys = 0
        self._changed = anyio.Event()
        self.timer = anyio.CancelScope()  # the scope an unanswered question expires
        self.outcome: tuple[Any, BaseException | None] | None = None
        self.collected = anyio.Event()
        self.cancelled_by_host = False
        self.waiting_on: list[str] = []  # the methods the host was last shown

    def declares(self, capability: str) -> bool:
        return declares(self._declaring, capability)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- the upstream's side (in the SDK's request handler task) ------------------------

    async def ask(self, request: Any, result_type: Any) -> Any:
        """Park one pushed request until the host answers it (or the call ends)."""
        self._keys += 1
        key = f"{self._keys}-{request.method.split('/')[0]}"
        ask = self._asks[key] = _Ask(request, result_type)
        self._wake()
        try:
            await ask.answered.wait()
        finally:
            self._asks.pop(key, None)
            self._shown.discard(key)
        if ask.error is not None:
            raise MCPError.from_error_data(ask.error)
        return ask.answer

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.outcome = (result, error)
        self._wake()

    def close(self, reason: str) -> None:
        """The call is over: every question still parked is answered with an error."""
        for ask in list(self._asks.values()):
            ask.settle(error=types.ErrorData(code=types.REQUEST_TIMEOUT, message=reason))

    # -- the host's side (in its request's task) ----------------------------------------

    async def round(self, front: FrontCall, answers: Any) -> types.InputRequiredResult | Any:
        """Serve one host request: deliver ``answers``, then wait for the upstream's
        next questions (an ``InputRequiredResult``) or its result (returned or raised)."""
        if self.current is not None:
            raise UpstreamError(self.server, f"{self.what} is already waiting on another "
                                             "request of the host for this requestState")
        self.current = front
        self.timer.deadline = math.inf  # the host is back: nothing expires while it waits
        try:
            self._deliver(answers)
            while True:
                if self.outcome is not None:
                    self.collected.set()
                    result, error = self.outcome
                    if error is not None:
                        raise error
                    return result
                unshown = [key for key in self._asks if key not in self._shown]
                if unshown:
                    break
                await self._changed.wait()
        except anyio.get_cancelled_exc_class():
            # The host gave up on its call (cancelled it, or its HTTP request ended).
            if self.outcome is None:
                self.cancelled_by_host = True
                self.timer.cancel()
            raise
        finally:
            self.current = None
        self._shown.update(unshown)
        self.waiting_on = sorted({str(self._asks[key].request.method) for key in self._shown})
        self.timer.deadline = anyio.current_time() + self.ask_timeout
        return types.InputRequiredResult(
            input_requests={key: self._asks[key].request for key in self._asks
                            if key in self._shown},
            request_state=self.token,
        )

    def _deliver(self, answers: Any) -> None:
        if not isinstance(answers, Mapping):  # none, or not a map of answers: none given
            answers = {}
        for key in list(self._shown):
            ask = self._asks.get(key)
            if ask is None:
                continue
            if key not in answers:
                self._shown.discard(key)  # not answered: shown again in this round
                continue
            value = answers[key]
            # Answered: no longer the host's to answer, even before its asker wakes.
            del self._asks[key]
            self._shown.discard(key)
            if isinstance(value, BaseModel):
                value = value.model_dump(by_alias=True, mode="json", exclude_none=True)
            try:
                ask.settle(ask.result_type.model_validate(value))
            except ValidationError as exc:
                first = str(exc).splitlines()[:3]
                ask.settle(error=types.ErrorData(
                    code=types.INVALID_PARAMS,
                    message=f"the host's answer to {ask.request.method} is not a valid "
                            f"result: {' '.join(line.strip() for line in first)}"))


class Parking:
    """The parked calls of one gateway, and the task group their upstream calls run in.

    ``run`` serves them (the gateway's lifespan runs it); until it runs, calls are
    sent as they are (a pushed request then fails as it did before MRTR).
    """

    def __init__(self, ask_timeout: float = DEFAULT_ASK_TIMEOUT,
                 max_parked: int = DEFAULT_MAX_PARKED) -> None:
        self.ask_timeout = ask_timeout
        self.max_parked = max_parked
        self.expired = 0  # questions that expired unanswered (their calls were cancelled)
        self._calls: dict[str, ParkedCall] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def __len__(self) -> int:
        return len(self._calls)

    def takes(self, call: Parkable) -> bool:
        """Whether ``call`` goes through parking: a 2026-07-28 host's call that may
        meet a pushed request (some replica is handshake-era), or one continuing a
        parked call."""
        front = call.front
        if self._tg is None or not front.is_modern:
            return False  # a handshake-era host (every call of one): decided here
        state = front.request_state
        if isinstance(state, str) and state.startswith(TOKEN_PREFIX):
            return state in self._calls or state in self._ended or not call.service.is_modern
        return any(not replica.is_modern for replica in call.service.replicas)

    async def send(self, call: Parkable, sending: Sending[R]) -> R:
        """Send ``call`` (or continue the parked call it names); the upstream's result,
        or its questions shown as ``sending`` shows an ``InputRequiredResult``."""
        state = call.front.request_state
        host = call.front
        if isinstance(state, str) and state.startswith(TOKEN_PREFIX):
            parked = self._continued(call, state)
            call.path = parked.path  # the record names the replica the call went to
            answers = host.input_responses
        else:
            parked, answers = self._park(call, sending), None
        try:
            outcome = await parked.round(host, answers)
        finally:
            if parked.collected.is_set() and self._calls.pop(parked.token, None) is not None:
                self._end(parked, f"{parked.what}: this requestState's call has already "
                                  "returned its result; call it again without requestState")
        if isinstance(outcome, types.InputRequiredResult):
            return sending.shows(outcome)
        return outcome  # type: ignore[no-any-return]

    def _owner(self, call: Parkable) -> tuple[str, str, str]:
        return (f"{call.principal.kind}:{call.principal.name}", call.kind, call.exposed)

    def _continued(self, call: Parkable, token: str) -> ParkedCall:
        parked = self._calls.get(token)
        server = call.service.name
        if parked is None:
            ended = self._ended.get(token)
            raise UpstreamError(server, ended or (
                f"{call.method} '{call.exposed}': the requestState names a question this "
                "gateway does not hold (it expired, the gateway restarted, or another "
                "gateway instance asked it); call it again without requestState"))
        if parked.owner != self._owner(call):
            raise UpstreamError(server, f"{call.method} '{call.exposed}': the requestState "
                                        "belongs to another call; call it again without it")
        return parked

    def _park(self, call: Parkable, sending: Sending[R]) -> ParkedCall:
        assert self._tg is not None
        server = call.service.name
        what = f"{call.method} '{call.exposed}'"
        if len(self._calls) >= self.max_parked:
            raise UpstreamError(server, f"{what}: {self.max_parked} calls are already waiting "
                                        "for their hosts' answers; try again later")
        token = TOKEN_PREFIX + secrets.token_urlsafe(18)
        parked = ParkedCall(token, self._owner(call), what, server, call.front, call.path,
                            self.ask_timeout)
        host = call.front
        front = ParkedFront(**{f.name: getattr(host, f.name) for f in fields(FrontCall)
                               if f.init}, parked=parked)
        call.front = front
        if getattr(sending, "on_progress", None) is not None:
            # The express lane's progress callback: to the round being served, too.
            sending.on_progress = front.progress  # type: ignore[attr-defined]
        self._calls[token] = parked
        # The task copies this request's context (tracing, FastMCP's request state).
        self._tg.start_soon(self._hold, parked, lambda: sending.send(call))
        return parked

    async def _hold(self, parked: ParkedCall, send: Callable[[], Awaitable[Any]]) -> None:
        """Run the parked call's upstream call, then keep its outcome until collected."""
        try:
            with parked.timer:
                try:
                    parked.finish(await send())
                except Exception as exc:  # noqa: BLE001 - handed to the host as it came
                    parked.finish(error=exc)
            if parked.timer.cancelled_caught:
                self._ended_early(parked)
            # Kept for the host to collect until the round's deadline (none while a
            # host request waits: it takes the outcome at once).
            deadline = parked.timer.deadline
            parked.timer = anyio.CancelScope(deadline=deadline)
            with parked.timer:
                await parked.collected.wait()
            if not parked.collected.is_set() and parked.token not in self._ended:
                message = (f"{parked.what}: the host did not call again within "
                           f"{parked.ask_timeout:g}s to collect the result; call it again "
                           "without requestState")
                logger.info("upstream '%s': %s", parked.server, message)
                self._end(parked, message)
        finally:
            parked.close(f"the gateway ended {parked.what}")
            self._calls.pop(parked.token, None)

    def _ended_early(self, parked: ParkedCall) -> None:
        if parked.cancelled_by_host:
            message = f"{parked.what} was cancelled by its host"
            logger.debug("upstream %s: %s", parked.server, message)
        else:
            self.expired += 1
            asked = " + ".join(parked.waiting_on) or "its"
            message = (f"{parked.what}: the host did not answer {asked} "
                       f"question within {parked.ask_timeout:g}s (ask_timeout); the call "
                       "was cancelled upstream; call it again without requestState")
            logger.warning("upstream '%s': %s", parked.server, message)
        parked.finish(error=UpstreamError(parked.server, message))
        self._end(parked, message)

    def _end(self, parked: ParkedCall, message: str) -> None:
        self._ended[parked.token] = message
        while len(self._ended) > _TOMBSTONES:
            self._ended.popitem(last=False)
