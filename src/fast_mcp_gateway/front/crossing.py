"""A parked call's round that reached another gateway instance, carried to its holder.

Behind a balancer a 2026-07-28 host's next round (``inputResponses`` + the sealed
``requestState``) may reach another instance than the one whose upstream call waits
for the answers (``front/mrtr.py``: the token names that holder).  On a shared
PostgreSQL store the receiving instance hands the round to the holder through the
store (``store/postgres_rounds.py``: a row, ``NOTIFY`` on the holder's channel), the
holder delivers it to the parked call as if the round had come to it
(``Parking.answer``) and sends the call's next outcome back the same way (the result,
its error, or the next questions); the receiver answers its host with it.  Instances
need not know each other's addresses.

Bounds: a round the holder has not taken within ``ask_timeout`` is withdrawn (the
question expires there anyway) and the host told; a holder whose instance lease has
ended (killed, stopped) is a clear error at once, checked every ``POLL_SECONDS``
while waiting; a round is taken once (``DELETE ... RETURNING``), so the upstream is
answered once; a host that gives up withdraws a round not taken yet.  Answers and
results are never logged.  With another store (SQLite: one gateway) nothing crosses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
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
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.request_state import AESGCMRequestStateCodec
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from fast_mcp_gateway import errors
from fast_mcp_gateway.config.settings import MAX_INSTANCE_ID
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.relay import FrontCall

if TYPE_CHECKING:
    from fast_mcp_gateway.store.postgres_rounds import PgRounds

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # while waiting: the holder's lease, a reply whose NOTIFY was missed
RETRY_SECONDS = 2.0  # listening again after the connection was lost
CHECK_SECONDS = 30.0  # while listening: the connection checked, the rows left read
REPLY_TRIES = 3
TOKEN_PREFIX = "gw-mrtr."
"""How the gateway's own ``requestState`` starts (anything else is an upstream's)."""
_ERRORS = {cls.__name__: cls for cls in (errors.UpstreamError, errors.UpstreamUnavailable,
                                        errors.UpstreamTimeout, errors.UpstreamRequestFailed)}


class Answerable(Protocol):
    """The holder's side (``mrtr.Parking``)."""

    ask_timeout: float

    async def answer(self, token: str, owner: tuple[str, str, str], what: str, server: str,
                     front: FrontCall, answers: Any) -> Any: ...

    def tokens(self) -> list[str]: ...


class Crossing:
    """The rounds this instance hands to holders and takes for its parked calls."""

    def __init__(self, parking: Answerable, store: Callable[[], object], instance: str) -> None:
        self.parking = parking
        self.instance = instance
        self._store = store
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

    # -- the receiving instance ---------------------------------------------------------

    async def relay(self, rounds: PgRounds, holder: str, token: str,
                    owner: tuple[str, str, str], what: str, server: str, answers: Any) -> Any:
        """Hand a round to ``holder``; the call's next outcome (raised if an error)."""
        key, codec = secrets.token_urlsafe(18), _codec(token)
        # In the clear (the holder names it when it cannot open the rest): masked, as
        # a record's is (a URI read names what the host sent: data://items/ghp_...).
        payload = json.dumps({"call": _digest(token), "what": mask_text(what), "server": server,
                              "sealed": codec.seal(json.dumps({
                                  "owner": list(owner), "answers": _jsonable(answers)
                              }).encode())})
        self._replies[key] = anyio.Event()
        taken = done = False
        try:
            await rounds.post("round", key, holder, self.instance, payload)
            asked_at = anyio.current_time()
            while True:
                self._replies[key] = heard = anyio.Event()
                posted, replied, lease_end = await rounds.state(key, holder)
                taken = not posted
                if replied:
                    got = await rounds.take("reply", key, self.instance)
                    if got is not None:
                        done = True
                        return _outcome(_opened(got[1], codec), server)
                if lease_end is None or lease_end <= time.time():
                    raise UpstreamError(server, _gone(what, holder, server))
                if posted and anyio.current_time() - asked_at > self.parking.ask_timeout:
                    raise UpstreamError(server, (
                        f"{what}: the gateway instance '{holder}' that holds the question "
                        f"did not take the answers within {self.parking.ask_timeout:g}s "
                        "(ask_timeout: is it listening on the store? a gateway of a "
                        "version before schema 13 carries no rounds); call it again "
                        "without requestState"))
                with anyio.move_on_after(POLL_SECONDS):
                    await heard.wait()
        finally:
            del self._replies[key]
            with anyio.CancelScope(shield=True), anyio.move_on_after(5), suppress(Exception):
                # Withdrawn if not taken yet (the holder cannot take it after this); taken,
                # and the host gave up (or the holder is gone): the call is cancelled.
                if (taken or await rounds.take("round", key, holder) is None) and not done:
                    await rounds.tell(holder, "cancel", key)
                    await rounds.take("reply", key, self.instance)  # if come: nobody reads it

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
            if kind == "reply":
                event = self._replies.get(key)
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
        try:
            got = await rounds.take("round", key, self.instance)
        except Exception as exc:  # noqa: BLE001 - its sender times out or retries
            logger.warning("parked rounds: cannot take a round from the store (%s)", exc)
            return
        if got is None:
            return
        sender, payload = got
        message = _read(payload)  # {}: not a round (another version's, or written by hand)
        server, what = str(message.get("server", "?")), str(message.get("what", "a call"))
        call = message.get("call")
        token = next((t for t in self.parking.tokens() if _digest(t) == call), None)
        front = FrontCall(session=None)  # progress and logs of a crossed round: none
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
            codec = _codec(token)
            sealed = json.loads(codec.unseal(str(message["sealed"])))
            with anyio.CancelScope() as self._serving[key]:
                outcome = await self.parking.answer(
                    token, tuple(sealed["owner"]), what, server, front, sealed.get("answers"))
            if self._serving.pop(key).cancelled_caught:
                return  # cancelled by the receiving instance: nobody waits for a reply
            reply = _reply_of(outcome)
        except Exception as exc:  # noqa: BLE001 - handed to the host as it came
            self._serving.pop(key, None)
            reply = _error_of(exc)
        text = json.dumps(reply) if token is None else codec.seal(json.dumps(reply).encode())
        for attempt in range(REPLY_TRIES):
            try:
                await rounds.post("reply", key, sender, self.instance, text)
                return
            except Exception as exc:  # noqa: BLE001 - the store is away: tried again
                if attempt + 1 == REPLY_TRIES:
                    logger.warning("parked rounds: cannot send the outcome of a round of "
                                   "server '%s' back to instance '%s' (%s)", server, sender,
                                   exc)
                else:
                    await anyio.sleep(RETRY_SECONDS)


def _digest(token: str) -> str:
    """A parked call's name in the store: its token is not (it opens the call)."""
    return hashlib.sha256(b"mcp-gateway/parked-round/id:" + token.encode()).hexdigest()


def _read(payload: str) -> dict[str, Any]:
    """A round's message; {} when it does not read as one."""
    with suppress(ValueError):
        message = json.loads(payload)
        if isinstance(message, dict) and isinstance(message.get("call"), str) \
                and isinstance(message.get("sealed"), str):
            return message
    return {}


def _codec(token: str) -> AESGCMRequestStateCodec:
    """What seals a round's answers and its reply: AES-GCM under a key drawn from the
    call's token, which only the host and the gateways serving it know (not the store)."""
    return AESGCMRequestStateCodec([hashlib.sha256(
        b"mcp-gateway/parked-round/key:" + token.encode()).hexdigest()])


def _opened(text: str, codec: AESGCMRequestStateCodec) -> dict[str, Any]:
    """A reply: sealed, or an error in the clear (the holder knew no such call)."""
    if text.startswith("{"):
        reply = json.loads(text)
        return {key: reply[key] for key in ("upstream", "server", "detail") if key in reply}
    return dict(json.loads(codec.unseal(text)))


def _gone(what: str, holder: str, server: str) -> str:
    return (f"{what}: the gateway instance '{holder}' that holds the question is gone "
            f"(its instance lease has ended: stopped or killed), and the call to server "
            f"'{server}' ended with it; call it again without requestState")


def _jsonable(answers: Any) -> Any:
    if not isinstance(answers, dict):
        return {}
    return {key: value.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(value, BaseModel) else value for key, value in answers.items()}


def _reply_of(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, types.InputRequiredResult):
        return {"asked": outcome.model_dump(by_alias=True, mode="json", exclude_none=True)}
    if isinstance(outcome, BaseModel):
        name = type(outcome).__name__
        dumped = outcome.model_dump(by_alias=True, mode="json", exclude_none=True)
        if getattr(types, name, None) is type(outcome):
            return {"model": name, "value": dumped}
        return {"json": dumped}
    return {"json": outcome}


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"mcp": exc.error.model_dump(mode="json", exclude_none=True)}
    if isinstance(exc, UpstreamError):
        name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "UpstreamError"
        return {"upstream": name, "server": exc.server, "detail": exc.detail}
    return {"upstream": "UpstreamError", "server": None,
            "detail": f"{type(exc).__name__}: {exc}"}


def _outcome(reply: dict[str, Any], server: str) -> Any:
    """A reply as the outcome of a round served here (raised if an error)."""
    if "asked" in reply:
        return types.InputRequiredResult.model_validate(reply["asked"])
    if "model" in reply:
        model = getattr(types, str(reply["model"]))
        return model.model_validate(reply["value"])
    if "json" in reply:
        return reply["json"]
    if "mcp" in reply:
        raise MCPError.from_error_data(types.ErrorData.model_validate(reply["mcp"]))
    cls = _ERRORS.get(str(reply.get("upstream")), UpstreamError)
    raise cls(str(reply.get("server") or server), str(reply.get("detail")))


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
