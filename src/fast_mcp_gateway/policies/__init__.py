"""Pure policies: small objects over snapshots, with injected time and randomness.

Nothing here awaits or does I/O; the ``UpstreamManager`` feeds them observations and
asks them for decisions.  Each is chosen in ``servers.yaml`` by a ``Literal`` name.
"""

from fast_mcp_gateway.policies.balancing import Balancer, ReplicaView, make_balancer
from fast_mcp_gateway.policies.breaker import BreakerState, CircuitBreaker
from fast_mcp_gateway.policies.health import HealthStatus, HealthThresholds, HealthWindow
from fast_mcp_gateway.policies.ratelimit import TokenBucket
from fast_mcp_gateway.policies.retry import FailureKind, RetryDecision, RetryPolicy

__all__ = [
    "Balancer",
    "BreakerState",
    "CircuitBreaker",
    "FailureKind",
    "HealthStatus",
    "HealthThresholds",
    "HealthWindow",
    "ReplicaView",
    "RetryDecision",
    "RetryPolicy",
    "TokenBucket",
    "make_balancer",
]
