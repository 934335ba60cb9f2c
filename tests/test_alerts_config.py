"""The ``alerts:`` section of servers.yaml: what it accepts, and what it says about mistakes."""

from __future__ import annotations

from typing import Any

import pytest

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.config.alerts import AlertRule
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.redaction import mask_text

SERVERS = {"notes": {"url": "http://127.0.0.1:9/mcp"}, "clock": {"url": "http://127.0.0.1:9/c"}}


def config(alerts: Any, environ: dict[str, str] | None = None):
    return parse_config({"servers": SERVERS, "alerts": alerts}, source="servers.yaml",
                        environ=environ)


def problems(alerts: Any, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config(alerts, environ)
    return str(caught.value)


def test_structured_rules_durations_and_defaults() -> None:
    alerts = config({
        "evaluate_every": "2s",
        "rules": [
            {"name": "notes-errors", "server": "notes", "metric": "success_rate",
             "threshold": 0.95, "window": "5m", "for": "1m"},
            {"name": "slow", "metric": "p95_ms", "threshold": 500, "window": 90},
            {"name": "failing", "metric": "consecutive_failures", "threshold": 3},
            {"name": "down", "server": "clock", "metric": "not_ready", "for": "500ms"},
        ]}).alerts
    assert alerts.evaluate_every == 2.0
    errors, slow, failing, down = alerts.rules
    assert (errors.window, errors.for_, errors.comparison) == (300.0, 60.0, "<")
    assert (slow.server, slow.window, slow.comparison, slow.min_calls) == ("*", 90.0, ">", 3)
    assert (failing.comparison, failing.threshold) == (">=", 3.0)
    assert (down.comparison, down.threshold, down.for_) == (None, None, 0.5)
    # What the store keeps reads back as the same rule.
    assert AlertRule.model_validate(errors.stored()) == errors
    assert errors.stored()["for"] == 60.0


def test_when_shorthand_is_the_same_rule() -> None:
    short = AlertRule.model_validate({"name": "a", "when": "p95_ms > 500"})
    long = AlertRule.model_validate({"name": "a", "metric": "p95_ms", "op": ">",
                                     "threshold": 500})
    assert short == long
    down = AlertRule.model_validate({"name": "b", "when": "state != ready"})
    assert down.metric == "not_ready"


@pytest.mark.parametrize(("rule", "expected"), [
    ({"name": "x", "metric": "success_rate"}, "needs a threshold, e.g. threshold: 0.95"),
    ({"name": "x", "metric": "success_rate", "threshold": 95}, "fraction between 0 and 1"),
    ({"name": "x", "metric": "consecutive_failures", "threshold": 2.5}, "whole number"),
    ({"name": "x", "metric": "not_ready", "threshold": 1}, "takes no op or threshold"),
    ({"name": "x", "metric": "errors", "threshold": 1}, "rules[0].metric"),
    ({"name": "x", "metric": "p95_ms", "threshold": 1, "window": "5 min"},
     "is not a duration; write seconds (300) or a number with a unit"),
    ({"name": "x", "when": "latency > 3"}, "is not a condition; the metrics are"),
    ({"name": "x", "when": "p95_ms > fast"}, "'fast' is not a number"),
    ({"name": "bad name!", "metric": "not_ready"}, "a rule name is 1-64 letters"),
    ({"name": "x", "server": "nots", "metric": "not_ready"},
     "no server named 'nots' in this file (known: clock, notes); use '*' for every server"),
    ({"name": "x", "metric": "not_ready", "fro": "1m"}, "unknown field"),
])
def test_each_mistake_is_named_with_its_place(rule: dict[str, Any], expected: str) -> None:
    text = problems({"rules": [rule]})
    assert expected in text
    assert "alerts.rules[0]" in text


def test_duplicate_names_and_bad_sections() -> None:
    dup = {"name": "x", "metric": "not_ready"}
    assert "two rules are named 'x'" in problems({"rules": [dup, dup]})
    assert "alerts" in problems(["rule"]) and "must be a mapping" in problems(["rule"])
    assert "alerts.webhook.url" in problems({"webhook": {"url": "ftp://x"}})
    assert "must be an http:// or https:// URL" in problems({"webhook": {"url": "ftp://x"}})


def test_webhook_secrets_are_interpolated_registered_and_never_echoed() -> None:
    env = {"ALERT_URL": "https://hooks.example/alert?token=q-5ecret-77a1",
           "ALERT_TOKEN": "hdr-5ecret-9c2e"}
    alerts = config({"webhook": {"url": "${ALERT_URL}",
                                 "headers": {"Authorization": "Bearer ${ALERT_TOKEN}"},
                                 "queue": 10}}, env).alerts
    assert alerts.webhook is not None
    assert alerts.webhook.url == env["ALERT_URL"]
    assert alerts.webhook.headers["Authorization"] == "Bearer hdr-5ecret-9c2e"
    # Registered: any log line or error text that carries them is masked.
    line = f"posting to {env['ALERT_URL']} with Bearer {env['ALERT_TOKEN']}"
    assert "5ecret" not in mask_text(line)
    text = problems({"webhook": {"url": "${ALERT_URL}", "queue": 0}}, env)
    assert "alerts.webhook.queue" in text and "5ecret" not in text
    assert "ALERT_MISSING" in problems({"webhook": {"url": "${ALERT_MISSING}"}}, env)


def test_an_empty_or_absent_section_means_no_alerts() -> None:
    assert config(None).alerts.rules == ()
    assert config({}).alerts.webhook is None
