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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from contracts import risks as r
from contracts.base import Command, ErrorCode, FieldError, FrozenModel
from domain.kernel import Refs, Rejected
from domain.projects import NEVER_RUN, live_project

CENT = Decimal("0.01")

#: Projects that will never run: no risks, baselines or progress against them.
DEAD_PROJECT_STATUSES = NEVER_RUN


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
    #: Min / most likely / max monetary impact and the delay in days, when given.
    impact_range: r.ImpactRange | None = None
    delay_days: int | None = None
    residual_impact_range: r.ImpactRange | None = None
    residual_delay_days: int | None = None

    @property
    def current_impact_range(self) -> r.ImpactRange | None:
        """The range the current monetary impact comes from (None: a single value)."""
        return self.residual_impact_range if self.reassessed else self.impact_range

    @property
    def current_delay_days(self) -> int | None:
        return self.residual_delay_days if self.reassessed else self.delay_days

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
            impact_range=event.impact_range,
            delay_days=event.delay_days,
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
                impact_range=event.impact_range,
                delay_days=event.delay_days,
                residual_impact_range=None,
                residual_delay_days=None,
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
                residual_impact_range=event.residual_impact_range,
                residual_delay_days=event.residual_delay_days,
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
            live_project(refs, command.project_id, "project_id")
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
                monetary_impact=_monetary(command.monetary_impact, command, "monetary_impact"),
                proximity=command.proximity,
                score=score(command.probability, command.impact),
                impact_range=command.impact_range,
                delay_days=command.delay_days,
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
            ranged, monetary = _ranged(
                command.impact_range,
                command.monetary_impact,
                state.impact_range,
                state.monetary_impact,
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
                    impact_range=ranged,
                    delay_days=state.delay_days
                    if command.delay_days is None
                    else command.delay_days,
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
            residual_range, residual_monetary = _ranged(
                command.residual_impact_range,
                command.residual_monetary_impact,
                state.impact_range,
                state.monetary_impact,
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
                    residual_impact_range=residual_range,
                    residual_delay_days=state.delay_days
                    if command.residual_delay_days is None
                    else command.residual_delay_days,
                )
            ]
        case r.CloseRisk():
            return [r.RiskClosed(risk_id=rid, project_id=pid, rationale=command.rationale)]
    raise Rejected(ErrorCode.UNKNOWN_COMMAND, f"{type(command).__name__} is not handled")


def _monetary(amount: Decimal, command: r.IdentifyRisk, name: str) -> Decimal:
    """The monetary impact: as given, else the range's mean when a range is given."""
    if command.impact_range is not None and name not in command.model_fields_set:
        return command.impact_range.mean
    return amount


def _ranged(
    given_range: r.ImpactRange | None,
    given: Decimal | None,
    last_range: r.ImpactRange | None,
    last: Decimal,
) -> tuple[r.ImpactRange | None, Decimal]:
    """(range, monetary impact) of a new assessment: a range given sets both (the
    monetary impact defaults to its mean); a monetary impact alone drops the range;
    neither keeps the last ones."""
    if given_range is not None:
        return given_range, given if given is not None else given_range.mean
    if given is not None:
        return None, given
    return last_range, last


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
