"""What the full path holds of an upstream's logs for a host that does not read them.

On the full path an upstream's log reaches ``relay.FrontCall.log`` in a task the SDK's
dispatcher spawns for each notification, which waits in the SDK's server-side ``send``
until the host reads.  A host that POSTed a call to a flooding tool and read nothing
held one task and its log per notification, without bound (a real ``serve``: 96 -> 248
MB for 2,000 logs of 64 KiB).  ``holding`` counts a call's logs still waiting there:
past ``MAX_HELD_BYTES`` a log is dropped, the first with one warning (the HTTP lanes
bound their streams alike: ``http/sse_backlog``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

logger = logging.getLogger(__name__)

MAX_HELD_BYTES = 1 << 20
"""The bytes of one call's logs waiting for its host before further logs are dropped."""

# A call (``relay.FrontCall``) -> [bytes of its logs waiting, logs dropped].
_held: WeakKeyDictionary[Any, list[int]] = WeakKeyDictionary()


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data)
    try:
        return len(json.dumps(data, default=str))
    except (TypeError, ValueError):  # a structure json cannot walk: count it small
        return 0


@contextmanager
def holding(call: Any, data: Any) -> Iterator[bool]:
    """Count ``data`` (a log of ``call``) while it is sent; yields False (send nothing)
    when the call's logs already waiting would pass ``MAX_HELD_BYTES``."""
    size = _size(data)
    held = _held.get(call)
    if held is None:
        held = _held[call] = [0, 0]
    if held[0] and held[0] + size > MAX_HELD_BYTES:
        if not held[1]:
            logger.warning(
                "a host is not reading the stream of its call (request %r): %d bytes of "
                "its logs waiting, its further logs are dropped (the call and other hosts "
                "go on)", getattr(call, "request_id", None), held[0])
        held[1] += 1
        yield False
        return
    held[0] += size
    try:
        yield True
    finally:
        held[0] -= size


def held_bytes(call: Any) -> int:
    """The bytes of ``call``'s logs waiting for its host now (tests count them)."""
    held = _held.get(call)
    return 0 if held is None else held[0]
