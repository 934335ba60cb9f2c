"""Multi round-trip requests (MRTR) for 2026-07-28 hosts in front of pushing upstreams.

A handshake-era upstream asks for input *during* a call, with a pushed request
(``elicitation/create``, ``sampling/createMessage``, ``roots/list``) that it waits on.
A 2026-07-28 host is sessionless: nothing can be pushed to it.  It is asked by
answering its call with an ``InputRequiredResult``; it then calls again with
``inputResponses`` and the echoed ``requestState``.

``Parking`` joins the two.  A 2026 host's call of an upstream that may push is sent
with a ``ParkedFront`` as its host: the relay (``upstream/relay.py``) hands a pushed
request to it as to any host, and it *parks* the request instead of sending it.  The
host's request then answers with every question parked so far
(``InputRequiredResult``, ``requestState`` = the parked call's token), while the
upstream's request and call stay open (a ``ParkedCall``).  When the host calls again
with that token, its answers go to the waiting upstream requests and the host waits
for what the upstream does next: the final result, or more questions (another round).

Most calls never meet a pushed request, so where the host request can be answered
from another task (``Answering``: the stdio express lane) parking is lazy: the call
runs in the caller's own task, and only the first pushed request makes the
``ParkedCall`` (token, events, registration) and answers the host's request from the
asking task; the caller's task then holds the upstream call until the host collects
its outcome, and ends with ``AnsweredEarly`` instead of answering again.  Elsewhere
(FastMCP answers a request only when its handler returns) the upstream call runs in
a task the parking owns from the start.

Bounds and endings:

* a question unanswered ``ask_timeout`` seconds after the host was shown it
  cancels the upstream call (``notifications/cancelled``), logs a warning, and a
  later call with that token is told so; the upstream's own call timeout still
  applies to the whole call;
* a host that cancels a round (or whose HTTP request ends) cancels the upstream call;
* a stop of ``serve`` over HTTP ends the lazily parked calls as it begins
  (``Parking.stop``): their tasks are host requests' that uvicorn waits for;
* a token is bound to the caller (principal) and the component it called, and a
  round is served to one host request at a time;
* at most ``max_parked`` calls are held, a quarter of them one caller's (with
  ``auth``: stdio's host and the anonymous caller are a gateway's only caller); beyond
  that a call fails with a clear error.

A parked call lives in this process, and each token ends with the asking instance's
id (``holder``).  Behind several gateway instances on one PostgreSQL store, a round
reaching another instance is carried to the holder through the store
(``front/crossing.py``); without one, it is told which instance holds the question.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.crossed import digest
from fast_mcp_gateway.front.crossing import TOKEN_PREFIX, UNCROSSED, Crossing, holder, not_held
from fast_mcp_gateway.front.parkable import (
    Abandoned,
    AnsweredEarly,
    Conclude,
    HostRootsKeeper,
    Parkable,
    Sending,
)
from fast_mcp_gateway.front.parked import ParkedCall, ParkedFront, parked_front
from fast_mcp_gateway.upstream.relay import FrontCall

logger = logging.getLogger(__name__)

R = TypeVar("R")
DEFAULT_ASK_TIMEOUT = 120.0
DEFAULT_MAX_PARKED = 1024
PER_CALLER_SHARE = 4  # one caller (principal) may hold a quarter of the places
_SOLE_CALLERS = frozenset({"local", "anonymous"})  # kinds of a gateway's only caller
_TOMBSTONES = 1024  # ended tokens remembered, to tell a late host what happened


class Parking:
    """The parked calls of one gateway, and the task group their upstream calls run in.

    ``run`` serves them (the gateway's lifespan runs it); until it runs, calls are
    sent as they are (a pushed request then fails as it did before MRTR).
    """

    def __init__(self, ask_timeout: float = DEFAULT_ASK_TIMEOUT,
                 max_parked: int = DEFAULT_MAX_PARKED, instance: str | None = None,
                 store: Callable[[], object] | None = None, db: str | None = None,
                 record_calls: bool = True) -> None:
        self.ask_timeout = ask_timeout
        # This gateway's ``--instance-id``, in each token: another instance a host's
        # next round reaches names the one holding the question (``holder``).
        self.instance = instance
        self.max_parked = max_parked
        self.expired = 0  # questions that expired unanswered (their calls were cancelled)
        self._calls: dict[str, ParkedCall] = {}
        # Lazily parked calls, held in their host requests' tasks (``stop`` ends them).
        self._lazy: set[ParkedCall] = set()
        self.stopped = False
        self._ended: OrderedDict[str, str] = OrderedDict()
        # The tokens of both, by their digest (the name a crossed round gives: crossing.py).
        self._digests: dict[str, str] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.abandoned: Abandoned | None = None
        # Told the roots a host gave in a round, and asks for them before a call that
        # needs them (``SoleHost``: roots outside calls; the gateway sets it).
        self.roots: HostRootsKeeper | None = None
        # Rounds another instance received for calls parked here, and back (a store;
        # ``db``, ``record_calls``: the settings, to say why none crosses).
        self.crossing = Crossing(self, store, instance, db, record_calls) \
            if store and instance else None

    async def run(self, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg, self.stopped = tg, False  # served again (in process): not stopping
            if self.crossing is not None:
                tg.start_soon(self.crossing.run)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def stop(self) -> None:
        """The gateway is stopping: end the lazily parked calls now.  Their host
        requests were answered, but their tasks hold them (uvicorn waited for those
        the whole grace for requests in flight, ``stop_grace``); eager ones end with
        ``run``.  A question asked after this fails upstream."""
        self.stopped = True
        if self._lazy:  # one line, not one per call (a thousand may be held)
            logger.info("stopping: ending %d call(s) parked on the express lane, waiting "
                        "for their hosts' answers (their upstream calls are cancelled)",
                        len(self._lazy))
        for parked in list(self._lazy):
            parked.timer.cancel()

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
            return state in self._calls or state in self._ended \
                or not call.service.is_modern or self._elsewhere(state) is not None
        return any(not replica.is_modern for replica in call.service.replicas)

    async def send(self, call: Parkable, sending: Sending[R],
                   conclude: Conclude | None = None) -> R:
        """Send ``call`` (or continue the parked call it names); the upstream's result,
        or its questions shown as ``sending`` shows an ``InputRequiredResult``.

        With ``conclude`` and a host request that can be answered from another task
        (``Answering``), a fresh call is parked lazily (module doc): if it ends up
        parked, its host request is answered through ``conclude`` and ``reply``, and
        this raises ``AnsweredEarly`` once the host has collected the outcome."""
        state = call.front.request_state
        host = call.front
        if isinstance(state, str) and state.startswith(TOKEN_PREFIX):
            if (asker := self._elsewhere(state)) is not None:
                assert self.crossing is not None
                return self._shown(sending, await self.crossing.relay(
                    asker[0], asker[1], state, self._owner(call), f"{call.method} "
                    f"'{call.exposed}'", call.service.name, host.input_responses, host))
            parked = self._continued(call, state)
            # One record per call: the replica it went to, timed from its first round.
            call.path = parked.path
            call.started_at, call.t0 = parked.call.started_at, parked.call.t0
            answers = host.input_responses
        else:
            reply = getattr(host, "reply", None)
            if reply is not None and conclude is not None:
                return await self._send_lazily(call, sending, reply, conclude)
            parked, answers = self._park(call, sending), None
        try:
            outcome = await parked.round(host, answers)
        except BaseException:
            # Recorded as it ended (a stop while this round waited): told, not again.
            call.observed = call.observed or parked.recorded
            raise
        finally:
            if parked.collected.is_set() and self._calls.pop(parked.token, None) is not None:
                self._end(parked, f"{parked.what}: this requestState's call has already "
                                  "returned its result; call it again without requestState")
        return self._shown(sending, outcome)

    async def answer(self, token: str, owner: tuple[str, str, str], what: str, server: str,
                     front: FrontCall, answers: Any) -> Any:
        """Serve a round another instance received for a call parked here
        (``front/crossing.py``), as ``send`` serves one that came here."""
        parked = self._calls.get(token)
        if parked is None or parked.owner != owner:
            raise UpstreamError(server, self._ended.get(token) or (
                f"{what}: the requestState names a question the gateway instance "
                f"'{self.instance}' no longer holds (it expired, or the gateway restarted);"
                " call it again without requestState"))
        try:
            return await parked.round(front, answers)
        finally:
            if parked.collected.is_set() and self._calls.pop(parked.token, None) is not None:
                self._end(parked, f"{parked.what}: this requestState's call has already "
                                  "returned its result; call it again without requestState")

    def _elsewhere(self, token: str) -> tuple[Any, str] | None:
        """Where a round of another instance's call goes (``Crossing.elsewhere``)."""
        held = token in self._calls or token in self._ended
        return None if self.crossing is None or held else self.crossing.elsewhere(token)

    def token_of(self, digest: str) -> str | None:
        """The token of a call held here or ended lately, by its digest (``Crossing``)."""
        return self._digests.get(digest)

    def until(self, token: str) -> float | None:
        """When the call held under ``token`` ends at the latest (wall clock): its start
        plus its server's longest ``timeouts.max_total``; None if not held."""
        parked = self._calls.get(token)
        if parked is None or parked.call is None:
            return None
        call = parked.call
        return float(call.started_at) + max(
            (replica.max_total for replica in call.service.replicas), default=0.0)

    def cancel(self, token: str, owner: tuple[str, str, str]) -> None:
        """A round of the call another instance received was given up by its host before
        it was served here: the call is cancelled, as by a host giving up a round."""
        parked = self._calls.get(token)
        if parked is not None and parked.owner == owner:
            parked.cancel()

    def _forget(self, token: str) -> None:
        self._calls.pop(token, None)
        if token not in self._ended:
            self._digests.pop(digest(token), None)

    @staticmethod
    def _shown(sending: Sending[R], outcome: Any) -> R:
        if isinstance(outcome, types.InputRequiredResult):
            return sending.shows(outcome)
        # The outcome has the form of the encoding that began the call; a round the
        # other path began (each opens the other's requestState) is answered in this one's.
        adopt = getattr(sending, "adopt", None)
        return adopt(outcome) if adopt is not None else outcome  # type: ignore[no-any-return]

    def _owner(self, call: Parkable) -> tuple[str, str, str]:
        return (f"{call.principal.kind}:{call.principal.name}", call.kind, call.exposed)

    def _continued(self, call: Parkable, token: str) -> ParkedCall:
        parked = self._calls.get(token)
        server = call.service.name
        if parked is None:
            ended = self._ended.get(token)
            # An ended call was observed as it ended (its last round, or ``abandoned``):
            # a late round is told so, and is not another call.
            call.observed = ended is not None
            raise UpstreamError(server, ended or self._not_held(call, token))
        if parked.owner != self._owner(call):
            raise UpstreamError(server, f"{call.method} '{call.exposed}': the requestState "
                                        "belongs to another call; call it again without it")
        return parked

    def _not_held(self, call: Parkable, token: str) -> str:
        uncrossed = UNCROSSED if self.crossing is None else self.crossing.uncrossed()
        return not_held(f"{call.method} '{call.exposed}'", holder(token), self.instance,
                        call.service.name, uncrossed)

    def _new(self, call: Parkable, host: FrontCall,
             timer: anyio.CancelScope | None = None) -> ParkedCall:
        """A parked call for ``call`` of ``host``, held under a fresh token (raises
        ``UpstreamError`` when ``max_parked`` are held)."""
        server = call.service.name
        what = f"{call.method} '{call.exposed}'"
        if len(self._calls) >= self.max_parked:
            raise UpstreamError(server, f"{what}: {self.max_parked} calls are already waiting "
                                        "for their hosts' answers; try again later")
        # One caller that never answers would otherwise hold every place for
        # ``ask_timeout``, and every other caller's asking calls fail meanwhile.  Not
        # the one caller there is (stdio's host, anonymous without auth): its share
        # would only cut it to a quarter, and protect nobody.
        who, per_caller = self._owner(call)[0], max(1, self.max_parked // PER_CALLER_SHARE)
        if call.principal.kind not in _SOLE_CALLERS \
                and sum(parked.owner[0] == who for parked in self._calls.values()) >= per_caller:
            raise UpstreamError(server, f"{what}: {per_caller} calls of this caller are "
                                        "already waiting for its answers (the most one "
                                        "caller may have); answer or cancel them first")
        token = TOKEN_PREFIX + secrets.token_urlsafe(18)
        if self.instance is not None:
            token += "." + base64.urlsafe_b64encode(self.instance.encode()).decode().rstrip("=")
        parked = ParkedCall(token, self._owner(call), what, server, host, call.path,
                            self.ask_timeout, timer)
        parked.call = call
        parked.on_roots = self.roots.learned if self.roots is not None else None
        self._calls[token] = parked
        self._digests[digest(token)] = token
        return parked

    def _park(self, call: Parkable, sending: Sending[R]) -> ParkedCall:
        assert self._tg is not None
        host = call.front
        parked = self._new(call, host)
        front = parked_front(host)
        front.parked = parked
        call.front = front
        if getattr(sending, "on_progress", None) is not None:
            # The express lane's progress callback: to the round being served, too.
            sending.on_progress = front.progress  # type: ignore[attr-defined]
        # The task copies this request's context (tracing, FastMCP's request state).
        self._tg.start_soon(self._hold, parked, lambda: self._send(call, sending))
        return parked

    async def _send(self, call: Parkable, sending: Sending[R]) -> R:
        """Send ``call`` upstream; first, the host's roots if the server needs them and
        the gateway has none of that host's (a round of the gateway's own: roots.py)."""
        if self.roots is not None:
            await self.roots.before_call(call.service.name, call.front,
                                         call.service.config.per_client)
        return await sending.send(call)

    async def _send_lazily(self, call: Parkable, sending: Sending[R],
                           reply: Callable[[Any], Awaitable[None]], conclude: Conclude) -> R:
        """Send ``call`` in this task; parked only if the upstream pushes a request."""
        host = call.front
        lazy = _Lazy(self, call, sending, host, reply, conclude)
        front = parked_front(host)
        front.lazy = lazy
        call.front = front
        if getattr(sending, "on_progress", None) is not None:
            sending.on_progress = front.progress  # type: ignore[attr-defined]
        try:
            with lazy.timer:
                try:
                    result = await self._send(call, sending)
                except Exception as exc:
                    if lazy.parked is None:
                        raise
                    lazy.parked.finish(error=exc)
                else:
                    if lazy.parked is None:
                        return result
                    lazy.parked.finish(result)
            # Parked (only a parked call's timer is ever cancelled): the host's request
            # was answered by the first question; the outcome waits for its collection.
            assert lazy.parked is not None
            await self._keep(lazy.parked)
        finally:
            if lazy.parked is not None:
                lazy.parked.close(f"the gateway ended {lazy.parked.what}")
                self._forget(lazy.parked.token)
                self._lazy.discard(lazy.parked)
        raise AnsweredEarly(call.exposed)

    async def _hold(self, parked: ParkedCall, send: Callable[[], Awaitable[Any]]) -> None:
        """Run the parked call's upstream call, then keep its outcome until collected."""
        try:
            with parked.timer:
                try:
                    parked.finish(await send())
                except Exception as exc:  # noqa: BLE001 - handed to the host as it came
                    parked.finish(error=exc)
            await self._keep(parked)
        finally:
            parked.close(f"the gateway ended {parked.what}")
            self._forget(parked.token)

    async def _keep(self, parked: ParkedCall) -> None:
        """After the upstream call ended: keep its outcome for the host to collect until
        the round's deadline (none while a host request waits: it takes it at once)."""
        if parked.timer.cancelled_caught:
            # Expired or cancelled by its host: a later round is told by the tombstone
            # (no outcome to keep: a host request cancelled by its host waited forever).
            self._ended_early(parked)
            return
        deadline = parked.timer.deadline
        parked.timer = anyio.CancelScope(deadline=deadline)
        if self.stopped and parked in self._lazy:
            parked.timer.cancel()  # kept for no host: the gateway is stopping
        with parked.timer:
            await parked.collected.wait()
        if not parked.collected.is_set() and parked.token not in self._ended \
                and self.stopped and parked in self._lazy:
            message = (f"{parked.what}: the gateway stopped before the host called again "
                       "to collect the result; call it again without requestState")
            self._end(parked, message)
            self._abandon(parked, message, "cancelled")
        elif not parked.collected.is_set() and parked.token not in self._ended:
            message = (f"{parked.what}: the host did not call again within "
                       f"{parked.ask_timeout:g}s to collect the result; call it again "
                       "without requestState")
            logger.info("upstream '%s': %s", parked.server, message)
            self._end(parked, message)
            self._abandon(parked, message)

    def _ended_early(self, parked: ParkedCall) -> None:
        if self.stopped and parked in self._lazy:
            message = (f"{parked.what}: the gateway stopped while it waited for the host's "
                       "answers; call it again without requestState")
            logger.debug("upstream '%s': %s", parked.server, message)
            self._abandon(parked, message, "cancelled")
        elif parked.cancelled_by_host:
            message = f"{parked.what} was cancelled by its host"
            logger.debug("upstream %s: %s", parked.server, message)
        else:
            self.expired += 1
            asked = " + ".join(parked.waiting_on) or "its"
            message = (f"{parked.what}: the host did not answer {asked} "
                       f"question within {parked.ask_timeout:g}s (ask_timeout); the call "
                       "was cancelled upstream; call it again without requestState")
            logger.warning("upstream '%s': %s", parked.server, message)
            self._abandon(parked, message)
        parked.finish(error=UpstreamError(parked.server, message))
        self._end(parked, message)

    def _abandon(self, parked: ParkedCall, message: str, status: str = "timeout") -> None:
        # No host round is left to observe the call's end (a host-cancelled round
        # was observed as cancelled by its own request); a round waiting as a stop
        # ends the call is told, and not recorded again (``send``).
        if self.abandoned is not None and parked.call is not None:
            parked.recorded = True
            self.abandoned(parked.call, status, message)

    def _end(self, parked: ParkedCall, message: str) -> None:
        self._ended[parked.token] = message
        while len(self._ended) > _TOMBSTONES:
            token, _ = self._ended.popitem(last=False)
            if token not in self._calls:
                self._digests.pop(digest(token), None)


class _Lazy:
    """A call sent in its caller's task that no pushed request has parked yet."""

    __slots__ = ("call", "conclude", "host", "parked", "parking", "reply", "sending", "timer")

    def __init__(self, parking: Parking, call: Parkable, sending: Sending[Any], host: FrontCall,
                 reply: Callable[[Any], Awaitable[None]], conclude: Conclude) -> None:
        self.parking, self.call, self.sending, self.host = parking, call, sending, host
        self.reply, self.conclude = reply, conclude
        self.timer = anyio.CancelScope()
        self.parked: ParkedCall | None = None

    def promote(self, front: ParkedFront) -> ParkedCall:
        """The first pushed request: park the call (its first asker answers the host)."""
        if self.parking.stopped:  # nobody would be left to answer it
            raise MCPError(types.INVALID_REQUEST, f"{self.call.method} '{self.call.exposed}'"
                                                  ": the gateway is stopping")
        try:
            parked = self.parking._new(self.call, self.host, self.timer)
        except UpstreamError as exc:  # full: this question fails upstream, as it came
            raise MCPError(types.INVALID_REQUEST, exc.detail) from exc
        self.parked = parked
        self.parking._lazy.add(parked)
        parked.first_round = self._first_round
        return parked

    async def _first_round(self) -> None:
        parked = self.parked
        assert parked is not None
        asked = parked.show(parked.unshown())
        await self.reply(self.conclude(self.call, self.sending, self.sending.shows(asked)))

