"""The alert webhook against a real HTTP server on 127.0.0.1: retries with backoff
(tenacity) when the receiver fails, no retry when it refuses, no secret in any log line,
and a bounded queue that drops the oldest -- counted and logged -- while a stalled
receiver never slows the gateway down."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.alerts import WebhookSink
from fast_mcp_gateway.config.alerts import WebhookConfig
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from tests.alerting import alert_gateway, states, switch_server, webhook_receiver
from tests.fixtures import memory_entry

pytestmark = pytest.mark.anyio
WITHIN = 60.0
TOKEN = "hook-hdr-5ecret-41f0"
QUERY = "q-5ecret-8d2b"


def payload(n: int) -> dict[str, object]:
    return {"rule": f"r{n}", "server": "svc", "state": "firing", "value": 0.5}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_failing_receiver_is_retried_until_it_accepts(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # An in-process CLI test earlier in this worker may have set the HTTP client's
    # loggers to WARNING (cli/log_format.configure_logging): this test reads their lines.
    for name in ("httpx2", "httpx"):
        caplog.set_level(logging.DEBUG, logger=name)
    # The gateway's own lines carry no secret at all; the HTTP client's own request log
    # (httpx logs URLs) is masked by the filter the CLI installs on every handler.
    caplog.handler.addFilter(SecretLogFilter())
    own = Lines()
    logging.getLogger("fast_mcp_gateway.alerts").addHandler(own)
    with webhook_receiver() as receiver:
        receiver.fail_first = 2  # two 503s, then 200
        url = receiver.url.replace("http://", "http://ops:pw-5ecret@") + f"?token={QUERY}"
        sink = WebhookSink(WebhookConfig(url=url, headers={"X-Hook-Token": TOKEN},
                                         attempts=4, backoff_initial=0.05, backoff_max=0.1))
        async with anyio.create_task_group() as tg:
            await tg.start(sink.run)
            sink.submit(payload(1))
            assert await sink.idle(WITHIN)
            tg.cancel_scope.cancel()
    assert receiver.bodies() == [payload(1)] * 3  # the same body, three attempts
    assert {r["headers"]["X-Hook-Token"] for r in receiver.requests} == {TOKEN}
    # URL userinfo becomes basic authentication.
    assert {r["headers"]["Authorization"] for r in receiver.requests} == {
        "Basic " + base64.b64encode(b"ops:pw-5ecret").decode()}
    assert {r["path"] for r in receiver.requests} == {f"/hook?token={QUERY}"}
    assert (sink.stats.sent, sink.stats.retries, sink.stats.failed) == (1, 2, 0)
    logging.getLogger("fast_mcp_gateway.alerts").removeHandler(own)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "attempt 1 for alert 'r1' firing on 'svc' failed (HTTP 503); retrying" in logged
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)
    for secret in (TOKEN, QUERY, "pw-5ecret"):
        assert secret not in logged
        assert secret not in "\n".join(own.lines)
    assert "ops:" not in "\n".join(own.lines)


async def test_a_refusal_is_not_retried_and_the_next_event_still_goes(
        caplog: pytest.LogCaptureFixture) -> None:
    with webhook_receiver() as receiver:
        receiver.status = 400
        sink = WebhookSink(WebhookConfig(url=receiver.url, attempts=5, backoff_initial=0.05))
        async with anyio.create_task_group() as tg:
            await tg.start(sink.run)
            sink.submit(payload(1))
            sink.submit(payload(2))
            assert await sink.idle(WITHIN)
            tg.cancel_scope.cancel()
    assert receiver.bodies() == [payload(1), payload(2)]  # one attempt each
    assert (sink.stats.sent, sink.stats.failed, sink.stats.retries) == (0, 2, 0)
    assert sink.stats.last_error == "HTTP 400 (not retried)"
    # The first failure is news (WARNING); the next is counted, not logged again.
    assert [r.getMessage()[:r.getMessage().index("; check")] for r in caplog.records
            if "could not deliver" in r.getMessage() and r.levelno >= logging.INFO] == [
        f"alert webhook {receiver.url.removesuffix('/hook')}/***: could not deliver "
        "alert 'r1' firing on 'svc': HTTP 400 (not retried)"]


async def test_an_unreachable_receiver_gives_up_after_its_attempts() -> None:
    with webhook_receiver() as receiver:
        url = receiver.url
    # The server is gone: every attempt is a connection failure.
    sink = WebhookSink(WebhookConfig(url=url, attempts=3, backoff_initial=0.05,
                                     backoff_max=0.05))
    async with anyio.create_task_group() as tg:
        await tg.start(sink.run)
        sink.submit(payload(1))
        assert await sink.idle(WITHIN)
        tg.cancel_scope.cancel()
    assert (sink.stats.failed, sink.stats.retries, sink.stats.sent) == (1, 2, 0)


async def test_a_stalled_receiver_bounds_the_queue_and_never_slows_the_gateway(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mode = {"fail": True}
    with webhook_receiver() as receiver:
        receiver.stall = True
        rules = [{"name": f"r{i}", "server": "svc", "metric": "consecutive_failures",
                  "threshold": 1} for i in range(5)]
        gateway, seen = alert_gateway(tmp_path, {"svc": memory_entry("svc")}, {
            "evaluate_every": 0.05,
            "webhook": {"url": receiver.url, "queue": 2, "timeout": 60, "attempts": 1},
            "rules": rules}, {"svc": switch_server(mode)})
        engine, sink = gateway.alerts, gateway.alerts.webhook
        async with Client(gateway.server) as client:
            assert (await client.call_tool("svc_work", {}, raise_on_error=False)).is_error
            assert await engine.evaluated.wait_until(lambda: len(seen) == 5, WITHIN)
            assert await anyio.to_thread.run_sync(receiver.stalled.wait, WITHIN)
            # One delivery hangs in the receiver; the queue holds 2; the rest dropped.
            assert sink.stats.queued <= 2 and sink.stats.dropped >= 2
            evaluations = engine.evaluations
            mode["fail"] = False
            for _ in range(20):  # the gateway serves at its own pace meanwhile
                assert not (await client.call_tool("svc_work", {})).is_error
            assert await engine.evaluated.wait_until(
                lambda: len(seen) == 10 and engine.evaluations > evaluations + 2, WITHIN)
            assert not receiver.release.is_set() and sink.stats.queued <= 2
            assert [s for _, _, s in states(seen)] == ["firing"] * 5 + ["resolved"] * 5
            receiver.release.set()
            assert await sink.idle(WITHIN)
            stats = sink.stats
            assert stats.sent + stats.dropped + stats.failed == 10
            assert len(receiver.requests) == stats.sent >= 3
            # What got through is the newest: the resolutions.
            assert receiver.bodies()[-1]["state"] == "resolved"
    drops = [r for r in caplog.records if "alert webhook queue full" in r.getMessage()]
    # Every drop is counted; the log says so when the queue fills, not at each drop
    # (it had room once, at most: when the delivery that stalled was taken from it).
    warned = [r for r in drops if r.levelno == logging.WARNING]
    assert 1 <= len(warned) <= 2, drops


def test_the_webhooks_url_is_shown_without_its_path_or_query() -> None:
    """The alerts' status (REST and the dashboard, scope tools; gateway_alerts) and the
    delivery log lines name the receiver: Slack's and Discord's webhook URLs carry their
    credential in the path, which a literal URL in servers.yaml does not register as a
    secret (a ${VAR} does, but only the whole URL: the status showed its path alone)."""
    from fast_mcp_gateway.alerts import safe_url

    assert safe_url("https://hooks.slack.com/services/T0AB/B0CD/xYzS3cretT0ken?x=1") == \
        "https://hooks.slack.com/***"
    assert safe_url("https://discord.com:8443/api/webhooks/123/tok-en") == \
        "https://discord.com:8443/***"
    assert safe_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert safe_url("http://u:pw@127.0.0.1:9000/") == "http://127.0.0.1:9000/"
