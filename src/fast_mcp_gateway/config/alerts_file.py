"""Reading the ``alerts:`` section of servers.yaml (see ``config.alerts`` for the schema):
``${VAR}`` in the webhook's url and headers, every problem located under ``alerts.``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.config.interpolation import interpolate

Fail = Callable[[str, str], None]  # (field path under alerts, message)
Explain = Callable[[Any, type[BaseModel]], str]
FieldPath = Callable[[Any], str]


def parse_alerts(raw: Any, env: Mapping[str, str], servers: Collection[str], fail: Fail,
                 explain: Explain, field_path: FieldPath) -> AlertsConfig:
    """Validate the section (the operator's file: any ``${VAR}`` in the webhook's url and
    headers).  Problems go to ``fail``; the result is then the empty section."""
    if raw is None:
        return AlertsConfig()
    if not isinstance(raw, dict):
        fail("alerts", "must be a mapping (evaluate_every, webhook, rules)")
        return AlertsConfig()
    data = dict(raw)
    webhook = data.get("webhook")
    before = _Count(fail)
    if isinstance(webhook, dict):
        secrets: set[str] = set()
        expanded = {key: interpolate(webhook[key], key, env, None, secrets,
                                     lambda f, m: before(f"alerts.webhook.{f}", m))
                    for key in ("url", "headers") if key in webhook}
        data["webhook"] = {**webhook, **expanded, "secrets": frozenset(secrets)}
        if before.count:
            return AlertsConfig()
    try:
        config = AlertsConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path = field_path(err["loc"])
            fail(f"alerts.{path}" if path else "alerts", explain(err, AlertsConfig))
        return AlertsConfig()
    for i, rule in enumerate(config.rules):
        if rule.server != "*" and rule.server not in servers:
            known = ", ".join(sorted(servers)) or "none"
            fail(f"alerts.rules[{i}].server", f"no server named '{rule.server}' in this file "
                                              f"(known: {known}); use '*' for every server")
    return config


class _Count:
    """A ``fail`` that counts what it reported."""

    def __init__(self, fail: Fail) -> None:
        self.fail, self.count = fail, 0

    def __call__(self, field: str, message: str) -> None:
        self.count += 1
        self.fail(field, message)
