"""The risk monitor's read model: risks, baselines, alert rules and open alerts in memory,
folded from the facts it keeps (its own and the ledger's actual costs and thresholds), and
the readings each batch produced, for the rules to look at."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Connection, Integer, MetaData, String, Table, select

from contracts import ledger as lg
from contracts import projects as p
from contracts import risks as r
from contracts.base import FrozenModel, RecordedEvent
from contracts.registry import parse_payload
from domain.risk import (
    AlertRuleState,
    BaselineState,
    RiskState,
    alerts,
    evm,
    evolve_alert_rule,
    evolve_baseline,
    evolve_risk,
    highest_open_threat_score,
)
from shared.projection import CannotApply, Projection
from shared.projects_view import apply_project_event, projects_table

NAME = "risk"
LEDGER_FACTS = {
    p.ProjectProposed.__name__,
    lg.ActualCostRecorded.__name__,
    *(t.__name__ for t in lg.THRESHOLD_EVENTS),
}


class RiskProjection(Projection):
    name = NAME

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.projects = projects_table(self.metadata, NAME)
        self.facts = Table(
            "risk_facts",
            self.metadata,
            Column("position", Integer, primary_key=True, autoincrement=False),
            Column("event_id", String(64), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("schema_version", Integer, nullable=False),
            Column("payload", JSON, nullable=False),
        )
        self.reset()

    def reset(self) -> None:
        self.risks: dict[str, RiskState] = {}
        #: project id -> its risks' ids: a project's health reads only its own risks.
        self.risks_of: dict[str, set[str]] = defaultdict(set)
        self.baselines: dict[str, BaselineState] = {}
        self.rules: dict[str, AlertRuleState] = {}
        self.alerts = alerts.AlertState()
        self.raised: dict[str, r.AlertRaised] = {}
        self.actual_cost: dict[str, Decimal] = defaultdict(Decimal)
        #: project id -> programme id, for roll-ups and rules scoped to a programme.
        self.programme_of: dict[str, str] = {}
        #: What the last events changed, for the next evaluation of the rules.
        self.readings: list[alerts.Reading] = []
        #: Projects whose health may have changed, with the last cause: read once per
        #: batch (a month of invoices is one reading, not one per invoice).
        self.changed: dict[str, tuple[str, ...]] = {}
        #: Alert events this service appended and already folded in when it decided them.
        self.own_alert_events: set[str] = set()

    def load(self, conn: Connection) -> None:
        self.reset()
        for row in conn.execute(select(self.facts).order_by(self.facts.c.position)):
            event = parse_payload(row.event_type, row.payload, row.schema_version)
            self._fold(event, row.event_id)
        self.readings, self.changed = [], {}

    def apply(self, conn: Connection, event: RecordedEvent) -> None:
        apply_project_event(conn, self.projects, event)
        e = event.envelope
        if e.aggregate_type not in r.EVENT_AGGREGATE.values() and e.event_type not in LEDGER_FACTS:
            return
        payload = parse_payload(e.event_type, e.payload, e.schema_version)
        try:
            self._fold(payload, e.event_id)
        except (ValueError, KeyError, AttributeError) as error:
            raise CannotApply(f"{e.event_type} on {e.aggregate_id}: {error}") from error
        self.insert_later(
            self.facts,
            {
                "position": event.position,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "payload": e.payload,
            },
        )

    def fold_event(self, event: FrozenModel, event_id: str) -> None:
        """Fold one event without a database, e.g. to replay history for a backtest."""
        self._fold(event, event_id)

    def _fold(self, event: FrozenModel, event_id: str) -> None:
        cause = (event_id,)
        match event:
            case r.AlertRaised() | r.AlertCleared():
                if event_id in self.own_alert_events:
                    self.own_alert_events.discard(event_id)
                else:
                    self.remember_alert(event)
            case r.AlertRuleDefined() | r.AlertRuleDisabled():
                rule_id = event.rule_id
                self.rules[rule_id] = evolve_alert_rule(self.rules.get(rule_id), event)
            case p.ProjectProposed():
                if event.programme is not None:
                    self.programme_of[event.project_id] = event.programme
            case lg.ActualCostRecorded():
                self.actual_cost[event.project_id] += event.amount
                self._project_changed(event.project_id, cause)
            case lg.PoolThresholdCrossed() | lg.PoolThresholdCleared():
                self.readings.append(
                    alerts.Reading(
                        metric=r.Metric.BUDGET_CONSUMPTION,
                        subject_id=event.pool_id,
                        value=float(event.consumption_percent),
                        aggregate=(lg.POOL, event.pool_id),
                        figures={k: str(v) for k, v in event.model_dump().items()},
                        caused_by=cause,
                    )
                )
            case lg.RoleOverAllocated() | lg.RoleOverAllocationCleared():
                percent = float(event.demand / event.capacity * 100) if event.capacity else None
                self.readings.append(
                    alerts.Reading(
                        metric=r.Metric.OVER_ALLOCATION,
                        subject_id=f"{event.role}/{event.period}",
                        value=percent,
                        aggregate=(lg.CAPACITY, event.role),
                        figures={k: str(v) for k, v in event.model_dump().items()},
                        caused_by=cause,
                    )
                )
            case _ if type(event) in r.RISK_EVENTS:
                risk_id: str = event.risk_id  # type: ignore[attr-defined]
                risk = evolve_risk(self.risks.get(risk_id), event)
                self.risks[risk_id] = risk
                if risk.project_id is not None:
                    self.risks_of[risk.project_id].add(risk_id)
                programme = self.programme_of.get(risk.project_id or "")
                self.readings.append(
                    alerts.risk_reading(risk, programme_id=programme, caused_by=cause)
                )
                if risk.project_id is not None:
                    self._project_changed(risk.project_id, cause)
            case _ if type(event) in r.BASELINE_EVENTS:
                project_id: str = event.project_id  # type: ignore[attr-defined]
                self.baselines[project_id] = evolve_baseline(self.baselines.get(project_id), event)
                self._project_changed(project_id, cause)

    def remember_alert(self, event: r.AlertRaised | r.AlertCleared) -> None:
        self.alerts = alerts.evolve_alerts(self.alerts, event)
        if isinstance(event, r.AlertRaised):
            self.raised[event.alert_id] = event
        else:
            self.raised.pop(event.alert_id, None)

    def health(self, project_id: str) -> evm.Health | None:
        baseline = self.baselines.get(project_id)
        if baseline is None:
            return None
        return evm.project_health(
            baseline,
            self.actual_cost.get(project_id, Decimal(0)),
            top_risk_score=highest_open_threat_score(
                (self.risks[i] for i in self.risks_of.get(project_id, ())), project_id
            ),
        )

    def _project_changed(self, project_id: str, cause: tuple[str, ...]) -> None:
        self.changed.pop(project_id, None)
        self.changed[project_id] = cause

    def portfolio_health(self) -> evm.Health:
        """Worst wins: projects into their programmes, programmes into the portfolio."""
        projects = [h for pid in sorted(self.baselines) if (h := self.health(pid)) is not None]
        programmes: dict[str, list[str]] = defaultdict(list)
        for project_id, programme in sorted(self.programme_of.items()):
            programmes[programme].append(project_id)
        return evm.portfolio_health(projects, programmes)

    def take_readings(self) -> list[alerts.Reading]:
        for project_id, cause in self.changed.items():
            found = self.health(project_id)
            if found is not None:
                self.readings.extend(
                    alerts.project_readings(
                        found, programme_id=self.programme_of.get(project_id), caused_by=cause
                    )
                )
        taken, self.readings, self.changed = self.readings, [], {}
        return taken

    def rules_in_force(self) -> list[AlertRuleState]:
        """The default rules (CPI, SPI, risk score, budget consumption, over-allocation),
        each replaced by a rule defined by command under the same id."""
        defaults = {rule.rule_id: rule for rule in alerts.default_rules()}
        return list((defaults | self.rules).values())


def open_alerts(projection: RiskProjection) -> list[dict[str, Any]]:
    return [
        projection.raised[a.alert_id].model_dump(mode="json")
        for _, a in sorted(projection.alerts.open.items())
        if a.alert_id in projection.raised
    ]
