"""What a round carried between gateway instances holds (``front/crossing.py``): the
round (answers and caller binding), the holder's reply (the call's next outcome), and
the call's progress and logs while the holder serves the round (``Notes``), each a
JSON text sealed under a key drawn from the call's token (the store never reads them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.request_state import AESGCMRequestStateCodec
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from fast_mcp_gateway import errors
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.upstream.relay import FrontCall

if TYPE_CHECKING:
    from fast_mcp_gateway.store.postgres_rounds import PgRounds

logger = logging.getLogger(__name__)

NOTES_QUEUED = 256  # progress and logs waiting for the store; more are dropped
_ERRORS = {cls.__name__: cls for cls in (errors.UpstreamError, errors.UpstreamUnavailable,
                                        errors.UpstreamTimeout, errors.UpstreamRequestFailed)}


def digest(token: str) -> str:
    """A parked call's name in the store: its token is not (it opens the call)."""
    return hashlib.sha256(b"mcp-gateway/parked-round/id:" + token.encode()).hexdigest()


def codec_of(token: str) -> AESGCMRequestStateCodec:
    """What seals a round's answers, its reply and notes: AES-GCM under a key drawn from
    the call's token, which only the host and the gateways serving it know (not the
    store)."""
    return AESGCMRequestStateCodec([hashlib.sha256(
        b"mcp-gateway/parked-round/key:" + token.encode()).hexdigest()])


def read(payload: str) -> dict[str, Any]:
    """A round's message; {} when it does not read as one."""
    with suppress(ValueError):
        message = json.loads(payload)
        if isinstance(message, dict) and isinstance(message.get("call"), str) \
                and isinstance(message.get("sealed"), str):
            return message
    return {}


def opened(text: str, codec: AESGCMRequestStateCodec) -> dict[str, Any]:
    """A reply: sealed, or an error in the clear (the holder knew no such call)."""
    if text.startswith("{"):
        reply = json.loads(text)
        return {key: reply[key] for key in ("upstream", "server", "detail") if key in reply}
    return dict(json.loads(codec.unseal(text)))


def jsonable(answers: Any) -> Any:
    if not isinstance(answers, dict):
        return {}
    return {key: value.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(value, BaseModel) else value for key, value in answers.items()}


def reply_of(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, types.InputRequiredResult):
        return {"asked": outcome.model_dump(by_alias=True, mode="json", exclude_none=True)}
    if isinstance(outcome, BaseModel):
        name = type(outcome).__name__
        dumped = outcome.model_dump(by_alias=True, mode="json", exclude_none=True)
        if getattr(types, name, None) is type(outcome):
            return {"model": name, "value": dumped}
        return {"json": dumped}
    return {"json": outcome}


def error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"mcp": exc.error.model_dump(mode="json", exclude_none=True)}
    if isinstance(exc, UpstreamError):
        name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "UpstreamError"
        return {"upstream": name, "server": exc.server, "detail": exc.detail}
    return {"upstream": "UpstreamError", "server": None,
            "detail": f"{type(exc).__name__}: {exc}"}


def outcome_of(reply: dict[str, Any], server: str) -> Any:
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


class Notes:
    """The progress and logs of a call while the holder serves a round another
    instance received: queued as they come (the upstream's messages are not held up by
    the store), written in order by ``run``, which ends after the last once ``close``d
    (the holder awaits it before its reply, so they reach the host before the outcome).
    A note the store refuses ends the writing: the rest are dropped (the outcome still
    goes)."""

    def __init__(self, rounds: PgRounds, key: str, to: str, sender: str,
                 codec: AESGCMRequestStateCodec) -> None:
        self._rounds, self._key, self._to, self._sender = rounds, key, to, sender
        self._codec = codec
        self._send, self._receive = anyio.create_memory_object_stream[str](NOTES_QUEUED)
        self.front = CrossedFront(session=None, notes=self)

    def put(self, note: dict[str, Any]) -> None:
        with suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(json.dumps(note))

    def close(self) -> None:
        self._send.close()

    async def run(self) -> None:
        n = 0
        async with self._receive:
            async for note in self._receive:
                n += 1
                try:
                    await self._rounds.note(self._key, n, self._to, self._sender,
                                            self._codec.seal(note.encode()))
                except Exception as exc:  # noqa: BLE001 - the store is away: the rest dropped
                    logger.debug("parked rounds: cannot carry a call's progress or log to "
                                 "instance '%s' (%s); dropping the rest", self._to, exc)
                    self._receive.close()
                    return


@dataclass(eq=False)
class CrossedFront(FrontCall):
    """The host request of a round another instance received, as the parked call sees
    it (``ParkedCall.current``): its progress and logs go back to that instance."""

    notes: Notes | None = None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.notes is not None:
            self.notes.put({"progress": [progress, total, message]})

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.notes is not None:
            self.notes.put({"log": params.model_dump(by_alias=True, mode="json",
                                                     exclude_none=True)})


async def relay_notes(texts: list[str], codec: AESGCMRequestStateCodec,
                      host: FrontCall) -> None:
    """Notes a holder wrote, to the host that sent the round (as a round served here
    relays them: ``ParkedFront``); one that does not open is skipped."""
    for text in texts:
        try:
            note = json.loads(codec.unseal(text))
            if "progress" in note:
                progress, total, message = note["progress"]
                await host.progress(progress, total, message)
            elif "log" in note:
                await host.log(types.LoggingMessageNotificationParams.model_validate(
                    note["log"]))
        except Exception as exc:  # noqa: BLE001 - a note is not worth the call
            logger.debug("parked rounds: a call's progress or log not relayed (%s)",
                         type(exc).__name__)
