"""Lines a stdio server wrote on stdout that are not what they should be: parsed as the
SDK parses them (without its traceback per junk line), and, where a bad line is
recognisably the response to a pending request, the error response that fails the
request at once instead of at its timeout (``stdio_tap.py`` reads the lines)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.shared.message import SessionMessage

# The id of a response whose bytes are not valid UTF-8: found in the line read with
# replacement characters, where a JSON-RPC id (number or string) survives intact.
_RESPONSE_ID = re.compile(r'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


def parse_line(line: str) -> SessionMessage | Exception:
    """The SDK's line parsing, without its traceback per junk line (counted instead)."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


def excerpt(text: str, limit: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def undecodable(raw: bytes, exc: UnicodeDecodeError,
                violation: Callable[..., None]) -> str | None:
    """A stdout line that is not valid UTF-8: reported, and skipped -- unless it is
    recognisably a response, then the request it answers fails with the reason now
    (instead of waiting for its timeout): the returned line is that error response."""
    text = raw.decode("utf-8", "replace")
    where = f"byte 0x{raw[exc.start]:02x} at offset {exc.start}"
    violation(f"upstream wrote a line on stdout that is not valid UTF-8 ({where}); "
                  "the line was skipped", fatal=False)
    request_id: Any = None
    try:
        message = json.loads(text)
    except ValueError:
        message = None
        found = _RESPONSE_ID.search(text)
        if found is not None and '"method"' not in text:
            request_id = json.loads(found.group(1))
    else:
        if isinstance(message, dict) and "method" not in message:
            request_id = message.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        return None
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": types.INTERNAL_ERROR, "message": f"{UNDECODABLE_RESPONSE} ({where})"}})


def invalid_response(line: str) -> SessionMessage | None:
    """An error response for the request a JSON line answers unreadably (``"result":
    null``, a result that is no object, both result and error), or None: not one."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or "method" in message:
        return None
    request_id = message.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        return None
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(
        code=types.INTERNAL_ERROR,
        message=f"{INVALID_RESPONSE} ({excerpt(line)}); the server needs fixing")))


# The start of the error a request gets when its response was not valid UTF-8.
UNDECODABLE_RESPONSE = "the upstream's response was not valid UTF-8"
# ... and when it was JSON but no JSON-RPC response (``"result": null``).
INVALID_RESPONSE = "the server's response is not valid JSON-RPC"
