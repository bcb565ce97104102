"""The risk monitor's aggregates as pure state machines: decide(command, state, now, refs).

No I/O and no clock: time comes in as an argument, and the other aggregates a decision must
see (`refs`: the project a risk, baseline or project-scoped rule names, as intake's
`ProjectState`) are loaded by the handler. `evolve` folds events into state.

Aggregates: risks (the register), project baselines with their progress (earned value),
alert rules. Alerts themselves are folded in `services.risk.alerts`.

Scoring (REFERENCE.md, Risk):
- score = probability x impact on the 5 x 5 grid; zones are configurable (`RiskZones`,
  default 1-4 low, 5-14 medium, 15-25 high); the residual score is the same product after
  the response (`ReassessRisk`). A risk's *current* score is the residual one once
  reassessed, else the inherent one.
- expected monetary value = probability x monetary impact, where the 1-5 probability scale
  maps to the midpoint of its band of a 0-100 % range (`PROBABILITY_FRACTION`):
  1 -> 10 %, 2 -> 30 %, 3 -> 50 %, 4 -> 70 %, 5 -> 90 %. (p/5 would make 5 a certainty,
  which is an issue, not a risk.) The sum over open threats sizes the contingency reserve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from contracts import risks as r
from contracts.base import AggregateKey, Command, ErrorCode, FieldError, FrozenModel
from contracts.projects import AGGREGATE as PROJECT
from contracts.projects import ProjectStatus
from shared.rejected import Rejected

Refs = Mapping[AggregateKey, Any]

CENT = Decimal("0.01")

#: Projects that will never run: no risks, baselines or progress against them.
DEAD_PROJECT_STATUSES = frozenset({ProjectStatus.REJECTED, ProjectStatus.CANCELLED})


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


# --- scoring -------------------------------------------------------------------------------


class RiskZone(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class RiskZones:
    """Score zones on the 1..25 grid: 1..low_max low, ..medium_max medium, above high."""

    low_max: int = 4
    medium_max: int = 14

    def __post_init__(self) -> None:
        if not 1 <= self.low_max < self.medium_max < 25:
            raise ValueError(
                f"zones need 1 <= low_max < medium_max < 25, got {self.low_max}, {self.medium_max}"
            )

    def zone(self, score: int) -> RiskZone:
        if not 1 <= score <= 25:
            raise ValueError(f"a score lies within 1..25, got {score}")
        if score <= self.low_max:
            return RiskZone.LOW
        if score <= self.medium_max:
            return RiskZone.MEDIUM
        return RiskZone.HIGH


DEFAULT_ZONES = RiskZones()

#: The probability each point of the 1-5 scale stands for: the midpoint of its 20 % band.
PROBABILITY_FRACTION: Mapping[int, Decimal] = {
    1: Decimal("0.1"),
    2: Decimal("0.3"),
    3: Decimal("0.5"),
    4: Decimal("0.7"),
    5: Decimal("0.9"),
}


def score(probability: int, impact: int) -> int:
    if not (1 <= probability <= 5 and 1 <= impact <= 5):
        raise ValueError(f"probability and impact lie within 1..5, got {probability}, {impact}")
    return probability * impact


def expected_monetary_value(
    probability: int,
    monetary_impact: Decimal,
    fractions: Mapping[int, Decimal] = PROBABILITY_FRACTION,
) -> Decimal:
    """EMV = probability (as a fraction, see `PROBABILITY_FRACTION`) x monetary impact."""
    return cents(fractions[probability] * monetary_impact)


# --- risks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    strategy: r.ResponseStrategy
    plan: str
    due: date


@dataclass(frozen=True)
class RiskState:
    risk_id: str
    project_id: str | None
    title: str
    kind: r.RiskKind
    category: str
    owner: str
    probability: int
    impact: int
    monetary_impact: Decimal
    proximity: date | None
    version: int
    status: r.RiskStatus = r.RiskStatus.OPEN
    response: Response | None = None
    residual_probability: int | None = None
    residual_impact: int | None = None
    residual_monetary_impact: Decimal | None = None

    @property
    def is_open(self) -> bool:
        return self.status == r.RiskStatus.OPEN

    @property
    def reassessed(self) -> bool:
        return self.residual_probability is not None and self.residual_impact is not None

    @property
    def score(self) -> int:
        """The inherent score (the last assessment, before the response)."""
        return score(self.probability, self.impact)

    @property
    def residual_score(self) -> int | None:
        if self.residual_probability is None or self.residual_impact is None:
            return None
        return score(self.residual_probability, self.residual_impact)

    @property
    def current_score(self) -> int:
        residual = self.residual_score
        return self.score if residual is None else residual

    @property
    def current_probability(self) -> int:
        return self.residual_probability or self.probability

    @property
    def current_monetary_impact(self) -> Decimal:
        if self.residual_monetary_impact is not None:
            return self.residual_monetary_impact
        return self.monetary_impact

    def zone(self, zones: RiskZones = DEFAULT_ZONES) -> RiskZone:
        return zones.zone(self.current_score)

    def emv(self, fractions: Mapping[int, Decimal] = PROBABILITY_FRACTION) -> Decimal:
        """Expected monetary value with the current (residual once reassessed) figures."""
        return expected_monetary_value(
            self.current_probability, self.current_monetary_impact, fractions
        )


def evolve_risk(state: RiskState | None, event: FrozenModel) -> RiskState:
    if isinstance(event, r.RiskIdentified):
        return RiskState(
            risk_id=event.risk_id,
            project_id=event.project_id,
            title=event.title,
            kind=event.kind,
            category=event.category,
            owner=event.owner,
            probability=event.probability,
            impact=event.impact,
            monetary_impact=event.monetary_impact,
            proximity=event.proximity,
            version=1,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before RiskIdentified")
    state = replace(state, version=state.version + 1)
    match event:
        case r.RiskAssessed():
            return replace(
                state,
                probability=event.probability,
                impact=event.impact,
                monetary_impact=event.monetary_impact,
                proximity=event.proximity,
                residual_probability=None,
                residual_impact=None,
                residual_monetary_impact=None,
            )
        case r.RiskResponseChosen():
            return replace(
                state, response=Response(strategy=event.strategy, plan=event.plan, due=event.due)
            )
        case r.RiskReassessed():
            return replace(
                state,
                residual_probability=event.residual_probability,
                residual_impact=event.residual_impact,
                residual_monetary_impact=event.residual_monetary_impact,
            )
        case r.RiskClosed():
            return replace(state, status=r.RiskStatus.CLOSED)
    return state


def decide_risk(
    command: Command, state: RiskState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, r.RiskCommand):
        raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a risk command")
    if isinstance(command, r.IdentifyRisk):
        if state is not None:
            raise Rejected(
                ErrorCode.ALREADY_EXISTS,
                f"risk {command.risk_id} already exists ({state.status})",
                (FieldError(field="risk_id", message="already exists", input=command.risk_id),),
            )
        if command.project_id is not None:
            _live_project(refs, command.project_id, "project_id")
        return [
            r.RiskIdentified(
                risk_id=command.risk_id,
                project_id=command.project_id,
                title=command.title,
                description=command.description,
                kind=command.kind,
                category=command.category,
                owner=command.owner,
                probability=command.probability,
                impact=command.impact,
                monetary_impact=command.monetary_impact,
                proximity=command.proximity,
                score=score(command.probability, command.impact),
            )
        ]
    if state is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"risk {command.risk_id} does not exist",
            (FieldError(field="risk_id", message="unknown risk", input=command.risk_id),),
        )
    if not state.is_open:
        what = "it is already closed" if isinstance(command, r.CloseRisk) else "it is closed"
        raise Rejected(
            ErrorCode.ILLEGAL_TRANSITION,
            f"cannot {type(command).__name__} risk {state.risk_id}: {what}",
        )
    rid, pid = state.risk_id, state.project_id
    match command:
        case r.AssessRisk():
            monetary = (
                command.monetary_impact
                if command.monetary_impact is not None
                else state.monetary_impact
            )
            return [
                r.RiskAssessed(
                    risk_id=rid,
                    project_id=pid,
                    probability=command.probability,
                    impact=command.impact,
                    monetary_impact=monetary,
                    proximity=command.proximity or state.proximity,
                    score=score(command.probability, command.impact),
                    previous_score=state.current_score,
                    rationale=command.rationale,
                )
            ]
        case r.ChooseRiskResponse():
            if not command.plan.strip():
                raise Rejected(
                    ErrorCode.VALIDATION_FAILED,
                    "a response needs a plan",
                    (FieldError(field="plan", message="must not be blank", input=command.plan),),
                )
            allowed = r.STRATEGIES[state.kind]
            if command.strategy not in allowed:
                raise Rejected(
                    ErrorCode.VALIDATION_FAILED,
                    f"{command.strategy} is not a response to {_a(state.kind)}",
                    (
                        FieldError(
                            field="strategy",
                            message=f"for {_a(state.kind)}: {', '.join(sorted(allowed))}",
                            input=str(command.strategy),
                        ),
                    ),
                )
            return [
                r.RiskResponseChosen(
                    risk_id=rid,
                    project_id=pid,
                    strategy=command.strategy,
                    plan=command.plan,
                    due=command.due,
                    previous_strategy=state.response.strategy if state.response else None,
                )
            ]
        case r.ReassessRisk():
            if state.response is None:
                raise Rejected(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"risk {rid} has no response yet: choose one before reassessing the "
                    "residual risk",
                )
            residual_monetary = (
                command.residual_monetary_impact
                if command.residual_monetary_impact is not None
                else state.monetary_impact
            )
            return [
                r.RiskReassessed(
                    risk_id=rid,
                    project_id=pid,
                    residual_probability=command.residual_probability,
                    residual_impact=command.residual_impact,
                    residual_monetary_impact=residual_monetary,
                    residual_score=score(command.residual_probability, command.residual_impact),
                    rationale=command.rationale,
                )
            ]
        case r.CloseRisk():
            return [r.RiskClosed(risk_id=rid, project_id=pid, rationale=command.rationale)]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


def _a(kind: r.RiskKind) -> str:
    return f"an {kind}" if kind == r.RiskKind.OPPORTUNITY else f"a {kind}"


@dataclass(frozen=True)
class Contingency:
    """Expected monetary value of the open risks.

    `threats_by_project` keys are project ids, `None` for portfolio-wide risks; `reserve`
    is the sum over every open threat (the contingency reserve). Opportunities are summed
    apart and never netted against the reserve."""

    threats_by_project: Mapping[str | None, Decimal]
    reserve: Decimal
    opportunities_by_project: Mapping[str | None, Decimal]
    opportunities: Decimal


def contingency(
    risks: Iterable[RiskState], fractions: Mapping[int, Decimal] = PROBABILITY_FRACTION
) -> Contingency:
    threats: dict[str | None, Decimal] = {}
    chances: dict[str | None, Decimal] = {}
    for risk in risks:
        if not risk.is_open:
            continue
        into = threats if risk.kind == r.RiskKind.THREAT else chances
        into[risk.project_id] = into.get(risk.project_id, Decimal(0)) + risk.emv(fractions)
    return Contingency(
        threats_by_project=threats,
        reserve=sum(threats.values(), Decimal("0.00")),
        opportunities_by_project=chances,
        opportunities=sum(chances.values(), Decimal("0.00")),
    )


def highest_open_threat_score(risks: Iterable[RiskState], project_id: str | None) -> int | None:
    """The current score of the project's worst open threat (None: it has none); what the
    project's RAG risk indicator reads."""
    scores = [
        risk.current_score
        for risk in risks
        if risk.is_open and risk.kind == r.RiskKind.THREAT and risk.project_id == project_id
    ]
    return max(scores, default=None)


# --- project baselines and progress ------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    period: str
    percent_complete: Decimal
    forecast_end: date | None


@dataclass(frozen=True)
class BaselineState:
    project_id: str
    revision: int
    budget_at_completion: Decimal
    planned_value_by_period: tuple[r.PlannedValue, ...]
    planned_end: date | None
    version: int
    #: One entry per reported month, ascending; a later report for a month replaces it.
    progress: tuple[Progress, ...] = ()
    forecast_end: date | None = None

    def planned_value_at(self, period: str) -> Decimal:
        """Cumulative planned value at the end of `period` (YYYY-MM): the value of the last
        planned month at or before it, 0 before the plan starts."""
        value = Decimal(0)
        for point in self.planned_value_by_period:
            if point.period > period:
                break
            value = point.planned_value
        return value

    def progress_at(self, period: str | None = None) -> Progress | None:
        """The latest report at or before `period` (the latest of all when None)."""
        found = None
        for entry in self.progress:
            if period is not None and entry.period > period:
                break
            found = entry
        return found

    def earned_value_at(self, period: str | None = None) -> Decimal:
        """EV = BAC (of the current baseline) x percent complete / 100."""
        entry = self.progress_at(period)
        if entry is None:
            return Decimal(0)
        return cents(self.budget_at_completion * entry.percent_complete / 100)

    @property
    def latest_period(self) -> str | None:
        return self.progress[-1].period if self.progress else None


def evolve_baseline(state: BaselineState | None, event: FrozenModel) -> BaselineState:
    match event:
        case r.ProjectBaselineSet():
            return BaselineState(
                project_id=event.project_id,
                revision=event.revision,
                budget_at_completion=event.budget_at_completion,
                planned_value_by_period=event.planned_value_by_period,
                planned_end=event.planned_end,
                version=1 if state is None else state.version + 1,
                progress=() if state is None else state.progress,
                forecast_end=None if state is None else state.forecast_end,
            )
    if state is None:
        raise ValueError(f"{type(event).__name__} before ProjectBaselineSet")
    match event:
        case r.ProgressReported():
            entry = Progress(
                period=event.period,
                percent_complete=event.percent_complete,
                forecast_end=event.forecast_end,
            )
            others = [p for p in state.progress if p.period != event.period]
            return replace(
                state,
                version=state.version + 1,
                progress=tuple(sorted([*others, entry], key=lambda p: p.period)),
                forecast_end=event.forecast_end or state.forecast_end,
            )
    return replace(state, version=state.version + 1)


def decide_baseline(
    command: Command, state: BaselineState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    if not isinstance(command, r.BaselineCommand):
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not a baseline command"
        )
    pid = command.project_id
    project = _live_project(refs, pid, "project_id")
    match command:
        case r.SetProjectBaseline():
            if state is not None and command.rationale is None:
                raise Rejected(
                    ErrorCode.VALIDATION_FAILED,
                    f"project {pid} already has baseline revision {state.revision}: "
                    "a re-baseline needs a rationale",
                    (FieldError(field="rationale", message="required to re-baseline"),),
                )
            planned_end = command.planned_end or getattr(project, "planned_end", None)
            return [
                r.ProjectBaselineSet(
                    project_id=pid,
                    revision=1 if state is None else state.revision + 1,
                    budget_at_completion=command.budget_at_completion,
                    planned_value_by_period=command.planned_value_by_period,
                    planned_end=planned_end,
                    rationale=command.rationale,
                )
            ]
        case r.ReportProgress():
            if state is None:
                raise Rejected(
                    ErrorCode.NOT_FOUND,
                    f"project {pid} has no baseline: set one (SetProjectBaseline) before "
                    "reporting progress",
                    (FieldError(field="project_id", message="no baseline", input=pid),),
                )
            return [
                r.ProgressReported(
                    project_id=pid,
                    period=command.period,
                    percent_complete=command.percent_complete,
                    earned_value=cents(state.budget_at_completion * command.percent_complete / 100),
                    forecast_end=command.forecast_end,
                    baseline_revision=state.revision,
                )
            ]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


# --- alert rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRuleState:
    rule_id: str
    revision: int
    metric: r.Metric
    comparison: r.Comparison
    threshold: float
    clear_at: float
    severity: r.Severity
    scope: r.Scope
    scope_id: str | None
    version: int
    description: str = ""
    enabled: bool = True


def evolve_alert_rule(state: AlertRuleState | None, event: FrozenModel) -> AlertRuleState:
    match event:
        case r.AlertRuleDefined():
            return AlertRuleState(
                rule_id=event.rule_id,
                revision=event.revision,
                metric=event.metric,
                comparison=event.comparison,
                threshold=event.threshold,
                clear_at=event.clear_at,
                severity=event.severity,
                scope=event.scope,
                scope_id=event.scope_id,
                description=event.description,
                version=1 if state is None else state.version + 1,
            )
    if state is None:
        raise ValueError(f"{type(event).__name__} before AlertRuleDefined")
    match event:
        case r.AlertRuleDisabled():
            return replace(state, enabled=False, version=state.version + 1)
    return replace(state, version=state.version + 1)


def decide_alert_rule(
    command: Command, state: AlertRuleState | None, now: datetime, refs: Refs
) -> list[FrozenModel]:
    match command:
        case r.DefineAlertRule():
            _check_rule(command)
            if command.scope == r.Scope.PROJECT and command.scope_id is not None:
                _require(refs, (PROJECT, command.scope_id), "scope_id")
            return [
                r.AlertRuleDefined(
                    rule_id=command.rule_id,
                    revision=1 if state is None else state.revision + 1,
                    metric=command.metric,
                    comparison=command.comparison,
                    threshold=command.threshold,
                    clear_at=command.clear_at,
                    severity=command.severity,
                    scope=command.scope,
                    scope_id=command.scope_id,
                    description=command.description,
                )
            ]
        case r.DisableAlertRule():
            if state is None:
                raise Rejected(
                    ErrorCode.NOT_FOUND,
                    f"alert rule {command.rule_id} does not exist",
                    (FieldError(field="rule_id", message="unknown rule", input=command.rule_id),),
                )
            if not state.enabled:
                raise Rejected(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"alert rule {command.rule_id} is already disabled",
                )
            return [
                r.AlertRuleDisabled(
                    rule_id=command.rule_id, revision=state.revision, rationale=command.rationale
                )
            ]
    raise Rejected(
        ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not an alert rule command"
    )


def _check_rule(command: r.DefineAlertRule) -> None:
    """What parsing already checks, checked again for commands built in code."""
    known = {m.value for m in r.Metric}
    if str(command.metric) not in known:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"unknown metric {command.metric!r}",
            (
                FieldError(
                    field="metric",
                    message=f"known: {', '.join(sorted(known))}",
                    input=str(command.metric),
                ),
            ),
        )
    comparison = r.Comparison(command.comparison)
    wrong = (
        command.clear_at <= command.threshold
        if comparison.low_is_bad
        else command.clear_at >= command.threshold
    )
    if wrong:
        side = "above" if comparison.low_is_bad else "below"
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"for {comparison} the clear level must be {side} the threshold {command.threshold}",
            (FieldError(field="clear_at", message=f"must be {side} the threshold"),),
        )


# --- shared checks ---------------------------------------------------------------------------


def _require(refs: Refs, key: AggregateKey, field_name: str) -> Any:
    found = refs.get(key)
    if found is None:
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"unknown {key[0]} {key[1]}",
            (FieldError(field=field_name, message=f"unknown {key[0]}", input=key[1]),),
        )
    return found


def _live_project(refs: Refs, project_id: str, field_name: str) -> Any:
    project = _require(refs, (PROJECT, project_id), field_name)
    status = getattr(project, "status", None)
    if status in DEAD_PROJECT_STATUSES:
        raise Rejected(
            ErrorCode.VALIDATION_FAILED,
            f"project {project_id} is {status}",
            (FieldError(field=field_name, message=f"project is {status}", input=project_id),),
        )
    return project


# --- one entry point for every aggregate -------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    evolve: Callable[[Any, FrozenModel], Any]
    decide: Callable[[Command, Any, datetime, Refs], list[FrozenModel]]


DOMAINS: dict[str, Domain] = {
    r.RISK: Domain(evolve_risk, decide_risk),
    r.BASELINE: Domain(evolve_baseline, decide_baseline),
    r.ALERT_RULE: Domain(evolve_alert_rule, decide_alert_rule),
}

#: The events of the aggregates above (alerts are folded by services.risk.alerts).
EVENT_AGGREGATE: dict[type[FrozenModel], str] = {
    event: aggregate for event, aggregate in r.EVENT_AGGREGATE.items() if aggregate in DOMAINS
}


def decide(
    command: Command, state: Any, now: datetime, refs: Refs | None = None
) -> list[FrozenModel]:
    """The events a command produces, or `Rejected`."""
    domain = DOMAINS.get(command.aggregate_type)
    if domain is None:
        raise Rejected(
            ErrorCode.UNKNOWN_COMMAND, f"no risk domain handles {type(command).__name__}"
        )
    return domain.decide(command, state, now, refs or {})


def evolve(state: Any, event: FrozenModel) -> Any:
    return DOMAINS[EVENT_AGGREGATE[type(event)]].evolve(state, event)
