"""Records as table rows, for the SQL backends (``sqlite.py``, ``postgres.py``).

A record's stored columns are its fields, named alike and in its field order (the
schemas of both backends are written that way); the JSON columns are the only ones
encoded.  The SQL of each backend stays its own: only the column lists and the mapping
between a row and a record are shared, so the two backends cannot drift apart there.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from fast_mcp_gateway.store.records import AlertRuleRecord, Invocation, Registration
from fast_mcp_gateway.store.stats import AggregateKey, LatencyStats

R = TypeVar("R")


def _json_or_none(value: Any) -> Any:
    return json.loads(value) if value else None


# Columns that are not stored as the field's own value: JSON text, and (SQLite) a flag
# stored as an integer.
_DECODE: dict[type, dict[str, Callable[[Any], Any]]] = {
    Invocation: {"route": _json_or_none},
    Registration: {"config": json.loads, "enabled": bool},
    AlertRuleRecord: {"config": json.loads},
}
_ENCODE: dict[type, dict[str, Callable[[Any], Any]]] = {
    Invocation: {"route": lambda route: json.dumps(route) if route else None},
}


_NAMES: dict[tuple[type, bool], tuple[str, ...]] = {}
_ROWS: dict[tuple[type, bool], Callable[[Any], tuple[Any, ...]]] = {}


def _names(record: type, assigned_id: bool) -> tuple[str, ...]:
    names = _NAMES.get((record, assigned_id))
    if names is None:
        names = _NAMES[record, assigned_id] = tuple(
            f.name for f in fields(record) if assigned_id or f.name != "id")
    return names


def _row_maker(record: type, assigned_id: bool) -> Callable[[Any], tuple[Any, ...]]:
    """``row_of`` for one record type, made once: the values by one ``attrgetter`` (a C
    call), then the encoded columns' at their places (a call record's row took ~4 us of
    the writer's loop-thread time, per row, when each column was looked up by name)."""
    made = _ROWS.get((record, assigned_id))
    if made is None:
        made = _ROWS[record, assigned_id] = _make_row(record, assigned_id)
    return made


def _make_row(record: type, assigned_id: bool) -> Callable[[Any], tuple[Any, ...]]:
    names = _names(record, assigned_id)
    if not names:
        return lambda item: ()
    get = operator.attrgetter(*names)  # one name: the value itself, not a tuple
    values: Callable[[Any], tuple[Any, ...]] = (
        get if len(names) > 1 else lambda item: (get(item),))
    encode = _ENCODE.get(record, {})
    encoded = [(i, encode[name]) for i, name in enumerate(names) if name in encode]
    if not encoded:
        return values

    def row(item: Any) -> tuple[Any, ...]:
        out = list(values(item))
        for i, fn in encoded:
            out[i] = fn(out[i])
        return tuple(out)

    return row


def columns(record: type, *, assigned_id: bool = True) -> str:
    """The column list of ``record``'s table (``assigned_id=False``: without the ``id``
    the database assigns, for an insert)."""
    return ", ".join(_names(record, assigned_id))


def record_of(record: type[R], row: Sequence[Any]) -> R:
    """The ``record`` a row of ``columns(record)`` holds."""
    data = dict(zip(_names(record, True), row, strict=True))
    for name, decode in _DECODE.get(record, {}).items():
        data[name] = decode(data[name])
    return record(**data)


def row_of(item: Any, *, assigned_id: bool = True) -> tuple[Any, ...]:
    """``item``'s values in ``columns(type(item), assigned_id=...)`` order."""
    return _row_maker(type(item), assigned_id)(item)


def aggregate_rows(groups: dict[AggregateKey, LatencyStats]) -> list[tuple[Any, ...]]:
    """Aggregates (``stats.aggregate_batch``) as rows of ``invocation_minutes`` /
    ``invocation_hours``: period, server, exposed, count, errors, total_ms, min_ms,
    max_ms, cancelled, then the histogram buckets.  In key order: concurrent upserts
    then lock rows in one order (no deadlock between two gateways)."""
    return [(period, server, exposed, a.count, a.errors, a.total_ms, a.min_ms, a.max_ms,
             a.cancelled, *a.histogram) for (period, server, exposed), a in sorted(groups.items())]
