"""``store/rows.py``: a record's row is its fields in order, encoded columns encoded."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import pytest

from fast_mcp_gateway.store import rows
from fast_mcp_gateway.store.records import (
    AlertEvent,
    AlertRuleRecord,
    AuditEntry,
    HealthRecord,
    Invocation,
    Registration,
)

ITEMS: list[Any] = [
    Invocation(id="a", trace_id="t", client="c", kind="tool", exposed="e", server="s",
               original="o", route=[{"replica": "r", "outcome": "ok"}], started_at=1.0,
               duration_ms=2.0, status="success", arguments='{"x": 1}'),
    Invocation(id="b", trace_id="t", client="c", kind="tool", exposed="e", server="s",
               original="o", route=None, started_at=1.0, duration_ms=2.0, status="error"),
    Registration(name="n", config={"a": 1}, enabled=True, updated_at=3.0),
    AuditEntry(id=1, at=1.0, actor="a", action="x", target=None, arguments=None, result=None),
    HealthRecord(id=None, at=1.0, server="s", replica="r", status="up"),
    AlertRuleRecord(name="r", config={"x": 1}, updated_at=1.0),
    AlertEvent(id=None, at=1.0, rule="r", server="s", state="firing", metric="m"),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: type(item).__name__)
@pytest.mark.parametrize("assigned_id", [True, False])
def test_a_row_is_the_fields_in_order(item: Any, assigned_id: bool) -> None:
    names = [f.name for f in fields(item) if assigned_id or f.name != "id"]
    want = tuple(json.dumps(getattr(item, name)) if isinstance(item, Invocation)
                 and name == "route" and item.route else getattr(item, name)
                 for name in names)
    assert rows.row_of(item, assigned_id=assigned_id) == want
    assert rows.columns(type(item), assigned_id=assigned_id) == ", ".join(names)
    if assigned_id and isinstance(item, Invocation):  # its JSON column read back
        assert rows.record_of(Invocation, want) == item


@dataclass
class _One:
    tags: list[str]


@dataclass
class _OnlyId:
    id: int


def test_one_column_and_no_column_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-field record is a one-value row, encoded if its column is; a record whose
    only field is the assigned id has no columns to insert."""
    monkeypatch.setitem(rows._ENCODE, _One, {"tags": json.dumps})
    assert rows.row_of(_One(["a", "b"])) == ('["a", "b"]',)
    assert rows.row_of(_OnlyId(3)) == (3,)
    assert rows.row_of(_OnlyId(3), assigned_id=False) == ()
