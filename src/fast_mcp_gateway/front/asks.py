"""The asks bridge: a 2026-07-28 upstream's questions put to a handshake-era host.

A 2026-07-28 upstream asks for input by returning ``InputRequiredResult``
(``resultType: "input_required"`` on the wire).  A host of that era answers it
itself, so the result goes back as is.  A handshake-era host cannot receive one:
the gateway asks it with pushed requests (elicitation, sampling, roots), then
repeats the operation upstream with the answers and the echoed state, for at most
``MAX_ASK_ROUNDS`` rounds.

The bridge is written once, over ``Asking``: the typed full path and the JSON
express lane differ only in how a result shows its questions and how an answer
goes into the repeated request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, cast

import mcp_types as types
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.mrtr import Parking
from fast_mcp_gateway.front.parkable import Conclude, Parkable
from fast_mcp_gateway.upstream.relay import FrontCall

MAX_ASK_ROUNDS = 8
R = TypeVar("R")
C = TypeVar("C", contravariant=True)


class Asking(Protocol[C, R]):
    """How one encoding of an operation (``C``: its call, ``R``: its result) asks."""

    async def send(self, call: C) -> R:
        """Send the operation upstream (again, after ``again``)."""
        ...

    def asks(self, result: R) -> Mapping[str, Any] | None:
        """The questions ``result`` asks, by key; None when it is an answer."""
        ...

    def method_of(self, request: Any) -> str:
        """The method of one question (for error messages)."""
        ...

    async def ask(self, call: C, request: Any) -> Any:
        """Ask the host one question; raises ``MCPError`` when the host refuses."""
        ...

    def again(self, call: C, result: R, answers: dict[str, Any]) -> None:
        """Prepare the repeated operation: the answers and ``result``'s echoed state."""
        ...

    def shows(self, asked: types.InputRequiredResult) -> R:
        """``asked`` as this encoding's result (the gateway's own questions, MRTR)."""
        ...


# -- MRTR hook (front/mrtr.py) --------------------------------------------------------
# The pipeline sends every call through here.  A 2026-07-28 host's call that may meet
# an upstream's pushed request (elicitation, sampling, roots) goes through ``parking``:
# the pushed request becomes an ``InputRequiredResult`` for the host, and the host's
# next call (with the gateway's requestState) answers it.  Everything else is sent as is.


async def send_asking(parking: Parking | None, call: C, asking: Asking[C, R],
                      conclude: Conclude | None = None) -> R:
    """Send ``call`` upstream through its encoding, parked for MRTR when it must be
    (lazily with ``conclude``, the pipeline's tail: see ``Parking.send``).  A call of
    a server with ``auth: {type: oauth}`` may first ask its host to sign in
    (``sign_in_ask``, imported only then)."""
    auth = cast(Parkable, call).service.config.auth
    if auth is not None and auth.type == "oauth":
        from fast_mcp_gateway.front.sign_in_ask import ask_to_sign_in

        if (shown := await ask_to_sign_in(cast(Parkable, call), asking)) is not None:
            return cast(R, shown)
    if parking is not None and parking.takes(cast(Parkable, call)):
        return await parking.send(cast(Parkable, call), asking, conclude)
    return await asking.send(call)


# -- end of the MRTR hook ---------------------------------------------------------------


async def bridge_asks(server: str, call: C, asking: Asking[C, R], result: R) -> R:
    """Answer ``result``'s questions by asking the host until the upstream answers.

    Raises ``UpstreamError`` when the upstream is still asking after
    ``MAX_ASK_ROUNDS`` rounds, or when the host fails a question.
    """
    rounds = 0
    while (requests := asking.asks(result)) is not None:
        rounds += 1
        if rounds > MAX_ASK_ROUNDS:
            raise UpstreamError(server, f"still asking for input after {MAX_ASK_ROUNDS} "
                                        "rounds; giving up")
        answers: dict[str, Any] = {}
        for key, request in requests.items():
            try:
                answers[key] = await asking.ask(call, request)
            except MCPError as exc:
                raise UpstreamError(server, f"asked the host for {asking.method_of(request)}, "
                                            f"which failed: {exc.error.message}") from exc
        asking.again(call, result, answers)
        result = await asking.send(call)
    return result


async def ask_host(front: FrontCall, request: Any) -> Any:
    """Put one typed question (elicitation, sampling, roots) to the host of ``front``."""
    if isinstance(request, types.ElicitRequest):
        return await front.elicit(request.params)
    if isinstance(request, types.CreateMessageRequest):
        return await front.create_message(request.params)
    return await front.list_roots()
