"""The ``alerts:`` section of ``servers.yaml``: rules, evaluation period, webhook.

A rule is structured fields, not a language to learn::

    alerts:
      evaluate_every: 10s
      webhook: {url: "${ALERT_URL}", headers: {Authorization: "Bearer ${ALERT_TOKEN}"}}
      rules:
        - {name: notes-errors, server: notes, metric: success_rate, threshold: 0.95,
           window: 5m, for: 1m}
        - {name: slow, server: "*", metric: p95_ms, threshold: 500}
        - {name: failing, metric: consecutive_failures, threshold: 3}
        - {name: down, metric: not_ready, for: 30s}

``when: "success_rate < 0.95"`` (or ``"state != ready"``) is accepted as a shorthand
for ``metric``/``op``/``threshold``.  ``op`` defaults per metric (``<`` for a success
rate, ``>`` for latency, ``>=`` for failures); durations are seconds or ``500ms``,
``30s``, ``5m``, ``1h``, ``1d``.  The same ``AlertRule`` model validates rules added at
runtime (admin operations), so both say the same thing about the same mistake.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from fast_mcp_gateway.config.numbers import whole_number
from fast_mcp_gateway.telemetry.redaction import register_config_secrets

Metric = Literal["success_rate", "p95_ms", "consecutive_failures", "not_ready"]
Op = Literal["<", "<=", ">", ">="]
Severity = Literal["info", "warning", "critical"]
METRICS: tuple[Metric, ...] = ("success_rate", "p95_ms", "consecutive_failures", "not_ready")
DEFAULT_OP: dict[str, Op] = {"success_rate": "<", "p95_ms": ">", "consecutive_failures": ">="}
RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_WHEN = re.compile(r"^\s*(\w+)\s*(<=|>=|<|>|!=)\s*(\S+)\s*$")
_YEAR = 86_400 * 365


def _seconds(value: Any) -> Any:
    """``300``, ``300.5`` or ``"5m"`` as seconds; anything else is left for the type check
    (which then says what to write)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write seconds (300) or a number "
                             "with a unit: 500ms, 30s, 5m, 1h, 1d")
        return float(match[1]) * _UNITS[match[2]]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Bounds before the validator: after it, they would be left out of the JSON Schema (the
# REST API's document).  That documents numbers only; "5m" is a servers.yaml convenience.
Duration = Annotated[StrictFloat, Field(ge=0, le=_YEAR), BeforeValidator(_seconds)]
Period = Annotated[StrictFloat, Field(ge=0.05, le=_YEAR), BeforeValidator(_seconds)]


def _metric_needs(metric: Metric, threshold: dict[str, JsonValue]) -> JsonValue:
    return {"properties": {"metric": {"const": metric}, "threshold": threshold,
                           "window": {"exclusiveMinimum": 0}},
            "required": ["threshold"]}


# ``_consistent`` in JSON Schema: what each metric takes (the REST API's document).
_PER_METRIC: list[JsonValue] = [
    {"properties": {"metric": {"const": "not_ready"}, "op": {"type": "null"},
                    "threshold": {"type": "null"}}},
    _metric_needs("success_rate", {"type": "number", "minimum": 0, "maximum": 1}),
    _metric_needs("p95_ms", {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400_000}),
    _metric_needs("consecutive_failures", {"type": "integer", "minimum": 1, "maximum": 10_000}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              populate_by_name=True)


class AlertRule(_Strict):
    """One alert rule; evaluated once per server it names (``*``: every server)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _PER_METRIC})

    name: str = Field(description="unique; letters, digits, '_', '-', '.'",
                      json_schema_extra={"pattern": RULE_NAME.pattern})
    server: str = Field(default="*", min_length=1, description="a server's name, or '*'")
    metric: Metric
    op: Op | None = Field(default=None, description="compare value OP threshold; default "
                                                    "per metric (<, >, >=)")
    threshold: StrictFloat | None = Field(default=None, description="not for not_ready")
    window: Duration = Field(default=300.0, description="seconds of calls looked at")
    for_: Duration = Field(default=0.0, alias="for",
                           description="seconds the condition must hold before firing")
    min_calls: Annotated[StrictInt, Field(ge=1, le=1_000_000),
                         BeforeValidator(whole_number)] = Field(
        default=3, description="fewer calls in the window: no alert (success_rate, p95_ms)")
    severity: Severity = "warning"
    enabled: StrictBool = True
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``when: "p95_ms > 500"`` / ``"state != ready"`` into metric/op/threshold."""
        if not isinstance(data, dict) or "when" not in data:
            return data
        data = dict(data)
        when = data.pop("when")
        match = _WHEN.match(when) if isinstance(when, str) else None
        if match is None:
            raise ValueError("when: write 'METRIC OP NUMBER' (e.g. 'success_rate < 0.95', "
                             "'p95_ms > 500', 'consecutive_failures >= 3') or "
                             "'state != ready'")
        metric, op, value = match.groups()
        if (metric, op, value) == ("state", "!=", "ready"):
            data["metric"] = "not_ready"
            return data
        if metric not in DEFAULT_OP or op == "!=":
            raise ValueError(f"when: {when!r} is not a condition; the metrics are "
                             "success_rate, p95_ms, consecutive_failures (with <, <=, >, >=) "
                             "and 'state != ready'")
        try:
            data["threshold"] = float(value)
        except ValueError:
            raise ValueError(f"when: {value!r} is not a number") from None
        data.update(metric=metric, op=op)
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not RULE_NAME.fullmatch(value):
            raise ValueError("a rule name is 1-64 letters, digits, '_', '-' or '.', starting "
                             "with a letter or digit")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.metric == "not_ready":
            if self.op is not None or self.threshold is not None:
                raise ValueError("metric not_ready takes no op or threshold: it fires when "
                                 "the server is not ready (disabled servers excepted)")
            return self
        if self.threshold is None:
            example = {"success_rate": "0.95", "p95_ms": "500", "consecutive_failures": "3"}
            raise ValueError(f"metric {self.metric} needs a threshold, e.g. threshold: "
                             f"{example[self.metric]}")
        if self.metric == "success_rate" and not 0 <= self.threshold <= 1:
            raise ValueError("a success_rate threshold is a fraction between 0 and 1 "
                             "(0.95 for 95 %)")
        if self.metric == "p95_ms" and not 0 < self.threshold <= 86_400_000:
            raise ValueError("a p95_ms threshold is milliseconds, above 0")
        if self.metric == "consecutive_failures" and not (
                self.threshold.is_integer() and 1 <= self.threshold <= 10_000):
            raise ValueError("a consecutive_failures threshold is a whole number 1..10000")
        if self.window <= 0:
            raise ValueError(f"metric {self.metric} needs a window above 0 (e.g. window: 5m)")
        return self

    @property
    def comparison(self) -> Op | None:
        """The operator in effect (``None`` for not_ready)."""
        return self.op or DEFAULT_OP.get(self.metric)

    def stored(self) -> dict[str, Any]:
        """The rule as kept in the store and returned by the admin operations."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class WebhookConfig(_Strict):
    """Where firing and resolved transitions are POSTed (JSON), with retry."""

    url: str = Field(description="http(s) URL; ${VAR} allowed (never logged in full)")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Period = 5.0
    attempts: StrictInt = Field(default=5, ge=1, le=50)
    backoff_initial: Period = 0.5
    backoff_max: Period = 30.0
    queue: StrictInt = Field(default=1000, ge=1, le=1_000_000,
                             description="events waiting; beyond it the oldest is dropped")
    secrets: frozenset[str] = Field(default=frozenset(), exclude=True)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _register_secrets(self) -> WebhookConfig:
        register_config_secrets(self.secrets, {}, dict(self.headers), [self.url])
        return self


class AlertsConfig(_Strict):
    """The optional top-level ``alerts:`` section."""

    evaluate_every: Period = Field(default=10.0, description="seconds between evaluations")
    webhook: WebhookConfig | None = None
    rules: tuple[AlertRule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named '{rule.name}'; rule names are unique")
            seen.add(rule.name)
        return rules
