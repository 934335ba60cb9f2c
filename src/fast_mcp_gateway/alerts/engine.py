"""The alert engine: evaluates the rules on a timer and announces every transition.

Rules are servers.yaml's ``alerts.rules`` overridden by name by the store's runtime
rules (a tombstone deletes a file rule), re-read from the store on every full
evaluation, so a rule changed by another gateway on a shared store applies here too.

Inputs, never an upstream call:

- ``success_rate`` and ``p95_ms``: the store's per-minute aggregates over the rule's
  window (one grouped query per distinct window and evaluation; percentiles are the
  histogram's bucket bounds, at most 25 % high; a window is rounded out to whole
  minutes);
- ``consecutive_failures``: the server's newest calls in the window (at most
  ``threshold + 1`` rows): how many in a row did not succeed (error, timeout, rejected;
  a cancelled call is skipped: it neither failed nor succeeded);
- ``not_ready``: the servers' states from the supervisors' snapshots (``states``):
  ``reconnecting`` or ``failed`` breach, ``ready`` and ``disabled`` do not (an operator's
  choice is no incident); ``starting`` and ``stopped`` are unknown (the gateway starting
  or stopping it): an alert neither fires nor resolves on them.

Several gateways on one store read the same calls, so each would raise the same alert:
the one holding the store's ``alerts`` lease (taken and renewed on every full
evaluation, for ``LEASE_EVALUATIONS`` intervals; released at a clean stop; a gateway that
dies without releasing it loses it to the next when it runs out) announces transitions
of rules on calls -- webhook and history.  The others evaluate them too (their
dashboards and logs show the same alerts) but post and record nothing.  ``not_ready``
rules read each gateway's own upstreams: every gateway announces its own, with its
``instance_id`` in the webhook payload.  When the lease changes hands a transition may
be announced twice; never every time.  A gateway taking the lease over announces what
the history lacks (``_catch_up``): an alert it saw fire, or resolve, while the holder
was dead and its lease still ran, was announced by nobody.

``run`` evaluates every ``alerts.evaluate_every`` seconds, and at once (state rules only:
no store query) when ``poke`` says a server's state changed.  A store that cannot be
read makes its rules' readings unknown -- they neither fire nor resolve -- is logged
once, and is asked again next time; state rules go on.  Every transition is logged
(firing at WARNING, resolved at INFO), kept for the store's alert history (written
after each evaluation; kept and retried while the store is away, up to 1000), posted to
the webhook (``webhook.WebhookSink``) and handed to each ``on_transition`` callback.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc
from pydantic import ValidationError

from fast_mcp_gateway.alerts.states import (
    AlertStates,
    Key,
    Reading,
    Transition,
    compare,
    describe,
)
from fast_mcp_gateway.alerts.unrecorded import SeenTransitions
from fast_mcp_gateway.alerts.webhook import ClientFactory, WebhookSink, safe_url
from fast_mcp_gateway.config.alerts import AlertRule, AlertsConfig
from fast_mcp_gateway.store import AlertEvent, Invocation, LatencyStats, StorageError, Store
from fast_mcp_gateway.store.stats import TASK_END
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

BREACHING_STATES = frozenset({"reconnecting", "failed"})
# Say nothing of a server's health (the gateway stopping or starting it): an alert on it
# neither fires nor resolves -- a deploy does not resolve, then fire again, a broken one.
SILENT_STATES = frozenset({"starting", "stopped"})
RESTORE_EVENTS = 500  # history read at start to take back the alerts still firing
UNSAVED_LIMIT = 1000  # transitions kept for the store while it is away
UNKNOWN = Reading(None, None)
LEASE = "alerts"
LEASE_EVALUATIONS = 3  # a lease outlives this many missed evaluations
RELEASE_TIMEOUT = 2.0  # seconds a stop waits to release the lease (else it runs out)

OnTransition = Callable[[Transition], None]


class AlertEngine:
    """Rules, their evaluation and the alerts they raise (see the module docstring).

    ``config()`` is the running ``alerts:`` section (re-read on each evaluation: a
    config reload applies), ``states()`` maps each running server to its state,
    ``store()`` is the open store or None."""

    def __init__(self, config: Callable[[], AlertsConfig],
                 states: Callable[[], Mapping[str, str]],
                 store: Callable[[], Store | None], *, clock: Callable[[], float] = time.time,
                 instance_id: str | None = None,
                 webhook_client: ClientFactory | None = None) -> None:
        self._config = config
        self._states = states
        self._store = store
        self._clock = clock
        self.instance_id = instance_id
        self.alerts = AlertStates()
        self.webhook = (WebhookSink(config().webhook) if webhook_client is None
                        else WebhookSink(config().webhook, client=webhook_client))
        self.on_transition: list[OnTransition] = []
        self._runtime: dict[str, AlertRule | None] = {}
        self._reads: dict[object, dict[str, AlertRule | None]] = {}  # under way: held since
        self._unsaved: deque[AlertEvent] = deque()
        self.unsaved_dropped = 0
        self.evaluations = 0
        self.last_evaluated_at: float | None = None
        self.store_error: str | None = None
        self.evaluated = ChangeSignal()  # notified after every evaluation
        self._lock = anyio.Lock()
        self._poked = False
        self._poke = anyio.Event()
        self.leading = True  # announces rules on calls (see the module docstring)
        self.seen = SeenTransitions()  # those of rules on calls while not leading

    # -- rules ------------------------------------------------------------------------

    def rules(self) -> list[tuple[AlertRule, str]]:
        """The rules in effect, by name, each with its source: ``file`` or ``runtime``."""
        merged: dict[str, tuple[AlertRule, str]] = {
            r.name: (r, "file") for r in self._config().rules}
        for name, rule in self._runtime.items():
            if rule is None:
                merged.pop(name, None)
            else:
                merged[name] = (rule, "runtime")
        return [merged[name] for name in sorted(merged)]

    def hold(self, name: str, rule: AlertRule | None) -> None:
        """A change just written to the store (``None``: deleted), in force here at once:
        a store gone before the next read would leave the old rule in force, and unlisted
        the rule the change answered (the next read of the store replaces it)."""
        self._runtime[name] = rule
        for held in self._reads.values():  # over what a read under way returns (``load_rules``)
            held[name] = rule

    def file_rule(self, name: str) -> AlertRule | None:
        return next((r for r in self._config().rules if r.name == name), None)

    async def load_rules(self) -> None:
        """Re-read the runtime rules from the store (``StorageError`` when it cannot)."""
        store = self._store()
        if store is None:
            self._runtime = {}
            return
        # A change held while this reads may be missing from what it reads (read before
        # its write): kept over it; the next read alone replaces it (review16).
        held: dict[str, AlertRule | None] = {}
        self._reads[reading := object()] = held
        try:
            records = await store.alert_rules()
        finally:
            del self._reads[reading]
        runtime: dict[str, AlertRule | None] = {}
        for record in records:
            if record.config is None:
                runtime[record.name] = None
                continue
            try:
                runtime[record.name] = AlertRule.model_validate(record.config)
            except ValidationError as exc:
                logger.warning("ignoring the stored alert rule '%s': %s", record.name,
                               exc.errors()[0].get("msg", exc))
        self._runtime = runtime | held

    # -- evaluating -----------------------------------------------------------------------

    def poke(self, *_: object) -> None:
        """A server's state changed: evaluate the state rules soon (never blocks; usable
        as the manager's transition listener)."""
        self._poked = True
        self._poke.set()

    async def evaluate(self, *, full: bool = True) -> list[Transition]:
        """One evaluation (``full=False``: the not_ready rules only, no store query);
        returns its transitions, which have been announced.  Store failures are
        absorbed (see the module docstring)."""
        async with self._lock:
            self.webhook.configure(self._config().webhook)
            store = self._store()
            reader = _Reader(store, self._clock())
            if full:
                try:
                    await self.load_rules()
                    await self._lead(store)
                except StorageError as exc:
                    reader.down = True
                    self._store_failed(exc)
            now = reader.now
            rules = self.rules()
            states = dict(self._states())
            transitions: list[Transition] = []
            evaluated: set[Key] = set()
            for rule, _ in rules:
                if not rule.enabled:
                    continue
                servers = (list(states) if rule.server == "*"
                           else [rule.server] if rule.server in states else [])
                evaluated.update((rule.name, s) for s in servers)
                if not full and rule.metric != "not_ready":
                    continue
                try:
                    readings = await reader.read(rule, servers, states)
                except StorageError as exc:
                    reader.down = True
                    self._store_failed(exc)
                    readings = dict.fromkeys(servers, UNKNOWN)
                for server in servers:
                    transition = self.alerts.step(rule, server, readings[server], now)
                    if transition is not None:
                        transitions.append(transition)
            transitions += self.alerts.retire(evaluated, {r.name: r for r, _ in rules}, now)
            for transition in transitions:
                self._announce(transition)
            await self.seen.note(store)
            if full and not reader.down and store is not None and self.store_error:
                logger.info("alerts: the store is readable again; evaluating every rule")
                self.store_error = None
            await self._save(store)
            self.evaluations += 1
            self.last_evaluated_at = now
        self.evaluated.notify()
        return transitions

    async def _lead(self, store: Store | None) -> None:
        if store is None or self.instance_id is None:
            self.leading = True
            return
        ttl = max(LEASE_EVALUATIONS * self._config().evaluate_every, 30.0)
        leading = await store.hold_lease(LEASE, self.instance_id, ttl)
        if leading and not self.leading:
            logger.info("alerts: this gateway (%s) now holds the store's alerts lease: it "
                        "sends the webhooks and history of alerts on calls", self.instance_id)
            self.leading = True
            try:
                await self._catch_up(store)
            except BaseException:
                self.leading = False  # caught up at the next evaluation
                raise
        elif not leading and self.leading:
            held = await store.lease(LEASE)
            holder, until = ((held.holder, held.expires_at) if held is not None
                             else ("another gateway", self._clock()))
            logger.info("alerts: gateway %s holds the store's alerts lease until %s (in %.0f "
                        "s unless it renews it): it sends the webhooks and history of alerts "
                        "on calls; this gateway (%s) shows them only", holder,
                        time.strftime("%H:%M:%S", time.localtime(until)),
                        max(0.0, until - self._clock()), self.instance_id)
        self.leading = leading

    async def _catch_up(self, store: Store) -> None:
        """Lead from where the history stops: the transitions this gateway saw while
        another held the lease, which that one did not record (it died, its lease still
        running), are announced now, each at the time it happened (``SeenTransitions``:
        fired, resolved and fired again is told so); then an alert firing here the
        history does not end firing, fired at the time it fired, and one it ends firing
        that no longer is, resolved now."""
        last: dict[Key, AlertEvent] = {}
        for event in await store.alert_events(limit=RESTORE_EVENTS):  # newest first
            last.setdefault((event.rule, event.server), event)
        rules = {rule.name: rule for rule, _ in self.rules()}
        late = " (announced late: the gateway that held the alerts lease did not)"
        told = {key: (event.state, event.at) for key, event in last.items()}
        for key in sorted(self.seen.keys()):
            if key[0] in rules:
                for transition in await self.seen.unrecorded(store, key):
                    self._announce(replace(transition, message=transition.message + late))
                    told[key] = (transition.state, transition.at)
        self.seen.clear()
        firing = {key: alert for key, alert in self.alerts.active.items()
                  if alert.state == "firing" and alert.metric != "not_ready"}
        for (name, server), alert in firing.items():
            rule = rules.get(name)
            if rule is not None and told.get((name, server), ("",))[0] != "firing":
                at = alert.fired_at or alert.since
                self._announce(Transition(
                    rule=name, server=server, state="firing", metric=alert.metric,
                    value=alert.value, threshold=alert.threshold, op=alert.op,
                    severity=alert.severity, at=at, since=alert.since,
                    window_seconds=rule.window,
                    message=describe(rule, server, alert.value, "firing") + late))
        for (name, server), (state, since) in told.items():
            rule = rules.get(name)
            if state == "firing" and (name, server) not in self.alerts.active \
                    and rule is not None and rule.metric != "not_ready":
                self._announce(Transition(
                    rule=name, server=server, state="resolved", metric=rule.metric,
                    value=None, threshold=rule.threshold, op=rule.comparison,
                    severity=rule.severity, at=self._clock(), since=since,
                    window_seconds=rule.window,
                    message=f"alert '{name}' RESOLVED on server '{server}': its condition "
                            "cleared while another gateway held the alerts lease" + late))

    async def release(self) -> None:
        """Give up the alerts lease at a clean stop, so a gateway started next takes it
        at once instead of waiting for it to run out.  Store failures are logged."""
        store = self._store()
        if store is None or self.instance_id is None or not self.leading:
            return
        try:
            await store.release_lease(LEASE, self.instance_id)
        except StorageError as exc:
            logger.info("alerts: could not release the alerts lease (%s); it runs out "
                        "by itself", exc)

    def _store_failed(self, exc: StorageError) -> None:
        if self.store_error is None:
            logger.warning("alerts: cannot read the store (%s); rules on calls are not "
                           "evaluated until it is back, state rules go on", exc)
        self.store_error = str(exc)

    def _announce(self, transition: Transition) -> None:
        level = logging.WARNING if transition.state == "firing" else logging.INFO
        logger.log(level, "%s", transition.message)
        if self.leading or transition.metric == "not_ready":
            if len(self._unsaved) >= UNSAVED_LIMIT:
                self._unsaved.popleft()
                self.unsaved_dropped += 1
            self._unsaved.append(transition.event())
            payload = transition.payload()
            if self.instance_id is not None:
                payload["gateway"] = self.instance_id
            self.webhook.submit(payload)
        else:   # told if this gateway takes the lease over from a holder that died
            self.seen.saw(transition)
        for callback in list(self.on_transition):
            try:
                callback(transition)
            except Exception:  # a subscriber's bug must not stop alerting
                logger.exception("alert transition callback %r failed", callback)

    async def _save(self, store: Store | None) -> None:
        if store is None:
            self._unsaved.clear()  # no store: no history
            return
        if not self._unsaved:
            return
        batch = list(self._unsaved)
        try:
            await store.add_alert_events(batch)
        except StorageError as exc:
            self._store_failed(exc)
            return
        for _ in batch:
            self._unsaved.popleft()

    async def restore(self) -> None:
        """Take back the alerts firing when the gateway last stopped (from the history),
        so that they resolve -- rather than fire again -- when their condition clears."""
        store = self._store()
        if store is None:
            return
        try:
            events = await store.alert_events(limit=RESTORE_EVENTS)
        except StorageError as exc:
            logger.warning("alerts: cannot read the alert history (%s); alerts firing "
                           "before the restart will fire again if they still hold", exc)
            return
        restored = self.alerts.restore(events)
        if restored:
            logger.info("alerts: %d alert(s) still firing since before the restart", restored)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Send webhooks and evaluate until cancelled (see the module docstring); then
        release the alerts lease (``release``: shielded, at most ``RELEASE_TIMEOUT``)."""
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.webhook.run)
                await self.restore()
                task_status.started()
                next_full = 0.0
                while True:
                    if time.monotonic() >= next_full:
                        self._poked = False
                        await self._tick(full=True)
                        next_full = time.monotonic() + self._config().evaluate_every
                        continue
                    if not self._poked:
                        self._poke = anyio.Event()
                        with anyio.move_on_after(next_full - time.monotonic()):
                            await self._poke.wait()
                    if self._poked:
                        self._poked = False
                        await self._tick(full=False)
        finally:
            with anyio.move_on_after(RELEASE_TIMEOUT, shield=True):
                await self.release()

    async def _tick(self, *, full: bool) -> None:
        try:
            await self.evaluate(full=full)
        except Exception:  # evaluation must outlive any one bug or failure
            logger.exception("alerts: evaluation failed; trying again next time")

    # -- what admin operations read ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The engine and its webhook, for the admin operations."""
        config = self._config()
        hook = self.webhook
        return {
            "evaluate_every": config.evaluate_every,
            "evaluations": self.evaluations,
            "last_evaluated_at": self.last_evaluated_at,
            "store_error": self.store_error,
            "leading": self.leading,
            "history_unsaved": len(self._unsaved),
            "history_dropped": self.unsaved_dropped,
            "webhook": None if hook.config is None else {
                "url": safe_url(hook.config.url), "sent": hook.stats.sent,
                "failed": hook.stats.failed, "dropped": hook.stats.dropped,
                "retries": hook.stats.retries, "queued": hook.stats.queued,
                "last_error": hook.stats.last_error},
        }


class _Reader:
    """One evaluation's metric readings, sharing the store's answers between rules."""

    def __init__(self, store: Store | None, now: float) -> None:
        self.store = store
        self.now = now
        self.down = False
        self._windows: dict[float, dict[str, LatencyStats]] = {}

    async def _requests(self, server: str, since: float, limit: int) -> list[Invocation]:
        """``server``'s newest ``limit`` finished requests since ``since``: a task's end
        (kind ``task``, ``front/tasks.py``) is no request (its creating call was one),
        and a cancelled call neither failed nor succeeded (as for ``success_rate``: a
        host cancelling, or a gateway's stop cutting its calls in flight, is no
        upstream failing)."""
        assert self.store is not None
        rows: list[Invocation] = []
        cursor = None
        while len(rows) < limit:
            page, cursor = await self.store.invocations(server=server, since=since,
                                                        limit=limit, cursor=cursor)
            rows += [r for r in page if r.kind != TASK_END and r.status != "cancelled"]
            if cursor is None:
                break
        return rows[:limit]

    async def read(self, rule: AlertRule, servers: list[str], states: Mapping[str, str]
                   ) -> dict[str, Reading]:
        if rule.metric == "not_ready":
            return {s: Reading(states[s], None if states[s] in SILENT_STATES
                               else states[s] in BREACHING_STATES) for s in servers}
        store = self.store
        if store is None or self.down or not servers:
            return dict.fromkeys(servers, UNKNOWN)
        op, threshold = rule.comparison, rule.threshold
        assert op is not None and threshold is not None  # AlertRule guarantees it
        if rule.metric == "consecutive_failures":
            out = {}
            for server in servers:
                rows = await self._requests(server, self.now - rule.window, int(threshold) + 1)
                streak = next((i for i, r in enumerate(rows) if r.status == "success"),
                              len(rows))
                out[server] = Reading(float(streak), compare(streak, op, threshold), len(rows))
            return out
        stats = self._windows.get(rule.window)
        if stats is None:
            stats = self._windows[rule.window] = await store.stats(
                since=self.now - rule.window, group_by="server")
        out = {}
        for server in servers:
            group = stats.get(server)
            calls = group.count if group else 0
            value = None if group is None else (
                group.success_rate if rule.metric == "success_rate" else group.p95_ms)
            out[server] = Reading(value, value is not None and calls >= rule.min_calls
                                  and compare(value, op, threshold), calls)
        return out
