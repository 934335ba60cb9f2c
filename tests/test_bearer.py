"""``TokenSlot`` (upstream/bearer.py): when a token is renewed, and that renewals are
single-flight -- a table over an injected clock and a grant that counts (STYLE 2)."""

from __future__ import annotations

import anyio
import pytest

from fast_mcp_gateway.errors import SignInFailed
from fast_mcp_gateway.upstream.bearer import RETRY_AFTER, TokenSlot
from fast_mcp_gateway.upstream.token_grants import Token

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Grant:
    """Grants tokens of ``lifetime`` seconds; ``gate`` holds a fetch until set."""

    def __init__(self, clock: Clock, lifetime: float | None = 3600) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.fetched = 0
        self.gate: anyio.Event | None = None
        self.fail: SignInFailed | None = None

    async def fetch(self, current: Token | None) -> Token:
        self.fetched += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        at = None if self.lifetime is None else self.clock() + self.lifetime
        return Token(access=f"t{self.fetched}", expires_at=at, lifetime=self.lifetime)


def slot(lifetime: float | None = 3600) -> tuple[TokenSlot, Grant, Clock]:
    clock = Clock()
    grant = Grant(clock, lifetime)
    return TokenSlot("x", grant, clock), grant, clock  # type: ignore[arg-type]


@pytest.mark.parametrize(("lifetime", "due_after"), [
    (3600, 3240),  # 10 % of the lifetime before it ends
    (300, 240),  # at least 60 s before
    (60, 30),  # at most half of it
])
async def test_a_token_is_due_a_margin_before_it_expires(lifetime: float,
                                                         due_after: float) -> None:
    tokens, grant, clock = slot(lifetime)
    assert tokens.due()  # none yet
    await tokens.ready()
    assert grant.fetched == 1 and not tokens.due()
    clock.now += due_after - 1
    assert not tokens.due()
    clock.now += 1
    assert tokens.due()
    await tokens.ready()
    assert grant.fetched == 2 and tokens.token is not None and tokens.token.access == "t2"


async def test_a_token_without_expiry_is_kept_until_refused() -> None:
    tokens, grant, clock = slot(None)
    await tokens.ready()
    clock.now += 10**9
    assert not tokens.due()
    await tokens.renew(tokens.version)  # a 401 with it
    assert grant.fetched == 2


async def test_requests_that_find_the_token_refused_wait_for_one_renewal() -> None:
    tokens, grant, _clock = slot()
    await tokens.ready()
    seen = tokens.version
    grant.gate = anyio.Event()
    got: list[str] = []

    async def refused() -> None:
        got.append((await tokens.renew(seen)).access)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(refused)
        await anyio.wait_all_tasks_blocked()
        grant.gate.set()
    assert grant.fetched == 2 and got == ["t2"] * 5


async def test_a_failed_renewal_is_not_asked_again_at_once_on_the_request_path() -> None:
    tokens, grant, clock = slot()
    await tokens.ready()
    clock.now += 3600  # due: each request would ask
    grant.fail = SignInFailed("x", "down", retryable=True)
    for _ in range(3):
        with pytest.raises(SignInFailed):
            await tokens.renew(tokens.version)
    assert grant.fetched == 2  # one request to the authorization server, not three
    with pytest.raises(SignInFailed):
        await tokens.ready()  # a connect asks again
    assert grant.fetched == 3
    clock.now += RETRY_AFTER
    grant.fail = None
    assert (await tokens.renew(tokens.version)).access == "t4"
