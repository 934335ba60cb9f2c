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

The stdio tap relays a log it reads while a lane call waits itself, before its next
line (``stdio_tap.RawTap._log``, under ``READER``): the log of a full-path call (by
timing: one host's lane and full-path calls in flight) waited there for its host, so a
host that read nothing stopped the upstream's stdout reader and every host's calls on
it (review14).  ``relayed`` sends such a log from a task of its own, as the SDK's
reader does, counted from the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any
from weakref import WeakKeyDictionary

logger = logging.getLogger(__name__)

MAX_HELD_BYTES = 1 << 20
"""The bytes of one call's logs waiting for its host before further logs are dropped."""
ITEM_BYTES = 4096
"""What one waiting notification counts at least: 256 of them at most per call."""

# A call (``relay.FrontCall``) -> [bytes of its logs waiting, logs dropped].
_held: WeakKeyDictionary[Any, list[int]] = WeakKeyDictionary()
READER: ContextVar[bool] = ContextVar("gateway_reader_relays", default=False)
"""Set while an upstream's reader relays a log itself (the stdio tap's, between lines)."""
_aside: set[asyncio.Task[None]] = set()  # the sends ``relayed`` left to tasks, running


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


async def relayed(call: Any, data: Any, send: Callable[[], Awaitable[object]]) -> None:
    """Run ``send`` (a log or progress of ``call``, counted by ``data``) within the
    bound (``holding``); under ``READER``, from a task of its own (module doc)."""
    held = ExitStack()
    if not held.enter_context(holding(call, data)):
        held.close()
        return
    if not READER.get():
        with held:
            await send()
        return
    task = asyncio.get_running_loop().create_task(_sent(send, held))
    _aside.add(task)
    task.add_done_callback(_aside.discard)


async def _sent(send: Callable[[], Awaitable[object]], held: ExitStack) -> None:
    with held:
        try:
            await send()
        except Exception:  # the host is gone: as the SDK's task for it would
            logger.debug("a log for a host could not be sent", exc_info=True)
