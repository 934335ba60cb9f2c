"""/metrics as a team's Prometheus scrapes it: the alert webhook's deliveries are in it
(a webhook that fails cannot say so itself, and its counters were only in
``gateway_alerts``), the version is ``mcp_gateway_build_info``, and the text passes
Prometheus's own linter (``promtool check metrics``) when it is installed (Debian's
``prometheus`` package)."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import httpx2
import pytest
from fastmcp import Client
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway import __version__
from tests.alerting import alert_gateway, switch_server, webhook_receiver
from tests.fixtures import memory_entry, serve_http

pytestmark = pytest.mark.anyio
WITHIN = 60.0


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_the_webhooks_deliveries_and_the_version_are_scraped(tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        receiver.status = 500
        gateway, seen = alert_gateway(tmp_path, {"svc": memory_entry("svc")}, {
            "evaluate_every": 0.05,
            "webhook": {"url": receiver.url, "attempts": 2, "backoff_initial": 0.05},
            "rules": [{"name": "failing", "server": "svc",
                       "metric": "consecutive_failures", "threshold": 1}]},
            {"svc": switch_server({"fail": True})})
        async with serve_http(gateway.http_app()) as base, \
                httpx2.AsyncClient(timeout=30) as http:
            async with Client(f"{base}/mcp") as client:
                assert (await client.call_tool("svc_work", {}, raise_on_error=False)).is_error
                assert await gateway.alerts.evaluated.wait_until(lambda: len(seen) == 1,
                                                                 WITHIN)
                assert await gateway.alerts.webhook.idle(WITHIN)
            text = (await http.get(f"{base}/metrics")).text
    scrape = samples(text)
    deliveries = {outcome: scrape.get(("mcp_gateway_alert_webhook_deliveries_total",
                                       frozenset({("outcome", outcome)})))
                  for outcome in ("sent", "failed", "dropped")}
    assert deliveries == {"sent": 0.0, "failed": 1.0, "dropped": 0.0}, text
    assert scrape[("mcp_gateway_alert_webhook_retries_total", frozenset())] == 1.0
    assert scrape[("mcp_gateway_alert_webhook_queue_depth", frozenset())] == 0.0
    assert scrape[("mcp_gateway_build_info", frozenset({("version", __version__)}))] == 1.0
    promtool = shutil.which("promtool")
    if promtool is not None:  # Prometheus's own linter: names, types, suffixes, help
        lint = await anyio.run_process([promtool, "check", "metrics"], input=text.encode(),
                                       check=False)
        assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()
