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
import re
from collections.abc import Iterator
from contextvars import ContextVar


class Asked:
    """One request sent by a session: whether the server refused it for a session it
    no longer knows (set by ``SessionEnd``'s response hook), and the scopes a 403
    ``insufficient_scope`` asked for (``lacking``: on the SDK's path and the
    tap's; ``""``: none named)."""

    __slots__ = ("refused", "scope")

    def __init__(self) -> None:
        self.refused = False
        self.scope: str | None = None


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


_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,100}$")  # RFC 6749 3.3


def lacking(challenge: str | None) -> None:
    """A 403's ``WWW-Authenticate`` (RFC 6750 3.1): when its ``error`` is
    ``insufficient_scope``, the request sent in this context (``ASKED``) is told
    the scopes asked for (``""``: it named none; its error then says how to grant them,
    ``failures.py``); only scope tokens are kept, never other text of the server's."""
    if not challenge or "insufficient_scope" not in challenge:
        return
    params = dict(re.findall(r'(?:^|[\s,])([a-z_]+)\s*=\s*"?([^",]*)"?', challenge, re.I))
    if params.get("error") != "insufficient_scope":
        return
    asked = ASKED.get()
    if asked is not None:
        asked.scope = " ".join(s for s in params.get("scope", "").split()
                               if _SCOPE_TOKEN.match(s))
