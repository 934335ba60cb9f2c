"""A call of a signed-out ``auth: {type: oauth}`` server asks its host to open the
sign-in link (URL-mode elicitation, MCP 2025-11-25; docs/design/upstream-oauth.md 3a).

Without it a person had to know to call ``gateway_sign_in`` or run ``mcp-gateway
login``: the call failed with those words.  A host that declared ``elicitation.url``
is now asked, in its era's way, to open the link ``SignIns.start`` gives (one pending
sign-in per server: hosts asking at once are shown the same link and wait for the same
sign-in):

* a handshake-era host (2025-11-25): an ``elicitation/create`` request with ``mode:
  url`` on its stream (``Asking.ask``, as the asks bridge asks); on ``accept`` the call
  waits for the sign-in to end, then runs; after it the host is told
  ``notifications/elicitation/complete`` for the id it was given;
* a 2026-07-28 host (sessionless): the call answers ``InputRequiredResult`` with the
  elicitation (no id: that era has none) and ``requestState`` ``gw-sign-in.<server>``
  (sealed on the way out like every state, ``_compat.RoundStates``); its next call
  with the answer waits for the sign-in, and runs without that state (it is the
  gateway's, not the upstream's).

Only a caller who may sign the server in is asked (scope ``admin``, under a
``gateway.admin`` allowing changes: as ``gateway_sign_in``; stdio's host may): the
sign-in serves every caller.  The wait is bounded by the sign-in's own
(``sign_in.FLOW_SECONDS``, 10 minutes), then by a call timeout for the server to
connect; the host's cancellation ends it.  A host that declines or cancels, or declared
no URL mode, gets the words it got before (sign in with ...).  The link carries the
flow's ``state`` and PKCE challenge: it goes to the host only -- never a log, record or
error text (the asking round is not recorded: ``CallPipeline._answered``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from typing import Any

import anyio
import mcp_types as types

from fast_mcp_gateway.errors import SignInRequired
from fast_mcp_gateway.front.parkable import Parkable
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.sign_in import Pending, SignIns, current_sign_ins
from fast_mcp_gateway.upstream.sign_in_page import valid_for
from fast_mcp_gateway.upstream.url_asks import teller

logger = logging.getLogger(__name__)

STATE_PREFIX = "gw-sign-in."
KEY = "sign_in"  # the input request's key in an InputRequiredResult
_TELL_WITHIN = 1.0


def _url_mode(call: Parkable) -> bool:
    declared = call.front.declared_capabilities() or {}
    elicitation = declared.get("elicitation")
    return isinstance(elicitation, dict) and "url" in elicitation


def _signed_out(call: Parkable) -> bool:
    replicas = call.service.replicas
    return bool(replicas) and all(r.state is UpstreamState.SIGNED_OUT for r in replicas)


def _may_sign_in(call: Parkable, sign_ins: SignIns) -> bool:
    """Whether the caller may sign the server in, as for ``gateway_sign_in``: scope
    ``admin`` (the sign-in serves every caller: one with ``tools`` only must not put
    its own upstream account behind everyone's calls), under a ``gateway.admin`` that
    allows changes."""
    if not call.principal.has("admin"):
        return False
    manager = sign_ins.manager
    return manager is None or bool(manager.config.options.allows_admin("mutate"))


def _params(server: str, pending: Pending, modern: bool) -> types.ElicitRequestURLParams:
    # One id per flow (hosts sharing it are told its end by the same id); a digest, so
    # it says nothing of the link's state.
    flow = hashlib.sha256(pending.url.encode()).hexdigest()[:32]
    return types.ElicitRequestURLParams(
        message=f"Sign in to '{server}' to use it: open this link (it "
                f"{valid_for(pending.expires_at, time.time())}). The call goes on once you "
                "have signed in.",
        url=pending.url, elicitation_id=None if modern else f"sign-in-{server}-{flow}")


def _action(answer: Any) -> str | None:
    action = answer.get("action") if isinstance(answer, dict) else \
        getattr(answer, "action", None)
    return action if isinstance(action, str) else None


def _declined(server: str, action: str | None) -> SignInRequired:
    why = {"decline": "the host declined to open the sign-in link",
           "cancel": "the host cancelled the sign-in link"}.get(
        action or "", "the host did not open the sign-in link")
    return SignInRequired(server, why)


async def ask_to_sign_in(call: Parkable, asking: Any) -> Any | None:
    """Before ``call`` is sent: ask its host to sign in when its server is signed out
    (module doc).  A result to answer with instead of sending (a 2026-07-28 host's
    asking round), or None: send it (signed in now, or not askable: today's words)."""
    front, server = call.front, call.service.name
    state = front.request_state
    if front.is_modern and isinstance(state, str) and state.startswith(STATE_PREFIX):
        await _continued(call, asking)
        return None
    sign_ins = current_sign_ins()
    if sign_ins is None or not _signed_out(call) or not _url_mode(call) \
            or not _may_sign_in(call, sign_ins):
        return None
    if not front.is_modern and not asking.bridges_asks(call):
        return None  # no stream to ask on: the words
    # (the link is not logged: its state and PKCE challenge are the sign-in's)
    logger.info("upstream %s: signed out; asking the host of a call to sign in (URL "
                "elicitation)", server)
    if front.is_modern:
        pending = await sign_ins.start(call.service.config, _by(call))
        return asking.shows(types.InputRequiredResult(
            input_requests={KEY: types.ElicitRequest(params=_params(server, pending, True))},
            request_state=f"{STATE_PREFIX}{server}"))
    pending = await sign_ins.start(call.service.config, _by(call))
    params = _params(server, pending, False)
    shown = asking.shows(types.InputRequiredResult(
        input_requests={KEY: types.ElicitRequest(params=params)}))
    answer = await asking.ask(call, asking.asks(shown)[KEY])  # this encoding's form
    if (action := _action(answer)) != "accept":
        raise _declined(server, action)
    await _signed_in(call, pending)
    tell = teller(front)
    if tell is not None and params.elicitation_id is not None:
        with contextlib.suppress(Exception), anyio.move_on_after(_TELL_WITHIN):
            await tell(params.elicitation_id)  # (best effort: a host gone is not told)
    return None


async def _continued(call: Parkable, asking: Any) -> None:
    """A 2026-07-28 host's next call with its answer: wait for the sign-in, then send
    the call without the gateway's state and answers (the upstream never saw them)."""
    front = call.front
    answers = front.input_responses
    answer = answers.get(KEY) if isinstance(answers, dict) else None
    front.request_state, front.input_responses = None, None
    params = getattr(asking, "params", None)
    if isinstance(params, dict):  # the express lanes send their JSON params as given
        asking.params = {k: v for k, v in params.items()
                         if k not in ("requestState", "inputResponses")}
    sign_ins, pending = current_sign_ins(), None
    if _signed_out(call):
        if (action := _action(answer)) != "accept":
            raise _declined(call.service.name, action)
        if sign_ins is not None and sign_ins.pending(call.service.name):  # (same flow)
            pending = await sign_ins.start(call.service.config, _by(call))
    await _signed_in(call, pending)


async def _signed_in(call: Parkable, pending: Pending | None) -> None:
    """Until the sign-in ``pending`` ends (its error raised), then until a replica is
    ready again (at most a call timeout: a sign-in that ended between a 2026-07-28
    host's rounds, unseen, ends the wait by it; the call then says what it must)."""
    if pending is not None and (error := await pending.ended()) is not None:
        raise error
    replicas = call.service.replicas
    await call.service.wait_until(
        lambda: any(r.state in (UpstreamState.READY, UpstreamState.FAILED)
                    for r in replicas), max(r.call_timeout for r in replicas))


def _by(call: Parkable) -> str:
    """Who signed in, as the store keeps it: a token's or JWT's name, else the host."""
    principal = call.principal
    return principal.name if principal.kind in ("token", "jwt") else \
        f"host ({call.front.client_id})"
