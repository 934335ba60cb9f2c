"""An upstream's null ``_meta`` members, kept on the full path for a 2026-07-28 host.

``_meta`` is free-form (``{[key: string]: unknown}``): a member holding null is the
upstream's data, and the SDK's client reads it as such (``meta == {"m": None}``, not
``{}``).  The SDK's server dumps a 2026-07-28 result through that revision's models,
whose ``_meta`` is a model with extra members, ``exclude_none``: each null member was
left out (the handshake era's ``_meta`` is a plain dict and kept them; so did the express
lanes, for either era).  ``MetaNulls``, an SDK server middleware on ``tools/call``, puts
them back into the wire dict: the result's ``_meta``, each content item's and each
embedded resource's, as the call's ``ToolResult`` held them (``GatewayServer.call_tool``
notes it in ``noted``).  A ``NaN`` the upstream wrote is not a null here: left out, as
every path leaves it out for such a host (see "Relay fidelity").
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# The ToolResults of the 2026-07-28 ``tools/call`` being served (a list shared by the
# handler's context copies); None outside one.
_NOTED: ContextVar[list[Any] | None] = ContextVar("meta_nulls_noted", default=None)


def noted(result: Any) -> None:
    """Note the ``ToolResult`` a 2026-07-28 host's ``tools/call`` answers with."""
    holder = _NOTED.get()
    if holder is not None:
        holder.append(result)


class MetaNulls:
    """Puts a 2026-07-28 ``tools/call`` result's null ``_meta`` members back (module doc);
    every other request passes as is."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                      call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        holder: list[Any] = []
        token = _NOTED.set(holder)
        try:
            wire = await call_next(ctx)
        finally:
            _NOTED.reset(token)
        if holder and isinstance(wire, dict) and isinstance(wire.get("content"), list):
            typed = holder[-1]
            _put_back(wire, getattr(typed, "meta", None))
            for item, block in zip(wire["content"], getattr(typed, "content", ()), strict=False):
                if isinstance(item, dict):
                    _put_back(item, getattr(block, "meta", None))
                    resource = item.get("resource")
                    if isinstance(resource, dict):
                        _put_back(resource, getattr(getattr(block, "resource", None), "meta",
                                                    None))
        return wire


def _put_back(wire: dict[str, Any], meta: Any) -> None:
    """``meta``'s null members into ``wire``'s ``_meta``, where they were left out."""
    if not isinstance(meta, dict) or None not in meta.values():
        return
    into = wire.get("_meta")
    if into is None:
        into = wire["_meta"] = {}
    if isinstance(into, dict):
        for key, value in meta.items():
            if value is None:
                into.setdefault(key, None)
