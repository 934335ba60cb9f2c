"""A service's rate limits: one token bucket for the server, one per limited tool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fast_mcp_gateway.config.schema import RateLimit, RateLimitConfig
from fast_mcp_gateway.errors import RateLimited
from fast_mcp_gateway.policies import TokenBucket


def _bucket(spec: RateLimit, held: TokenBucket | None) -> TokenBucket:
    """A token bucket for ``spec``; one that was counting (``held``) keeps its tokens
    and clock (a lower burst caps them at the next call), so an edit lets no burst
    through that the limit would not have."""
    burst = spec.burst or max(1, int(spec.per_second))
    if held is None:
        return TokenBucket(spec.per_second, burst)
    return replace(held, per_second=spec.per_second, burst=burst)


class RateLimits:
    """``server``'s configured limits (``configure``), taken from per call (``check``)."""

    def __init__(self, server: str, limit: RateLimitConfig | None,
                 clock: Callable[[], float]) -> None:
        self._server = server
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self._tool_buckets: dict[str, TokenBucket] = {}
        self.configure(limit)

    def configure(self, limit: RateLimitConfig | None) -> None:
        """Take ``limit`` (None: no limits); buckets of limits kept keep what they counted."""
        self._bucket = _bucket(limit, self._bucket) if limit else None
        self._tool_buckets = {
            tool: _bucket(spec, self._tool_buckets.get(tool))
            for tool, spec in (limit.tools.items() if limit else ())
        }

    def check(self, tool: str | None) -> None:
        """Take a token for a call (of ``tool``, if one); ``RateLimited`` when a bucket is
        empty, saying how long to wait."""
        if self._bucket is None and not self._tool_buckets:
            return  # no limits configured (the common case: nothing to format)
        now = self._clock()
        for bucket, what in ((self._bucket, f"server '{self._server}'"),
                             (self._tool_buckets.get(tool or ""), f"tool '{tool}'")):
            if bucket is None:
                continue
            wait = bucket.try_take(now)
            if wait > 0:
                raise RateLimited(self._server, f"rate limited: {what} allows "
                                                f"{bucket.per_second:g} calls/s (burst "
                                                f"{bucket.burst}); retry after "
                                                f"{wait * 1000:.0f} ms", wait)
