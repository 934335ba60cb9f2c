"""Alerts: rules on the call log's aggregates and the servers' states, evaluated in the
background; firing and resolved transitions logged, kept in the store's history, posted
to a webhook and handed to in-process subscribers.

``engine.AlertEngine`` evaluates (inputs: the store and a ``states()`` snapshot the
gateway injects -- this package imports neither routing nor the supervisors);
``states`` is the pure state machine; ``webhook`` the bounded, retrying sender.  The
rules' schema is ``config.alerts`` (servers.yaml and runtime rules alike).
"""

from fast_mcp_gateway.alerts.engine import AlertEngine, OnTransition
from fast_mcp_gateway.alerts.states import Alert, Reading, Transition
from fast_mcp_gateway.alerts.webhook import WebhookSink, safe_url

__all__ = ["Alert", "AlertEngine", "OnTransition", "Reading", "Transition", "WebhookSink",
           "safe_url"]
