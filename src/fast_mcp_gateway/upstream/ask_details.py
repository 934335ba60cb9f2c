"""The details of an ask a host declared, beyond the ask itself: what a session declares
upstream, and the refusal of a question the host of the call cannot take.

A handshake-era session declares its client capabilities once (``relay.HostRelay``'s
``session_callbacks``): a shared session every ask the gateway relays, a ``per_client``
one its host's.  Within an ask, a detail may be a capability of its own: elicitation in
URL mode (``elicitation.url``), sampling with tools (``sampling.tools``, SEP-1577).  An
upstream asking for one its host of the call did not declare is answered as connected
directly it would have been refused (``refusal``).

Sampling with tools was never declared: the SDK declares ``sampling: {}`` unless told
otherwise, and a server of either SDK checks ``sampling.tools`` before it offers tools
(``Client does not support sampling tools capability``): a tool-using server failed
through the gateway where a host declaring it, connected directly, was asked
(``tests/test_sampling_tools.py``, trial14).  ``sampling.context`` (``includeContext``,
soft-deprecated) is declared the same way (fidelity15): a careful server asks it only
of a client declaring it, and the host that answers the question is the one that
includes its context.  No SDK refuses it undeclared, so neither does the gateway: such
a request reaches the host of the call as it came.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types


def _declared(declared: dict[str, Any] | None, capability: str, detail: str) -> bool:
    given = (declared or {}).get(capability)
    return isinstance(given, dict) and detail in given


def sampling_declared(declares: dict[str, Any] | None) -> types.SamplingCapability:
    """What a session declares of sampling: with tools and context for a shared one
    (``declares`` is None), else as its one host declared."""
    tools = declares is None or _declared(declares, "sampling", "tools")
    context = declares is None or _declared(declares, "sampling", "context")
    return types.SamplingCapability(
        tools=types.SamplingToolsCapability() if tools else None,
        context=types.SamplingContextCapability() if context else None)


def refusal(params: Any, declared: dict[str, Any] | None, server: str) -> types.ErrorData | None:
    """The answer to an ask ``params`` whose detail the host of the call (its
    ``declared`` capabilities) did not declare; ``None`` when it may be asked."""
    if isinstance(params, types.ElicitRequestURLParams) and not _declared(
            declared, "elicitation", "url"):
        return types.ErrorData(code=types.METHOD_NOT_FOUND, message=f"server '{server}' "
            "asked for elicitation in URL mode, which the host of the call did not declare "
            "(its elicitation is form mode only)")
    if isinstance(params, types.CreateMessageRequestParams) and (
            params.tools or params.tool_choice) and not _declared(declared, "sampling", "tools"):
        # What the server's own SDK raises for a client without it, connected directly
        return types.ErrorData(code=types.INVALID_PARAMS, message="Client does not support "
            "sampling tools capability (the host of the call did not declare sampling.tools)")
    return None
