"""Framing a stdio upstream's stdout: newline-delimited messages, bounded in size.

Shared by the stdio tap (``stdio_tap.py``) and the HTTP side door (``http_tap.py``,
which bounds its answers with the same limit); also the JSON encoders of what the
gateway writes itself.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024

# Built once: ``json.dumps`` with any option builds an encoder per call (~0.6 us);
# these give the same text as ``json.dumps(..., separators=(",", ":"))``.  Every JSON
# message the gateway writes itself (the express lanes, the HTTP tap) goes through them.
# They refuse NaN and infinities (``ValueError``; Python's own ``NaN`` is no JSON, and
# a strict reader such as ``JSON.parse`` cannot read the line): an upstream's answer
# holds one only where its bytes had a bare ``NaN`` / ``Infinity`` token, so the check
# the encoder makes of each float anyway is the only cost on other answers, and the
# writer that catches it encodes ``finite_message(message)`` instead.
UTF8_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
ASCII_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class StructuredNotFinite(ValueError):
    """A ``tools/call`` result whose ``structuredContent`` holds NaN or an infinity:
    FastMCP refuses such a result on the full path (``ToolResult`` raises ``ToolError``,
    answered as an ``isError`` result), so the lane's ``JsonTool.finish`` answers it so."""


def finite(value: Any, drop: bool = False) -> Any:
    """``value`` with each NaN and infinity as ``None``: as the full path's SDK models
    write them (pydantic's JSON); with ``drop`` an object's member holding one is left
    out (a 2026-07-28 stdio host's lines are dumped ``exclude_none``), a list's item is
    None all the same.  Anything else (a lifted string too) is kept as it is."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        if drop:
            return {key: finite(item, drop) for key, item in value.items()
                    if not isinstance(item, float) or math.isfinite(item)}
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item, drop) for item in value]
    return value


def finite_message(message: dict[str, Any], drop: bool = False) -> dict[str, Any]:
    """``finite(message, drop)`` for a writer whose encoder refused ``message``;
    ``StructuredNotFinite`` for a result whose ``structuredContent`` held the value."""
    result = message.get("result")
    if isinstance(result, dict) and "structuredContent" in result:
        structured = result["structuredContent"]
        if finite(structured) != structured:  # NaN equals nothing; None is no float
            raise StructuredNotFinite("structuredContent holds NaN or an infinity")
    return cast(dict[str, Any], finite(message, drop))


class MessageTooLarge(Exception):
    """A stdout line grew past ``max_message_bytes`` (with or without its newline)."""

    def __init__(self, size: int, limit: int, complete: bool) -> None:
        seen = f"{size} bytes" if complete else f"no newline after {size} bytes"
        super().__init__(f"upstream wrote a message larger than max_message_bytes ({limit}) "
                         f"on stdout ({seen}); the session is restarted (raise "
                         "max_message_bytes for this server if such messages are expected)")


class LineFramer:
    """Splits a byte stream into newline-terminated lines, in linear time.

    A partial line is kept as a list of chunks and joined once, when its newline
    arrives (re-joining it on every chunk made reading a large message quadratic).
    ``copied`` counts the bytes copied into lines, so tests can assert linearity.
    """

    def __init__(self, limit: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self.copied = 0
        self._parts: list[bytes] = []
        self._pending = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes (without newlines); ``MessageTooLarge`` when
        a line, complete or not, exceeds ``limit``."""
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            size = self._pending + end - start
            if size > self.limit:
                raise MessageTooLarge(size, self.limit, complete=True)
            line = chunk[start:end]
            self.copied += end - start
            if self._parts:
                self._parts.append(line)
                line = b"".join(self._parts)
                self.copied += size
                self._parts.clear()
                self._pending = 0
            lines.append(line)
            start = end + 1
        if start < len(chunk):
            rest = chunk[start:] if start else chunk  # a whole chunk is kept, not copied
            self.copied += len(rest) if start else 0
            self._parts.append(rest)
            self._pending += len(rest)
            if self._pending > self.limit:
                raise MessageTooLarge(self._pending, self.limit, complete=False)
        return lines


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
