"""``front/mrtr.Parking`` on its own: who may continue a parked call, and how it ends.

The upstream here is a coroutine that asks through the call's front as the relay
would (``front.elicit``); the end-to-end behaviour with real processes is in
``tests/test_mrtr.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import pytest

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.mrtr import TOKEN_PREFIX, Parking
from fast_mcp_gateway.principal import LOCAL, Principal
from fast_mcp_gateway.routing.service import CallPath
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


# -- roots outside a call (upstream/relay.SoleHost) -------------------------------------


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


async def test_roots_outside_a_call_come_from_the_sole_host_only() -> None:
    from fast_mcp_gateway.upstream.relay import HostRelay, InFlight, SoleHost

    inflight, sole = InFlight(), SoleHost()
    relay = HostRelay("up", inflight, sole=sole)
    ctx: Any = None
    # No sole host (HTTP, library use): the documented answer is no roots.
    assert (await relay.on_list_roots(ctx)).roots == []
    sole.front = lambda: RootsHost(session=None, roots=("file:///stdio-host",))
    assert [str(r.uri) for r in (await relay.on_list_roots(ctx)).roots] == [
        "file:///stdio-host"]
    # Within a call, the caller's host is asked, never the sole host instead of it.
    caller = RootsHost(session=None, roots=("file:///caller",))
    with inflight.track(caller):
        assert [str(r.uri) for r in (await relay.on_list_roots(ctx)).roots] == [
            "file:///caller"]
    # A relay without a sole host at all (a replica built outside a manager).
    assert (await HostRelay("up", InFlight()).on_list_roots(ctx)).roots == []
