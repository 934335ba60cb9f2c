"""The alert state machine: one instance per (rule, server), pure (times are passed in).

An instance is *inactive* (not kept), *pending* (the condition holds, not yet for the
rule's ``for``) or *firing*.  ``step`` feeds one reading and returns the transition it
causes, if any: ``firing`` when a pending condition has held ``for`` seconds (at once
when ``for`` is 0), ``resolved`` when a firing condition stops holding.  A pending
condition that stops holding is forgotten silently (it never fired).  A reading whose
``breached`` is None (the store could not be asked) changes nothing: an outage neither
fires nor resolves anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fast_mcp_gateway.config.alerts import AlertRule, Op
from fast_mcp_gateway.store import AlertEvent

Value = float | str | None
TransitionState = Literal["firing", "resolved"]
Key = tuple[str, str]  # (rule, server)


@dataclass(frozen=True)
class Reading:
    """What a rule's metric is for one server now.  ``breached`` None: unknown."""

    value: Value
    breached: bool | None
    calls: int | None = None  # calls in the window, where that is what was measured


@dataclass
class Alert:
    """A pending or firing alert (what the dashboard lists as active)."""

    rule: str
    server: str
    metric: str
    state: Literal["pending", "firing"]
    since: float  # when the condition started to hold (unix seconds)
    value: Value
    threshold: Value
    op: str | None
    severity: str
    fired_at: float | None = None
    calls: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "server": self.server, "metric": self.metric,
                "state": self.state, "since": self.since, "fired_at": self.fired_at,
                "value": self.value, "threshold": self.threshold, "op": self.op,
                "severity": self.severity, "calls": self.calls}


@dataclass(frozen=True)
class Transition:
    """An alert firing or resolving: logged, stored, posted, published."""

    rule: str
    server: str
    state: TransitionState
    metric: str
    value: Value
    threshold: Value
    op: str | None
    severity: str
    at: float
    since: float
    window_seconds: float | None
    message: str
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body (and what ``on_transition`` callbacks receive)."""
        return {"rule": self.rule, "server": self.server, "state": self.state,
                "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "op": self.op, "severity": self.severity, "window_seconds": self.window_seconds,
                "since": self.since, "at": self.at,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
                "message": self.message, **self.extra}

    def event(self) -> AlertEvent:
        return AlertEvent(at=self.at, rule=self.rule, server=self.server, state=self.state,
                          metric=self.metric, value=json.dumps(self.value),
                          threshold=json.dumps(self.threshold), severity=self.severity,
                          message=self.message)


def compare(value: float, op: Op, threshold: float) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">": value > threshold,
            ">=": value >= threshold}[op]


def threshold_of(rule: AlertRule) -> Value:
    return "ready" if rule.metric == "not_ready" else rule.threshold


def describe(rule: AlertRule, server: str, value: Value, state: TransitionState) -> str:
    """One line for logs, history and the webhook."""
    if rule.metric == "not_ready":
        cond = f"state is {value}" if state == "firing" else f"state is {value} again"
    else:
        shown = "no data" if value is None else (f"{value:.3g}" if isinstance(value, float)
                                                 else str(value))
        cond = (f"{rule.metric} {shown} {rule.comparison} {rule.threshold:g}"
                if state == "firing" else f"{rule.metric} {shown}")
        cond += f" over {rule.window:g}s"
    return f"alert '{rule.name}' {state.upper()} on server '{server}': {cond}"


class AlertStates:
    """Every pending and firing alert, and the rules' state machine (module docstring)."""

    def __init__(self) -> None:
        self.active: dict[Key, Alert] = {}

    def step(self, rule: AlertRule, server: str, reading: Reading, now: float
             ) -> Transition | None:
        key = (rule.name, server)
        alert = self.active.get(key)
        if reading.breached is None:
            return None
        if not reading.breached:
            if alert is None:
                return None
            del self.active[key]
            if alert.state != "firing":
                return None
            return self._transition(rule, server, "resolved", reading.value, now, alert.since,
                                    describe(rule, server, reading.value, "resolved"))
        if alert is None:
            alert = self.active[key] = Alert(
                rule=rule.name, server=server, metric=rule.metric, state="pending",
                since=now, value=reading.value, threshold=threshold_of(rule),
                op=rule.comparison, severity=rule.severity)
        alert.value, alert.calls = reading.value, reading.calls
        alert.threshold, alert.op, alert.severity = (threshold_of(rule), rule.comparison,
                                                     rule.severity)
        if alert.state == "pending" and now - alert.since >= rule.for_:
            alert.state, alert.fired_at = "firing", now
            return self._transition(rule, server, "firing", reading.value, now, alert.since,
                                    describe(rule, server, reading.value, "firing"))
        return None

    def retire(self, keep: Iterable[Key], rules: dict[str, AlertRule], now: float
               ) -> list[Transition]:
        """Forget alerts no longer evaluated (rule deleted or disabled, server gone):
        a firing one resolves, saying why."""
        keep = set(keep)
        out = []
        for key in [k for k in self.active if k not in keep]:
            alert = self.active.pop(key)
            if alert.state != "firing":
                continue
            rule = rules.get(alert.rule)
            why = ("its rule was deleted or disabled" if rule is None or not rule.enabled
                   else "the server is gone")
            out.append(Transition(
                rule=alert.rule, server=alert.server, state="resolved", metric=alert.metric,
                value=None, threshold=alert.threshold, op=alert.op, severity=alert.severity,
                at=now, since=alert.since, window_seconds=rule.window if rule else None,
                message=f"alert '{alert.rule}' RESOLVED on server '{alert.server}': {why}"))
        return out

    def restore(self, events: Iterable[AlertEvent]) -> int:
        """Take back the alerts that were firing when the gateway last stopped, from the
        history newest first (the first event of a key is its last state).  Returns how
        many were restored."""
        seen: set[Key] = set()
        restored = 0
        for event in events:
            key = (event.rule, event.server)
            if key in seen:
                continue
            seen.add(key)
            if event.state == "firing" and key not in self.active:
                self.active[key] = Alert(
                    rule=event.rule, server=event.server, metric=event.metric,
                    state="firing", since=event.at, fired_at=event.at,
                    value=loads_value(event.value), threshold=loads_value(event.threshold), op=None,
                    severity=event.severity)
                restored += 1
        return restored

    def snapshot(self) -> list[Alert]:
        """Copies of the active alerts, firing first, then by rule and server."""
        return sorted((replace(a) for a in self.active.values()),
                      key=lambda a: (a.state != "firing", a.rule, a.server))

    @staticmethod
    def _transition(rule: AlertRule, server: str, state: TransitionState, value: Value,
                    now: float, since: float, message: str) -> Transition:
        return Transition(rule=rule.name, server=server, state=state, metric=rule.metric,
                          value=value, threshold=threshold_of(rule), op=rule.comparison,
                          severity=rule.severity, at=now, since=since,
                          window_seconds=None if rule.metric == "not_ready" else rule.window,
                          message=message)


def loads_value(text: str | None) -> Value:
    """A stored value or threshold (JSON) back as a number, a state name or None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, float | int | str) or value is None else str(value)
