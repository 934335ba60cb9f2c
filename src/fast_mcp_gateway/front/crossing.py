"""A parked call's round that reached another gateway instance, carried to its holder.

Behind a balancer a 2026-07-28 host's next round (``inputResponses`` + the sealed
``requestState``) may reach another instance than the one whose upstream call waits
for the answers (``front/mrtr.py``: the token names that holder).  On a shared
PostgreSQL store the receiving instance hands the round to the holder through the
store (``store/postgres_rounds.py``: a row, ``NOTIFY`` on the holder's channel), the
holder delivers it to the parked call as if the round had come to it
(``Parking.answer``) and sends the call's next outcome back the same way (the result,
its error, or the next questions), and meanwhile the call's progress and logs
(``crossed.Notes``); the receiver relays those to its host and answers it with the
outcome.  Instances need not know each other's addresses.

Bounds: a round the holder has not taken within ``ask_timeout`` is withdrawn (the
question expires there anyway) and the host told; a holder whose instance lease has
ended (killed, stopped) is a clear error at once, checked every ``POLL_SECONDS``
while waiting; a round is taken once (``DELETE ... RETURNING``), so the upstream is
answered once; the holder leaves its deadline where the round was (the call's start
plus its server's ``timeouts.max_total``, and ``HOLD_MARGIN``): it ends its round by
then, and a receiver with no reply ``REPLY_GRACE`` after it tells its host so; a host
that gives up withdraws a round not taken yet, and cancels one taken (also before the
holder began serving it).  Answers, results, progress and logs are never logged.  Only
an open PostgreSQL store carries rounds (``uncrossed``: why not, for the refusal).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fast_mcp_gateway.config.settings import MAX_INSTANCE_ID
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.crossed import (
    Notes,
    codec_of,
    digest,
    error_of,
    jsonable,
    opened,
    outcome_of,
    read,
    relay_notes,
    reply_of,
)
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.relay import FrontCall

if TYPE_CHECKING:
    from fast_mcp_gateway.store.postgres_rounds import PgRounds

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # while waiting: the holder's lease, a reply whose NOTIFY was missed
RETRY_SECONDS = 2.0  # listening again after the connection was lost
CHECK_SECONDS = 30.0  # while listening: the connection checked, the rows left read
HOLD_MARGIN = 5.0  # the holder's deadline past its upstream call's own
REPLY_GRACE = 15.0  # past the holder's deadline: its reply written (tried REPLY_TRIES)
REPLY_TRIES = 3
TOKEN_PREFIX = "gw-mrtr."
"""How the gateway's own ``requestState`` starts (anything else is an upstream's)."""


class Answerable(Protocol):
    """The holder's side (``mrtr.Parking``)."""

    ask_timeout: float

    async def answer(self, token: str, owner: tuple[str, str, str], what: str, server: str,
                     front: FrontCall, answers: Any) -> Any: ...

    def token_of(self, digest: str) -> str | None: ...

    def until(self, token: str) -> float | None: ...

    def cancel(self, token: str, owner: tuple[str, str, str]) -> None: ...


class Crossing:
    """The rounds this instance hands to holders and takes for its parked calls."""

    def __init__(self, parking: Answerable, store: Callable[[], object], instance: str,
                 db: str | None = None, record_calls: bool = True) -> None:
        self.parking = parking
        self.instance = instance
        self._store = store
        self._db, self._record_calls = db, record_calls
        self._replies: dict[str, anyio.Event] = {}
        self._serving: dict[str, anyio.CancelScope] = {}  # rounds taken, by key
        self.listening = False

    def elsewhere(self, token: str) -> tuple[PgRounds, str] | None:
        """The store's rounds and the instance holding ``token``'s call, when it is
        another one and the store carries rounds to it (PostgreSQL)."""
        asker = holder(token)
        if asker is None or asker == self.instance:
            return None
        rounds = self.rounds()
        return None if rounds is None else (rounds, asker)

    def rounds(self) -> PgRounds | None:
        """The store's rounds, if it is PostgreSQL (shared by instances)."""
        store = self._store()
        if store is None:
            return None
        from fast_mcp_gateway.store.postgres_rounds import rounds_of

        return rounds_of(store)

    def uncrossed(self) -> str:
        """Why this instance does not carry rounds to their holders, as advice: what
        decides is an open PostgreSQL store (opened only with call logging on)."""
        shared = self._db is not None and self._db.lower().startswith(
            ("postgresql:", "postgres:", "postgresql+asyncpg:"))
        if shared and not self._record_calls:
            return ("this instance runs with call logging off (--no-db, or "
                    "MCP_GATEWAY_RECORD_CALLS=false), so it does not open its PostgreSQL "
                    "store, and only an open one carries such rounds: turn call logging "
                    "on in every instance")
        if shared:
            return ("this instance's PostgreSQL store is not open (unreachable since it "
                    "started: it is opened when it answers), and only an open one "
                    "carries such rounds")
        return UNCROSSED

    # -- the receiving instance ---------------------------------------------------------

    async def relay(self, rounds: PgRounds, holder: str, token: str,
                    owner: tuple[str, str, str], what: str, server: str, answers: Any,
                    host: FrontCall) -> Any:
        """Hand a round to ``holder``; the call's next outcome (raised if an error);
        meanwhile the call's progress and logs go to ``host``."""
        key, codec = secrets.token_urlsafe(18), codec_of(token)
        # In the clear (the holder names it when it cannot open the rest): masked, as
        # a record's is (a URI read names what the host sent: data://items/ghp_...).
        payload = json.dumps({"call": digest(token), "what": mask_text(what), "server": server,
                              "sealed": codec.seal(json.dumps({
                                  "owner": list(owner), "answers": jsonable(answers)
                              }).encode())})
        self._replies[key] = anyio.Event()
        taken = done = False
        try:
            await rounds.post("round", key, holder, self.instance, payload)
            asked_at = anyio.current_time()
            while True:
                self._replies[key] = heard = anyio.Event()
                state = await rounds.state(key, holder)
                taken = not state.posted
                if state.noted:  # written before the reply: relayed before its outcome
                    await relay_notes(await rounds.notes(key, self.instance), codec, host)
                if state.replied:
                    got = await rounds.take("reply", key, self.instance)
                    if got is not None:
                        done = True
                        return outcome_of(opened(got[1], codec), server)
                # Both by the store's clock (lease30): not this instance's against the
                # holder's.
                if state.lease_left is None or state.lease_left <= 0:
                    raise UpstreamError(server, _gone(what, holder, server))
                if state.until_left is not None and state.until_left + REPLY_GRACE <= 0:
                    raise UpstreamError(server, _silent(what, holder, server))
                if state.posted and anyio.current_time() - asked_at > self.parking.ask_timeout:
                    raise UpstreamError(server, (
                        f"{what}: the gateway instance '{holder}' that holds the question "
                        f"did not take the answers within {self.parking.ask_timeout:g}s "
                        "(ask_timeout: is it listening on the store? a gateway of a "
                        "version before schema 13 carries no rounds, nor one with call "
                        "logging off); call it again without requestState"))
                with anyio.move_on_after(POLL_SECONDS):
                    await heard.wait()
        finally:
            del self._replies[key]
            with anyio.CancelScope(shield=True), anyio.move_on_after(5), suppress(Exception):
                # Withdrawn if not taken yet (the holder cannot take it after this); taken,
                # and the host gave up (or the holder is gone): the call is cancelled.
                if (taken or await rounds.take("round", key, holder) is None) and not done:
                    await rounds.tell(holder, "cancel", key)
                    await rounds.clear(key)  # a reply come meanwhile, notes: nobody reads them

    # -- the holding instance -----------------------------------------------------------

    async def run(self, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen for rounds and replies addressed to this instance while the store is
        PostgreSQL (it may open later: store/deferred.py); nothing on another store."""
        task_status.started()
        while (rounds := self.rounds()) is None:
            store = self._store()
            if store is None or "opened" not in vars(store):
                return  # none, or not PostgreSQL: nothing ever crosses
            await anyio.sleep(RETRY_SECONDS)  # deferred: not open yet
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve_all, rounds, receive)
            with send:
                while True:
                    await self._listen(rounds, send)
                    await anyio.sleep(RETRY_SECONDS)

    async def _listen(self, rounds: PgRounds, send: MemoryObjectSendStream[str]) -> None:
        lost = anyio.Event()

        def heard(kind: str, key: str) -> None:
            if kind in ("reply", "note"):
                event = self._replies.get(key.partition(".")[0])  # a note's: "<key>.<n>"
                if event is not None:
                    event.set()
            elif kind == "round":
                send.send_nowait(key)
            elif kind == "cancel" and (scope := self._serving.get(key)) is not None:
                scope.cancel()  # its host gave up: as a round here cancelled by its host

        try:
            async with rounds.listening(self.instance, heard, lost.set) as check:
                self.listening = True
                while True:
                    for key in await rounds.waiting(self.instance):  # came while not
                        send.send_nowait(key)                        # listening, or unheard
                    with anyio.move_on_after(CHECK_SECONDS):
                        await lost.wait()
                        return
                    await check()  # dropped without a word (NAT, firewall): raises
        except Exception as exc:  # noqa: BLE001 - listened again after a pause
            logger.debug("parked rounds: not listening on the store (%s: %s); trying again",
                         type(exc).__name__, exc)
        finally:
            self.listening = False

    async def _serve_all(self, rounds: PgRounds,
                         receive: MemoryObjectReceiveStream[str]) -> None:
        async with anyio.create_task_group() as tg, receive:
            async for key in receive:
                tg.start_soon(self._serve, rounds, key)

    async def _serve(self, rounds: PgRounds, key: str) -> None:
        """Take one round (if nobody did: at most once), deliver it, reply."""
        if key in self._serving:  # heard of twice (its NOTIFY and the rounds left read)
            return
        # Its host's cancel may come as soon as it is taken: heard from then on.
        cancelled = self._serving[key] = anyio.CancelScope()
        try:
            got = await rounds.take_round(key, self.instance, self._until)
        except Exception as exc:  # noqa: BLE001 - its sender times out or retries
            del self._serving[key]
            logger.warning("parked rounds: cannot take a round from the store (%s)", exc)
            return
        try:
            if got is not None:
                await self._reply(rounds, key, *got, cancelled)
        finally:
            del self._serving[key]

    def _until(self, payload: str) -> float:
        """The holder's deadline for serving a round (``take_round``)."""
        token = self.parking.token_of(str(read(payload).get("call")))
        until = None if token is None else self.parking.until(token)
        return (until if until is not None else time.time()) + HOLD_MARGIN

    async def _reply(self, rounds: PgRounds, key: str, sender: str, payload: str,
                     until: float, cancelled: anyio.CancelScope) -> None:
        message = read(payload)  # {}: not a round (another version's, or written by hand)
        server, what = str(message.get("server", "?")), str(message.get("what", "a call"))
        token = self.parking.token_of(str(message.get("call")))
        codec = None if token is None else codec_of(token)
        try:
            if not message:
                raise UpstreamError(server, (
                    f"{what}: the round this gateway carried to instance '{self.instance}' "
                    "does not read as a round there (gateways of different versions?); "
                    "call it again without requestState"))
            if token is None:  # long gone (or a restart): told in the clear, not sealed
                raise UpstreamError(server, (
                    f"{what}: the requestState names a question the gateway instance "
                    f"'{self.instance}' no longer holds (it expired, or the gateway "
                    "restarted); call it again without requestState"))
            assert codec is not None
            sealed = json.loads(codec.unseal(str(message["sealed"])))
            owner = tuple(sealed["owner"])
            if cancelled.cancel_called:  # its host gave up before: its answers not given
                self.parking.cancel(token, owner)
                return
            notes = Notes(rounds, key, sender, self.instance, codec)
            failed: Exception | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(notes.run)
                try:
                    with anyio.move_on_after(until - time.time()) as bound, cancelled:
                        outcome = await self.parking.answer(
                            token, owner, what, server, notes.front, sealed.get("answers"))
                except Exception as exc:  # noqa: BLE001 - raised below (not as a group)
                    failed = exc
                finally:
                    notes.close()  # the rest written first: they reach the host before it
                    if cancelled.cancel_called:
                        tg.cancel_scope.cancel()
            if cancelled.cancel_called:
                return  # cancelled by the receiving instance: nobody waits for a reply
            if failed is not None:
                raise failed
            if bound.cancelled_caught:
                raise UpstreamError(server, (
                    f"{what}: the call to server '{server}' did not end by its deadline on "
                    f"the gateway instance '{self.instance}' holding it (timeouts.max_total "
                    "from its start); it was cancelled there; call it again without "
                    "requestState"))
            reply = reply_of(outcome)
        except Exception as exc:  # noqa: BLE001 - handed to the host as it came
            reply = error_of(exc)
        text = json.dumps(reply) if codec is None else codec.seal(json.dumps(reply).encode())
        for attempt in range(REPLY_TRIES):
            try:
                await rounds.reply(key, sender, self.instance, text)
                return
            except Exception as exc:  # noqa: BLE001 - the store is away: tried again
                if attempt + 1 == REPLY_TRIES:
                    logger.warning("parked rounds: cannot send the outcome of a round of "
                                   "server '%s' back to instance '%s' (%s); it is told at "
                                   "the deadline", server, sender, exc)
                else:
                    await anyio.sleep(RETRY_SECONDS)


UNCROSSED = ("give the instances one PostgreSQL store (--db, with call logging on), "
             "which carries such rounds to the instance holding them")


def not_held(what: str, asker: str | None, instance: str | None, server: str,
             uncrossed: str = UNCROSSED) -> str:
    """The refusal of a round naming a question this instance does not hold (``asker``:
    the instance the token names), with ``uncrossed`` (``Crossing.uncrossed``)."""
    if asker is None or asker == instance:
        return (f"{what}: the requestState names a question this gateway does not "
                "hold (it expired, the gateway restarted, or another gateway instance "
                "asked it); call it again without requestState")
    # Or this gateway before a restart: the default --instance-id is host-pid, so
    # a restarted gateway reads its own earlier questions as another's (review24).
    return (f"{what}: the requestState names a question the gateway instance "
            f"'{asker}' asked, not this one ('{instance}'): server "
            f"'{server}' asked it during the call (a handshake-era "
            "upstream's question waits in the instance that called it), so every "
            "round of the call must reach that instance; call it again without "
            "requestState.  If that was this gateway before it restarted, the "
            "question ended with it; behind a load balancer, keep each host on one "
            "instance (a cookie, or the client's address: docs/ARCHITECTURE.md, "
            f"'Several gateways'), or {uncrossed}")


def _gone(what: str, holder: str, server: str) -> str:
    return (f"{what}: the gateway instance '{holder}' that holds the question is gone "
            f"(its instance lease has ended: stopped or killed), and the call to server "
            f"'{server}' ended with it; call it again without requestState")


def _silent(what: str, holder: str, server: str) -> str:
    return (f"{what}: the gateway instance '{holder}' that holds the question took the "
            "answers, but sent no outcome back by its deadline (the call's "
            f"timeouts.max_total from its start), though it is running: it cannot write "
            "to the store, or its call hung; the call to server "
            f"'{server}' is cancelled there; call it again without requestState")


def holder(token: str) -> str | None:
    """The instance a token's question was asked on (``Parking.instance``); None for a
    token without one, or one that does not read as an instance id."""
    _, dot, tail = token[len(TOKEN_PREFIX):].partition(".")
    if not dot or len(tail) > 4 * 4 * MAX_INSTANCE_ID // 3 + 4:  # 4 UTF-8 bytes a character
        return None
    try:
        name = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    return name if name and name.isprintable() and len(name) <= MAX_INSTANCE_ID else None
