"""``timeouts.max_total``: how long a call that keeps reporting progress may run.

A call's deadline is ``timeouts.call`` from its start, and each progress notification
the upstream sends for it gives it ``timeouts.call`` again (``upstream/deadline.py``),
up to ``timeouts.max_total`` from its start.  Unset (on the server and under
``gateway.timeouts``), it is ``MAX_TOTAL_FACTOR`` times the server's call timeout: 5
minutes for the default 30 s.  A multiple rather than a fixed bound, so that a server
whose calls were given more time (a raised ``call``) keeps the same headroom; a bound at
all, so that a tool stuck in a loop that keeps reporting progress still ends, and with
it the slot, the upstream's work and the host's wait (the TypeScript SDK has no bound
unless ``maxTotalTimeout`` is given).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

MAX_TOTAL_FACTOR = 10
# Finite and at most a year: a timer never overflows, a typo like 1e30 is caught.
Seconds = Annotated[StrictFloat, Field(gt=0, le=86_400 * 365)]


class Timeouts(BaseModel):
    """Per-server deadlines in seconds; ``None`` falls back to the gateway default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    connect: Seconds | None = None
    call: Seconds | None = None
    health: Seconds | None = None
    max_total: Seconds | None = Field(
        default=None, description="the longest a call that keeps reporting progress may "
        "run (each progress gives it timeouts.call again); default 10x timeouts.call; "
        "equal to call: progress does not extend a call")

    @model_validator(mode="after")
    def _max_total_covers_call(self) -> Timeouts:
        if self.call is not None and self.max_total is not None \
                and self.max_total < self.call:
            raise ValueError(max_total_below_call(self.max_total, self.call))
        return self


def max_total_below_call(max_total: float, call: float, where: str = "") -> str:
    """The error for a ``max_total`` shorter than ``call`` (``where``: whence it came)."""
    return (f"timeouts.max_total ({max_total:g}s{where}) is below timeouts.call "
            f"({call:g}s): it bounds the whole run of a call that keeps reporting "
            f"progress, so it is at least call; set it to {call:g} or more (equal to call: "
            "progress does not extend a call; unset: 10x call)")


def max_total_for(call: float, own: float | None, gateway: float | None) -> float:
    """The ``max_total`` of a server whose call timeout is ``call``: its ``own``, else the
    ``gateway``'s, else ``MAX_TOTAL_FACTOR`` times ``call``; never below ``call`` (a
    call timeout set outside the file, by ``MCP_GATEWAY_CALL_TIMEOUT``, may exceed it)."""
    chosen = own if own is not None else gateway
    return max(call, chosen if chosen is not None else call * MAX_TOTAL_FACTOR)


def timeouts_problem(call: float | None, max_total: float | None,
                     gateway_call: float | None, gateway_max_total: float | None,
                     ) -> str | None:
    """What is wrong with a server's timeouts next to ``gateway.timeouts`` (a server's
    own pair is checked by its model): a ``max_total`` below the ``call`` in effect."""
    if call is None and max_total is None:
        return None  # the gateway's own pair: checked under gateway.timeouts
    effective_call = call if call is not None else gateway_call
    effective_total = max_total if max_total is not None else gateway_max_total
    if effective_call is None or effective_total is None or effective_total >= effective_call:
        return None
    where = "" if max_total is not None else ", from gateway.timeouts"
    problem = max_total_below_call(effective_total, effective_call, where)
    return problem if call is not None else problem.replace(
        "below timeouts.call", "below gateway.timeouts.call", 1)
