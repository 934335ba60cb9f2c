"""The hooks that feed the event bus (``telemetry/events.py``), wired by ``gateway.py``.

Each is an existing listener seam, so the hot paths gain one function call each:

* ``transition_publisher``: the manager's transition listener (the same one the health
  history uses), for every replica state change (``ready -> failed``) and health
  change (``HEALTHY -> DEGRADED``): event ``transition``;
* ``catalog_publisher``: the manager's change listener (event ``catalog``);
* ``alert_publisher``: the alert engine's subscriber (event ``alert``: firing, resolved);
* ``call_publisher``: a call-pipeline observer (full path and stdio express lane
  alike, as the recorder and metrics): event ``call`` per finished call, without
  arguments or error texts (those stay in the store, redacted), naming its caller as
  its record does (``client``: a viewer without scope admin is sent its own only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fast_mcp_gateway.alerts.states import Transition
from fast_mcp_gateway.front.calls import actor_name
from fast_mcp_gateway.front.outcomes import CallObserver, CallOutcome
from fast_mcp_gateway.telemetry.events import EventBus


def transition_publisher(bus: EventBus) -> Callable[[str, str, str, str | None], None]:
    def publish(server: str, replica: str, status: str, detail: str | None) -> None:
        bus.publish("transition", {"server": server, "replica": replica, "status": status,
                                   "detail": detail})

    return publish


def alert_publisher(bus: EventBus) -> Callable[[Transition], None]:
    """The alert engine's subscriber: event ``alert`` when one fires or resolves."""

    def publish(transition: Transition) -> None:
        bus.publish("alert", transition.payload())

    return publish


def catalog_publisher(bus: EventBus) -> Callable[[set[str]], None]:
    """The manager's change listener: event ``catalog`` when exposed lists change."""

    def publish(kinds: set[str]) -> None:
        bus.publish("catalog", {"kinds": sorted(str(k) for k in kinds)})

    return publish


def call_publisher(bus: EventBus) -> CallObserver:
    def observe(outcome: CallOutcome) -> None:
        if not bus.listening:  # every call comes here: nothing built for nobody
            return
        call = outcome.call
        bus.publish("call", {"server": call.service.name,
                             "client": actor_name(call.principal, call.front),
                             "client_kind": call.principal.record_kind,
                             "kind": call.kind,
                             "name": call.exposed, "status": outcome.status,
                             "duration_ms": round(outcome.duration_ms, 3),
                             "retries": call.path.retries})

    return observe


def wired_bus(manager: Any, observers: list[CallObserver], alerts: Any) -> EventBus:
    """The one live event stream (dashboard, alerts), fed by existing hooks only: the
    manager's transitions and catalog changes, the calls, the alerts' transitions."""
    bus = EventBus()
    manager.on_transition(transition_publisher(bus))
    manager.on_change(catalog_publisher(bus))
    observers.append(call_publisher(bus))
    alerts.on_transition.append(alert_publisher(bus))
    return bus
