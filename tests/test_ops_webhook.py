"""An operator's trial of the alert webhook against a real receiver on 127.0.0.1: a
receiver down through several alerts is said once (not five lines per event) and its
recovery once; a redirect is no delivery; a cancelled call is no failure for
``consecutive_failures`` (a gateway's stop cut calls in flight and paged)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway import __version__
from fast_mcp_gateway.alerts import WebhookSink
from fast_mcp_gateway.alerts.engine import _Reader
from fast_mcp_gateway.config.alerts import AlertRule, WebhookConfig
from fast_mcp_gateway.store import Invocation, open_store
from tests.alerting import webhook_receiver

pytestmark = pytest.mark.anyio
WITHIN = 60.0


def payload(n: int) -> dict[str, object]:
    return {"rule": f"r{n}", "server": "svc", "state": "firing", "value": 0.5}


async def deliver(sink: WebhookSink, *events: int) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(sink.run)
        for n in events:
            sink.submit(payload(n))
        assert await sink.idle(WITHIN)
        tg.cancel_scope.cancel()


async def test_a_receiver_down_through_several_alerts_is_said_once_and_its_return_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A receiver answering 500 made, per event, a line per retry (INFO) and one more at
    WARNING: an alert storm while it was down flooded the log."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.alerts")
    with webhook_receiver() as receiver:
        receiver.status = 500
        sink = WebhookSink(WebhookConfig(url=receiver.url, attempts=3, backoff_initial=0.05,
                                         backoff_max=0.05))
        await deliver(sink, 1, 2, 3)
        assert (sink.stats.failed, sink.stats.retries) == (3, 6)
        assert sink.stats.last_error == "HTTP 500 after 3 attempt(s)"
        receiver.status = 200
        await deliver(sink, 4, 5)
    assert len(receiver.requests) == 3 * 3 + 2
    # The receiver's log names the sender (it said python-httpx2/...).
    assert {r["headers"]["User-Agent"] for r in receiver.requests} == {
        f"fast-mcp-gateway/{__version__}"}
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO], lines
    assert "could not deliver alert 'r1' firing on 'svc': HTTP 500 after 3 attempt(s)" \
        in lines[0][1]
    assert "delivering again (3 event(s) could not be delivered before this one)" \
        in lines[1][1]


async def test_a_receiver_gone_is_said_in_words() -> None:
    """A receiver not running was "ConnectError" (an httpx class name) in the log and in
    gateway_alerts' webhook.last_error."""
    with webhook_receiver() as receiver:
        url = receiver.url
    sink = WebhookSink(WebhookConfig(url=url, attempts=2, backoff_initial=0.05,
                                     backoff_max=0.05))
    await deliver(sink, 1)
    assert sink.stats.last_error == (
        "cannot connect (is the receiver running, and the URL's host and port right?) "
        "after 2 attempt(s)")


async def test_a_redirect_is_no_delivery() -> None:
    """A 3xx (an http:// URL the receiver moved to https://) was counted as sent: the
    redirect is not followed, so the receiver never got the alert."""
    with webhook_receiver() as receiver:
        receiver.status = 301
        receiver.location = "https://hooks.example.com/services/T0/B0/s3cret-path"
        sink = WebhookSink(WebhookConfig(url=receiver.url, attempts=3, backoff_initial=0.05))
        await deliver(sink, 1)
    assert len(receiver.requests) == 1  # not retried: it would redirect again
    assert (sink.stats.sent, sink.stats.failed) == (0, 1)
    assert sink.stats.last_error == (
        "HTTP 301, a redirect to https://hooks.example.com/*** (not followed: set the "
        "webhook's url to the address it redirects to)")


async def test_cancelled_calls_are_no_consecutive_failures(tmp_path: Path) -> None:
    """A gateway stopped (SIGTERM) with calls in flight records them cancelled; they
    counted as failures in a row, so a rolling restart fired ``consecutive_failures``
    (and paged), while ``success_rate`` already left cancelled calls out."""

    def row(n: int, status: str) -> Invocation:
        return Invocation(id=f"r{n}", trace_id="t", client="c", kind="tool",
                          exposed="svc_job", server="svc", original="job",
                          started_at=1000.0 + n, duration_ms=1.0, status=status)

    rule = AlertRule.model_validate({"name": "failing", "server": "svc",
                                     "when": "consecutive_failures >= 2", "window": 3600})
    store = await open_store(str(tmp_path / "gateway.db"))
    try:
        await store.add_invocations([row(1, "success")] + [
            row(n, "cancelled") for n in (2, 3, 4)])
        reading = (await _Reader(store, 1100.0).read(rule, ["svc"], {}))["svc"]
        assert (reading.value, reading.breached) == (0.0, False)
        # Failures in a row stay a streak whatever cancelled calls end among them.
        await store.add_invocations([row(5, "error"), row(6, "cancelled"),
                                     row(7, "timeout"), row(8, "cancelled")])
        reading = (await _Reader(store, 1100.0).read(rule, ["svc"], {}))["svc"]
        assert (reading.value, reading.breached) == (2.0, True)
    finally:
        await store.close()
