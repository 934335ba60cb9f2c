"""One server or replica now, as admin operations show it: from statistics snapshots.

Every read of a running server's state (its list entry, detail, a mutating operation's
answer) is built here from ``Upstream.statistics()`` and the service's own counters;
admin never reads a replica's internals.
"""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

from fast_mcp_gateway.admin.models import (
    ClientSession,
    ClientSessionsStatus,
    ReplicaStatus,
    ServerStatus,
)
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.curation import Curated, curate, task_required
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState
from fast_mcp_gateway.upstream.sign_in import current_sign_ins
from fast_mcp_gateway.upstream.sign_in_status import sign_in_status

_HEALTH_ORDER = ("HEALTHY", "DEGRADED", "UNKNOWN", "UNHEALTHY")

S = TypeVar("S", bound=ServerStatus)


def replica_status(service: Service, upstream: Upstream) -> ReplicaStatus:
    """One replica now, from its statistics snapshot (admin never reads internals)."""
    st = upstream.statistics()

    def r(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return ReplicaStatus(
        replica=st.label, index=st.replica, state=str(st.state), health=str(st.health),
        breaker=str(st.breaker), breaker_retry_in_seconds=r(st.breaker_retry_in_seconds),
        stalled=st.stalled,
        inflight=st.inflight, ewma_latency_ms=r(st.ewma_latency_ms),
        success_rate=r(st.success_rate, 4), median_latency_ms=r(st.median_latency_ms),
        weight=st.weight, draining=st.replica in service.draining, restarts=st.restarts,
        pid=st.pid, uptime_seconds=r(st.uptime_seconds), last_error=st.last_error,
    )


# Why a tool its server lists is not one hosts see, as the log and a call by name say it:
# a curation rule's name ("tools.exclude"), "pinning" (held until approved), or this.
TASK_ONLY = "task-only"


def exposed_counts(curated: Curated, modern: bool) -> tuple[dict[str, int], dict[str, int]]:
    """The components hosts see of a server whose rules made ``curated`` of its catalog
    (``modern``: its session is 2026-07-28), and the tools it lists that they do not, by
    why (``TASK_ONLY``: runs only as a task, on a handshake-era session: ``provider.py``
    leaves it out of every list)."""
    task_only = 0 if modern else sum(task_required(e.item) for e in curated.tools)
    why = Counter(h.rule for h in curated.hidden if h.kind == "tool")
    if task_only:
        why[TASK_ONLY] = task_only
    return ({"tools": len(curated.tools) - task_only, "resources": len(curated.resources),
             "resource_templates": len(curated.templates), "prompts": len(curated.prompts)},
            dict(sorted(why.items())))


def status_of(service: Service, view: CatalogView | None = None) -> ServerStatus:
    """One server now, with each of its replicas; its counts are what hosts see of it
    (``view``'s curation, pinning's holds included; without one, its rules applied)."""
    primary = service.primary().statistics()
    config = service.config
    replicas = [replica_status(service, r) for r in service.replicas]
    errors = [f"{r.replica}: {r.last_error}" if len(replicas) > 1 else r.last_error
              for r in replicas if r.last_error]
    curated = view.curation.get(service.name) if view is not None else None
    counts, not_exposed = exposed_counts(
        curated or curate(config, service.catalog), service.is_modern)
    return ServerStatus(
        name=service.name,
        namespace=config.effective_namespace,
        transport=config.kind,
        state=str(service.state),
        enabled=service.state is not UpstreamState.DISABLED,
        protocol_version=primary.protocol_version,
        protocol=service.primary().protocol_mode,
        protocol_reason=primary.protocol_reason,
        last_error="; ".join(e for e in errors if e) or None,
        uptime_seconds=None if primary.uptime_seconds is None
        else round(primary.uptime_seconds, 3),
        connect_seconds=None if primary.connect_seconds is None
        else round(primary.connect_seconds, 3),
        restarts=sum(r.restarts for r in replicas),
        pid=primary.pid,
        description=config.description,
        health=min((r.health for r in replicas), key=_HEALTH_ORDER.index),
        balance=config.balance,
        replicas=replicas,
        isolation="per_client" if config.per_client else "shared",
        client_sessions=_clients_of(service), config_error=None, note=None,
        sign_in=sign_in_status(config, service.state, current_sign_ins()),
        tools_not_exposed=not_exposed, **counts,
    )


def _clients_of(service: Service) -> ClientSessionsStatus | None:
    sessions = service.clients
    if sessions is None:
        return None
    return ClientSessionsStatus(
        active=len(sessions.upstreams), max_clients=sessions.config.max_clients,
        idle_timeout_seconds=sessions.config.idle_timeout, created=sessions.created,
        ended=sessions.reaped,
        sessions=[ClientSession(**replica_status(service, u).model_dump(), owner=owner,
                                owner_kind=kind) for (kind, owner), u in sessions.owned])


def own_sessions(status: S, principal: Principal) -> S:
    """``status`` (a server's, or its detail) listing only ``principal``'s own per-client
    sessions unless it is an admin (``Principal.own_records``): another caller's entry
    holds its upstream's last error, which may quote what that caller sent."""
    clients = status.client_sessions
    if clients is None or principal.own_records is None:
        return status
    mine = [c for c in clients.sessions if principal.sees_records_of(c.owner, c.owner_kind)]
    return status.model_copy(update={"client_sessions": clients.model_copy(
        update={"sessions": mine})})
