"""A gateway never aggregates itself: its identity, told in its opening answers.

Aggregating the gateway's own MCP endpoint (its URL in ``servers.yaml`` or a
registration, or through a name no address check can see: a reverse proxy, another host
name, a tunnel), or a gateway that aggregates it (two gateways each aggregating the
other, a stdio child gateway aggregating its parent over HTTP), lists its own tools
again under that server's name, then those again, without end.  So each gateway tells,
in the ``_meta`` of its ``initialize`` and ``server/discover`` answers under
``GATEWAYS_KEY`` (``front/lineage.py``; ``front/early.py`` over stdio), its own identity
first and then the identities of the gateways it aggregates (learned from their
opening answers, while their sessions are held).  A replica whose server's answer names
this gateway is refused (``GatewayLoop``): it ends ``failed`` with the reason, never
retried until reconnected (``Supervisor.run``).  Its catalog was never fetched.

The identity is a random token per gateway object (``Lineage.id``), made before the
stdio early answer: never ``instance_id``, which two teams may both name ``gw-1``, nor
anything that says where the gateway runs.  Two gateways sharing one store are two
gateways: a registration one of them adds to point at the other is loaded by that
other too, which then finds itself and refuses it; the first lists its peer's servers
again under the registration's name -- a duplicate, not a loop.

A loop can still be made after both sessions opened: two gateways connecting to each
other at the same moment each answer before learning the other.  A held 2026-07-28
session's health probe (``server/discover``) reads the identities again
(``HealthProbe.check``), so such a loop ends at the next probe of either side.
Imports only the standard library (and ``mask_text`` when refusing): the stdio early
answer carries the identity before anything heavy is imported.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fast_mcp_gateway.config.schema import ServerConfig

logger = logging.getLogger("fast_mcp_gateway.upstream.supervisor")  # its state lines'

GATEWAYS_KEY = "io.github.fast-mcp-gateway/gateways"
"""The ``_meta`` key of an opening answer naming the gateways behind it, this one first."""


class GatewayLoop(Exception):
    """The server is this gateway, or aggregates it: the replica is refused for good."""


def gateways_in(meta: Any) -> list[str]:
    """The gateway identities an opening answer's ``_meta`` names (empty: none, or not
    a gateway that tells them)."""
    if not isinstance(meta, Mapping):
        return []
    told = meta.get(GATEWAYS_KEY)
    if not isinstance(told, list):
        return []
    return [item for item in told[:MAX_TOLD] if isinstance(item, str) and len(item) <= 100]


MAX_TOLD = 256
"""Identities read from one answer at most: a server's list is told on to every host."""


class Lineage:
    """This gateway's identity and those of the gateways its replicas hold sessions to."""

    def __init__(self, identity: str | None = None) -> None:
        self.id = identity or new_identity()
        self._learned: dict[int, tuple[str, ...]] = {}  # id(supervisor) -> its server's

    def told(self) -> list[str]:
        """What the opening answers carry under ``GATEWAYS_KEY``: this gateway first, and
        at most ``MAX_TOLD`` in all -- as many as a gateway reading it reads (each
        upstream's list is bounded so, not all of them together: three telling 256
        each made every host's opening answer carry 769)."""
        seen = dict.fromkeys((self.id, *(i for ids in self._learned.values() for i in ids)))
        return list(seen)[:MAX_TOLD]

    def refusal(self, key: int, meta: Any, config: ServerConfig, label: str) -> str | None:
        """Learn the identities in ``meta`` for the replica ``key`` (a held session of
        ``config``'s server); the reason to refuse it when they name this gateway."""
        told = gateways_in(meta)
        if self.id not in told:
            if told:
                self._learned[key] = tuple(told)
            return None
        self._learned.pop(key, None)
        from fast_mcp_gateway.telemetry.redaction import mask_text  # not for the early answer

        through = (f"URL {config.url}" if config.url is not None
                   else "the command " + " ".join([config.command or "", *config.args]))
        text = loop_text(told[0] == self.id, mask_text(through))
        logger.warning("upstream %s: %s", label, text)
        return text

    def forget(self, key: int) -> None:
        """The replica ``key``'s session ended: its server's identities no longer hold."""
        self._learned.pop(key, None)


def new_identity() -> str:
    return secrets.token_hex(16)


_ITSELF, _AGGREGATES = "this server is this gateway itself", "this server is a gateway that"
_REMEDIES = {"; remove it here or there": "; add its other servers here directly, or take "
             "this gateway out of it first", "; remove it": ""}


def not_added(reason: str) -> str | None:
    """A loop refusal (``loop_text``) worded for a registration taken back, its remedy
    ("remove it") already done; None for any other reason."""
    if reason.startswith((_ITSELF, _AGGREGATES)):
        for remedy, instead in _REMEDIES.items():
            if reason.endswith(remedy):
                return reason[:-len(remedy)] + instead
    return None


def loop_text(itself: bool, through: str) -> str:
    if itself:
        return (f"this server is this gateway itself (through {through}): it would list "
                "its own tools again under its name, without end; remove it")
    return (f"this server is a gateway that aggregates this gateway (through {through}, "
            "directly or through other gateways): each would list the other's tools again "
            "under its name, without end; remove it here or there")
