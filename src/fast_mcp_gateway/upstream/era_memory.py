"""What ``protocol: auto`` learned about each server's era, kept in the store.

``Era`` (``session.py``) learns a need mid-run (``era_switch.py``); ``EraBook`` keeps it
(``store/eras.py``) so that the next run, or another gateway on the same PostgreSQL,
opens the server in that era at once: no refused call, no reconnect.  The book is
loaded when the store is attached (before the upstreams' first connects: the
gateway's lifespan attaches the store before the provider's starts them), and each
replica's ``Era`` asks it at every negotiation while it knows no need of its own.  A
need learned is queued and written by ``keep`` (off the call path; a store that cannot
take it loses only this shortcut: the need is learned again).

A need holds for one way of starting the server (``start_of``: its transport, command,
directory, or URL without credentials and query).  Its arguments and environment are
left out, so that no secret given there reaches the store even as a digest; a server
whose arguments changed keeps the need, which at worst opens its first session in the
other era (both eras serve every tool of a server that offers both; a server that
offers one is opened in that one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import anyio
import anyio.abc

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.store import EraName, EraNeed, Store

logger = logging.getLogger(__name__)


def start_of(config: ServerConfig) -> str:
    """A digest of how ``config``'s server is started (see the module docstring); for a
    server of several ``instances``, of how each is."""
    if config.instances:
        each = [start_of(instance) for instance, _ in config.replica_configs()]
        return hashlib.sha256(json.dumps(each).encode()).hexdigest()[:32]
    url = None
    if config.url is not None:
        parts = urlsplit(config.url)
        url = f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}{parts.path}"
    what = [config.kind, config.command, config.cwd, url]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


class EraBook:
    """The needs kept in the store (``load``) and the ones learned since (``keep``)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.kept: dict[str, EraNeed] = {}
        self._send, self._receive = anyio.create_memory_object_stream[EraNeed](capacity)

    def load(self, needs: Iterable[EraNeed]) -> None:
        self.kept.update((need.server, need) for need in needs)

    def bind(self, config: ServerConfig) -> BoundEras:
        """The memory of ``config``'s server, shared by its replicas (its ``instances``
        too: one need is kept per server, so a need one learns holds for all, each
        taking it at its next negotiation) and by its per-client sessions."""
        return BoundEras(self, config.name, start_of(config))

    def learned(self, need: EraNeed) -> None:
        self.kept[need.server] = need
        with contextlib.suppress(anyio.WouldBlock):  # a burst beyond capacity: relearned
            self._send.send_nowait(need)

    async def keep(self, store: Callable[[], Store | None], *,
                   task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                   ) -> None:
        """Write learned needs to ``store()`` until cancelled."""
        task_status.started()
        async for need in self._receive:
            current = store()
            if current is None:
                continue
            try:
                await current.put_era_need(need)
            except Exception as exc:  # noqa: BLE001 - a lost shortcut must stop nothing else
                # (SQLite's own errors reach here unwrapped: a failed write ended every
                # background task of the gateway, the call log's writer among them.)
                logger.warning("could not keep what server '%s' needs (%s era): %s; it is "
                               "learned again after a restart", need.server, need.era, exc)


class BoundEras:
    """``session.EraMemory`` for one replica: its server's kept need, if it was kept
    for the same start."""

    __slots__ = ("book", "server", "start")

    def __init__(self, book: EraBook, server: str, start: str) -> None:
        self.book, self.server, self.start = book, server, start

    def recall(self) -> tuple[EraName, str] | None:
        need = self.book.kept.get(self.server)
        if need is None or need.start != self.start:
            return None
        return need.era, need.reason

    def learned(self, era: EraName, reason: str) -> None:
        self.book.learned(EraNeed(server=self.server, start=self.start, era=era,
                                  reason=reason, at=time.time()))
