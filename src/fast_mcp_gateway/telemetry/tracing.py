"""Trace context for call records: W3C ``traceparent`` ids, the active span's trace id.

Ids are random as W3C Trace Context asks, but not secrets (see ``new_traceparent``).
"""

from __future__ import annotations

import random
import re
import secrets

_ids = random.Random(secrets.randbits(128))  # trace and span ids (new_traceparent)
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C ``traceparent`` (new span), continuing ``trace_id`` when given.

    Ids are random as W3C Trace Context asks, but not secrets: drawn from a generator
    seeded once from the OS (``secrets`` read the OS's random source twice per call,
    which is on every call's path); never all zeros (an invalid id).
    """
    span = _ids.getrandbits(64) or 1
    if trace_id is None:
        trace_id = f"{_ids.getrandbits(128) or 1:032x}"
    return f"00-{trace_id}-{span:016x}-01"


def current_trace_id() -> str | None:
    """The trace id of the active OpenTelemetry span, if the API is there and one is."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - fastmcp ships the API
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def trace_id_of(traceparent: object) -> str | None:
    match = _TRACEPARENT.match(traceparent) if isinstance(traceparent, str) else None
    return match.group(1) if match else None
