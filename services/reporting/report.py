"""The portfolio report's fold, pure: the log folded into what stakeholders are told.

No I/O and no clock. `PortfolioReport.apply` folds one recorded event the way the services
fold it, with their own pure functions:

- projects: `domain.projects.profile_from` / `evolve_profile` (the same profile
  prioritization ranks), plus what the report alone keeps (facts.py);
- objectives and the ranking inputs: `PortfolioView.apply` (prioritization);
- budget pools and role capacity: `domain.ledger`;
- risks and baselines: `domain.risk.evolve_risk` / `evolve_baseline`, health with
  `domain.risk.evm.project_health` on the actual costs (as the risk monitor does);
- alerts: `domain.risk.alerts.evolve_alerts` (raised, revised under a redefined rule,
  cleared);
- stakeholders: `domain.strategy.evolve_stakeholder` (assessment, feedback, plans);
- the latest `RankingDecided` (or, before any, the ranking `decide_ranking` would decide);
- the latest `PortfolioReportPublished`: what the next report's changes are measured from.

A `Cut` bounds the fold by recorded time (`as_of`) and/or business time (`occurred_as_of`):
an event outside it is not folded. An event the report cannot use (an unknown type, an
event before the one that creates its aggregate, as can happen when cutting by business
time) is counted as skipped with its reason, never raised.

What is built from the fold lives beside it: the sections (figures.py), the portfolio
report and a project's scorecard (documents.py), continuous improvement (improvement.py),
the changes between two summaries (diff.py).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from sys import intern
from typing import Any

from pydantic import ValidationError

from contracts import ledger as lg
from contracts import notify
from contracts import objectives as o
from contracts import prioritization as pr
from contracts import projects as p
from contracts import risks as r
from contracts import stakeholders as sh
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import EVENTS, UnknownEventType, payload_of
from contracts.reports import PortfolioReportPublished, ReportDeadLettered, ReportDelivered
from domain import deciders, ledger, risk
from domain.interning import shared_amount
from domain.ledger.sums import sums_only
from domain.prioritization import PortfolioView, decide_ranking
from domain.projects import ProjectProfile, evolve_profile, profile_from
from domain.risk import alerts as risk_alerts
from domain.risk import evm
from domain.strategy import StakeholderState
from services.reporting.facts import (
    HIGHLIGHTS,
    TOP,
    ZERO,
    Cut,
    EacPoint,
    Highlight,
    Lesson,
    ObjectiveFacts,
    ProjectFacts,
    RaisedAlert,
    RevisedAlert,
    iso,
    money,
)
from services.reporting.highlights import highlight_text
from shared import chain

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
    *sh.EVENTS,
)
USED_EVENTS = frozenset(t.__name__ for t in _USED)
PUBLISHED = PortfolioReportPublished.__name__
#: What became of a delivery (a report or an alert sent to someone): not the portfolio's
#: content, so it neither changes a report nor makes a scheduled publication due.
DELIVERIES = frozenset(
    t.__name__
    for t in (
        ReportDelivered,
        ReportDeadLettered,
        notify.AlertDelivered,
        notify.AlertDeadLettered,
    )
)
#: The model whose ranking a report shows when it has one.
DEFAULT_MODEL = "default"


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
    revised: dict[str, RevisedAlert] = field(default_factory=dict)
    stakeholders: dict[str, StakeholderState] = field(default_factory=dict)
    rankings: dict[str, tuple[int, pr.RankingDecided]] = field(default_factory=dict)
    published: PortfolioReportPublished | None = None
    published_position: int = 0
    #: The log-wide hash-chain head after the last event read (shared/chain.py), and where.
    chain_head: str = chain.GENESIS
    chain_position: int = 0
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
    #: Continuous improvement (improvement.py): every progress report (for the EAC series),
    #: the lessons learned in log order. Actual cost by project and month is the pools'
    #: (`actual_cost_by_period`), not kept twice.
    eac_points: dict[str, list[EacPoint]] = field(default_factory=dict)
    lessons: list[Lesson] = field(default_factory=list)
    _focus_rank: int | None = None
    #: The ranking computed when none was decided yet, and the position it was computed at.
    _computed: tuple[int, pr.RankingDecided] | None = None

    # --- folding ---------------------------------------------------------------------

    def apply(self, event: RecordedEvent) -> bool:
        """Fold one event if the cut includes it; True when it did."""
        e = event.envelope
        if event.position == self.chain_position + 1:  # every event read, in log order
            self.chain_head = chain.advance(self.chain_head, event.position, chain.link_of(e))
            self.chain_position = event.position
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
        if e.event_type in DELIVERIES:
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
        ledger_aggregate = _LEDGER_AGGREGATE.get(kind)
        if ledger_aggregate is not None:  # most of a log (invoices, timesheets): tried first
            self._fold_ledger(ledger_aggregate, payload, e.aggregate_id)
        else:
            self._fold_other(kind, payload, event)
        if e.aggregate_type == p.AGGREGATE and not isinstance(payload, p.ProjectProposed):
            found = self.projects[e.aggregate_id]
            found.profile = self._shared_profile(e.aggregate_id) or evolve_profile(
                found.profile, payload
            )
            found.last_position = event.position

    def _shared_profile(self, project_id: str) -> ProjectProfile | None:
        """The view's profile of the project: it has just folded the same event with the
        same function, so it is this one (kept once, not twice: a profile per project)."""
        return self.view.candidates.get(project_id)

    def _fold_ledger(self, aggregate: str, payload: FrozenModel, aggregate_id: str) -> None:
        states: dict[str, Any] = self.pools if aggregate == lg.POOL else self.roles
        states[aggregate_id] = sums_only(deciders.evolve(states.get(aggregate_id), payload))
        if isinstance(payload, lg.ActualCostRecorded):
            project_id, amount = payload.project_id, payload.amount
            self.actual_cost[project_id] += amount

    def actual_cost_by_period(self, project_id: str | None = None) -> dict[str, dict[str, Decimal]]:
        """Each project's actual cost by month (of one project only: `project_id`), summed
        across the pools that booked it: the pools hold every project's month already."""
        found: dict[str, dict[str, Decimal]] = {}
        for pool in self.pools.values():
            for (project, period), amount in pool.actual_cells.items():
                if project_id is not None and project != project_id:
                    continue
                by_period = found.get(project)
                if by_period is None:
                    by_period = found[project] = {}
                by_period[period] = by_period.get(period, ZERO) + amount
        return found

    def _fold_other(
        self, kind: type[FrozenModel], payload: FrozenModel, event: RecordedEvent
    ) -> None:
        e = event.envelope
        match payload:
            case p.ProjectProposed():
                profile = self._shared_profile(payload.project_id) or profile_from(payload)
                self.projects[payload.project_id] = ProjectFacts(
                    profile=profile,
                    proposed=profile,
                    proposed_at=e.recorded_at,
                    last_position=event.position,
                    programme=payload.programme,
                )
            case p.ProjectStarted():
                self.projects[payload.project_id].started_on = payload.started_on
            case p.ProjectCompleted():
                self.projects[payload.project_id].completed_on = payload.completed_on
            case p.RealisedBenefitRecorded():
                self.projects[payload.project_id].realised[payload.year] = payload.amount
            case p.LessonLearnedRecorded():
                self.lessons.append(
                    Lesson(
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
                self._evolve_alerts(payload)
                self.raised[payload.alert_id] = RaisedAlert(payload, event.position, e.recorded_at)
            case r.AlertRevised():
                self._evolve_alerts(payload)
                if payload.alert_id in self.raised:
                    self.revised[payload.alert_id] = RevisedAlert(
                        payload, event.position, e.recorded_at
                    )
            case r.AlertCleared():
                self._evolve_alerts(payload)
                self.raised.pop(payload.alert_id, None)
                self.revised.pop(payload.alert_id, None)
            case _ if kind in sh.EVENTS:
                sid: str = payload.stakeholder_id  # type: ignore[attr-defined]
                self.stakeholders[sid] = deciders.evolve(self.stakeholders.get(sid), payload)
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

    def _evolve_alerts(self, event: r.AlertRaised | r.AlertRevised | r.AlertCleared) -> None:
        """`evolve_alerts` on the one (rule, subject) the event names, written into the
        report's own mappings in place: the state evolving the whole would give (same
        entries, same order), without copying every open alert on every alert event."""
        state = self.alerts
        opened, episodes = state.open, state.episodes
        if type(opened) is not dict or type(episodes) is not dict:
            self.alerts = risk_alerts.evolve_alerts(state, event)
            return
        key = (event.rule_id, event.subject_id)
        after = risk_alerts.evolve_alerts(
            risk_alerts.AlertState(
                open={key: opened[key]} if key in opened else {},
                episodes={key: episodes[key]} if key in episodes else {},
            ),
            event,
        )
        for mine, theirs in ((opened, after.open), (episodes, after.episodes)):
            if key in theirs:
                mine[key] = theirs[key]
            else:
                mine.pop(key, None)

    def _eac_point(self, progress: r.ProgressReported, position: int) -> None:
        """A progress report, for the EAC series (a later report for the same month
        replaces it)."""
        baseline = self.baselines[progress.project_id]
        points = [
            x for x in self.eac_points.get(progress.project_id, []) if x.period != progress.period
        ]
        points.append(
            EacPoint(
                period=intern(progress.period),
                position=position,
                percent_complete=shared_amount(progress.percent_complete),
                bac=baseline.budget_at_completion,
                ev=progress.earned_value,
            )
        )
        self.eac_points[progress.project_id] = sorted(points, key=lambda x: x.period)

    def _highlight(self, payload: FrozenModel, event: RecordedEvent) -> None:
        what = highlight_text(payload, self.focus or "", self._focus_rank)
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

    # --- what every view of the fold reads ----------------------------------------------

    def cut_json(self) -> dict[str, Any]:
        return {
            **self.cut.as_json(),
            "position": self.position,
            "content_position": self.content_position,
            "events": self.events,
            "skipped": self.skipped,
            "skipped_reasons": list(self.skipped_reasons),
            "first_recorded_at": iso(self.first_recorded_at),
            "last_recorded_at": iso(self.last_recorded_at),
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

    def open_alerts(self) -> list[dict[str, Any]]:
        """The open alerts as they hold now: a revised one under its rule's current
        revision (threshold, clear level, severity) with the value it was revised at."""
        found = []
        for _, alert in sorted(self.alerts.open.items()):
            raised = self.raised.get(alert.alert_id)
            if raised is None:
                continue
            event = raised.event
            revised = self.revised.get(alert.alert_id)
            latest: r.AlertRaised | r.AlertRevised = event if revised is None else revised.event
            found.append(
                {
                    "alert_id": event.alert_id,
                    "severity": str(alert.severity),
                    "metric": str(event.metric),
                    "rule_id": event.rule_id,
                    "rule_revision": alert.rule_revision,
                    "subject_id": event.subject_id,
                    "project_id": event.project_id,
                    "value": event.value if latest.value is None else latest.value,
                    "value_shown": latest.value_shown or event.value_shown,
                    "threshold": latest.threshold,
                    "clear_at": alert.clear_at,
                    "message": latest.message or event.message,
                    "raised_value": event.value,
                    "raised_position": raised.position,
                    "raised_at": iso(raised.recorded_at),
                    "revised_position": None if revised is None else revised.position,
                    "revised_at": None if revised is None else iso(revised.recorded_at),
                }
            )
        return found

    def summary(
        self,
        healths: Mapping[str, evm.Health] | None = None,
        pool_rows: Mapping[tuple[str, ...], ledger.BudgetFigures] | None = None,
    ) -> dict[str, Any]:
        """What a published report records and the next one's changes are measured from
        (`healths`, `pool_rows`: the project health and budget by pool, when computed)."""
        healths = self.project_health() if healths is None else healths
        rows = pool_rows
        if rows is None:
            rows = ledger.budget_report(self.pools.values(), ledger.Grouping.POOL)
        reserve = risk.contingency(self.risks.values())
        found = self.latest_ranking()
        open_alerts = self.open_alerts()
        return {
            **self.cut.as_json(),
            "position": self.position,
            "content_position": self.content_position,
            "projects": {k: str(v.profile.status) for k, v in sorted(self.projects.items())},
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
            "generated_at": iso(self.published.generated_at),
            "rationale": self.published.rationale,
        }


#: The ledger's event types and the aggregate (pool or role) each is on.
_LEDGER_AGGREGATE: dict[type[FrozenModel], str] = dict(lg.EVENT_AGGREGATE)


def fold(events: Iterable[RecordedEvent], cut: Cut | None = None, **kwargs: Any) -> PortfolioReport:
    """A report folded from `events` (in log order)."""
    return PortfolioReport(cut=cut or Cut(), **kwargs).apply_all(events)
