"""JSON typed by a person or a program into an admin surface (a REST body, the
dashboard's raw-arguments box), read strictly: one parser for both.

Python's ``json.loads`` reads ``NaN`` and ``Infinity`` (not JSON: they would reach an
upstream as ``null``) and raises ``RecursionError``, not ``ValueError``, on arrays
nested ~1000 deep; data nested a few hundred deep parses, then overflows the stack of
whatever walks it next (the audit's redaction).  ``parse_json`` refuses all three with
a ``ValueError`` whose text says what is wrong and what to send instead.
"""

from __future__ import annotations

import json
from typing import Any

from fast_mcp_gateway.config.json_text import nesting, no_constant

MAX_JSON_NESTING = 200
"""How deep arrays and objects may nest: about what an upstream's MCP SDK reads in one
message (pydantic's JSON parser stops past 200 levels), so nothing an upstream could
take is refused, and nothing deeper reaches the code that walks it."""


def parse_json(text: str | bytes | bytearray) -> Any:
    """``text`` as JSON.  ``ValueError`` (its text for the person who sent it) when it is
    not JSON, holds ``NaN`` or ``Infinity``, or nests deeper than ``MAX_JSON_NESTING``."""
    too_deep = (f"arrays and objects are nested more than {MAX_JSON_NESTING} levels deep; "
                f"an MCP server reads at most that: send flatter data")
    try:
        value = json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise ValueError(too_deep) from None
    if nesting(value, MAX_JSON_NESTING) > MAX_JSON_NESTING:
        raise ValueError(too_deep)
    return value
