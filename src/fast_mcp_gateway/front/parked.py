"""One parked call (``ParkedCall``) and the host the upstream relay sees for it
(``ParkedFront``); ``front/mrtr.py`` has how calls get parked and continued."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.upstream.relay import FrontCall


def declares(front: FrontCall, capability: str) -> bool:
    """Whether the host of ``front`` declared ``sampling`` / ``elicitation`` / ``roots``
    (``FrontCall.declared_capabilities``: a 2026-07-28 request's own envelope, a
    handshake-era session's initialize)."""
    return (front.declared_capabilities() or {}).get(capability) is not None


class Lazy(Protocol):
    """A call sent in its caller's task that no pushed request has parked yet
    (``mrtr._Lazy``)."""

    host: FrontCall

    def promote(self, front: ParkedFront) -> ParkedCall: ...


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
    progress and logs go to the host request being served now (none between rounds).

    Lazy (``lazy`` set): until the first ask, progress and logs go to the host's
    own request, and that ask makes the ``ParkedCall`` (``_Lazy.promote``)."""

    parked: ParkedCall | None = None
    lazy: Lazy | None = None

    @property
    def reachable(self) -> bool:
        return True

    @property
    def answered(self) -> bool:
        """Whether the host request was answered early (lazily parked, then asked)."""
        return self.lazy is not None and self.parked is not None

    def _host(self) -> FrontCall | None:
        """The host request that made the call: what it declared, where it is answered."""
        if self.parked is not None:
            return self.parked.host
        return self.lazy.host if self.lazy is not None else None

    @property
    def observed_after_answer(self) -> bool:
        """As the host request that made the call (a lane's, whose rounds the lane serves)."""
        host = self._host()
        return host is not None and host.observed_after_answer

    @property
    def between_rounds(self) -> bool:
        parked = self.parked
        return parked is not None and parked.current is None and parked.outcome is None

    def _now(self) -> FrontCall | None:
        parked = self.parked
        if parked is not None:
            return parked.current
        return self.lazy.host if self.lazy is not None else None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        current = self._now()
        if current is not None:
            await current.progress(progress, total, message)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        current = self._now()
        if current is not None:
            await current.log(params)

    def can_ask(self, capability: str) -> bool:
        host = self._host()
        return host is not None and declares(host, capability)

    def declared_capabilities(self) -> dict[str, Any] | None:
        """The host's (a lane host has no session: its own request's envelope), which a
        2026-07-28 replica's request declares (``upstream/requests.py``)."""
        host = self._host()
        return None if host is None else host.declared_capabilities()

    async def _ask(self, request: Any, result_type: Any) -> Any:
        parked = self.parked
        if parked is None:
            assert self.lazy is not None
            parked = self.parked = self.lazy.promote(self)
        return await parked.ask(request, result_type)

    async def create_message(self, params: types.CreateMessageRequestParams) -> Any:
        result_type: Any = (types.CreateMessageResultWithTools if params.tools
                            else types.CreateMessageResult)
        return await self._ask(types.CreateMessageRequest(params=params), result_type)

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        result: types.ElicitResult = await self._ask(types.ElicitRequest(params=params),
                                                     types.ElicitResult)
        return result

    async def list_roots(self) -> types.ListRootsResult:
        result: types.ListRootsResult = await self._ask(types.ListRootsRequest(),
                                                        types.ListRootsResult)
        parked, host = self.parked, self._host()
        if parked is not None and parked.on_roots is not None and host is not None:
            await parked.on_roots(parked.server, host, result)   # upstream/roots.py
        return result


class ParkedCall:
    """One upstream call held across a 2026-07-28 host's rounds (see the module doc)."""

    def __init__(self, token: str, owner: tuple[str, str, str], what: str, server: str,
                 host: FrontCall, path: CallPath, ask_timeout: float,
                 timer: anyio.CancelScope | None = None) -> None:
        self.token, self.owner, self.what, self.server = token, owner, what, server
        self.path = path
        self.call: Any = None  # the pipeline call of the first round (mrtr.Parkable)
        self.ask_timeout = ask_timeout
        self.current: FrontCall | None = None  # the host request being served now
        self.host = host  # the host request that made the call: what it declared
        self._asks: dict[str, _Ask] = {}
        self._shown: set[str] = set()
        self._keys = 0
        self._changed = anyio.Event()
        # The scope an unanswered question expires (around the upstream call).
        self.timer = timer if timer is not None else anyio.CancelScope()
        # Lazy parking: the first round's answer, sent by the first asker.
        self.first_round: Callable[[], Awaitable[None]] | None = None
        self.outcome: tuple[Any, BaseException | None] | None = None
        self.collected = anyio.Event()
        # Told the roots the host gave (``SoleHost.learned``: roots outside calls).
        self.on_roots: Callable[[str, FrontCall, types.ListRootsResult],
                                Awaitable[None]] | None = None
        self.cancelled_by_host = False
        self.recorded = False  # its one record made as it ended (``Parking._abandon``)
        self.waiting_on: list[str] = []  # the methods the host was last shown

    def declares(self, capability: str) -> bool:
        return declares(self.host, capability)

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
            if self.first_round is not None:
                first, self.first_round = self.first_round, None
                # The host's first request is answered exactly once, even if this
                # question is withdrawn meanwhile (no checkpoint before the shield).
                with anyio.CancelScope(shield=True):
                    await first()
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

    def cancel(self) -> None:
        """The host gave up a round (before it was served, too: a crossed round's):
        the upstream call is cancelled, unless it has ended."""
        if self.outcome is None:
            self.cancelled_by_host = True
            self.timer.cancel()

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
            self.cancel()
            raise
        finally:
            self.current = None
        return self.show(unshown)

    def show(self, unshown: list[str]) -> types.InputRequiredResult:
        """The questions to show the host now (``unshown`` and those still unanswered),
        starting their ``ask_timeout``."""
        self._shown.update(unshown)
        self.waiting_on = sorted({str(self._asks[key].request.method) for key in self._shown})
        self.timer.deadline = anyio.current_time() + self.ask_timeout
        return types.InputRequiredResult(
            input_requests={key: self._asks[key].request for key in self._asks
                            if key in self._shown},
            request_state=self.token,
        )

    def unshown(self) -> list[str]:
        return [key for key in self._asks if key not in self._shown]

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


def parked_front(host: FrontCall) -> ParkedFront:
    """``host`` as a ``ParkedFront``: its fields (a lane's too) without re-validation,
    and its own in-flight bookkeeping."""
    front = ParkedFront.__new__(ParkedFront)
    front.__dict__.update(host.__dict__)
    front._active, front._asks = 0, set()
    front.parked = front.lazy = None
    return front
