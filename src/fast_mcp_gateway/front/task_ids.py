"""Portable gateway task ids: a task one gateway instance created, served by any other.

Without shared keys a gateway task id is ``gwt-`` + random bits, known only to the
``TaskBook`` of the process that gave it out.  With ``MCP_GATEWAY_REQUEST_STATE_KEYS``
(the keys every instance shares for asking rounds) the id is ``gwt-`` + a sealed token:
AES-256-GCM (the SDK's ``AESGCMRequestStateCodec``, the same ring discipline: the first
key seals, every key opens) under keys derived from the shared ones for this use only
(HMAC-SHA256 with ``_DOMAIN``), so a task id is never accepted as a ``requestState`` nor
the reverse.  A host can neither read nor forge one: a changed byte, another key ring
or a made-up id opens to nothing and is "Unknown task" as before.

What it carries (``TaskClaims``) is what another instance needs to serve the task
without the creating one: the server, how it is reached (the transport; for a server
reached by URL, a digest of the URL, never the URL or its headers: no credential is
in the token), the upstream's task id, the caller it belongs to, when it expires (wall
clock), the upstream's ``createdAt``, the creating instance, and the fields of its
end record (``task_end``) with that record's id.  Not its arguments: an instance that
did not create the task and sees it end with an error text records the error only if
the call had no credential-like argument (``unmaskable``).

An instance whose book lacks the id opens it (``TaskIds.open``), checks the caller as
for its own tasks, and ``adopt``s it: a record in its own book on its own replica of
that server with the same URL (or the caller's own session, ``per_client``), with the
ids swapped both ways as for its own.  A stdio server's task cannot move: its state is
in a process of the instance that created it, so another instance answers an error
naming that instance and why.  The end record keeps the id the creating instance chose,
so instances sharing one store (PostgreSQL) that both see the task end store it once
(the store ignores a record id it has); instances with stores of their own each keep
the end they saw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, Literal

from mcp.server.request_state import AESGCMRequestStateCodec, InvalidRequestState
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticUndefined

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.task_book import TASK_PREFIX, TaskBook, TaskRecord
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.store import Invocation
from fast_mcp_gateway.store.stats import TASK_END
from fast_mcp_gateway.upstream.relay import FrontCall
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState

_DOMAIN = b"fast-mcp-gateway/task-id/v1"
_SEALED = TASK_PREFIX + "v1."  # the codec's tokens begin "v1."; random ids have no "."


def _key(key: str, default: Any = PydanticUndefined) -> Any:
    return Field(default, validation_alias=key, serialization_alias=key)


class _Claims(BaseModel):
    # Sealed under one-letter keys: the id travels in every tasks/* request (and its
    # Mcp-Name header), so its length is kept down.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              serialize_by_alias=True)


class StartClaims(_Claims):
    """The fields of a task's end record that come from the call that created it."""

    id: str = _key("i")
    trace_id: str = _key("t")
    client: str = _key("c")
    original: str = _key("o")
    replica: str | None = _key("r")
    started_at: float = _key("a")
    rule: str | None = _key("u")


class TaskClaims(_Claims):
    """What a portable task id carries (module docstring)."""

    kind: Literal["gwt"] = _key("k", "gwt")  # what was sealed (checked on opening)
    server: str = _key("s")
    transport: str = _key("p")               # stdio | http | sse
    url: str | None = _key("u")              # digest of the replica's URL (None: stdio)
    upstream_id: str = _key("t")
    owner: tuple[str, str] = _key("o")
    expires_at: float = _key("e")            # time.time()
    created: str = _key("c")
    instance: str = _key("i")
    exposed: str = _key("x")
    start: StartClaims | None = _key("r")
    unmaskable: bool = _key("m")


def reach_of(config: ServerConfig) -> tuple[str, str | None]:
    """How a replica is reached, as a task id names it: its transport, and a digest of
    its URL (a URL may hold a credential; the digest compares without carrying it)."""
    kind = config.kind
    if kind == "stdio" or not config.url:
        return "stdio", None
    digest = hashlib.sha256(config.url.encode()).digest()[:18]
    return kind, base64.urlsafe_b64encode(digest).decode()


class TaskIds:
    """Seals and opens portable task ids under the shared keys (module docstring)."""

    def __init__(self, keys: Sequence[str], instance: str) -> None:
        if not keys:
            raise ValueError("portable task ids need at least one shared key")
        self.instance = instance
        self._codec = AESGCMRequestStateCodec([
            hmac.new(key.encode(), _DOMAIN, hashlib.sha256).hexdigest() for key in keys])

    def id_for(self, record: TaskRecord, keep: float, unmaskable: bool) -> str:
        """The portable id of ``record`` (a task created here, kept ``keep`` seconds)."""
        start = record.started
        transport, url = reach_of(record.replica.config)
        claims = TaskClaims(
            server=record.server, transport=transport, url=url,
            upstream_id=record.upstream_id, owner=record.owner,
            expires_at=int(time.time() + keep) + 1, created=record.created, instance=self.instance,
            exposed=record.exposed, unmaskable=unmaskable,
            start=None if start is None else StartClaims(
                id=start.id, trace_id=start.trace_id, client=start.client,
                original=start.original, replica=start.replica,
                started_at=round(start.started_at, 3), rule=start.rule))
        return TASK_PREFIX + self._codec.seal(claims.model_dump_json().encode())

    def open(self, task_id: str) -> TaskClaims | None:
        """The claims of a portable id this key ring sealed and that has not expired;
        None for anything else (made up, changed, another ring's, expired)."""
        if not task_id.startswith(_SEALED):
            return None
        try:
            claims = TaskClaims.model_validate_json(
                self._codec.unseal(task_id[len(TASK_PREFIX):]))
        except (InvalidRequestState, ValidationError):
            return None
        return claims if claims.expires_at > time.time() else None


def _unroutable(task_id: str, claims: TaskClaims, here: str, why: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=(
        f"Task {task_id!r} cannot be served by this gateway instance ('{here}'): {why}"))


def _replica_for(task_id: str, claims: TaskClaims, service: Service | None,
                 here: str) -> Upstream:
    """This instance's replica of the task's server at the same URL, or the error."""
    name, creator = claims.server, claims.instance
    if claims.transport == "stdio":
        if creator == here:
            why = (f"its server '{name}' is a stdio process of this instance, which no "
                   "longer holds the task (it restarted, or forgot the task); the task's "
                   "state lived in that process")
        else:
            why = (f"its server '{name}' is a stdio process of the instance '{creator}' "
                   "that created it, and its state lives there; send this task's "
                   f"tasks/* requests to '{creator}' (a balancer that keeps a host on one "
                   "instance), or reach the server by url: (streamable HTTP or SSE) from "
                   "every instance")
        raise _unroutable(task_id, claims, here, why)
    if service is None:
        raise _unroutable(task_id, claims, here, (
            f"it runs on server '{name}', which this instance does not have (the "
            f"instance '{creator}' that created it does): give every instance the same "
            "servers"))
    same = [r for r in service.replicas if reach_of(r.config) == (claims.transport, claims.url)]
    if not same:
        raise _unroutable(task_id, claims, here, (
            f"server '{name}' is reached at another URL here than on the instance "
            f"'{creator}' that created it: give every instance the same url for it"))
    return next((r for r in same if r.state is UpstreamState.READY), same[0])


async def adopt(task_id: str, claims: TaskClaims, service: Service | None, book: TaskBook,
                front: FrontCall | None, here: str) -> TaskRecord:
    """A record in ``book`` for a task another instance (or this one before a restart)
    created, served from this instance's replica of its server; an ``MCPError`` naming
    why when this instance cannot serve it.  The caller checked who may see it."""
    replica = _replica_for(task_id, claims, service, here)
    clients = service.clients if service is not None else None
    if clients is not None:  # per_client: the caller's own session, as for its calls
        try:
            async with clients.session(front) as own:
                replica = own or replica
        except UpstreamError as exc:  # not kept: the next request tries again
            raise MCPError(code=INTERNAL_ERROR, message=(
                f"Task {task_id!r}: this gateway instance cannot open the caller's session "
                f"of server '{claims.server}' now ({exc}); try again")) from None
    start = claims.start
    started = None if start is None else Invocation(
        id=start.id, trace_id=start.trace_id, client=start.client, kind=TASK_END,
        client_kind=claims.owner[0] if claims.owner[0] in ("token", "jwt") else "host",
        exposed=claims.exposed, server=claims.server, original=start.original,
        replica=start.replica, started_at=start.started_at, duration_ms=0.0,
        status="success", rule=start.rule)
    ran = max(0.0, time.time() - (start.started_at if start is not None else time.time()))
    record = TaskRecord(task_id, claims.upstream_id, claims.server, claims.exposed, replica,
                        replica.connects, claims.owner,
                        book.expiry_in(claims.expires_at - time.time()), claims.created,
                        started=started, t0=time.perf_counter() - ran,
                        unmaskable=claims.unmaskable)
    book.add(record)
    return record
