"""How long an HTTP upstream's idle keep-alive connections may still be reused.

A request written into a connection the server is closing fails; it is written again
(once, on a new connection) only where that is safe (``REPEATABLE``), for the server
may have run it.  The gateway drops idle connections after
``IDLE_SECONDS``, below the 5 s uvicorn, hypercorn and Node keep theirs; a server that
keeps them less (uvicorn's ``timeout_keep_alive=1``) closes some as a request crosses
its FIN on the wire.  ``IdleBound`` is one replica's bound, learned from its server:

* from a ``Keep-Alive: timeout=N`` header in its answers (Node's http server sends it;
  uvicorn and hypercorn do not), at once: half of it;
* from a request written on a reused connection that failed with the connection
  closed before any byte of the answer, after ``t`` seconds idle: half of ``t``.

Never below ``FLOOR``, never raised again; it lives as long as the replica (its
accounting), outliving the sessions and their taps and HTTP clients, which read it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from contextvars import ContextVar
from typing import Any

logger = logging.getLogger(__name__)

IDLE_SECONDS = 2.0
"""A pooled connection idle longer is closed, not reused (until the server is known to
keep its connections less): servers close idle keep-alive connections (uvicorn,
hypercorn and Node after 5 s), and a request written into one the server is closing
fails (sent again only if ``repeatable``: the server may have run it)."""
FLOOR = 0.25  # a server closing sooner still (or at once) is not chased any lower

REPEATABLE: ContextVar[bool] = ContextVar("gateway_call_repeatable", default=False)
"""Whether the ``tools/call`` in this context may run twice: its tool is one failover
sends again (read-only, idempotent or listed in ``idempotent_tools``: set by
``routing.service.Service``).  Every other request is repeatable as it is.  A
repeatable request written into a reused connection that the server closed before any
byte of its answer (most likely unread: the server's idle close crossed it) is written
once more on a new connection (``http_pool.Pool.stale``), as urllib3 and browsers do
for idempotent requests: the host never sees that first failure."""


def repeatable(method: str | None) -> bool:
    """Whether a JSON-RPC message of ``method`` (``None``: an answer or an error) may
    reach the server twice: any but a ``tools/call`` that is not ``REPEATABLE``.  The
    one rule of the tap (``http_tap``) and the SDK's client (``http_resend``)."""
    return method != "tools/call" or REPEATABLE.get()


class IdleBound:
    """One replica's bound on reusing an idle connection (see the module doc)."""

    __slots__ = ("_advertised", "label", "seconds")

    def __init__(self, label: str) -> None:
        self.label = label  # the replica's name in the log line
        self.seconds = IDLE_SECONDS
        self._advertised = ""  # the last Keep-Alive header read (each read once)

    def closed_after(self, idled: float, where: str) -> None:
        """A request written on a connection idle ``idled`` seconds failed, the
        connection closed before any byte of the answer: the server's bound is less."""
        self._lower(idled / 2, where, f"closed a connection idle {idled:.2f} s as a "
                    "request was written into it")

    def advertised(self, value: str, where: str) -> None:
        """The server's ``Keep-Alive`` header (``timeout=N, max=M``; several lines of it
        joined by commas: the least ``timeout`` of them; one not a number >= 0, ignored)."""
        if value == self._advertised:
            return
        self._advertised = value
        timeouts = []
        for part in value.split(","):
            key, _, number = part.partition("=")
            if key.strip().lower() == "timeout":
                with contextlib.suppress(ValueError):  # (a quoted-string is one too)
                    timeouts.append(float(number.strip().removeprefix('"').removesuffix('"')))
        least = min((t for t in timeouts if 0 <= t < math.inf), default=None)
        if least is not None:
            self._lower(least / 2, where, f"says Keep-Alive: {value}")

    async def heard(self, response: Any) -> None:
        """An ``httpx2.AsyncClient`` response hook: its ``Keep-Alive`` header, if any."""
        value = response.headers.get("keep-alive")
        if value is not None:
            url = response.request.url
            port = url.port or (443 if url.scheme == "https" else 80)
            self.advertised(value, f"{url.host}:{port}")

    def _lower(self, seconds: float, where: str, why: str) -> None:
        seconds = max(FLOOR, seconds)
        if seconds < self.seconds:
            self.seconds = seconds
            logger.info("upstream %s: HTTP server %s %s: its idle connections are "
                        "reused for %.2f s at most from now on", self.label, where, why,
                        seconds)
