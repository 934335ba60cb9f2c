"""Service: one configured server as 1..N replicas, with balancing, failover and limits.

A ``Service`` looks like one upstream to the rest of the gateway (same catalog, same
``call_tool``/``read_resource``/``get_prompt``), and decides per call:

1. rate limits (server, then tool): a full bucket fails fast with "retry after N ms";
2. which replica: the ``balance`` strategy over eligible replicas (ready, not
   draining, breaker allowing; unhealthy ones only when nothing healthier is left);
3. whether to try again on failure: ``RetryPolicy`` -- a request that never reached an
   upstream fails over to another replica; one that may have run is retried only for
   read-only / idempotent tools (never twice otherwise);
4. optionally, a stale result: the last good answer of a read-only tool, marked in
   ``_meta``, when every attempt failed.

A call's path (replicas tried, retries) goes into its record and a retried ``_meta``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import (
    NoHealthyReplica,
    UpstreamError,
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from fast_mcp_gateway.policies import FailureKind, HealthStatus, RetryPolicy, make_balancer
from fast_mcp_gateway.policies.stalls import ToolTimes
from fast_mcp_gateway.routing.attempts import (
    CallPath,
    failure_kind,
    host_progress,
    last_of,
    noted,
    rising,
    run_attempt,
)
from fast_mcp_gateway.routing.isolation import ClientSessions
from fast_mcp_gateway.routing.limits import RateLimits
from fast_mcp_gateway.routing.refusals import breaker_refusal, no_replica
from fast_mcp_gateway.routing.waiting import still_first_starting, still_offered, until_usable
from fast_mcp_gateway.upstream.http_idle import REPEATABLE
from fast_mcp_gateway.upstream.relay import FrontCall
from fast_mcp_gateway.upstream.replica import Catalog, Upstream, UpstreamState
from fast_mcp_gateway.upstream.signals import ChangeSignal

T = TypeVar("T")
logger = logging.getLogger(__name__)
STALE_META_KEY = "io.github.fast-mcp-gateway/stale"
ROUTE_META_KEY = "io.github.fast-mcp-gateway/route"
_STALE_ENTRIES = 1024
_TRANSPORT_NAMES = frozenset({"stdio", "http", "sse"})
_STATE_ORDER = (UpstreamState.READY, UpstreamState.RECONNECTING, UpstreamState.STARTING,
                UpstreamState.SIGNED_OUT, UpstreamState.FAILED, UpstreamState.DISABLED,
                UpstreamState.STOPPED)


def _retry_policy(config: ServerConfig) -> RetryPolicy:
    r = config.retry
    return RetryPolicy(attempts=r.attempts, initial=r.backoff.initial, maximum=r.backoff.max,
                       on=frozenset(r.on))


class Service:
    """A server's replicas behind one name (see the module docstring for the rules)."""

    def __init__(
        self,
        config: ServerConfig,
        replicas: list[Upstream],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self.name = config.name
        self.replicas = replicas
        # A tool's time is its code's: one memory for all replicas (policies/stalls.py).
        times = ToolTimes()
        for replica in replicas:
            replica.share_tool_times(times)
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self.balancer = make_balancer(config.balance, len(replicas), self._rng)
        self.retry = _retry_policy(config)
        self.draining: set[int] = set()
        # Enabled as it runs (``set_enabled``), which its config may not say: a server
        # enabled or disabled at runtime keeps the config it was started with.
        self.enabled = config.enabled
        # isolation: per_client (routing/isolation.py): calls go to the host's own session.
        self.clients: ClientSessions | None = None
        self.previous: Catalog | None = None  # a restart's stand-in (manager.replace_server)
        self._changed = ChangeSignal()
        # (whose, name and arguments) -> (when, result): ``host_of`` keeps callers apart.
        self._stale: OrderedDict[tuple[Hashable, str], tuple[float, types.CallToolResult]] = \
            OrderedDict()
        self._limits = RateLimits(self.name, config.rate_limit, clock)
        self._unmoved: set[tuple[int, str]] = set()   # (replica, uri) follow_ready failed

    def reconfigure(self, config: ServerConfig, replica_configs: list[ServerConfig]) -> bool:
        """Take ``config`` as it runs when it differs from the current one only in
        settings read per call or per catalog rebuild (``ServerConfig.
        differs_only_in_place``); False (nothing changed) when it needs a restart.

        The sessions, the breakers' and health's state, draining, the stale-result cache
        and what the rate-limit buckets counted stay; the balancer and retry policy are
        made anew from what changed.  ``replica_configs``: each replica's own copy (same
        order).  ``enabled`` is compared with the server as it runs (``self.enabled``: an
        enable or disable at runtime changes it, not its config): a config whose flag
        says otherwise restarts it.  An unchanged config is ``runs_as``'s, not this."""
        old = self.config
        running = old.model_copy(update={"enabled": self.enabled})
        if self.clients is not None or config == old \
                or len(replica_configs) != len(self.replicas) \
                or (config != running and not running.differs_only_in_place(config)):
            return False
        self.config = config
        for replica, replica_config in zip(self.replicas, replica_configs, strict=True):
            replica.config = replica_config
        if config.balance != old.balance:
            self.balancer = make_balancer(config.balance, len(self.replicas), self._rng)
        self.retry = _retry_policy(config)
        if config.rate_limit != old.rate_limit:
            self._limits.configure(config.rate_limit)
        return True

    def runs_as(self, config: ServerConfig) -> bool:
        """Whether it runs with ``config`` already (``enabled`` as it runs; not failed)."""
        return self.config == config and self.enabled == config.enabled \
            and self.state is not UpstreamState.FAILED

    # -- what the rest of the gateway sees --------------------------------------------

    def primary(self) -> Upstream:
        """The replica whose catalog and capabilities stand for the service."""
        for replica in self.replicas:
            if replica.state is UpstreamState.READY:
                return replica
        return self.replicas[0]

    @property
    def state(self) -> UpstreamState:
        states = {r.state for r in self.replicas}
        return next(s for s in _STATE_ORDER if s in states)

    @property
    def catalog(self) -> Catalog:
        if self.previous is not None and not still_first_starting(self.replicas):
            self.previous = None  # its first attempts ended: its own catalog, or none
        return self.previous or self.primary().catalog

    @property
    def capabilities(self) -> types.ServerCapabilities | None:
        return self.primary().capabilities

    @property
    def is_modern(self) -> bool:
        return self.primary().is_modern

    @property
    def longest_attempt(self) -> float:
        """How long its replicas' fresh attempts (a reconnect's) may last."""
        return max(r.longest_attempt for r in self.replicas)

    @property
    def attempts(self) -> int:
        return sum(r.attempts for r in self.replicas)

    def observed(self) -> None:
        self._changed.notify()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds (checked whenever any replica changes)."""
        return await self._changed.wait_until(predicate, within)

    # -- control ----------------------------------------------------------------------

    def reconnect(self) -> None:
        self.enabled = True  # a reconnect enables a disabled replica
        for replica in self.replicas:
            replica.reconnect()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        for replica in self.replicas:
            replica.set_enabled(enabled)

    def kill(self) -> None:
        for replica in self.replicas:
            replica.kill()
        if self.clients is not None:
            self.clients.kill_all()

    def replica(self, index: int) -> Upstream:
        if not 0 <= index < len(self.replicas):
            raise UpstreamError(self.name, f"has no replica {index} (0..{len(self.replicas) - 1})")
        return self.replicas[index]

    # -- choosing ---------------------------------------------------------------------

    def eligible(self, exclude: set[int]) -> list[Upstream]:
        now = self._clock()
        ready = [r for r in self.replicas
                 if r.replica not in exclude and r.replica not in self.draining
                 and r.state is UpstreamState.READY and r.would_admit(now)]
        # Asked of a lone replica too: its health transitions are noticed at its calls.
        # A replica suspect of stalling stays UNHEALTHY while its trial call is due:
        # admitted for it, as a half-open breaker admits its probe.
        healthy = [r for r in ready if r.status() is not HealthStatus.UNHEALTHY
                   or r.trial_due()]
        return healthy or ready

    def _hash_key(self, arguments: dict[str, Any] | None, front: FrontCall | None) -> str | None:
        key = self.config.hash_key
        if self.config.balance != "hash":
            return None
        if key is None or key == "session":
            if front is None or front.session is None:
                return None
            # Without a client id a front names its transport (``FrontCall.client_id``),
            # which every session of it shares: the session's connection is the key then
            # (``front.session`` is a view of it per request over HTTP).
            client = front.client_id
            if client not in _TRANSPORT_NAMES:
                return client
            return str(id(front.host if front.host is not None else front.session))
        value = (arguments or {}).get(key.removeprefix("arguments."))
        return None if value is None else json.dumps(value, sort_keys=True)

    def pick(self, exclude: set[int], key: str | None = None) -> Upstream | None:
        candidates = self.eligible(exclude)
        if len(self.replicas) == 1:
            # One replica: every strategy picks the one candidate, and no state a
            # strategy keeps can matter to a later pick (there is never another).
            return candidates[0] if candidates else None
        views = [r.balancer_view() for r in candidates]
        choice = self.balancer.pick(views, key)
        return None if choice is None else self.replicas[choice.index]

    def _no_replica(self, tried: CallPath) -> NoHealthyReplica:
        return no_replica(self.name, self.replicas, self.draining, self._clock(), tried)

    # -- calling ----------------------------------------------------------------------

    async def _route(
        self,
        what: str,
        op: Callable[[Upstream], Awaitable[T]],
        *,
        idempotent: bool,
        key: str | None = None,
        path: CallPath | None = None,
        front: FrontCall | None = None,
    ) -> tuple[T, CallPath]:
        path = path if path is not None else CallPath()
        if self.clients is not None:
            async with self.clients.session(front, path) as own:
                if own is not None:
                    return await self._on_own_session(own, op, path)
        tried: set[int] = set()
        attempt = 0
        while True:  # until the retry policy says stop (read live: a reload may change it)
            attempt += 1
            await until_usable(self.replicas, self.wait_until)  # a retry's may be restarting
            replica = self.pick(tried, key) or self.pick(set(), key)
            if replica is None:
                exc: UpstreamError = self._no_replica(path)
                kind = FailureKind.NOT_SENT
            elif not replica.admit(self._clock()):
                exc, kind = self._no_replica(path), FailureKind.NOT_SENT
            else:
                tried.add(replica.replica)
                try:
                    return await run_attempt(path, replica, op), path
                except (UpstreamUnavailable, UpstreamTimeout, UpstreamRequestFailed) as error:
                    exc, kind = error, failure_kind(error)
            decision = self.retry.decide(
                attempt, kind, idempotent=idempotent,
                still_running=isinstance(exc, UpstreamTimeout) and exc.still_running)
            if not decision.retry:
                raise last_of(exc, path) from exc.__cause__
            await self._sleep(self.retry.delay(attempt, self._rng))

    async def _on_own_session(self, own: Upstream, op: Callable[[Upstream], Awaitable[T]],
                              path: CallPath) -> tuple[T, CallPath]:
        """A per_client host's call on its own session: no balancing, no failover."""
        if not own.admit(self._clock()):
            raise NoHealthyReplica(self.name, breaker_refusal(own))
        return await run_attempt(path, own, op), path

    async def _call_tool(
        self, name: str, arguments: dict[str, Any] | None, front: FrontCall | None,
        annotations: types.ToolAnnotations | None, path: CallPath,
        send: Callable[[Upstream], Awaitable[T]],
    ) -> T:
        """A ``tools/call`` in either encoding (``send``): limits, balancing, failover."""
        self._limits.check(name)
        if self.previous is not None:  # made while a restart stood in with the old catalog
            send = still_offered(self.name, name, send)
        idempotent = self._idempotent(name, annotations)
        repeatable = REPEATABLE.set(idempotent)  # (an HTTP tap's stale connection: again)
        try:
            return (await self._route(
                f"tools/call '{name}'", send, idempotent=idempotent,
                key=self._hash_key(arguments, front), path=path, front=front,
            ))[0]
        finally:
            REPEATABLE.reset(repeatable)

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, front: FrontCall | None,
        annotations: types.ToolAnnotations | None = None,
        path: CallPath | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call ``name`` on a replica; ``path`` (if given) receives the attempts made."""
        path = path if path is not None else CallPath()
        report = host_progress(front)  # one for every attempt
        read_only = bool(annotations and annotations.read_only_hint)
        stale_key = (self.host_of(front),
                     json.dumps([name, arguments], sort_keys=True, default=str))
        ttl = self.config.fallback.stale_cache_ttl
        try:
            result = await self._call_tool(
                name, arguments, front, annotations, path,
                lambda replica: replica.call_tool(name, arguments, front, report),
            )
        except UpstreamError:
            cached = self._stale.get(stale_key) if read_only and ttl else None
            if cached is None or self._clock() - cached[0] > ttl:
                raise
            path.stale = True
            age = self._clock() - cached[0]
            meta = {**(cached[1].meta or {}), STALE_META_KEY: {"age_seconds": round(age, 3)},
                    **(path.notes or {})}
            return cached[1].model_copy(update={"meta": meta})
        if (read_only and ttl and isinstance(result, types.CallToolResult)
                and not result.is_error):
            self._stale[stale_key] = (self._clock(), result)
            self._stale.move_to_end(stale_key)
            while len(self._stale) > _STALE_ENTRIES:
                self._stale.popitem(last=False)
        if path.retries and isinstance(result, types.CallToolResult):
            meta = {**(result.meta or {}), ROUTE_META_KEY: path.route_meta()}
            result = result.model_copy(update={"meta": meta})
        return noted(result, path)

    def host_of(self, front: FrontCall | None) -> Hashable | None:
        """Whose answers a call's are, for the result caches (``front/results.py``, the
        stale fallback): on a per_client server the host key of the session it goes to
        (``ClientSessions.key_of``: a caller's own credential or session, so one caller's
        cached answer is never another's), None on a shared server (one for all)."""
        return None if self.clients is None else self.clients.key_of(front)

    def _idempotent(self, name: str, annotations: types.ToolAnnotations | None) -> bool:
        return bool(annotations and (annotations.read_only_hint or annotations.idempotent_hint)) \
            or name in self.config.idempotent_tools

    def serves_raw(self, name: str, annotations: types.ToolAnnotations | None) -> bool:
        """Whether ``call_tool_raw`` gives the same answer ``call_tool`` would.

        Not when a stale fallback may be needed (it keeps typed results) or when the
        balancing key is the host's session (the raw lane has no session object).
        """
        read_only = bool(annotations and annotations.read_only_hint)
        if read_only and self.config.fallback.stale_cache_ttl:
            return False
        return not (self.config.balance == "hash"
                    and self.config.hash_key in (None, "session"))

    async def call_tool_raw(
        self, params: dict[str, Any], front: FrontCall | None,
        annotations: types.ToolAnnotations | None = None,
        path: CallPath | None = None,
        on_progress: ProgressFnT | None = None,
        served: list[Upstream] | None = None,
    ) -> dict[str, Any]:
        """``call_tool`` for JSON in, JSON out (see ``Upstream.call_tool_raw``): the same
        rate limits, balancing, retries and failover.  Only for ``serves_raw`` tools.
        ``served`` (if given) receives each replica the call was sent to, the one that
        answered last (where a task it created lives)."""
        path, on_progress = path if path is not None else CallPath(), rising(on_progress)

        async def recorded(replica: Upstream) -> dict[str, Any]:
            assert served is not None
            served.append(replica)
            return await replica.call_tool_raw(params, front, on_progress)

        result = await self._call_tool(
            params["name"], params.get("arguments"), front, annotations, path,
            recorded if served is not None
            else lambda replica: replica.call_tool_raw(params, front, on_progress))
        if path.retries:
            result["_meta"] = {**(result.get("_meta") or {}), ROUTE_META_KEY: path.route_meta()}
        return noted(result, path)

    async def read_resource(
        self, uri: str, front: FrontCall | None, path: CallPath | None = None
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        self._limits.check(None)
        path, report = path if path is not None else CallPath(), host_progress(front)
        result, _ = await self._route(f"resources/read '{uri}'",
                                      lambda r: r.read_resource(uri, front, report),
                                      idempotent=True, path=path, front=front)
        return noted(result, path)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, front: FrontCall | None,
        path: CallPath | None = None,
    ) -> types.GetPromptResult | types.InputRequiredResult:
        self._limits.check(None)
        path, report = path if path is not None else CallPath(), host_progress(front)
        result, _ = await self._route(f"prompts/get '{name}'",
                                      lambda r: r.get_prompt(name, arguments, front, report),
                                      idempotent=True, path=path, front=front)
        return noted(result, path)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        result, _ = await self._route("completion/complete",
                                      lambda r: r.complete(ref, argument, context_arguments),
                                      idempotent=True)
        return result

    async def subscribe(self, uri: str) -> None:
        """Subscribe to ``uri`` on the ready replica holding it already, else on the
        primary: one replica is subscribed (each would send hosts every update)."""
        holder = next((r for r in self.replicas
                       if r.state is UpstreamState.READY and r.is_subscribed(uri)), None)
        await (holder or self.primary()).subscribe(uri)

    async def follow_ready(self) -> None:
        """Move each subscription that only replicas not ready hold (down, or not up
        after a restart carried it to them) to the primary, if it is ready, and let
        go of it there (without a session: not replayed on the next).  A failure is
        logged, once: the subscription stays where it was (tried again once its replica
        was up again)."""
        ready = self.primary()
        if ready.state is not UpstreamState.READY:
            return
        for at, replica in enumerate(self.replicas):
            if replica.state is UpstreamState.READY:
                if self._unmoved:
                    self._unmoved = {(i, uri) for i, uri in self._unmoved if i != at}
                continue
            for uri in sorted(replica.subscriptions()):
                if (at, uri) in self._unmoved:
                    continue
                try:
                    if not any(r.state is UpstreamState.READY and r.is_subscribed(uri)
                               for r in self.replicas):
                        await ready.subscribe(uri)
                    await replica.unsubscribe(uri)
                except (UpstreamError, MCPError) as exc:
                    self._unmoved.add((at, uri))
                    logger.warning("server %s: could not move the subscription to %s of "
                                   "replica %s (%s) to replica %s: %s (its hosts get its "
                                   "updates again once %s is back)", self.name,
                                   logged_name(uri), replica.label, replica.state,
                                   ready.label, exc, replica.label)

    def subscriptions(self) -> frozenset[str]:
        """The URIs hosts hold subscribed on any replica."""
        return frozenset().union(*(r.subscriptions() for r in self.replicas))

    def carry(self, previous: Service) -> None:
        """Take over ``previous``'s subscriptions (this restarts it): its first replica
        is subscribed to each from its first session on, as hosts still hold them (if
        it does not come up, ``follow_ready`` moves them to one that did)."""
        for uri in sorted(previous.subscriptions()):
            self.replicas[0].keep_subscribed(uri)

    async def unsubscribe(self, uri: str) -> None:
        for replica in self.replicas:
            if replica.is_subscribed(uri):
                await replica.unsubscribe(uri)
