"""Risk monitor: the risk register, project baselines and progress (earned value), alert
rules, and the alerts the risk service raises and clears.

Four aggregates live here:

- `risk` (id `risk_id`): identified, assessed, responded to, reassessed, closed.
- `baseline` (id = the project id): the budget at completion and the cumulative planned
  value per month, and the progress reported against it (earned value = BAC x % complete).
- `alert_rule` (id `rule_id`): a threshold on a metric with a hysteresis (clear) level.
- `alert` (id `alert_id`): one alert episode, appended by the risk service itself (never
  by a command): `AlertRaised`, then at most one `AlertCleared`.

Scales: probability and impact are 1 (very low) .. 5 (very high); score = probability x
impact on the 5 x 5 grid (1..25).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from contracts.base import (
    AggregateKey,
    Command,
    FrozenModel,
    Identifier,
    Money,
    Name,
    Rationale,
    Text,
    Title,
)
from contracts.projects import AGGREGATE as PROJECT

RISK = "risk"
BASELINE = "baseline"
ALERT_RULE = "alert_rule"
#: Alerts are appended by the risk service, one aggregate per alert episode.
ALERT = "alert"
AGGREGATE = RISK

#: 1 (very low) .. 5 (very high); a number, never a string.
Scale = Annotated[int, Field(ge=1, le=5, strict=True)]
#: A calendar month, `YYYY-MM`.
Period = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]
#: Non-blank free text (a response plan must say something).
Plan = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]
Level = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
#: How many days a risk, when it happens, delays its project's finish.
DelayDays = Annotated[int, Field(ge=0, le=3650, strict=True)]


# --- the risk register -------------------------------------------------------------------


class RiskKind(StrEnum):
    THREAT = "threat"
    OPPORTUNITY = "opportunity"


class RiskStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ResponseStrategy(StrEnum):
    AVOID = "avoid"
    MITIGATE = "mitigate"
    TRANSFER = "transfer"
    EXPLOIT = "exploit"
    ENHANCE = "enhance"
    SHARE = "share"
    ACCEPT = "accept"


#: The responses that fit each kind of risk.
STRATEGIES: dict[RiskKind, frozenset[ResponseStrategy]] = {
    RiskKind.THREAT: frozenset(
        {
            ResponseStrategy.AVOID,
            ResponseStrategy.MITIGATE,
            ResponseStrategy.TRANSFER,
            ResponseStrategy.ACCEPT,
        }
    ),
    RiskKind.OPPORTUNITY: frozenset(
        {
            ResponseStrategy.EXPLOIT,
            ResponseStrategy.ENHANCE,
            ResponseStrategy.SHARE,
            ResponseStrategy.ACCEPT,
        }
    ),
}


class ImpactRange(FrozenModel):
    """A monetary impact as minimum / most likely / maximum: the triangle the portfolio
    forecast draws from when the risk happens. Its mean, (min + most likely + max) / 3,
    is the monetary impact when none is given (so the EMV uses the same figure)."""

    minimum: Money
    most_likely: Money
    maximum: Money

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.minimum <= self.most_likely <= self.maximum:
            raise ValueError("an impact range needs minimum <= most_likely <= maximum")
        return self

    @property
    def mean(self) -> Decimal:
        return ((self.minimum + self.most_likely + self.maximum) / 3).quantize(Decimal("0.01"))

    def holds(self, amount: Decimal) -> bool:
        return self.minimum <= amount <= self.maximum


def _within_range(command: Any, monetary: str, ranged: str, what: str = "monetary_impact") -> None:
    """A monetary impact given beside a range must lie within it."""
    found: ImpactRange | None = getattr(command, ranged)
    amount = getattr(command, monetary)
    given = monetary in command.model_fields_set and amount is not None
    if found is not None and given and not found.holds(amount):
        raise ValueError(f"{what} {amount} lies outside {ranged} {found.minimum}..{found.maximum}")


class RiskCommand(Command):
    """A command addressed to one risk."""

    aggregate_type = RISK
    id_field = "risk_id"
    risk_id: Identifier


class IdentifyRisk(RiskCommand):
    """Put a risk on the register of a project, or portfolio-wide when `project_id` is
    absent, with its first assessment."""

    project_id: Identifier | None = None
    title: Title
    description: Text = ""
    kind: RiskKind = RiskKind.THREAT
    category: Name = "general"
    owner: Name
    probability: Scale
    impact: Scale
    monetary_impact: Money = Decimal(0)
    proximity: date | None = Field(default=None, description="When the risk may materialise.")
    impact_range: ImpactRange | None = Field(
        default=None, description="Min / most likely / max impact; absent: a single value."
    )
    delay_days: DelayDays | None = Field(
        default=None, description="Days it delays the project's finish when it happens."
    )

    @model_validator(mode="after")
    def _monetary_within_range(self) -> Self:
        _within_range(self, "monetary_impact", "impact_range")
        return self

    def references(self) -> tuple[AggregateKey, ...]:
        return ((PROJECT, self.project_id),) if self.project_id is not None else ()


class AssessRisk(RiskCommand):
    """A new (inherent) assessment. It supersedes any residual one: reassess after it."""

    probability: Scale
    impact: Scale
    monetary_impact: Money | None = Field(default=None, description="Absent: unchanged.")
    proximity: date | None = Field(default=None, description="Absent: unchanged.")
    impact_range: ImpactRange | None = Field(
        default=None,
        description="Absent: unchanged, unless a monetary impact alone is given (then none).",
    )
    delay_days: DelayDays | None = Field(default=None, description="Absent: unchanged.")
    rationale: Rationale

    @model_validator(mode="after")
    def _monetary_within_range(self) -> Self:
        _within_range(self, "monetary_impact", "impact_range")
        return self


class ChooseRiskResponse(RiskCommand):
    """avoid, mitigate, transfer, accept (threats); exploit, enhance, share, accept
    (opportunities); always with a plan and the date it is due."""

    strategy: ResponseStrategy
    plan: Plan
    due: date


class ReassessRisk(RiskCommand):
    """The residual assessment once the response is in place."""

    residual_probability: Scale
    residual_impact: Scale
    residual_monetary_impact: Money | None = Field(
        default=None, description="Absent: the monetary impact of the last assessment."
    )
    residual_impact_range: ImpactRange | None = Field(
        default=None,
        description="Absent: the last assessment's range, unless a residual monetary impact "
        "alone is given (then none).",
    )
    residual_delay_days: DelayDays | None = Field(
        default=None, description="Absent: the delay of the last assessment."
    )
    rationale: Rationale

    @model_validator(mode="after")
    def _monetary_within_range(self) -> Self:
        _within_range(
            self, "residual_monetary_impact", "residual_impact_range", "residual_monetary_impact"
        )
        return self


class CloseRisk(RiskCommand):
    rationale: Rationale


class RiskIdentified(FrozenModel):
    risk_id: str
    project_id: str | None
    title: str
    description: str
    kind: RiskKind
    category: str
    owner: str
    probability: int
    impact: int
    monetary_impact: Decimal
    proximity: date | None
    score: int
    #: Absent from events written before ranges existed: a single value.
    impact_range: ImpactRange | None = None
    delay_days: int | None = None


class RiskAssessed(FrozenModel):
    risk_id: str
    project_id: str | None
    probability: int
    impact: int
    monetary_impact: Decimal
    proximity: date | None
    score: int
    previous_score: int
    rationale: str
    impact_range: ImpactRange | None = None
    delay_days: int | None = None


class RiskResponseChosen(FrozenModel):
    risk_id: str
    project_id: str | None
    strategy: ResponseStrategy
    plan: str
    due: date
    previous_strategy: ResponseStrategy | None = None


class RiskReassessed(FrozenModel):
    risk_id: str
    project_id: str | None
    residual_probability: int
    residual_impact: int
    residual_monetary_impact: Decimal
    residual_score: int
    rationale: str
    residual_impact_range: ImpactRange | None = None
    residual_delay_days: int | None = None


class RiskClosed(FrozenModel):
    risk_id: str
    project_id: str | None
    rationale: str


# --- project baselines and progress (earned value) ---------------------------------------


class PlannedValue(FrozenModel):
    """The cumulative planned value at the end of a month."""

    period: Period
    planned_value: Money


class BaselineCommand(Command):
    """A command addressed to a project's baseline (its id is the project id)."""

    aggregate_type = BASELINE
    id_field = "project_id"
    project_id: Identifier

    def references(self) -> tuple[AggregateKey, ...]:
        return ((PROJECT, self.project_id),)


class SetProjectBaseline(BaselineCommand):
    """The performance measurement baseline. Setting it again (a re-baseline) needs a
    rationale. Periods ascend; cumulative planned value never falls and never exceeds BAC."""

    budget_at_completion: Money
    planned_value_by_period: tuple[PlannedValue, ...] = Field(min_length=1, max_length=600)
    planned_end: date | None = Field(default=None, description="Absent: the project's planned end.")
    rationale: Rationale | None = None

    @field_validator("planned_value_by_period")
    @classmethod
    def _cumulative_curve(
        cls, value: tuple[PlannedValue, ...], info: ValidationInfo
    ) -> tuple[PlannedValue, ...]:
        for before, after in pairwise(value):
            if after.period <= before.period:
                raise ValueError(
                    f"periods must ascend without repeats: {after.period} after {before.period}"
                )
            if after.planned_value < before.planned_value:
                raise ValueError(
                    f"planned value is cumulative and cannot fall: {after.period} "
                    f"{after.planned_value} < {before.period} {before.planned_value}"
                )
        bac = info.data.get("budget_at_completion")
        if bac is not None and value and value[-1].planned_value > bac:
            raise ValueError(
                f"cumulative planned value {value[-1].planned_value} exceeds the "
                f"budget at completion {bac}"
            )
        return value


class ReportProgress(BaselineCommand):
    """Physical progress at the end of a month; earned value = BAC x percent / 100."""

    period: Period
    percent_complete: Percent
    forecast_end: date | None = Field(default=None, description="Absent: unchanged.")


class ProjectBaselineSet(FrozenModel):
    project_id: str
    revision: int
    budget_at_completion: Decimal
    planned_value_by_period: tuple[PlannedValue, ...]
    planned_end: date | None
    rationale: str | None = None


class ProgressReported(FrozenModel):
    project_id: str
    period: str
    percent_complete: Decimal
    earned_value: Decimal
    forecast_end: date | None
    baseline_revision: int


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


COMMANDS: tuple[type[Command], ...] = (
    IdentifyRisk,
    AssessRisk,
    ChooseRiskResponse,
    ReassessRisk,
    CloseRisk,
    SetProjectBaseline,
    ReportProgress,
    DefineAlertRule,
    DisableAlertRule,
)

RISK_EVENTS: tuple[type[FrozenModel], ...] = (
    RiskIdentified,
    RiskAssessed,
    RiskResponseChosen,
    RiskReassessed,
    RiskClosed,
)
BASELINE_EVENTS: tuple[type[FrozenModel], ...] = (ProjectBaselineSet, ProgressReported)
ALERT_RULE_EVENTS: tuple[type[FrozenModel], ...] = (AlertRuleDefined, AlertRuleDisabled)
ALERT_EVENTS: tuple[type[FrozenModel], ...] = (AlertRaised, AlertRevised, AlertCleared)

EVENTS: tuple[type[FrozenModel], ...] = (
    RISK_EVENTS + BASELINE_EVENTS + ALERT_RULE_EVENTS + ALERT_EVENTS
)

#: This module holds several aggregates: the one each event belongs to.
EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    **dict.fromkeys(RISK_EVENTS, RISK),
    **dict.fromkeys(BASELINE_EVENTS, BASELINE),
    **dict.fromkeys(ALERT_RULE_EVENTS, ALERT_RULE),
    **dict.fromkeys(ALERT_EVENTS, ALERT),
}
