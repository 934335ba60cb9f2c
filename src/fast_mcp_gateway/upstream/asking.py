"""What the server made of one request the session's client sent (``asking``).

The SDK's streamable-HTTP client says a server's refusal of a session it no longer
knows (HTTP 404, or the TypeScript servers' 400) with the same words as any other
failed status (its stand-in "Server returned an error response", a 500 of a call that
ran), and its error carries no request id: by words, a call that ran and failed after
a refusal of another request was taken for refused, and run again.  Each request is
sent in a context of its own instead (``asking``, an ``Asked`` in ``ASKED``), which
the SDK's transport carries to the POST it sends for the request (as it carries
``relay.CURRENT_CALL``), and the response hook that sees the refusal
(``http_session_end.SessionEnd``) marks that request, and no other, ``refused``.
Kept apart from ``http_session_end``: the request path imports this on every kind of
session, and that module loads the SDK's HTTP client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class Asked:
    """One request sent by a session: whether the server refused it for a session it
    no longer knows (set by ``SessionEnd``'s response hook)."""

    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused = False


ASKED: ContextVar[Asked | None] = ContextVar("asked", default=None)


@contextlib.contextmanager
def asking() -> Iterator[Asked]:
    """Around one request sent by the session, in its sender's context."""
    asked = Asked()
    token = ASKED.set(asked)
    try:
        yield asked
    finally:
        ASKED.reset(token)
