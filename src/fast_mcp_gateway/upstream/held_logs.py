"""What the full path holds of an upstream's logs and progress for a host not reading.

On the full path an upstream's log or progress reaches ``relay.FrontCall.log`` /
``progress`` in a task the SDK's dispatcher spawns for each notification, which waits
in the SDK's server-side ``send`` until the host reads.  A host that POSTed a call to a
flooding tool and read nothing held one task and its notification each, without bound
(a real ``serve``: 96 -> 248 MB for 2,000 logs of 64 KiB, 97 -> 283 MB for 20,000
progress notifications).  ``holding`` counts a call's notifications still waiting
there, each at least ``ITEM_BYTES`` (a waiting task costs about that): past
``MAX_HELD_BYTES`` one is dropped, the first with one warning (the HTTP lanes bound
their streams alike: ``http/sse_backlog``).
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
ITEM_BYTES = 4096
"""What one waiting notification counts at least: 256 of them at most per call."""

# A call (``relay.FrontCall``) -> [bytes of its logs waiting, logs dropped].
_held: WeakKeyDictionary[Any, list[int]] = WeakKeyDictionary()


def size_of(data: Any) -> int:
    """What a log's ``data`` (or a progress message) counts: its UTF-8 bytes as JSON
    writes them, at least ``ITEM_BYTES`` (characters undercount: an emoji is 4 bytes on
    the wire and in memory, so a bound counted in characters held up to 4 MiB)."""
    if data is None:
        return ITEM_BYTES
    if isinstance(data, str):
        return max(len(data) if data.isascii() else len(data.encode(errors="replace")),
                   ITEM_BYTES)
    try:
        text = json.dumps(data, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # a structure json cannot walk: count it small
        return ITEM_BYTES
    return max(len(text) if text.isascii() else len(text.encode(errors="replace")),
               ITEM_BYTES)


@contextmanager
def holding(call: Any, data: Any) -> Iterator[bool]:
    """Count ``data`` (a log of ``call``) while it is sent; yields False (send nothing)
    when the call's logs already waiting would pass ``MAX_HELD_BYTES``."""
    size = size_of(data)
    held = _held.get(call)
    if held is None:
        held = _held[call] = [0, 0]
    if held[0] and held[0] + size > MAX_HELD_BYTES:
        if not held[1]:
            logger.warning(
                "a host is not reading the stream of its call (request %r): %d bytes of "
                "its notifications waiting, its further logs and progress are dropped (the "
                "call and other hosts go on)", getattr(call, "request_id", None), held[0])
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
