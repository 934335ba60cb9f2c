"""``front/mrtr.Parking`` on its own: who may continue a parked call, and how it ends.

The upstream here is a coroutine that asks through the call's front as the relay
would (``front.elicit``); the end-to-end behaviour with real processes is in
``tests/test_mrtr.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.lane_host import LaneFront
from fast_mcp_gateway.front.mrtr import TOKEN_PREFIX, AnsweredEarly, Parking
from fast_mcp_gateway.principal import LOCAL, Principal
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.upstream.relay import FrontCall

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
QUESTION = types.ElicitRequestFormParams(message="Your name?",
                                         requested_schema={"type": "object", "properties": {}})


@dataclass
class Replica:
    is_modern: bool


@dataclass
class FakeService:
    name: str = "up"
    replicas: list[Replica] = field(default_factory=lambda: [Replica(False)])

    @property
    def is_modern(self) -> bool:
        return self.replicas[0].is_modern


@dataclass
class Declared(FrontCall):
    """A 2026-07-28 host request whose host declared elicitation."""

    def declares(self, capability: str) -> bool:
        return capability == "elicitation"


@dataclass(eq=False)
class FakeCall:
    front: FrontCall
    service: Any = field(default_factory=FakeService)
    principal: Principal = LOCAL
    kind: str = "tool"
    exposed: str = "up_ask"
    path: CallPath = field(default_factory=CallPath)
    started_at: float = 0.0
    t0: float = 0.0
    observed: bool = False

    @property
    def method(self) -> str:
        return "tools/call"


class Upstream:
    """The encoding's side: the 'upstream call' asks once, then answers."""

    def __init__(self, *, busy: bool = False) -> None:
        self.cancelled = anyio.Event()
        self.started = anyio.Event()
        self.gate = anyio.Event()  # busy: works (never asking) until the gate opens
        if not busy:
            self.gate.set()

    async def send(self, call: FakeCall) -> str:
        self.started.set()
        try:
            await self.gate.wait()
            answer = await call.front.elicit(QUESTION)
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        return f"done:{answer.content['name']}"

    def shows(self, asked: types.InputRequiredResult) -> types.InputRequiredResult:
        return asked


def host(state: str | None = None, answers: Any = None) -> FrontCall:
    return Declared(session=None, protocol_version=MODERN, request_state=state,
                    input_responses=answers)


async def test_a_parked_call_is_continued_by_its_own_caller_only() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Upstream()
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        first = FakeCall(host())
        assert parking.takes(first)
        asked = await parking.send(first, upstream)
        assert isinstance(asked, types.InputRequiredResult)
        ((key, request),) = (asked.input_requests or {}).items()
        assert isinstance(request, types.ElicitRequest)
        token = asked.request_state
        assert token is not None and token.startswith(TOKEN_PREFIX)

        stranger = FakeCall(host(token), principal=Principal(name="eve", scopes=frozenset()))
        assert parking.takes(stranger)
        with pytest.raises(UpstreamError, match="belongs to another call"):
            await parking.send(stranger, upstream)
        other_tool = FakeCall(host(token), exposed="up_other")
        with pytest.raises(UpstreamError, match="belongs to another call"):
            await parking.send(other_tool, upstream)

        answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
        assert await parking.send(FakeCall(host(token, answer)), upstream) == "done:Ada"
        with pytest.raises(UpstreamError, match="already returned its result"):
            await parking.send(FakeCall(host(token, answer)), upstream)
        with pytest.raises(UpstreamError, match="does not hold"):
            await parking.send(FakeCall(host(f"{TOKEN_PREFIX}made-up")), upstream)
        tg.cancel_scope.cancel()


async def test_what_is_not_parked() -> None:
    parking = Parking()
    assert not parking.takes(FakeCall(host()))  # not running: sent as before
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        assert parking.takes(FakeCall(host()))
        handshake_host = dataclasses.replace(host(), protocol_version="2025-11-25")
        assert not parking.takes(FakeCall(handshake_host))
        modern = FakeService(replicas=[Replica(True)])
        assert not parking.takes(FakeCall(host(), service=modern))
        # Another server's (or a nested gateway's) requestState goes upstream as it came.
        assert not parking.takes(FakeCall(host(f"{TOKEN_PREFIX}theirs"), service=modern))
        assert not parking.takes(FakeCall(host("upstream-state"), service=modern))
        tg.cancel_scope.cancel()


async def test_a_host_that_gives_up_cancels_the_upstream_call() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Upstream(busy=True)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        with anyio.CancelScope() as scope:
            async def cancel_when_started() -> None:
                await upstream.started.wait()
                scope.cancel()  # the host cancels its call (or its HTTP request ends)

            tg.start_soon(cancel_when_started)
            await parking.send(FakeCall(host()), upstream)
        with anyio.fail_after(10):
            await upstream.cancelled.wait()
        tg.cancel_scope.cancel()


async def test_an_unanswered_question_expires() -> None:
    parking = Parking(ask_timeout=0.05)
    upstream = Upstream()
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        asked = await parking.send(FakeCall(host()), upstream)
        with anyio.fail_after(10):
            await upstream.cancelled.wait()
        with pytest.raises(UpstreamError, match=r"did not answer elicitation/create "
                                                r"question within 0.05s"):
            await parking.send(FakeCall(host(asked.request_state, {})), upstream)
        assert parking.expired == 1
        tg.cancel_scope.cancel()


async def test_parked_calls_are_capped() -> None:
    parking = Parking(ask_timeout=60, max_parked=1)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        await parking.send(FakeCall(host()), Upstream())
        with pytest.raises(UpstreamError, match="1 calls are already waiting"):
            await parking.send(FakeCall(host()), Upstream())
        tg.cancel_scope.cancel()


# -- roots outside a call (upstream/roots.SoleHost) -------------------------------------


@dataclass(eq=False)
class RootsHost(FrontCall):
    """A handshake-era host that answers roots/list with its roots."""

    roots: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        return True

    def can_ask(self, capability: str) -> bool:
        return capability == "roots"

    async def list_roots(self) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=uri) for uri in self.roots])


class UpstreamSession:
    """An upstream session's notifications, as sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_notification(self, notification: Any) -> None:
        self.sent.append(notification)


async def test_roots_outside_a_call_come_from_the_sole_host_only() -> None:
    from fast_mcp_gateway.upstream.relay import HostRelay, InFlight
    from fast_mcp_gateway.upstream.roots import SoleHost

    inflight, sole = InFlight(), SoleHost()
    relay = HostRelay("up", inflight, sole=sole)
    session = UpstreamSession()
    ctx: Any = SimpleNamespace(session=session)
    # No sole host (HTTP, library use, or before the stdio host's handshake): the
    # documented answer is no roots; the session is told once a host can be asked.
    assert (await relay.on_list_roots(ctx)).roots == []
    sole.front = lambda: RootsHost(session=None, roots=("file:///stdio-host",))
    assert [str(r.uri) for r in (await relay.on_list_roots(ctx)).roots] == [
        "file:///stdio-host"]
    await sole.arrived()
    assert [type(n) for n in session.sent] == [types.RootsListChangedNotification]
    await sole.arrived()  # told once
    assert len(session.sent) == 1
    # Within a call, the caller's host is asked, never the sole host instead of it.
    caller = RootsHost(session=None, roots=("file:///caller",))
    with inflight.track(caller):
        assert [str(r.uri) for r in (await relay.on_list_roots(ctx)).roots] == [
            "file:///caller"]
    # A relay without a sole host at all (a replica built outside a manager).
    assert (await HostRelay("up", InFlight()).on_list_roots(ctx)).roots == []


# -- lazy parking: the call runs in its caller's task until the upstream asks ----------


@dataclass
class Answerable(Declared):
    """A host request that can be answered from another task (the stdio express lane's
    ``LaneFront.reply``): what it was answered with goes to ``replies``."""

    replies: list[Any] = field(default_factory=list, repr=False)
    answered: anyio.Event = field(default_factory=anyio.Event, repr=False)

    async def reply(self, output: Any) -> None:
        self.replies.append(output)
        self.answered.set()


def conclude(call: Any, encoding: Any, result: Any) -> Any:
    """The pipeline's tail (``CallPipeline.conclude``): here the result as it is."""
    return ("concluded", result)


class Asker:
    """An upstream call that asks ``questions`` at once from other tasks (as the SDK's
    handler of a pushed request does), then answers with what it was told."""

    def __init__(self, questions: int = 1, *, finish_first: bool = False,
                 then_work: bool = False) -> None:
        self.questions = questions
        self.finish_first = finish_first  # return without waiting on its questions
        self.then_work = then_work  # once answered, work until cancelled
        self.returned = anyio.Event()
        self.tasks: list[Any] = []
        self.cancelled = anyio.Event()
        self.asked = anyio.Event()
        self.failures: list[str] = []

    async def send(self, call: FakeCall) -> str:
        self.tasks.append(anyio.get_current_task().id)
        answers: list[str] = []

        async def ask(n: int) -> None:
            params = types.ElicitRequestFormParams(
                message=f"q{n}", requested_schema={"type": "object", "properties": {}})
            try:
                answer = await call.front.elicit(params)
            except MCPError as exc:
                self.failures.append(exc.error.message)
                return
            answers.append(f"{n}:{answer.content['name']}")

        try:
            async with anyio.create_task_group() as tg:
                for n in range(self.questions):
                    tg.start_soon(ask, n)
                if self.finish_first:
                    await self.asked_all(call)
                    tg.cancel_scope.cancel()
            if self.then_work:
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        self.returned.set()
        return "done:" + ",".join(sorted(answers))

    async def asked_all(self, call: FakeCall) -> None:
        front: Any = call.front
        while front.parked is None or len(front.parked.unshown()) + len(
                front.parked.waiting_on) < self.questions:
            await anyio.lowlevel.checkpoint()

    def shows(self, asked: types.InputRequiredResult) -> types.InputRequiredResult:
        return asked


def answerable(state: str | None = None, answers: Any = None) -> Answerable:
    return Answerable(session=None, protocol_version=MODERN, request_state=state,
                      input_responses=answers)


async def _first_round(parking: Parking, upstream: Asker, tg: Any) -> tuple[
        Answerable, list[BaseException], anyio.Event, types.InputRequiredResult]:
    """Start a lazily parked call in its own task; its first round's answer."""
    first, raised, ended = answerable(), [], anyio.Event()

    async def caller() -> None:
        try:
            await parking.send(FakeCall(first), upstream, conclude)
        except AnsweredEarly as exc:  # what the lane's task gets: nothing more to answer
            raised.append(exc)
        finally:
            ended.set()

    tg.start_soon(caller)
    with anyio.fail_after(10):
        await first.answered.wait()
    ((tag, asked),) = first.replies
    assert tag == "concluded" and isinstance(asked, types.InputRequiredResult)
    return first, raised, ended, asked


async def test_a_call_that_never_asks_runs_in_its_callers_task_and_holds_nothing() -> None:
    parking = Parking(ask_timeout=60)

    class Plain:
        tasks: list[Any] = []

        async def send(self, call: FakeCall) -> str:
            self.tasks.append(anyio.get_current_task().id)
            return "plain"

        def shows(self, asked: types.InputRequiredResult) -> Any:
            raise AssertionError("nothing was asked")

    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        front, plain = answerable(), Plain()
        call = FakeCall(front)
        assert parking.takes(call)
        assert await parking.send(call, plain, conclude) == "plain"
        assert plain.tasks == [anyio.get_current_task().id]
        assert len(parking) == 0 and front.replies == []
        tg.cancel_scope.cancel()


async def test_a_lazily_parked_call_answers_its_host_early_and_goes_on_in_its_task() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Asker()
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, raised, ended, asked = await _first_round(parking, upstream, tg)
        ((key, request),) = (asked.input_requests or {}).items()
        assert isinstance(request, types.ElicitRequest) and request.params.message == "q0"
        token = asked.request_state
        assert token is not None and token.startswith(TOKEN_PREFIX) and len(parking) == 1
        assert not ended.is_set()  # the caller's task holds the upstream call
        answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
        assert await parking.send(FakeCall(host(token, answer)), upstream, conclude) == (
            "done:0:Ada")
        with anyio.fail_after(10):
            await ended.wait()
        (early,) = raised
        assert isinstance(early, AnsweredEarly)  # the caller must not answer again
        assert len(upstream.tasks) == 1 and len(parking) == 0
        with pytest.raises(UpstreamError, match="already returned its result"):
            await parking.send(FakeCall(host(token, answer)), upstream, conclude)
        tg.cancel_scope.cancel()


async def test_questions_asked_together_are_answered_over_rounds() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Asker(questions=2)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, _, ended, asked = await _first_round(parking, upstream, tg)
        answers: dict[str, Any] = {}
        result: Any = asked
        while isinstance(result, types.InputRequiredResult):
            for key in result.input_requests or {}:
                answers[key] = {"action": "accept", "content": {"name": key}}
            result = await parking.send(FakeCall(host(asked.request_state, dict(answers))),
                                        upstream, conclude)
        assert result == "done:0:1-elicitation,1:2-elicitation"
        with anyio.fail_after(10):
            await ended.wait()
        tg.cancel_scope.cancel()


async def test_a_lazily_parked_question_expires_and_cancels_the_upstream_call() -> None:
    parking = Parking(ask_timeout=0.05)
    upstream = Asker()
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, raised, ended, asked = await _first_round(parking, upstream, tg)
        with anyio.fail_after(10):
            await upstream.cancelled.wait()
            await ended.wait()
        assert [type(exc) for exc in raised] == [AnsweredEarly]
        with pytest.raises(UpstreamError, match=r"did not answer elicitation/create "
                                                r"question within 0.05s"):
            await parking.send(FakeCall(host(asked.request_state, {})), upstream, conclude)
        assert parking.expired == 1 and len(parking) == 0
        tg.cancel_scope.cancel()


async def test_a_host_that_gives_up_on_a_later_round_cancels_the_lazy_call() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Asker(then_work=True)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, _, ended, asked = await _first_round(parking, upstream, tg)
        ((key, _),) = (asked.input_requests or {}).items()
        answer = {key: {"action": "accept", "content": {"name": "Ada"}}}
        # The host answers, waits for the upstream's next step, and gives up on it.
        with anyio.CancelScope() as scope:
            async def give_up_when_answered() -> None:
                while not upstream.tasks or len(parking._calls[asked.request_state]._asks):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()

            tg.start_soon(give_up_when_answered)
            await parking.send(FakeCall(host(asked.request_state, answer)), upstream,
                               conclude)
        with anyio.fail_after(10):
            await upstream.cancelled.wait()
            await ended.wait()
        with pytest.raises(UpstreamError, match="was cancelled by its host"):
            await parking.send(FakeCall(host(asked.request_state, {})), upstream, conclude)
        tg.cancel_scope.cancel()


async def test_a_lazy_call_that_ends_while_asking_is_collected_by_the_next_round() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Asker(finish_first=True)  # gives up on its question and answers
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        _, _, ended, asked = await _first_round(parking, upstream, tg)
        with anyio.fail_after(10):
            await upstream.returned.wait()
        assert await parking.send(FakeCall(host(asked.request_state, {})), upstream,
                                  conclude) == "done:"
        with anyio.fail_after(10):
            await ended.wait()
        assert len(parking) == 0
        tg.cancel_scope.cancel()


async def test_beyond_the_cap_a_lazy_calls_question_fails_upstream_instead() -> None:
    parking = Parking(ask_timeout=60, max_parked=1)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        await _first_round(parking, Asker(), tg)
        second, upstream = answerable(), Asker()
        assert await parking.send(FakeCall(second), upstream, conclude) == "done:"
        assert second.replies == []
        (failure,) = upstream.failures
        assert "1 calls are already waiting" in failure
        tg.cancel_scope.cancel()


async def test_a_host_that_cancels_before_any_question_cancels_the_lazy_call() -> None:
    parking = Parking(ask_timeout=60)
    upstream = Upstream(busy=True)
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        with anyio.CancelScope() as scope:
            async def cancel_when_started() -> None:
                await upstream.started.wait()
                scope.cancel()

            tg.start_soon(cancel_when_started)
            await parking.send(FakeCall(answerable()), upstream, conclude)
        assert upstream.cancelled.is_set() and len(parking) == 0
        tg.cancel_scope.cancel()


class _NoLaneTools:
    """A provider the lane must not consult (it would take the call)."""

    def lane_tool(self, name: str) -> None:
        raise AssertionError(f"the lane considered taking {name!r}")


def _taken(take: Any) -> bool:
    """Whether a lane's decision considered taking the call (it consulted the tools)."""
    try:
        take()
    except AssertionError as exc:
        if "considered taking" not in str(exc):
            raise
        return True
    return False


def test_the_lane_takes_a_round_any_path_sealed_and_leaves_the_rest() -> None:
    # A 2026-07-28 host's call made before the upstream was listed takes the full path,
    # whose asking round carries a requestState the gateway's server sealed; the host's
    # retry, once the lane knows the tool, is the lane's as well: it opens the state as
    # the full path would (the same boundary, keys and binding) and relays the plaintext.
    # A state that does not open (another server's keys, garbage, an unsealed token, not
    # a string, another tool's) is left to the full path, which refuses it.
    from mcp.server.request_state import RequestStateSecurity

    from fast_mcp_gateway._compat import RoundStates
    from fast_mcp_gateway.front.lane import StdioLane
    from fast_mcp_gateway.front.server import GatewayServer

    ours, theirs = RequestStateSecurity.ephemeral(), RequestStateSecurity.ephemeral()
    server = GatewayServer("gw", request_state_security=ours)
    states = RoundStates.of(server)
    lane = StdioLane(_NoLaneTools(), dict, states=states)  # type: ignore[arg-type]
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "h", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    asked = {"name": "up_tool", "arguments": {}}
    other = RoundStates.of(GatewayServer("gw", request_state_security=theirs))

    def line(**params: Any) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            **asked, "_meta": meta, **params}}).encode()

    for state in (states.seal(asked, None, "gw-mrtr.a-parked-call"),
                  states.seal(asked, None, "an upstream's own")):
        assert _taken(lambda s=state: lane._take_call(line(requestState=s, inputResponses={})))
    for state in (other.seal(asked, None, "x"), "gw-mrtr.its-own", "v1.garbage", 5,
                  states.seal({"name": "up_other", "arguments": {}}, None, "x"),
                  states.seal(asked, '["alice",null,null]', "x")):
        assert not _taken(lambda s=state: lane._take_call(line(requestState=s,
                                                                inputResponses={})))
    assert _taken(lambda: lane._take_call(line()))
    # (The HTTP lane's decision, through real gateways: tests/test_request_state.py.)


# -- what a parked call's upstream request declares -------------------------------------


class CapabilitiesSeen:
    """The encoding's side: records the capabilities the call's front declares when the
    upstream request is made (``upstream/requests.py`` narrows the stamp to them)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def send(self, call: FakeCall) -> str:
        self.seen.append(call.front.declared_capabilities())
        return "done"

    def shows(self, asked: types.InputRequiredResult) -> types.InputRequiredResult:
        return asked


async def test_a_parked_calls_request_declares_what_its_lane_host_declared() -> None:
    # A lane host has no SDK session: its capabilities are its request's envelope's.
    # Parked (eagerly, or lazily where the lane can answer from another task), the
    # request sent upstream (a 2026-07-28 replica of a mixed service) must declare
    # those, not every capability the gateway could relay.
    form = {"elicitation": {"form": {}}}

    async def reply(_: Any) -> None:
        raise AssertionError("never asked: nothing to answer early")

    async def conclude(*_: Any) -> Any:
        raise AssertionError("never asked: nothing to conclude")

    parking = Parking(ask_timeout=60)
    upstream = CapabilitiesSeen()
    mixed = FakeService(replicas=[Replica(True), Replica(False)])
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        eager = FakeCall(LaneFront(session=None, protocol_version=MODERN,
                                   capabilities=form), service=mixed)
        lazy = FakeCall(LaneFront(session=None, protocol_version=MODERN,
                                  capabilities=form, reply=reply), service=mixed)
        assert parking.takes(eager) and parking.takes(lazy)
        assert await parking.send(eager, upstream) == "done"
        assert await parking.send(lazy, upstream, conclude) == "done"
        tg.cancel_scope.cancel()
    assert upstream.seen == [form, form]
