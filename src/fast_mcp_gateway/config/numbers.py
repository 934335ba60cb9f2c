"""Whole numbers as JSON writes them.

JSON has one number type: ``5.0`` is the integer 5, and JSON Schema's ``integer`` (what
an ``int`` field documents, in the OpenAPI document and the MCP tools' input schemas)
includes it.  A strict integer field refuses ``5.0``; ``whole_number`` in front of it
takes it as ``5`` while ``5.5``, ``"5"`` and ``true`` stay refused.  Put the field's
constraints before it (``Annotated[StrictInt, Field(ge=...), BeforeValidator(...)]``):
after it they would be left out of the JSON Schema.
"""

from __future__ import annotations

from typing import Any


def whole_number(value: Any) -> Any:
    """``value`` as an ``int`` when it is a float with no fraction, else as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
