"""The portfolio report, pure: a fold of the log into what stakeholders are told.

No I/O and no clock (the generation time is passed in). `PortfolioReport.apply` folds one
recorded event the way the services fold it, with their own pure functions:

- projects, objectives and the ranking inputs: `PortfolioView.apply` (prioritization), the
  project lifecycle through `contracts.projects.status_after`;
- budget pools and role capacity: `domain.ledger`, reported with
  `budget_report` and `capacity_report`;
- risks and baselines: `domain.risk.evolve_risk` / `evolve_baseline`, health with
  `domain.risk.evm.project_health` on the actual costs (as the risk monitor does);
- alerts: `domain.risk.alerts.evolve_alerts`;
- the latest `RankingDecided` (or, before any, the ranking `decide_ranking` would decide);
- the latest `PortfolioReportPublished`: what the next report's changes are measured from.

A `Cut` bounds the fold by recorded time (`as_of`) and/or business time (`occurred_as_of`):
an event outside it is not folded. An event the report cannot use (an unknown type, an
event before the one that creates its aggregate, as can happen when cutting by business
time) is counted as skipped with its reason, never raised.

Definitions (every money figure a decimal string):

- **stage**: pipeline (proposed, under review), approved, delivery (in progress, on hold),
  closed (completed, rejected, cancelled).
- **live** projects: any status but completed, rejected and cancelled; **funded**: approved
  or in progress.
- **strategic coverage** per active objective: a live project's cost (capex + opex) and
  value (the expected benefits of its business case) are split over the active objectives
  it serves in proportion to its contributions; `funded_*` counts funded projects only.
  An objective no funded project serves is listed as unfunded; a live project serving no
  active objective is counted as unaligned.
- **heat map**: open risks by current probability (rows 1..5) x current impact (columns
  1..5), the residual ones once reassessed.
- **changes**: between two summaries (`summary()`): new proposals, approvals (a project
  now approved or beyond that was not), status changes, risks opened and closed, alerts
  raised and cleared, budget figures of each pool, health changes, the top of the ranking.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from contracts import ledger as lg
from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts import risks as r
from contracts.base import EventEnvelope, FrozenModel, RecordedEvent
from contracts.registry import EVENTS, UnknownEventType, payload_of
from contracts.reports import PortfolioReportPublished
from domain import deciders, ledger, risk
from domain.prioritization import PortfolioView, decide_ranking
from domain.risk import alerts as risk_alerts
from domain.risk import evm
from services.reporting import improvement

Status = p.ProjectStatus
ZERO = Decimal(0)
CENT = Decimal("0.01")
INDEX = Decimal("0.0001")

#: How many entries the top lists hold (ranking, risks).
TOP = 10
#: The longest per-item list a report carries (health rows, alerts, changes, chart points);
#: counts stay exact. Keeps a report summary-sized, i.e. within one NATS message.
LIST_LIMIT = 200
#: Audit highlights kept for a project scorecard (the latest).
HIGHLIGHTS = 100

STAGES: Mapping[str, frozenset[Status]] = {
    "pipeline": frozenset({Status.PROPOSED, Status.UNDER_REVIEW}),
    "approved": frozenset({Status.APPROVED}),
    "delivery": frozenset({Status.IN_PROGRESS, Status.ON_HOLD}),
    "closed": frozenset({Status.COMPLETED, Status.REJECTED, Status.CANCELLED}),
}
LIVE = frozenset(Status) - STAGES["closed"]
FUNDED = frozenset({Status.APPROVED, Status.IN_PROGRESS})
#: Statuses only an approval leads to.
APPROVED_OR_LATER = frozenset(
    {Status.APPROVED, Status.IN_PROGRESS, Status.ON_HOLD, Status.COMPLETED}
)

#: What PortfolioView folds (projects, objectives, scoring models, rankings).
VIEW_AGGREGATES = frozenset({p.AGGREGATE, o.AGGREGATE, pr.SCORING_MODEL, pr.RANKING})
#: Event types the report reads; any other known type is counted and left unparsed.
_USED: tuple[type[FrozenModel], ...] = (
    *p.EVENTS,
    *o.EVENTS,
    pr.ScoringModelConfigured,
    pr.RankingDecided,
    pr.SelectionDecided,
    *lg.EVENTS,
    *r.RISK_EVENTS,
    *r.BASELINE_EVENTS,
    *r.ALERT_EVENTS,
)
USED_EVENTS = frozenset(t.__name__ for t in _USED)
PUBLISHED = PortfolioReportPublished.__name__
#: The model whose ranking a report shows when it has one.
DEFAULT_MODEL = "default"


class UnknownProject(LookupError):
    pass


def stage_of(status: Status) -> str:
    return next(name for name, members in STAGES.items() if status in members)


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def _index(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(INDEX, rounding=ROUND_HALF_UP))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class Cut:
    """Which events a report folds: recorded at or before `as_of` and occurred at or
    before `occurred_as_of` (None: no bound)."""

    as_of: datetime | None = None
    occurred_as_of: datetime | None = None

    def includes(self, envelope: EventEnvelope) -> bool:
        if self.as_of is not None and envelope.recorded_at > self.as_of:
            return False
        return self.occurred_as_of is None or envelope.occurred_at <= self.occurred_as_of

    def as_json(self) -> dict[str, str | None]:
        return {"as_of": _iso(self.as_of), "occurred_as_of": _iso(self.occurred_as_of)}


@dataclass
class ProjectFacts:
    project_id: str
    name: str
    sponsor: str
    category: str
    status: Status
    capex: Decimal
    opex: Decimal
    currency: str
    planned_start: date
    planned_end: date
    mandatory: bool
    dependencies: tuple[str, ...]
    objectives: dict[str, int]
    costs: tuple[p.YearlyCost, ...]
    benefits: tuple[p.YearlyBenefit, ...]
    scoring: p.ScoringInputs
    proposed_at: datetime
    last_position: int
    #: The business case as proposed (estimate accuracy measures against it).
    planned_cost: Decimal
    original_start: date
    original_end: date
    started_on: date | None = None
    completed_on: date | None = None
    #: Realised benefits by year (the latest record of each year).
    realised: dict[int, Decimal] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return self.capex + self.opex

    @property
    def benefits_total(self) -> Decimal:
        return sum((b.amount for b in self.benefits), ZERO)


@dataclass
class ObjectiveFacts:
    objective_id: str
    name: str
    owner: str
    weight: Decimal
    retired: bool = False


@dataclass(frozen=True)
class Highlight:
    """One entry of a project's decision history, as a scorecard shows it."""

    position: int
    recorded_at: datetime
    occurred_at: datetime
    event_type: str
    actor: str
    source: str
    what: str

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recorded_at": _iso(self.recorded_at),
            "occurred_at": _iso(self.occurred_at),
            "event_type": self.event_type,
            "actor": self.actor,
            "source": self.source,
            "what": self.what,
        }


@dataclass(frozen=True)
class RaisedAlert:
    event: r.AlertRaised
    position: int
    recorded_at: datetime


@dataclass
class PortfolioReport:
    """The fold. `focus` names a project whose decision history is kept (a scorecard)."""

    cut: Cut = field(default_factory=Cut)
    focus: str | None = None
    view: PortfolioView = field(default_factory=PortfolioView)
    projects: dict[str, ProjectFacts] = field(default_factory=dict)
    objectives: dict[str, ObjectiveFacts] = field(default_factory=dict)
    pools: dict[str, ledger.PoolState] = field(default_factory=dict)
    roles: dict[str, ledger.CapacityState] = field(default_factory=dict)
    risks: dict[str, risk.RiskState] = field(default_factory=dict)
    baselines: dict[str, risk.BaselineState] = field(default_factory=dict)
    actual_cost: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    alerts: risk_alerts.AlertState = field(default_factory=risk_alerts.AlertState)
    raised: dict[str, RaisedAlert] = field(default_factory=dict)
    rankings: dict[str, tuple[int, pr.RankingDecided]] = field(default_factory=dict)
    published: PortfolioReportPublished | None = None
    published_position: int = 0
    #: The last event folded, and the last one that was not a published report.
    position: int = 0
    content_position: int = 0
    events: int = 0
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)
    first_recorded_at: datetime | None = None
    last_recorded_at: datetime | None = None
    earliest_occurred_at: datetime | None = None
    latest_occurred_at: datetime | None = None
    highlights: deque[Highlight] = field(default_factory=lambda: deque(maxlen=HIGHLIGHTS))
    #: Continuous improvement (improvement.py): actual cost by project and month, every
    #: progress report (for the EAC series), the lessons learned in log order.
    actual_by_period: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    eac_points: dict[str, list[improvement.EacPoint]] = field(default_factory=dict)
    lessons: list[improvement.Lesson] = field(default_factory=list)
    _focus_rank: int | None = None
    #: The ranking computed when none was decided yet, and the position it was computed at.
    _computed: tuple[int, pr.RankingDecided] | None = None

    # --- folding ---------------------------------------------------------------------

    def apply(self, event: RecordedEvent) -> bool:
        """Fold one event if the cut includes it; True when it did."""
        e = event.envelope
        if not self.cut.includes(e):
            return False
        self.position = event.position
        self.events += 1
        if self.first_recorded_at is None:
            self.first_recorded_at = e.recorded_at
        self.last_recorded_at = e.recorded_at
        if self.earliest_occurred_at is None or e.occurred_at < self.earliest_occurred_at:
            self.earliest_occurred_at = e.occurred_at
        if self.latest_occurred_at is None or e.occurred_at > self.latest_occurred_at:
            self.latest_occurred_at = e.occurred_at
        try:
            self._apply(event)
        except (ValidationError, UnknownEventType, ValueError, KeyError, AttributeError) as error:
            self.skipped += 1
            if len(self.skipped_reasons) < 20:
                self.skipped_reasons.append(
                    f"{event.position} {e.event_type} {e.aggregate_type}/{e.aggregate_id}: "
                    f"{type(error).__name__}: {str(error)[:200]}"
                )
        return True

    def apply_all(self, events: Iterable[RecordedEvent]) -> PortfolioReport:
        for event in events:
            self.apply(event)
        return self

    def _apply(self, event: RecordedEvent) -> None:
        e = event.envelope
        if e.event_type == PUBLISHED:
            self.published = PortfolioReportPublished.model_validate(e.payload)
            self.published_position = event.position
            return
        self.content_position = event.position
        if e.event_type not in USED_EVENTS:
            if e.event_type not in EVENTS:
                raise UnknownEventType(e.event_type)
            return
        if e.aggregate_type in VIEW_AGGREGATES:
            self.view.apply(event)
        payload = payload_of(e)
        self._fold(payload, event)
        if self.focus is not None:
            self._highlight(payload, event)

    def _fold(self, payload: FrozenModel, event: RecordedEvent) -> None:
        e = event.envelope
        kind = type(payload)
        match payload:
            case p.ProjectProposed():
                self.projects[payload.project_id] = ProjectFacts(
                    project_id=payload.project_id,
                    name=payload.name,
                    sponsor=payload.sponsor,
                    category=payload.category,
                    status=Status.PROPOSED,
                    capex=payload.capex,
                    opex=payload.opex,
                    currency=payload.currency,
                    planned_start=payload.planned_start,
                    planned_end=payload.planned_end,
                    mandatory=payload.mandatory,
                    dependencies=payload.dependencies,
                    objectives={c.objective_id: c.contribution for c in payload.objectives},
                    costs=payload.costs,
                    benefits=payload.expected_benefits,
                    scoring=payload.scoring,
                    proposed_at=e.recorded_at,
                    last_position=event.position,
                    planned_cost=payload.capex + payload.opex,
                    original_start=payload.planned_start,
                    original_end=payload.planned_end,
                )
            case p.ProjectEstimateUpdated():
                found = self.projects[payload.project_id]
                # The yearly split no longer adds up to the new totals (as PortfolioView).
                found.capex, found.opex, found.costs = payload.capex, payload.opex, ()
                found.planned_start, found.planned_end = payload.planned_start, payload.planned_end
                found.last_position = event.position
            case p.ProjectStarted():
                self.projects[payload.project_id].started_on = payload.started_on
            case p.ProjectCompleted():
                self.projects[payload.project_id].completed_on = payload.completed_on
            case p.RealisedBenefitRecorded():
                self.projects[payload.project_id].realised[payload.year] = payload.amount
            case p.LessonLearnedRecorded():
                self.lessons.append(
                    improvement.Lesson(
                        project_id=payload.project_id,
                        lesson_id=payload.lesson_id,
                        title=payload.title,
                        description=payload.description,
                        recommendation=payload.recommendation,
                        category=payload.category,
                        actor=e.actor,
                        position=event.position,
                        recorded_at=e.recorded_at,
                    )
                )
            case o.ObjectiveDefined():
                self.objectives[payload.objective_id] = ObjectiveFacts(
                    payload.objective_id, payload.name, payload.owner, payload.weight
                )
            case o.ObjectiveReweighted():
                self.objectives[payload.objective_id].weight = payload.weight
            case o.ObjectiveRetired():
                self.objectives[payload.objective_id].retired = True
            case pr.RankingDecided():
                self.rankings[payload.model_id] = (event.position, payload)
            case r.AlertRaised():
                self.alerts = risk_alerts.evolve_alerts(self.alerts, payload)
                self.raised[payload.alert_id] = RaisedAlert(payload, event.position, e.recorded_at)
            case r.AlertCleared():
                self.alerts = risk_alerts.evolve_alerts(self.alerts, payload)
                self.raised.pop(payload.alert_id, None)
            case _ if kind in lg.EVENT_AGGREGATE:
                states: dict[str, Any] = (
                    self.pools if lg.EVENT_AGGREGATE[kind] == lg.POOL else self.roles
                )
                states[e.aggregate_id] = deciders.evolve(states.get(e.aggregate_id), payload)
                if isinstance(payload, lg.ActualCostRecorded):
                    self.actual_cost[payload.project_id] += payload.amount
                    by_period = self.actual_by_period.setdefault(payload.project_id, {})
                    by_period[payload.period] = by_period.get(payload.period, ZERO) + payload.amount
            case _ if kind in r.RISK_EVENTS:
                risk_id: str = payload.risk_id  # type: ignore[attr-defined]
                self.risks[risk_id] = risk.evolve_risk(self.risks.get(risk_id), payload)
            case _ if kind in r.BASELINE_EVENTS:
                project_id: str = payload.project_id  # type: ignore[attr-defined]
                self.baselines[project_id] = risk.evolve_baseline(
                    self.baselines.get(project_id), payload
                )
                if isinstance(payload, r.ProgressReported):
                    self._eac_point(payload, event.position)
        if e.aggregate_type == p.AGGREGATE and not isinstance(payload, p.ProjectProposed):
            found = self.projects[e.aggregate_id]
            found.status = p.status_after(payload, found.status) or found.status
            found.last_position = event.position

    def _eac_point(self, progress: r.ProgressReported, position: int) -> None:
        """A progress report, for the EAC series (a later report for the same month
        replaces it)."""
        baseline = self.baselines[progress.project_id]
        points = [
            x for x in self.eac_points.get(progress.project_id, []) if x.period != progress.period
        ]
        points.append(
            improvement.EacPoint(
                period=progress.period,
                position=position,
                percent_complete=progress.percent_complete,
                bac=baseline.budget_at_completion,
                ev=progress.earned_value,
            )
        )
        self.eac_points[progress.project_id] = sorted(points, key=lambda x: x.period)

    def _highlight(self, payload: FrozenModel, event: RecordedEvent) -> None:
        what = _highlight_text(payload, self.focus or "", self._focus_rank)
        if what is None:
            return
        if isinstance(payload, pr.RankingDecided):
            self._focus_rank = next(
                (x.rank for x in payload.ranking if x.project_id == self.focus), None
            )
        e = event.envelope
        self.highlights.append(
            Highlight(
                event.position,
                e.recorded_at,
                e.occurred_at,
                e.event_type,
                e.actor,
                e.source,
                what,
            )
        )

    # --- figures ---------------------------------------------------------------------

    def cut_json(self) -> dict[str, Any]:
        return {
            **self.cut.as_json(),
            "position": self.position,
            "content_position": self.content_position,
            "events": self.events,
            "skipped": self.skipped,
            "skipped_reasons": list(self.skipped_reasons),
            "first_recorded_at": _iso(self.first_recorded_at),
            "last_recorded_at": _iso(self.last_recorded_at),
        }

    def project_counts(self) -> dict[str, Any]:
        by_status = {str(s): 0 for s in Status}
        by_stage = dict.fromkeys(STAGES, 0)
        by_category: dict[str, int] = defaultdict(int)
        for facts in self.projects.values():
            by_status[str(facts.status)] += 1
            by_stage[stage_of(facts.status)] += 1
            by_category[facts.category] += 1
        return {
            "total": len(self.projects),
            "by_status": by_status,
            "by_stage": by_stage,
            "by_category": dict(sorted(by_category.items())),
        }

    def budget(self) -> dict[str, Any]:
        rows = ledger.budget_report(self.pools.values(), ledger.Grouping.POOL)
        pools = []
        totals: dict[str, dict[str, Decimal]] = {}
        for (pool_id,), figures in rows.items():
            pool = self.pools[pool_id]
            pools.append(
                {
                    "pool_id": pool_id,
                    "name": pool.name,
                    "category": str(pool.category),
                    "period": pool.label,
                    "currency": pool.currency,
                    "closed": pool.closed,
                    **_figures_json(figures),
                    "consumption_percent": _str(pool.consumption_percent),
                }
            )
            total = totals.setdefault(pool.currency, defaultdict(Decimal))
            for name in _BUDGET_FIELDS:
                total[name] += getattr(figures, name) or ZERO
        return {
            "pools": pools,
            "totals": [
                {"currency": currency, **{k: money(v) for k, v in figures.items()}}
                for currency, figures in sorted(totals.items())
            ],
        }

    def coverage(self) -> dict[str, Any]:
        active = {k: v for k, v in sorted(self.objectives.items()) if not v.retired}
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        unaligned: dict[str, Decimal] = defaultdict(Decimal)
        value: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

        def row(objective_id: str, currency: str) -> dict[str, Any]:
            return rows.setdefault(
                (objective_id, currency),
                {
                    "projects": 0,
                    "funded_projects": 0,
                    "contribution_points": 0,
                    "budget": ZERO,
                    "funded_budget": ZERO,
                    "value": ZERO,
                    "funded_value": ZERO,
                },
            )

        for facts in self.projects.values():
            figures = value[facts.currency]
            if facts.status == Status.COMPLETED:
                figures["completed_value"] += facts.benefits_total
            if facts.status not in LIVE:
                continue
            funded = facts.status in FUNDED
            figures["planned_value"] += facts.benefits_total
            if funded:
                figures["funded_value"] += facts.benefits_total
            served = {k: c for k, c in facts.objectives.items() if k in active}
            if not served:
                unaligned[facts.currency] += facts.cost
                continue
            points = sum(served.values())
            for objective_id, contribution in served.items():
                share = Decimal(contribution) / points
                target = row(objective_id, facts.currency)
                target["projects"] += 1
                target["contribution_points"] += contribution
                target["budget"] += facts.cost * share
                target["value"] += facts.benefits_total * share
                if funded:
                    target["funded_projects"] += 1
                    target["funded_budget"] += facts.cost * share
                    target["funded_value"] += facts.benefits_total * share
        objectives = []
        for objective_id, objective in active.items():
            found = [(c, v) for (k, c), v in sorted(rows.items()) if k == objective_id]
            for currency, figures in found or [("", row(objective_id, ""))]:
                objectives.append(
                    {
                        "objective_id": objective_id,
                        "name": objective.name,
                        "owner": objective.owner,
                        "weight": str(objective.weight),
                        "currency": currency,
                        **{
                            k: money(v) if isinstance(v, Decimal) else v for k, v in figures.items()
                        },
                    }
                )
        funded_somewhere = {k for (k, _), v in rows.items() if v["funded_projects"]}
        return {
            "objectives": objectives,
            "unfunded": [k for k in active if k not in funded_somewhere],
            "unaligned_budget": {c: money(v) for c, v in sorted(unaligned.items())},
            "value": {
                c: {k: money(v) for k, v in sorted(f.items())} for c, f in sorted(value.items())
            },
        }

    def risk_exposure(self) -> dict[str, Any]:
        all_risks = sorted(self.risks.values(), key=lambda x: x.risk_id)
        open_risks = [x for x in all_risks if x.is_open]
        heat = [[0] * 5 for _ in range(5)]
        by_zone = {str(z): 0 for z in risk.RiskZone}
        for found in open_risks:
            probability, impact = current_grid(found)
            heat[probability - 1][impact - 1] += 1
            by_zone[str(found.zone())] += 1
        reserve = risk.contingency(all_risks)
        top = sorted(open_risks, key=lambda x: (-x.current_score, -x.emv(), x.risk_id))
        return {
            "total": len(all_risks),
            "open": len(open_risks),
            "closed": len(all_risks) - len(open_risks),
            "open_threats": sum(1 for x in open_risks if x.kind == r.RiskKind.THREAT),
            "open_opportunities": sum(1 for x in open_risks if x.kind == r.RiskKind.OPPORTUNITY),
            "contingency_reserve": money(reserve.reserve),
            "opportunities_emv": money(reserve.opportunities),
            "by_zone": by_zone,
            "heat_map": heat,
            "top": [self._risk_json(x) for x in top[:TOP]],
        }

    def _risk_json(self, found: risk.RiskState) -> dict[str, Any]:
        probability, impact = current_grid(found)
        return {
            "risk_id": found.risk_id,
            "project_id": found.project_id,
            "title": found.title,
            "kind": str(found.kind),
            "category": found.category,
            "owner": found.owner,
            "status": str(found.status),
            "probability": probability,
            "impact": impact,
            "score": found.current_score,
            "inherent_score": found.score,
            "zone": str(found.zone()),
            "emv": money(found.emv()),
            "response": str(found.response.strategy) if found.response else None,
        }

    def project_health(self) -> dict[str, evm.Health]:
        """Each baselined project's health, as the risk monitor computes it."""
        by_project: dict[str | None, list[risk.RiskState]] = defaultdict(list)
        for found in self.risks.values():
            by_project[found.project_id].append(found)
        return {
            project_id: evm.project_health(
                baseline,
                self.actual_cost.get(project_id, ZERO),
                top_risk_score=risk.highest_open_threat_score(
                    by_project.get(project_id, ()), project_id
                ),
            )
            for project_id, baseline in sorted(self.baselines.items())
        }

    def health(self, healths: Mapping[str, evm.Health] | None = None) -> dict[str, Any]:
        healths = self.project_health() if healths is None else healths
        overall = evm.portfolio_health(healths.values())
        by_status = {str(s): 0 for s in evm.Rag}
        for found in healths.values():
            by_status[str(found.status)] += 1
        worst = sorted(healths.values(), key=lambda h: (-h.status.rank, h.subject_id))
        delivery = {k for k, v in self.projects.items() if v.status in STAGES["delivery"]}
        return {
            "portfolio": {"status": str(overall.status), "explain": overall.explain()},
            "by_status": by_status,
            "without_baseline": sorted(delivery - set(healths))[:LIST_LIMIT],
            "projects": [self._health_json(h) for h in worst[:LIST_LIMIT]],
            "more": max(0, len(worst) - LIST_LIMIT),
        }

    def _health_json(self, health: evm.Health) -> dict[str, Any]:
        facts = self.projects.get(health.subject_id)
        ev = health.earned_value
        return {
            "project_id": health.subject_id,
            "name": facts.name if facts else "",
            "project_status": str(facts.status) if facts else None,
            "status": str(health.status),
            "explain": health.explain(),
            "indicators": [
                {
                    "name": i.name,
                    "value": None if i.value is None else str(_round(i.value)),
                    "status": str(i.status),
                    "reason": i.reason,
                }
                for i in health.indicators
            ],
            "evm": None
            if ev is None
            else {
                "bac": money(ev.bac),
                "pv": money(ev.pv),
                "ev": money(ev.ev),
                "ac": money(ev.ac),
                "cv": money(ev.cv),
                "sv": money(ev.sv),
                "cpi": _index(ev.cpi),
                "spi": _index(ev.spi),
                "eac": None if ev.eac_typical is None else money(ev.eac_typical),
                "vac": None if ev.vac is None else money(ev.vac),
                "tcpi": _index(ev.tcpi),
            },
            "schedule_slip_days": health.schedule_slip_days,
        }

    def capacity(self) -> dict[str, Any]:
        cells = ledger.capacity_report(self.roles.values())
        roles: dict[str, dict[str, Any]] = {}
        for cell in cells:
            found = roles.setdefault(
                cell.role,
                {
                    "role": cell.role,
                    "unit": str(cell.unit),
                    "capacity": ZERO,
                    "demand": ZERO,
                    "over_allocated_months": [],
                    "peak_utilisation_percent": None,
                },
            )
            found["capacity"] += cell.net_capacity
            found["demand"] += cell.demand
            if cell.over_allocated:
                found["over_allocated_months"].append(cell.period)
            peak = found["peak_utilisation_percent"]
            if cell.utilisation_percent is not None and (
                peak is None or cell.utilisation_percent > peak
            ):
                found["peak_utilisation_percent"] = cell.utilisation_percent
        return {
            "roles": [
                {
                    **found,
                    "capacity": str(found["capacity"]),
                    "demand": str(found["demand"]),
                    "utilisation_percent": _str(ledger.percent(found["demand"], found["capacity"])),
                    "peak_utilisation_percent": _str(found["peak_utilisation_percent"]),
                }
                for found in roles.values()
            ],
            "cells": [
                {
                    "role": c.role,
                    "period": c.period,
                    "net_capacity": str(c.net_capacity),
                    "demand": str(c.demand),
                    "utilisation_percent": _str(c.utilisation_percent),
                    "over_allocated": c.over_allocated,
                }
                for c in cells[: LIST_LIMIT * 10]
            ],
        }

    def latest_ranking(self) -> tuple[pr.RankingDecided, str] | None:
        """The last ranking decided (the default model's, else the latest of any), or the
        one prioritization would decide now when none is in the log yet."""
        if DEFAULT_MODEL in self.rankings:
            return self.rankings[DEFAULT_MODEL][1], "decided"
        if self.rankings:
            return max(self.rankings.values(), key=lambda x: x[0])[1], "decided"
        if not self.view.open_candidates():
            return None
        if self._computed is None or self._computed[0] != self.position:
            self._computed = (self.position, decide_ranking(self.view, DEFAULT_MODEL))
        return self._computed[1], "computed"

    def ranking(self) -> dict[str, Any] | None:
        found = self.latest_ranking()
        if found is None:
            return None
        decided, source = found

        def entry(x: pr.RankedProject) -> dict[str, Any]:
            facts = self.projects.get(x.project_id)
            return {
                "rank": x.rank,
                "project_id": x.project_id,
                "name": facts.name if facts else "",
                "status": str(facts.status) if facts else None,
                "score": round(x.score, 4),
                "previous_rank": x.previous_rank,
                "cost": money(facts.cost) if facts else None,
                "value": money(facts.benefits_total) if facts else None,
                "breakdown": {
                    k: None if v is None else round(v, 4) for k, v in x.breakdown.items()
                },
            }

        return {
            "model_id": decided.model_id,
            "model_version": decided.model_version,
            "method": str(decided.method),
            "computed_at_position": decided.computed_at_position,
            "source": source,
            "candidates": len(decided.candidates),
            "ranked": len(decided.ranking),
            "unscorable": [u.project_id for u in decided.unscorable][:LIST_LIMIT],
            "top": [entry(x) for x in decided.ranking[:TOP]],
            "points": [
                {k: v for k, v in entry(x).items() if k != "breakdown"}
                for x in decided.ranking[:LIST_LIMIT]
            ],
        }

    def open_alerts(self) -> list[dict[str, Any]]:
        found = []
        for _, alert in sorted(self.alerts.open.items()):
            raised = self.raised.get(alert.alert_id)
            if raised is None:
                continue
            event = raised.event
            found.append(
                {
                    "alert_id": event.alert_id,
                    "severity": str(event.severity),
                    "metric": str(event.metric),
                    "rule_id": event.rule_id,
                    "subject_id": event.subject_id,
                    "project_id": event.project_id,
                    "value": event.value,
                    "threshold": event.threshold,
                    "message": event.message,
                    "raised_position": raised.position,
                    "raised_at": _iso(raised.recorded_at),
                }
            )
        return found

    def alerts_json(self) -> dict[str, Any]:
        found = self.open_alerts()
        by_severity = {str(s): 0 for s in r.Severity}
        for alert in found:
            by_severity[alert["severity"]] += 1
        return {"open": len(found), "by_severity": by_severity, "items": found[:LIST_LIMIT]}

    # --- continuous improvement --------------------------------------------------------

    def improvement(self, project_id: str | None = None) -> dict[str, Any]:
        """Estimate accuracy, benefit realisation, EAC convergence and lessons learned:
        of every project, or of one (see improvement.py)."""
        chosen = [
            facts
            for pid, facts in sorted(self.projects.items())
            if project_id is None or pid == project_id
        ]
        accuracy = [
            row
            for facts in chosen
            if (row := improvement.accuracy_row(facts, self.actual_cost.get(facts.project_id)))
        ]
        benefits = [
            improvement.benefits_row(facts)
            for facts in chosen
            if facts.status == Status.COMPLETED or facts.realised
        ]
        convergence = [
            improvement.convergence_row(
                facts,
                self.eac_points[facts.project_id],
                self.actual_by_period.get(facts.project_id, {}),
                LIST_LIMIT,
            )
            for facts in chosen
            if facts.project_id in self.eac_points
        ]
        lessons = [x for x in self.lessons if project_id is None or x.project_id == project_id]
        return {
            "estimate_accuracy": improvement.estimate_accuracy(accuracy, LIST_LIMIT),
            "benefits": improvement.benefit_realisation(benefits, LIST_LIMIT),
            "eac_convergence": improvement.eac_convergence(convergence, LIST_LIMIT),
            "lessons": improvement.lessons_summary(lessons, self.projects, LIST_LIMIT),
        }

    def find_lessons(
        self,
        words: Iterable[str] = (),
        project_id: str | None = None,
        category: str | None = None,
    ) -> list[dict[str, Any]]:
        """Lessons learned matching every word, the project and the category (log order)."""
        words = tuple(words)
        return [
            improvement.lesson_json(x, self.projects.get(x.project_id))
            for x in self.lessons
            if improvement.matches(x, self.projects.get(x.project_id), words, project_id, category)
        ]

    # --- the summary and the reports -------------------------------------------------

    def summary(self, healths: Mapping[str, evm.Health] | None = None) -> dict[str, Any]:
        """What a published report records and the next one's changes are measured from."""
        healths = self.project_health() if healths is None else healths
        rows = ledger.budget_report(self.pools.values(), ledger.Grouping.POOL)
        reserve = risk.contingency(self.risks.values())
        found = self.latest_ranking()
        open_alerts = self.open_alerts()
        return {
            **self.cut.as_json(),
            "position": self.position,
            "content_position": self.content_position,
            "projects": {k: str(v.status) for k, v in sorted(self.projects.items())},
            "pools": {
                pool_id: {
                    "currency": f.currency,
                    "amount": money(f.amount or ZERO),
                    "allocated": money(f.allocated),
                    "committed": money(f.committed),
                    "actual": money(f.actual),
                    "remaining": money(f.remaining),
                }
                for (pool_id,), f in rows.items()
            },
            "risks": {
                k: {"score": v.current_score, "project_id": v.project_id}
                for k, v in sorted(self.risks.items())
                if v.is_open
            },
            "alerts": {
                a["alert_id"]: {"severity": a["severity"], "subject_id": a["subject_id"]}
                for a in open_alerts
            },
            "health": {k: str(h.status) for k, h in healths.items()},
            "ranking": [] if found is None else [x.project_id for x in found[0].ranking[:TOP]],
            "contingency_reserve": money(reserve.reserve),
        }

    def since(self) -> dict[str, Any] | None:
        """The published report the next changes are measured from (None: none yet)."""
        if self.published is None:
            return None
        return {
            "kind": "published",
            "report_id": self.published.report_id,
            "position": self.published_position,
            "generated_at": _iso(self.published.generated_at),
            "rationale": self.published.rationale,
        }

    def portfolio(
        self,
        generated_at: datetime,
        baseline: Mapping[str, Any] | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The portfolio report. Its changes are measured from `baseline` (a summary; None:
        the last published report's, else the empty portfolio), described by `since`."""
        if baseline is None and self.published is not None:
            baseline, since = self.published.summary, self.since()
        healths = self.project_health()
        return {
            "kind": "portfolio",
            "generated_at": _iso(generated_at),
            "cut": self.cut_json(),
            "projects": self.project_counts(),
            "budget": self.budget(),
            "coverage": self.coverage(),
            "risks": self.risk_exposure(),
            "health": self.health(healths),
            "capacity": self.capacity(),
            "ranking": self.ranking(),
            "alerts": self.alerts_json(),
            "improvement": self.improvement(),
            "changes": {
                "since": dict(since or {"kind": "start"}),
                **changes(baseline, self.summary(healths)),
            },
        }

    def scorecard(self, project_id: str, generated_at: datetime) -> dict[str, Any]:
        """One project: status, business case, rank and breakdown, budget, risks, health,
        capacity demand, open alerts and the decision history (needs `focus`)."""
        facts = self.projects.get(project_id)
        if facts is None:
            raise UnknownProject(project_id)
        ranking = self.latest_ranking()
        ranked = None
        if ranking is not None:
            decided, source = ranking
            entry = next((x for x in decided.ranking if x.project_id == project_id), None)
            missing = next((u for u in decided.unscorable if u.project_id == project_id), None)
            ranked = {
                "model_id": decided.model_id,
                "source": source,
                "computed_at_position": decided.computed_at_position,
                "of": len(decided.ranking),
                "rank": entry.rank if entry else None,
                "score": round(entry.score, 4) if entry else None,
                "previous_rank": entry.previous_rank if entry else None,
                "breakdown": {} if entry is None else _breakdown(entry.breakdown),
                "why_not_ranked": None
                if entry
                else (
                    f"not scorable: missing {', '.join(missing.missing)}"
                    if missing
                    else f"not a candidate ({facts.status})"
                ),
            }
        by_pool = ledger.budget_report(self.pools.values(), ledger.Grouping.POOL_PROJECT)
        by_project = ledger.budget_report(self.pools.values(), ledger.Grouping.PROJECT)
        own_risks = sorted(
            (x for x in self.risks.values() if x.project_id == project_id),
            key=lambda x: (not x.is_open, -x.current_score, x.risk_id),
        )
        reserve = risk.contingency(own_risks)
        health = self.project_health().get(project_id)
        demand = [
            {"role": role.role, "period": period, "demand": str(amount), "unit": str(role.unit)}
            for role in sorted(self.roles.values(), key=lambda x: x.role)
            for (pid, period), amount in sorted(role.demand.items(), key=lambda x: x[0][1])
            if pid == project_id
        ]
        return {
            "kind": "project",
            "generated_at": _iso(generated_at),
            "cut": self.cut_json(),
            "project": {
                "project_id": facts.project_id,
                "name": facts.name,
                "sponsor": facts.sponsor,
                "category": facts.category,
                "status": str(facts.status),
                "stage": stage_of(facts.status),
                "planned_start": facts.planned_start.isoformat(),
                "planned_end": facts.planned_end.isoformat(),
                "mandatory": facts.mandatory,
                "dependencies": list(facts.dependencies),
                "objectives": [
                    {
                        "objective_id": k,
                        "name": self.objectives[k].name if k in self.objectives else "",
                        "contribution": c,
                    }
                    for k, c in sorted(facts.objectives.items())
                ],
            },
            "business_case": {
                "currency": facts.currency,
                "capex": money(facts.capex),
                "opex": money(facts.opex),
                "total_cost": money(facts.cost),
                "benefits_total": money(facts.benefits_total),
                "npv": None if facts.scoring.npv is None else money(facts.scoring.npv),
                "costs": [
                    {"year": c.year, "capex": money(c.capex), "opex": money(c.opex)}
                    for c in facts.costs
                ],
                "benefits": [
                    {"year": b.year, "amount": money(b.amount), "description": b.description}
                    for b in facts.benefits
                ],
                "scoring": facts.scoring.model_dump(mode="json"),
            },
            "ranking": ranked,
            "budget": {
                "pools": [
                    {"pool_id": pool_id, "currency": f.currency, **_figures_json(f)}
                    for (pool_id, pid), f in by_pool.items()
                    if pid == project_id
                ],
                "totals": [
                    {"currency": currency, **_figures_json(f)}
                    for (pid, currency), f in by_project.items()
                    if pid == project_id
                ],
            },
            "risks": {
                "contingency_reserve": money(reserve.reserve),
                "opportunities_emv": money(reserve.opportunities),
                "heat_map": _heat(x for x in own_risks if x.is_open),
                "items": [self._risk_json(x) for x in own_risks[:LIST_LIMIT]],
            },
            "health": None if health is None else self._health_json(health),
            "capacity": demand[:LIST_LIMIT],
            "alerts": [a for a in self.open_alerts() if a["project_id"] == project_id],
            "improvement": self.improvement(project_id),
            "audit": [h.as_json() for h in self.highlights] if self.focus == project_id else [],
        }


def diff_report(
    before: PortfolioReport, after: PortfolioReport, generated_at: datetime
) -> dict[str, Any]:
    """What changed between two points: `portfolio report --diff FROM TO`."""
    old, new = before.summary(), after.summary()
    return {
        "kind": "diff",
        "generated_at": _iso(generated_at),
        "from": before.cut_json(),
        "to": after.cut_json(),
        "totals": {"from": _totals(before, old), "to": _totals(after, new)},
        "changes": changes(old, new),
    }


def _totals(report: PortfolioReport, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "projects": len(summary["projects"]),
        "open_risks": len(summary["risks"]),
        "open_alerts": len(summary["alerts"]),
        "contingency_reserve": summary["contingency_reserve"],
        "budget": report.budget()["totals"],
    }


EMPTY_SUMMARY: Mapping[str, Any] = {
    "projects": {},
    "pools": {},
    "risks": {},
    "alerts": {},
    "health": {},
    "ranking": [],
}
POOL_FIGURES = ("amount", "allocated", "committed", "actual", "remaining")


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from one summary to the next (lists capped, counts exact)."""
    old = old or EMPTY_SUMMARY
    old_p: Mapping[str, str] = old.get("projects", {})
    new_p: Mapping[str, str] = new["projects"]
    proposals = sorted(set(new_p) - set(old_p))
    approvals = sorted(
        k
        for k, s in new_p.items()
        if s in APPROVED_OR_LATER and old_p.get(k) not in APPROVED_OR_LATER
    )
    moved = [
        {"project_id": k, "from": old_p[k], "to": s}
        for k, s in sorted(new_p.items())
        if k in old_p and old_p[k] != s
    ]
    old_r: Mapping[str, Any] = old.get("risks", {})
    new_r: Mapping[str, Any] = new["risks"]
    rescored = [
        {"risk_id": k, "from": old_r[k]["score"], "to": v["score"]}
        for k, v in sorted(new_r.items())
        if k in old_r and old_r[k]["score"] != v["score"]
    ]
    old_a: Mapping[str, Any] = old.get("alerts", {})
    new_a: Mapping[str, Any] = new["alerts"]
    budget = []
    old_pools: Mapping[str, Any] = old.get("pools", {})
    for pool_id, figures in sorted(new["pools"].items()):
        before = old_pools.get(pool_id, {})
        for name in POOL_FIGURES:
            was = Decimal(before.get(name, "0"))
            now = Decimal(figures[name])
            if was != now:
                budget.append(
                    {
                        "pool_id": pool_id,
                        "currency": figures["currency"],
                        "figure": name,
                        "from": money(was),
                        "to": money(now),
                        "delta": money(now - was),
                    }
                )
    old_h: Mapping[str, str] = old.get("health", {})
    health = [
        {"project_id": k, "from": old_h.get(k), "to": v}
        for k, v in sorted(new["health"].items())
        if old_h.get(k) != v
    ]
    old_top, new_top = list(old.get("ranking", [])), list(new["ranking"])
    found: dict[str, list[Any]] = {
        "new_proposals": proposals,
        "approvals": approvals,
        "status_changes": moved,
        "new_risks": sorted(set(new_r) - set(old_r)),
        "closed_risks": sorted(set(old_r) - set(new_r)),
        "risk_score_changes": rescored,
        "alerts_raised": [{"alert_id": k, **new_a[k]} for k in sorted(set(new_a) - set(old_a))],
        "alerts_cleared": [{"alert_id": k, **old_a[k]} for k in sorted(set(old_a) - set(new_a))],
        "budget_changes": budget,
        "health_changes": health,
        "entered_top": [k for k in new_top if k not in old_top],
        "left_top": [k for k in old_top if k not in new_top],
    }
    return {
        "counts": {k: len(v) for k, v in found.items()},
        **{k: v[:LIST_LIMIT] for k, v in found.items()},
    }


# --- helpers -----------------------------------------------------------------------------

_BUDGET_FIELDS = (
    "amount",
    "allocated",
    "committed",
    "open_commitments",
    "actual",
    "forecast_at_completion",
    "remaining",
)


def _figures_json(figures: ledger.BudgetFigures) -> dict[str, Any]:
    return {
        "amount": None if figures.amount is None else money(figures.amount),
        "allocated": money(figures.allocated),
        "unallocated": None if figures.unallocated is None else money(figures.unallocated),
        "committed": money(figures.committed),
        "open_commitments": money(figures.open_commitments),
        "actual": money(figures.actual),
        "forecast_at_completion": money(figures.forecast_at_completion),
        "remaining": money(figures.remaining),
        "burn_rate": None if figures.burn_rate is None else money(figures.burn_rate),
        "actual_by_period": {k: money(v) for k, v in figures.actual_by_period.items()},
    }


def current_grid(found: risk.RiskState) -> tuple[int, int]:
    """(probability, impact) on the 5 x 5 grid: the residual ones once reassessed."""
    if found.residual_probability is not None and found.residual_impact is not None:
        return found.residual_probability, found.residual_impact
    return found.probability, found.impact


def _heat(risks: Iterable[risk.RiskState]) -> list[list[int]]:
    heat = [[0] * 5 for _ in range(5)]
    for found in risks:
        probability, impact = current_grid(found)
        heat[probability - 1][impact - 1] += 1
    return heat


def _breakdown(breakdown: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in breakdown.items()}


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _round(value: Decimal | int) -> Decimal | int:
    return value.quantize(INDEX, rounding=ROUND_HALF_UP) if isinstance(value, Decimal) else value


_LIFECYCLE_WHY = ("rationale", "reason")


def _highlight_text(payload: FrozenModel, focus: str, rank: int | None) -> str | None:
    """A one-line description when the event is a decision about the focus project."""
    about = getattr(payload, "project_id", None)
    match payload:
        case pr.RankingDecided():
            entry = next((x for x in payload.ranking if x.project_id == focus), None)
            now = entry.rank if entry else None
            if now == rank:
                return None
            if now is None:
                return f"left the ranking of model {payload.model_id}"
            was = "" if rank is None else f" (was #{rank})"
            return f"ranked #{now} of {len(payload.ranking)}, score {entry.score:.3f}{was}"  # type: ignore[union-attr]
        case pr.SelectionDecided():
            outcome = payload.outcome
            if focus in outcome.selected:
                return f"selected in scenario {outcome.scenario.name}: {payload.rationale}"
            reason = next((n.reason for n in outcome.not_selected if n.project_id == focus), None)
            if reason is None:
                return None
            return f"not selected in scenario {outcome.scenario.name} ({reason})"
        case lg.AllocationTransferred():
            if focus not in (payload.from_project_id, payload.to_project_id):
                return None
            return (
                f"{payload.amount} {payload.currency} moved in {payload.pool_id} from "
                f"{payload.from_project_id} to {payload.to_project_id}: {payload.rationale}"
            )
        case lg.ActualCostRecorded() | lg.DemandAssigned() | lg.ActualHoursRecorded():
            return None
        case r.ProgressReported():
            if about != focus:
                return None
            return f"progress {payload.period}: {payload.percent_complete}% complete"
    if about != focus:
        return None
    why = next((str(v) for k in _LIFECYCLE_WHY if (v := getattr(payload, k, None))), "")
    name = type(payload).__name__
    match payload:
        case p.ProjectProposed():
            detail = f"proposed: {payload.name}, {payload.capex + payload.opex} {payload.currency}"
        case lg.BudgetAllocated() | lg.AllocationReleased():
            verb = "allocated" if isinstance(payload, lg.BudgetAllocated) else "released"
            detail = f"{payload.amount} {payload.currency} {verb} in {payload.pool_id}"
        case lg.CommitmentRecorded():
            detail = f"commitment {payload.external_ref}: {payload.amount} {payload.currency}"
        case lg.ProjectOverspent() | lg.ProjectOverspendCleared():
            detail = f"{name} in {payload.pool_id}: actual {payload.actual} of {payload.allocated}"
        case r.RiskIdentified() | r.RiskAssessed():
            detail = f"{name} {payload.risk_id}: score {payload.score}"
        case r.RiskResponseChosen():
            detail = f"response to {payload.risk_id}: {payload.strategy}, {payload.plan}"
        case r.RiskReassessed():
            detail = f"{payload.risk_id} reassessed: residual score {payload.residual_score}"
        case r.RiskClosed():
            detail = f"{payload.risk_id} closed"
        case r.AlertRaised():
            detail = f"alert raised ({payload.severity}): {payload.message or payload.metric}"
        case r.AlertCleared():
            detail = f"alert cleared: {payload.message or payload.metric}"
        case r.ProjectBaselineSet():
            detail = f"baseline revision {payload.revision}: BAC {payload.budget_at_completion}"
        case p.RealisedBenefitRecorded():
            replaced = payload.replaced_amount
            detail = f"realised benefit {payload.year}: {payload.amount}" + (
                "" if replaced is None else f" (replacing {replaced})"
            )
        case p.LessonLearnedRecorded():
            detail = f"lesson {payload.lesson_id} ({payload.category}): {payload.title}"
        case _:
            detail = name
    return f"{detail}: {why}" if why else detail


def fold(events: Iterable[RecordedEvent], cut: Cut | None = None, **kwargs: Any) -> PortfolioReport:
    """A report folded from `events` (in log order)."""
    return PortfolioReport(cut=cut or Cut(), **kwargs).apply_all(events)
