"""When a failed call may be tried again, and where.

The rule that matters: a request that may have reached the upstream is retried only when
the tool says it is safe (``readOnlyHint`` or ``idempotentHint``, or it is listed as
idempotent in the config).  A failure *before* sending (no replica, breaker open, not
connected) is always safe to retry on another replica.  A non-idempotent call is never
executed twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

RetryOn = Literal["connect", "timeout", "error"]


class FailureKind(StrEnum):
    NOT_SENT = "connect"      # no session, breaker open, spawn failed: never reached upstream
    TIMEOUT = "timeout"       # sent, no answer before the deadline
    TRANSPORT = "error"       # sent, the connection broke mid-call
    ERROR_RESULT = "result"   # the upstream answered isError (never retried: it is an answer)


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial: float = 0.2
    maximum: float = 5.0
    on: frozenset[str] = frozenset({"connect", "timeout", "error"})

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter before attempt ``attempt + 1``."""
        return rng.uniform(0, min(self.maximum, self.initial * 2 ** (attempt - 1)))

    def decide(self, attempt: int, kind: FailureKind, *, idempotent: bool,
               still_running: bool = False) -> RetryDecision:
        """Whether attempt number ``attempt`` (1-based) may be followed by another;
        ``still_running``: a timeout ended a call still reporting progress."""
        if attempt >= self.attempts:
            return RetryDecision(False, f"no attempts left ({self.attempts})")
        if kind is FailureKind.ERROR_RESULT:
            return RetryDecision(False, "the upstream answered with an error")
        if kind.value not in self.on:
            return RetryDecision(False, f"retry on '{kind.value}' is not enabled")
        if kind is FailureKind.NOT_SENT:
            return RetryDecision(True, "the request never reached the upstream")
        if still_running:
            return RetryDecision(False, "the call was still reporting progress when "
                                        "timeouts.max_total ended it; a retry would start "
                                        "it over")
        if not idempotent:
            return RetryDecision(False, "the tool is not read-only or idempotent, and the "
                                        "request may have run")
        return RetryDecision(True, f"idempotent call, {kind.value}")
