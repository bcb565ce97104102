"""Risk monitor: the risk register, project baselines and progress (earned value), alert
rules, and the alerts the risk service raises and clears (the last two in
contracts/alerts.py, imported here).

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

# ruff: noqa: I001
from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

# Alert rules and alerts live in contracts/alerts.py; named here too, as one risk contract
# (one block: `ruff: noqa: I001` below keeps isort from splitting it name by name).
from contracts.alerts import (
    ALERT as ALERT,
    ALERT_RULE as ALERT_RULE,
    METRIC_RANGE as METRIC_RANGE,
    PROJECT_CLOSED as PROJECT_CLOSED,
    RULE_DISABLED as RULE_DISABLED,
    SCHEMA_VERSIONS as SCHEMA_VERSIONS,
    SUBJECT_KIND as SUBJECT_KIND,
    UPCASTERS as UPCASTERS,
    AlertCleared as AlertCleared,
    AlertRaised as AlertRaised,
    AlertRevised as AlertRevised,
    AlertRuleCommand as AlertRuleCommand,
    AlertRuleDefined as AlertRuleDefined,
    AlertRuleDisabled as AlertRuleDisabled,
    Comparison as Comparison,
    DefineAlertRule as DefineAlertRule,
    DisableAlertRule as DisableAlertRule,
    Figure as Figure,
    Metric as Metric,
    Scope as Scope,
    Severity as Severity,
)
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
