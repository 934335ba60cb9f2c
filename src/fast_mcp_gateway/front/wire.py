"""The JSON relay pieces both express lanes share (stdio ``lane.py``, HTTP ``http/lane.py``).

A lane takes a host's ``tools/call`` as parsed JSON, hands the upstream the same
params the full path would send (``upstream_call``) and shapes the upstream's result
as the typed full path serialises it for the host's revision (``shape_result``).
Only the framing differs: a stdio line (``encode_line``), or an HTTP body
(``encode_body``, as the SDK's streamable-HTTP transport writes it).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

import mcp_types as types
from mcp_types import methods as _methods
from opentelemetry import trace

from fast_mcp_gateway._compat import tracer_provider_set, wire_fields
from fast_mcp_gateway.telemetry.tracing import current_trace_id, new_traceparent, trace_id_of
from fast_mcp_gateway.upstream.framing import ASCII_JSON, UTF8_JSON, finite_message
from fast_mcp_gateway.upstream.lifting import splice
from fast_mcp_gateway.upstream.relay import _CONNECTION_META_KEYS


class HostChannel(Protocol):
    """What a lane call sends its host besides the answer (``lane_host.LaneFront``)."""

    host_capabilities: dict[str, Any]  # a handshake-era host's, from its handshake

    async def notify(self, method: str, params: dict[str, Any]) -> None: ...

    async def progress(self, token: Any, progress: float, total: float | None,
                       message: str | None) -> None: ...

    async def ask(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]: ...


def progress_params(token: Any, progress: float, total: float | None,
                    message: str | None) -> dict[str, Any]:
    """``notifications/progress`` params, as the SDK sends them."""
    params: dict[str, Any] = {"progressToken": token, "progress": progress}
    if total is not None:
        params["total"] = total
    if message is not None:
        params["message"] = message
    return params


# What a tools/call carries besides name, arguments and _meta that the full path relays.
RELAYED_PARAMS = ("inputResponses", "requestState")




def encode_line(message: dict[str, Any], modern: bool = False) -> bytes:
    """``message`` as one stdio line (UTF-8 as is, like the SDK's stdio writer).

    NaN and infinities (an upstream's bare ``NaN`` / ``Infinity``) are written null, as
    the full path's SDK models write them (for a ``modern`` host's result an object's
    member holding one is left out, as there); ``framing.StructuredNotFinite`` for a
    result whose ``structuredContent`` holds one (``JsonTool.finish`` answers FastMCP's
    error).
    """
    try:
        text = UTF8_JSON.encode(message)
    except ValueError:
        message = finite_message(message, modern)
        text = UTF8_JSON.encode(message)
    try:
        return splice(text, b"\n")
    except UnicodeEncodeError:  # a lone surrogate (from an upstream): escaped, valid JSON
        return splice(ASCII_JSON.encode(message), b"\n")


def encode_body(message: dict[str, Any]) -> bytes:
    """``message`` as the SDK's streamable-HTTP transport writes a 2026-07-28 body
    (ASCII-escaped; NaN and infinities as ``encode_line`` writes them a modern host's
    result, and null in a notification, as the SDK's transport writes them)."""
    try:
        return splice(ASCII_JSON.encode(message))
    except ValueError:
        return splice(ASCII_JSON.encode(finite_message(message, "result" in message)))


def encode_id(request_id: str | int) -> bytes:
    return json.dumps(request_id, ensure_ascii=False).encode()


@functools.cache
def result_fields(version: str) -> frozenset[str]:
    """The ``tools/call`` result keys protocol ``version`` defines."""
    row = _methods.SERVER_RESULTS.get(("tools/call", version))
    return wire_fields(row) if row is not None else frozenset(
        {"_meta", "content", "isError", "structuredContent"})


def tracing_configured() -> bool:
    """Whether an OpenTelemetry SDK is installed as the tracer provider (the full path
    then emits spans, so the lanes step aside).  Once one is, it stays: remembered
    (asking OpenTelemetry looks ``OTEL_PYTHON_TRACER_PROVIDER`` up in the environment
    every time, a ``KeyError`` raised and caught per call while none is set)."""
    global _TRACING
    if _TRACING:
        return True
    if tracer_provider_set() is False and not _provider_from_env():
        return False  # none set, none to load: the proxy provider
    _TRACING = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _TRACING


_TRACING = False


@functools.cache
def _provider_from_env() -> bool:
    """Whether OpenTelemetry would load a tracer provider named in the environment
    (read at the first call, not at import)."""
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def upstream_call(original: str, params: dict[str, Any],
                  meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host's ``_meta`` to forward and the upstream's ``tools/call`` params.

    The host's connection keys (era, client info, capabilities) are dropped, as the
    upstream session stamps its own; a W3C ``traceparent`` continues the host's trace.
    """
    forward = {k: v for k, v in meta.items() if k not in _CONNECTION_META_KEYS}
    forward["traceparent"] = new_traceparent(trace_id_of(forward.get("traceparent"))
                                             or current_trace_id())
    upstream: dict[str, Any] = {"name": original, "_meta": forward}
    if params.get("arguments") is not None:
        upstream["arguments"] = params["arguments"]
    for key in RELAYED_PARAMS:
        if key in params:
            upstream[key] = params[key]
    return forward, upstream


def shape_result(result: dict[str, Any], fields: frozenset[str], modern: bool,
                 server_info: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The host's revision's fields only, as the typed full path serialises them; a
    2026-07-28 host also gets ``resultType`` and the gateway's stamp."""
    if not fields.issuperset(result):
        result = {k: v for k, v in result.items() if k in fields}
    result = without_schema_nulls(result)
    if modern:
        result.setdefault("resultType", "complete")  # a handshake-era upstream's
        stamped = result.get("_meta")
        if stamped is None:
            result["_meta"] = {types.SERVER_INFO_META_KEY: server_info()}
        elif isinstance(stamped, dict) and stamped.get(types.SERVER_INFO_META_KEY) is None:
            result["_meta"] = {**stamped, types.SERVER_INFO_META_KEY: server_info()}
    return result


# The upstream's own data in a result: relayed as it came, nulls and all.
FREE_FORM = frozenset({"_meta", "structuredContent"})


def without_schema_nulls(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` (a result, or a protocol object in it: a content item, its annotations, an
    embedded resource) without its null members, as the full path writes it: MCP's schema
    has no null for those (``annotations?: Annotations``; a strict host, the TypeScript
    SDK's, refuses the line), the SDK's models read one as absent, and their dump leaves
    it out.  ``FREE_FORM`` values are kept as they are, their nulls too (see "Relay
    fidelity").  A copy only where something is left out."""
    if None in value.values():
        value = {k: v for k, v in value.items() if v is not None}
    changed: dict[str, Any] | None = None
    for key, item in value.items():
        if key in FREE_FORM:
            continue
        if isinstance(item, dict):
            fixed: Any = without_schema_nulls(item)
        elif isinstance(item, list):
            fixed = item
            for i, entry in enumerate(item):
                if isinstance(entry, dict) and (kept := without_schema_nulls(entry)) is not entry:
                    fixed = list(item) if fixed is item else fixed
                    fixed[i] = kept
        else:
            continue
        if fixed is not item:
            changed = {**value} if changed is None else changed
            changed[key] = fixed
    return value if changed is None else changed
