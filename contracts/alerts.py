"""Alert rules and the alerts the risk service raises and clears (part of the risk
contracts: `contracts.risks` imports them, and holds the aggregates' command and event
lists).

- `alert_rule` (id `rule_id`): a threshold on a metric with a hysteresis (clear) level.
- `alert` (id `alert_id`): one alert episode, appended by the risk service itself (never
  by a command): `AlertRaised`, then at most one `AlertCleared`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from contracts.base import (
    AggregateKey,
    Command,
    FrozenModel,
    Identifier,
    Name,
    Rationale,
    Text,
)
from contracts.projects import AGGREGATE as PROJECT

ALERT_RULE = "alert_rule"
#: Alerts are appended by the risk service, one aggregate per alert episode.
ALERT = "alert"

Level = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]


# --- alert rules ---------------------------------------------------------------------------


class Metric(StrEnum):
    """What a rule can watch. Units and where each value comes from:

    - `cpi`, `spi`, `tcpi`: earned-value indices (ratios, 1.0 = on plan), per project
    - `cv`, `sv`, `vac`: cost variance, schedule variance, variance at completion (money)
    - `schedule_slip_days`: forecast end minus planned end, in days (positive = late)
    - `risk_score`: a risk's current score 1..25 (residual once reassessed), per risk
    - `threat_emv`: expected monetary value of the open threats (money), per project
    - `budget_consumption`: percent of a pool consumed: (actual costs + open commitments)
      / the pool's amount x 100; allocations do not count. Per pool.
    - `over_allocation`: demand as a percent of net capacity (capacity - time off) for a
      role in a month (above 100 is over-allocated), per `role/month`

    The risk monitor computes every one of them itself from the facts in the log.
    """

    CPI = "cpi"
    SPI = "spi"
    TCPI = "tcpi"
    CV = "cv"
    SV = "sv"
    VAC = "vac"
    SCHEDULE_SLIP_DAYS = "schedule_slip_days"
    RISK_SCORE = "risk_score"
    THREAT_EMV = "threat_emv"
    BUDGET_CONSUMPTION = "budget_consumption"
    OVER_ALLOCATION = "over_allocation"


#: The range a threshold must lie in, per metric (None: unbounded on that side).
METRIC_RANGE: dict[Metric, tuple[float | None, float | None]] = {
    Metric.CPI: (0, None),
    Metric.SPI: (0, None),
    Metric.TCPI: (0, None),
    Metric.CV: (None, None),
    Metric.SV: (None, None),
    Metric.VAC: (None, None),
    Metric.SCHEDULE_SLIP_DAYS: (None, None),
    Metric.RISK_SCORE: (1, 25),
    Metric.THREAT_EMV: (0, None),
    Metric.BUDGET_CONSUMPTION: (0, None),
    Metric.OVER_ALLOCATION: (0, None),
}


class Comparison(StrEnum):
    """When the rule holds: `value <op> threshold`."""

    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"

    @property
    def symbol(self) -> str:
        return {"lt": "<", "le": "≤", "gt": ">", "ge": "≥"}[self.value]

    @property
    def low_is_bad(self) -> bool:
        return self in (Comparison.LT, Comparison.LE)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Scope(StrEnum):
    """Which subjects a rule watches: all of them (portfolio), those of one programme or
    project, or those of one category (the subject's own: a risk's category for risk
    metrics, the project's category for project metrics)."""

    PORTFOLIO = "portfolio"
    PROGRAMME = "programme"
    PROJECT = "project"
    CATEGORY = "category"


class AlertRuleCommand(Command):
    aggregate_type = ALERT_RULE
    id_field = "rule_id"
    rule_id: Identifier


class DefineAlertRule(AlertRuleCommand):
    """Create a rule, or redefine (and re-enable) an existing one.

    The rule holds while `value <comparison> threshold`; it is raised once when it starts to
    hold and cleared once the value passes `clear_at` (lt/le: value ≥ clear_at; gt/ge:
    value ≤ clear_at). `clear_at` lies strictly on the far side of the threshold, so a value
    wandering between the two neither raises nor clears (hysteresis)."""

    metric: Metric
    comparison: Comparison
    threshold: Level
    clear_at: Level
    severity: Severity = Severity.WARNING
    scope: Scope = Scope.PORTFOLIO
    scope_id: Name | None = Field(
        default=None, description="Required unless the scope is portfolio."
    )
    description: Text = ""

    @field_validator("threshold")
    @classmethod
    def _within_the_metric(cls, value: float, info: ValidationInfo) -> float:
        metric = info.data.get("metric")
        if metric is not None:
            low, high = METRIC_RANGE[metric]
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"{'-∞' if low is None else low}..{'∞' if high is None else high}"
                raise ValueError(f"{metric} thresholds lie within {span}")
        return value

    @field_validator("clear_at")
    @classmethod
    def _beyond_the_threshold(cls, value: float, info: ValidationInfo) -> float:
        comparison, threshold = info.data.get("comparison"), info.data.get("threshold")
        if comparison is None or threshold is None:
            return value
        if comparison.low_is_bad and not value > threshold:
            raise ValueError(
                f"for {comparison} the clear level must be above the threshold {threshold}"
            )
        if not comparison.low_is_bad and not value < threshold:
            raise ValueError(
                f"for {comparison} the clear level must be below the threshold {threshold}"
            )
        return value

    @model_validator(mode="after")
    def _scope_id_fits_the_scope(self) -> Self:
        if self.scope == Scope.PORTFOLIO and self.scope_id is not None:
            raise ValueError("a portfolio-wide rule takes no scope_id")
        if self.scope != Scope.PORTFOLIO and self.scope_id is None:
            raise ValueError(f"a {self.scope} rule needs the scope_id of its {self.scope}")
        return self

    def references(self) -> tuple[AggregateKey, ...]:
        if self.scope == Scope.PROJECT and self.scope_id is not None:
            return ((PROJECT, self.scope_id),)
        return ()


class DisableAlertRule(AlertRuleCommand):
    """Stop evaluating a rule; its open alerts are cleared."""

    rationale: Rationale


class AlertRuleDefined(FrozenModel):
    rule_id: str
    revision: int
    metric: Metric
    comparison: Comparison
    threshold: float
    clear_at: float
    severity: Severity
    scope: Scope
    scope_id: str | None
    description: str = ""


class AlertRuleDisabled(FrozenModel):
    rule_id: str
    revision: int
    rationale: str


# --- alerts (appended by the risk service) ----------------------------------------------------

#: A figure an alert reports; money as a decimal string.
Figure = str | int | float | bool | None


class AlertRaised(FrozenModel):
    """A rule started to hold for a subject. Published on
    `<prefix>.alerts.<severity>.<metric>`.

    Schema version 2 added `subject_kind`, `programme_id`, `pool_id`, `cause_position` and
    `value_shown`; a version 1 payload is upcast (they are absent: None, or derived)."""

    alert_id: str
    rule_id: str
    rule_revision: int = 1
    metric: Metric
    comparison: Comparison
    severity: Severity
    scope: Scope
    scope_id: str | None = None
    #: What the value is about: a project id, a risk id, a pool, a role and month.
    subject_id: str
    #: project, risk, pool or role_month (None: written by version 1).
    subject_kind: str | None = None
    project_id: str | None = None
    programme_id: str | None = None
    pool_id: str | None = None
    value: float
    #: The value with enough digits to see which side of the threshold it lies on.
    value_shown: str = ""
    threshold: float
    clear_at: float
    figures: dict[str, Figure] = Field(default_factory=dict)
    #: The event ids whose facts produced the value.
    caused_by: tuple[str, ...] = ()
    #: The log position of the fact the decision was made on (None: version 1).
    cause_position: int | None = None
    audit_link: str
    message: str = ""


class AlertRevised(FrozenModel):
    """An open alert still holds after its rule was redefined: it now holds under the new
    revision (threshold, clear level, severity), with the value it had then."""

    alert_id: str
    rule_id: str
    rule_revision: int
    metric: Metric
    comparison: Comparison
    severity: Severity
    subject_id: str
    project_id: str | None = None
    value: float | None
    value_shown: str = ""
    threshold: float
    clear_at: float
    caused_by: tuple[str, ...] = ()
    cause_position: int | None = None
    message: str = ""


class AlertCleared(FrozenModel):
    """The value passed the clear level, or the rule was disabled or redefined so that it
    no longer holds, or the subject closed (`reason` says which: e.g. `project closed`)."""

    alert_id: str
    rule_id: str
    #: The rule revision the decision was made under (None: version 1).
    rule_revision: int | None = None
    metric: Metric
    severity: Severity
    subject_id: str
    project_id: str | None = None
    #: None when the value is not available (e.g. cleared because the rule was disabled).
    value: float | None
    value_shown: str = ""
    clear_at: float
    reason: str = "value passed the clear level"
    caused_by: tuple[str, ...] = ()
    cause_position: int | None = None
    audit_link: str = ""
    message: str = ""


#: Reasons an alert clears other than its value passing the clear level.
PROJECT_CLOSED = "project closed"
RULE_DISABLED = "rule disabled"


def _upcast_alert_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 alerts (before every change was re-evaluated) lack the subject's kind,
    programme and pool and the cause's position: absent, except what the subject says."""
    upcast = dict(payload)
    if "subject_kind" not in upcast and "metric" in upcast:
        upcast["subject_kind"] = SUBJECT_KIND.get(Metric(upcast["metric"]))
    if upcast.get("metric") == Metric.BUDGET_CONSUMPTION:
        upcast.setdefault("pool_id", upcast.get("subject_id"))
    return upcast


#: What a metric's subject is.
SUBJECT_KIND: dict[Metric, str] = {
    **dict.fromkeys(
        (
            Metric.CPI,
            Metric.SPI,
            Metric.TCPI,
            Metric.CV,
            Metric.SV,
            Metric.VAC,
            Metric.SCHEDULE_SLIP_DAYS,
            Metric.THREAT_EMV,
        ),
        "project",
    ),
    Metric.RISK_SCORE: "risk",
    Metric.BUDGET_CONSUMPTION: "pool",
    Metric.OVER_ALLOCATION: "role_month",
}

#: Schema versions above 1, and the upcasters that bring older payloads up to them
#: (merged into `contracts.registry`).
SCHEMA_VERSIONS: dict[str, int] = {"AlertRaised": 2, "AlertCleared": 2}
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("AlertRaised", 1): _upcast_alert_v1,
    # Version 2 only added fields that version 1 did not know (absent: None).
    ("AlertCleared", 1): dict,
}
