"""Posting alert transitions to a webhook: a bounded queue and one sender, with retry.

``submit`` never blocks and never fails: it appends to a queue of ``queue`` events and,
when the queue is full, drops the *oldest* (a fresher transition matters more), counts
it in ``dropped`` and logs it.  ``run`` sends the queue in order, one POST at a time
(JSON body, the configured headers), retrying with exponential backoff (tenacity) on a
connection failure, a timeout, 408, 429 or a 5xx, at most ``attempts`` times; any other
answer (a 4xx: the receiver refuses the body; a 3xx: a redirect, not followed, as
the body would not reach the receiver) is not retried.  A delivery that fails for good
is counted in ``failed``; the next one is tried anyway.

Logged are the webhook's state changes, not each event (a receiver down through an
alert storm made five lines per event): the first delivery that fails for good at
WARNING, the first that gets through after failures at INFO, the first event dropped
from a full queue at WARNING (again once the queue had room); each retry and each
later failure at DEBUG.  The counters (``gateway_alerts``) count every one.

Nothing here logs a secret: the URL is shown as scheme, host, port and path (no
userinfo, no query string) and headers are never logged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx2

if TYPE_CHECKING:
    from tenacity import RetryCallState

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.alerts import WebhookConfig
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def safe_url(url: str) -> str:
    """``url`` fit for a log line and the alerts' status (REST, dashboard: scope
    ``tools``): scheme://host[:port], its path as ``/***``.  A webhook's path is often
    its credential (Slack's /services/T../B../<secret>, Discord's /api/webhooks/<id>/<token>)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        path = "/***" if parts.path.strip("/") else parts.path
        return f"{parts.scheme}://{parts.hostname or '?'}{port}{path}"
    except ValueError:
        return "<invalid URL>"


class _Retryable(Exception):
    """An answer worth another attempt (408, 429, 5xx)."""


@dataclass
class WebhookStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    queued: int = 0
    last_error: str | None = None


ClientFactory = Callable[[WebhookConfig], httpx2.AsyncClient]


def _client(config: WebhookConfig) -> httpx2.AsyncClient:
    # Named as itself (a receiver's log showed "python-httpx2/..."); a configured
    # User-Agent header still wins (sent per request).
    return httpx2.AsyncClient(timeout=config.timeout, follow_redirects=False,
                              headers={"User-Agent": f"fast-mcp-gateway/{__version__}"})


class WebhookSink:
    """The queue and sender of one gateway (see the module docstring).  ``configure``
    switches to another webhook (a config reload) or none (queued events are dropped)."""

    def __init__(self, config: WebhookConfig | None, *,
                 client: ClientFactory = _client) -> None:
        self.config = config
        self._client_factory = client
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = anyio.Event()
        self._progress = ChangeSignal()
        self._busy = False
        self._failing = 0  # deliveries failed for good since the last one delivered
        self._dropping = False  # an event was dropped since the queue last had room
        self.stats = WebhookStats()

    def configure(self, config: WebhookConfig | None) -> None:
        if config == self.config:
            return
        self.config = config
        if config is None:
            self._queue.clear()
        else:
            while len(self._queue) > config.queue:
                self._drop()
        self.stats.queued = len(self._queue)

    def counts(self) -> dict[str, int] | None:
        """What ``/metrics`` shows of the deliveries, or None without a webhook."""
        return None if self.config is None else {
            name: getattr(self.stats, name)
            for name in ("sent", "failed", "dropped", "retries", "queued")}

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue one event for delivery (never blocks; see the module docstring)."""
        config = self.config
        if config is None:
            return
        if len(self._queue) >= config.queue:
            self._drop()
        self._queue.append(payload)
        self.stats.queued = len(self._queue)
        self._wake.set()

    def _drop(self) -> None:
        old = self._queue.popleft()
        self.stats.dropped += 1
        level = logging.DEBUG if self._dropping else logging.WARNING
        self._dropping = True
        logger.log(level, "alert webhook queue full (%d events): dropped the oldest (alert "
                   "'%s' %s on '%s'), and drops the oldest while the receiver is behind "
                   "(counted in gateway_alerts' webhook.dropped; raise alerts.webhook.queue "
                   "to hold more)", len(self._queue) + 1, old.get("rule"), old.get("state"),
                   old.get("server"))

    async def idle(self, within: float) -> bool:
        """Wait until nothing is queued or being sent (False after ``within`` seconds)."""
        return await self._progress.wait_until(lambda: not self._queue and not self._busy,
                                               within)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Send queued events until cancelled."""
        task_status.started()
        client: httpx2.AsyncClient | None = None
        client_for: WebhookConfig | None = None
        try:
            while True:
                config = self.config
                if not self._queue or config is None:
                    self._queue.clear()
                    self._progress.notify()
                    self._wake = anyio.Event()  # no await since the check: none missed
                    await self._wake.wait()
                    continue
                if client is None or client_for != config:
                    if client is not None:
                        await client.aclose()
                    client, client_for = self._client_factory(config), config
                payload = self._queue.popleft()
                self.stats.queued = len(self._queue)
                self._dropping = False  # room again: the next drop is news
                self._busy = True
                try:
                    await self._deliver(client, config, payload)
                finally:
                    self._busy = False
                    self._progress.notify()
        finally:
            if client is not None:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    async def _deliver(self, client: httpx2.AsyncClient, config: WebhookConfig,
                       payload: dict[str, Any]) -> None:
        # Imported by the first delivery: most gateways never send one (~0.5 MB of RSS).
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
        )

        where = safe_url(config.url)
        what = f"alert '{payload.get('rule')}' {payload.get('state')} on '{payload.get('server')}'"

        def again(state: RetryCallState) -> None:
            self.stats.retries += 1
            error = state.outcome.exception() if state.outcome else None
            logger.debug("alert webhook %s: attempt %d for %s failed (%s); retrying",
                         where, state.attempt_number, what, _reason(error))

        try:
            async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(config.attempts),
                    wait=wait_exponential(multiplier=config.backoff_initial,
                                          max=config.backoff_max),
                    retry=retry_if_exception(lambda e: isinstance(
                        e, _Retryable | httpx2.TransportError)),
                    sleep=anyio.sleep, before_sleep=again, reraise=True):
                with attempt:
                    response = await client.post(config.url, json=payload,
                                                 headers=dict(config.headers))
                    if response.status_code in RETRY_STATUSES:
                        raise _Retryable(f"HTTP {response.status_code}")
                    if response.status_code >= 300:
                        raise httpx2.HTTPStatusError(f"HTTP {response.status_code}",
                                                     request=response.request,
                                                     response=response)
        except Exception as exc:  # noqa: BLE001 - one failed delivery never stops the sender
            self.stats.failed += 1
            self.stats.last_error = _reason(exc)
            if not isinstance(exc, httpx2.HTTPStatusError):
                self.stats.last_error += f" after {config.attempts} attempt(s)"
            self._failing += 1
            logger.log(logging.WARNING if self._failing == 1 else logging.DEBUG,
                       "alert webhook %s: could not deliver %s: %s; check the receiver "
                       "(until a delivery gets through, failures are counted in "
                       "gateway_alerts' webhook.failed, not logged)", where, what,
                       self.stats.last_error)
            return
        self.stats.sent += 1
        if self._failing:
            logger.info("alert webhook %s: delivering again (%d event(s) could not be "
                        "delivered before this one)", where, self._failing)
            self._failing = 0


def _reason(error: BaseException | None) -> str:
    """Why a delivery failed, without the URL (httpx errors may carry it)."""
    if error is None:
        return "unknown error"
    if isinstance(error, httpx2.HTTPStatusError):
        code = error.response.status_code
        if code < 400:  # where it points may hold a secret path too: shown as safe_url
            to = error.response.headers.get("location")
            where = f" to {safe_url(str(error.response.url.join(to)))}" if to else ""
            return (f"HTTP {code}, a redirect{where} (not followed: set the webhook's url "
                    "to the address it redirects to)")
        return f"HTTP {code} (not retried)"
    if isinstance(error, httpx2.TimeoutException):
        return "timed out (alerts.webhook.timeout)"
    if isinstance(error, httpx2.ConnectError):
        return "cannot connect (is the receiver running, and the URL's host and port right?)"
    if isinstance(error, httpx2.RemoteProtocolError):
        return "the receiver closed the connection without an answer"
    if isinstance(error, httpx2.TransportError):
        return f"{type(error).__name__}"
    return str(error) or type(error).__name__
