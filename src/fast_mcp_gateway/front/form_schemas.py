"""A form's ``requestedSchema`` reaches a 2026-07-28 host as its server wrote it.

The SDK's runner sieves each spec result through its protocol era's surface
(``mcp_types.methods.serialize_server_result``), whose ``RequestedSchema`` (in both
eras) drops the top-level keys neither spec defines: the ``title`` an mcp 1.x server
writes there (its model's name), a ``description``.  So an ``InputRequiredResult``
the gateway relays on the full path lost them, while the express lanes (which write
the upstream's question as it came) and a handshake-era host (asked with an
``elicitation/create`` request, which is not sieved) got them.

``note_forms`` (called by ``encodings._asking`` on each upstream question relayed)
keeps the form schemas in the request's ``_NOTED`` (a ContextVar holding a dict, so a
task the handler starts fills the same one); ``FormSchemas``, a ``Server.middleware``
of the SDK server (the SDK's own seam around the chain that holds the sieve), puts
them back after it: what the sieve validated, with the keys it dropped (not a null
one: ``_whole``).  No other key of the answer changes, nor any answer without a form.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

_CARRIERS = frozenset({"tools/call", "prompts/get", "resources/read"})
_NOTED: ContextVar[dict[str, dict[str, Any]] | None] = ContextVar("form_schemas", default=None)


def note_forms(result: types.InputRequiredResult) -> None:
    """Keep the form schemas of ``result``'s questions, by key, for ``FormSchemas``
    (nothing outside a request it wraps: the express lanes write them themselves)."""
    noted = _NOTED.get()
    if noted is None:
        return
    for key, request in (result.input_requests or {}).items():
        if isinstance(request, types.ElicitRequest) and isinstance(
                request.params, types.ElicitRequestFormParams):
            noted[key] = request.params.requested_schema


class FormSchemas:
    """``ServerMiddleware``: a 2026-07-28 ``input_required`` answer's forms as
    ``note_forms`` kept them (module doc); every other request passes as is."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       call_next: CallNext) -> HandlerResult:
        if ctx.method not in _CARRIERS or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        noted: dict[str, dict[str, Any]] = {}
        token = _NOTED.set(noted)
        try:
            result = await call_next(ctx)
        finally:
            _NOTED.reset(token)
        if noted and isinstance(result, dict) and result.get("resultType") == "input_required":
            asks = result.get("inputRequests")
            for key, schema in noted.items():
                ask = asks.get(key) if isinstance(asks, dict) else None
                params = ask.get("params") if isinstance(ask, dict) else None
                if isinstance(params, dict) and isinstance(sieved := params.get(
                        "requestedSchema"), dict):
                    params["requestedSchema"] = _whole(schema, sieved)
        return result


def _whole(schema: dict[str, Any], sieved: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as the upstream wrote it (its keys' order), what the sieve kept as it
    kept it, without its null members: MCP's schema has no null for ``required`` or
    ``$schema`` (a strict host refuses the line; the sieve's dump and the express lanes,
    ``wire.without_schema_nulls``, leave them out), nor for a key of its own (review16)."""
    return {key: sieved.get(key, value) for key, value in schema.items() if value is not None}
