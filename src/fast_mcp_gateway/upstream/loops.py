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

The opening *requests* name the client's gateways too (``tell_gateways``: the same key
in their ``_meta``), so the server side knows who opens a session to it before it
answers: it refuses a gateway it aggregates itself (``opened_by``: a JSON-RPC error
whose ``data`` names its gateways, which the client reads as an answer naming it), and
notes the others for the replicas whose own opening is under way (``opening``).  Two
handshakes that cross (each side answering before it learned the other) are caught so:
each side reads the other's request during its own opening (its answer then names a
gateway that opened a session to it meanwhile), after it (it learned the other, and
refuses the request) or before its opening began, and not both sides before (the one
that read first sent its own request after, which the other read after sending its
own).  Either side, or both, refuses; a side that learned of the crossing from a
request (which any host may send, naming any gateway) connects again
(``HandshakesCrossed``) rather than fail for good -- but a stdio child's crossing is
refused at once (its identity, new with its process, could only come from itself).
A loop made after connect, deeper in a chain, is read again by each held session's
health probe (``server/discover`` names them; over the handshake era, a ``ping`` whose
``_meta`` carries the key is answered with it: ``front/lineage.py``).

``check`` stands for the gateway that serves its config and store on this machine
(``served_here``, the tail of every identity): an entry whose answer names such a
gateway is reported as ``serve`` would refuse it.

Imports only the standard library (and ``mask_text`` when refusing): the stdio early
answer carries the identity before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fast_mcp_gateway.config.schema import ServerConfig

logger = logging.getLogger("fast_mcp_gateway.upstream.supervisor")  # its state lines'

GATEWAYS_KEY = "io.github.fast-mcp-gateway/gateways"
"""The ``_meta`` key of an opening answer naming the gateways behind it, this one first."""


class GatewayLoop(Exception):
    """The server is this gateway, or aggregates it: the replica is refused for good."""


class HandshakesCrossed(Exception):
    """The server opened a session to this gateway, naming itself, while this gateway's
    opening of it was under way: retried freely (``model.unreachable``), never parked,
    since any host may name any gateway (every opening answer tells them); the retry's
    answer, or the server's refusal of this gateway, says whether there is a loop."""


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
    """This gateway's identity and those of the gateways its replicas hold sessions to.
    ``alias``: ``check``'s, the ``served_here`` of the gateway it stands for (an identity
    ending with it is that gateway)."""

    def __init__(self, identity: str | None = None, alias: str | None = None) -> None:
        self.id, self.alias = identity or new_identity(), alias
        self._learned: dict[int, tuple[str, ...]] = {}  # id(supervisor) -> its server's
        self._flights: dict[int, set[str]] = {}  # id(supervisor) -> who opened to us since

    def told(self) -> list[str]:
        """What the opening answers carry under ``GATEWAYS_KEY``: this gateway first, and
        at most ``MAX_TOLD`` in all -- as many as a gateway reading it reads (each
        upstream's list is bounded so, not all of them together: three telling 256
        each made every host's opening answer carry 769)."""
        seen = dict.fromkeys((self.id, *(i for ids in self._learned.values() for i in ids)))
        return list(seen)[:MAX_TOLD]

    def _is_me(self, identity: str) -> bool:
        return identity == self.id or (
            self.alias is not None and identity.rpartition(".")[2] == self.alias)

    def opening(self, key: int) -> None:
        """The replica ``key`` is about to send its opening request: the gateways that
        open a session to this one until its answer is read are noted for it."""
        self._flights[key] = set()

    def opened_by(self, meta: Any) -> str | None:
        """A host's opening request (``initialize``, ``server/discover``) whose ``_meta``
        names its gateways: the reason to refuse it when this gateway is it or
        aggregates it (directly or through others); else it is noted for the openings
        under way.  None for a host that names none (no gateway: nothing changes)."""
        told = gateways_in(meta)
        if not told:
            return None
        if told[0] in self.told():
            return ("this gateway aggregates the gateway opening this session (directly "
                    "or through other gateways), or is it: each would list the other's "
                    "tools again under its name, without end; remove one of the two "
                    "servers")
        for seen in self._flights.values():
            if len(seen) < MAX_TOLD:  # (a host may name a new one with each request)
                seen.add(told[0])
        return None

    def refusal(self, key: int, meta: Any, config: ServerConfig, label: str) -> str | None:
        """Learn the identities in ``meta`` for the replica ``key`` (a held session of
        ``config``'s server); the reason to refuse it when they name this gateway.
        ``HandshakesCrossed`` when they name a gateway that opened a session to this
        one while ``key``'s opening was under way (two handshakes crossing, or a host
        naming a gateway it is not)."""
        told = gateways_in(meta)
        crossed = self._flights.pop(key, set()).intersection(told)
        if not crossed and not any(self._is_me(i) for i in told):
            self._learned[key] = tuple(told)
            return None
        self._learned.pop(key, None)
        from fast_mcp_gateway.telemetry.redaction import mask_text  # not for the early answer

        through = (f"URL {config.url}" if config.url is not None
                   else "the command " + " ".join([config.command or "", *config.args]))
        if not any(self._is_me(i) for i in told) and config.command is None:
            # (Not a stdio server: that is this gateway's own child, its identity new
            # with the process and sent only to the child's own upstreams, so the request
            # that named it came from the child itself: a loop, refused.  Retried, a child
            # opening its upstreams before it answers crossed again at every restart
            # under load: tests/test_gateway_loops.py.)
            raise HandshakesCrossed(
                f"the handshakes crossed: this server is a gateway that opened a session "
                f"to this gateway while this one opened its own to it (through "
                f"{mask_text(through)}); connecting again, its next answer says whether it "
                "aggregates this gateway")
        text = loop_text(bool(told) and self._is_me(told[0]), mask_text(through))
        logger.warning("upstream %s: %s", label, text)
        return text

    def tells(self, key: int) -> Callable[[], dict[str, Any]] | None:
        """The ``_meta`` of the replica ``key``'s handshake-era health pings when its
        server is a gateway (its answer named some): it answers with its gateways as
        they are now (``front/lineage.py``).  None: a plain ping, as to any server."""
        if not self._learned.get(key):
            return None
        return lambda: {GATEWAYS_KEY: self.told()}

    def forget(self, key: int) -> None:
        """The replica ``key``'s session ended: its server's identities no longer hold."""
        self._learned.pop(key, None)
        self._flights.pop(key, None)


async def open_told(lineage: Lineage, key: int, session: Any,
                    negotiate: Callable[[], Awaitable[None]],
                    check: Callable[[Any], None]) -> None:
    """Open ``session`` (``negotiate``) with requests naming ``lineage``'s gateways,
    then ``check`` the answer's ``_meta``; a server's refusal of this gateway (its
    error's ``data`` names its gateways) is checked as such an answer."""
    from fast_mcp_gateway._compat_sessions import tell_gateways

    lineage.opening(key)
    try:
        with tell_gateways(session, GATEWAYS_KEY, lineage.told):
            await negotiate()
    except Exception as exc:
        if (told := refused_by(exc)) is not None:
            check(told)
        raise
    opened = session.initialize_result or session.discover_result
    check(opened.meta if opened is not None else None)


def refused_by(exc: BaseException) -> dict[str, Any] | None:
    """The ``data`` of a server's refusal of this gateway (``Lineage.opened_by``) in
    ``exc`` or its cause, if it is one."""
    for error in (exc, exc.__cause__):
        data = getattr(getattr(error, "error", None), "data", None)
        if isinstance(data, dict) and GATEWAYS_KEY in data:
            return data
    return None


def served_here(config: str | os.PathLike[str] | None, db: str | None) -> str:
    """16 hex digits for the gateway serving ``config`` with the store ``db`` on this
    machine: the tail of its identity, so that ``check`` knows it (a hash: it says
    nothing of the paths to whoever reads it; a store URL's password is left out, as
    64 bits of it would check an offline guess)."""
    store = _passwordless(db) if db is None or "://" in db else os.path.realpath(db)
    text = "\0".join((socket.gethostname(), os.path.realpath(config) if config else "",
                      store or ""))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _passwordless(url: str | None) -> str | None:
    """``url`` without the password of its user part or of its query."""
    if url is None:
        return None
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    netloc = user.partition(":")[0] + at + host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k.lower() not in ("password", "passfile")])
    return parts._replace(netloc=netloc, query=query).geturl()


def new_identity(served: str = "") -> str:
    """A random identity, ending with ``.served`` (``served_here``) when given."""
    return secrets.token_hex(16) + (f".{served}" if served else "")


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
