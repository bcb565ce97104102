"""The live alert monitor, pure: every input of every metric folded from the facts, every
rule evaluated after each fact that moves one of them. No clock, no I/O.

At every log position the open alerts are exactly the rules evaluated, with hysteresis, on
the figures as they stand there:

- budget consumption per pool: (actual costs + open commitments) / the pool's amount x 100
  (allocations do not count), folded with `domain.ledger.evolve_pool` from the pool's
  facts (an invoice with `book_invoice`: the same totals, without the ledger's cells);
  the ledger's own threshold events are not an input;
- over-allocation per role and month: demand / (capacity - time off) x 100;
- earned value per project (baseline, progress, the actual costs of every pool), the EMV
  of its open threats, and each risk's current score.

A fact moves the readings it touches (a pool, a role's month, a project, a risk) and each
is evaluated against the enabled rules of its metric. A rule defined, redefined or disabled
is evaluated against every subject of its metric: an open alert that no longer holds under
the new revision clears (with the reason), one that still holds is `AlertRevised` to it.
A project completed, cancelled or rejected clears its alerts (`project closed`) and raises
none after. An open alert carries the current value as it moves, without another event.

Because decisions are made one fact at a time, never per batch, the alerts are the same
however the log was read: a function of the facts and their order.

Most facts are invoices that move a pool's and a project's readings without deciding
anything: a moved reading is evaluated from its value first (`Decision.observe`), an open
alert takes its figures lazily (made when shown), and the whole reading is built only when
a rule raises or clears; a project's earned value reads its baseline's side (`evm.Basis`)
kept until the baseline moves.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from contracts import ledger as lg
from contracts import projects as p
from contracts import risks as r
from contracts.base import FrozenModel
from domain.ledger.capacity import CapacityLine, CapacityState, evolve_capacity
from domain.ledger.persistent import RefSet, with_changes
from domain.ledger.pools import PoolState, evolve_pool
from domain.risk import evm
from domain.risk.alerts import (
    AlertEvent,
    LazyFigures,
    Reading,
    default_rules,
    health_figures,
    project_readings,
    risk_reading,
)
from domain.risk.baselines import BaselineState, evolve_baseline
from domain.risk.decision import Decision, LiveAlert
from domain.risk.register import RiskState, contingency, evolve_risk, highest_open_threat_score
from domain.risk.rules import AlertRuleState, evolve_alert_rule

HUNDRED = Decimal(100)
#: The monitor keeps a pool's figures, not the reference of every invoice it has seen.
NO_REFS = RefSet()
#: Projects in these statuses are closed: their alerts clear, and they raise none.
CLOSED_STATUSES = p.TERMINAL_STATUSES
PROJECT_METRICS = frozenset(m for m, kind in r.SUBJECT_KIND.items() if kind == "project")
#: The project metrics read from its earned value (the health), not its risks.
EVM_METRICS = PROJECT_METRICS - {r.Metric.THREAT_EMV}
#: The order of a project's EVM readings (`domain.risk.alerts.project_readings`).
EVM_ORDER = (
    r.Metric.SCHEDULE_SLIP_DAYS,
    r.Metric.CPI,
    r.Metric.SPI,
    r.Metric.TCPI,
    r.Metric.CV,
    r.Metric.SV,
    r.Metric.VAC,
)
ZERO = Decimal(0)
LIFECYCLE_EVENTS: tuple[type[FrozenModel], ...] = (
    p.ProjectSubmittedForReview,
    p.ProjectApproved,
    p.ProjectRejected,
    p.ProjectStarted,
    p.ProjectPutOnHold,
    p.ProjectResumed,
    p.ProjectCompleted,
    p.ProjectCancelled,
)
#: The events the monitor folds (everything else in the log is not an input).
INPUT_EVENTS: frozenset[type[FrozenModel]] = frozenset(
    {
        p.ProjectProposed,
        *LIFECYCLE_EVENTS,
        *(e for e in lg.EVENTS if e not in lg.THRESHOLD_EVENTS),
        *r.RISK_EVENTS,
        *r.BASELINE_EVENTS,
        *r.ALERT_RULE_EVENTS,
    }
)


@dataclass
class ProjectInfo:
    status: p.ProjectStatus
    programme: str | None
    category: str


def _pool_figures(
    consumed: Decimal, actual: Decimal, open_commitments: Decimal, amount: Decimal, currency: str
) -> dict[str, r.Figure]:
    return {
        "consumed": str(consumed),
        "actual": str(actual),
        "open_commitments": str(open_commitments),
        "amount": str(amount),
        "currency": currency,
    }


def _role_figures(
    role: str, period: str, demand: Decimal, line: CapacityLine | None, net: Decimal, unit: object
) -> dict[str, r.Figure]:
    return {
        "role": role,
        "period": period,
        "demand": str(demand),
        "capacity": str(line.amount if line else 0),
        "time_off": str(line.time_off if line else 0),
        "net_capacity": str(net),
        "unit": str(unit),
    }


def _project_figures(
    baseline: BaselineState, ac: Decimal, top_score: int | None, basis: evm.Basis
) -> dict[str, r.Figure]:
    return health_figures(evm.project_health(baseline, ac, top_risk_score=top_score, basis=basis))


#: A rule as `Decision.observe` checks it: the rule, its id, whether its scope is the
#: portfolio, `holds` as an operator with the threshold, and `clears` (low is bad, clear at).
_Watch = tuple[AlertRuleState, str, bool, Callable[[float, float], bool], float, bool, float]
_HOLDS: dict[r.Comparison, Callable[[float, float], bool]] = {
    r.Comparison.LT: operator.lt,
    r.Comparison.LE: operator.le,
    r.Comparison.GT: operator.gt,
    r.Comparison.GE: operator.ge,
}


def _watch(rule: AlertRuleState) -> _Watch:
    comparison = r.Comparison(rule.comparison)
    return (
        rule,
        rule.rule_id,
        rule.scope == r.Scope.PORTFOLIO,
        _HOLDS[comparison],
        rule.threshold,
        comparison.low_is_bad,
        rule.clear_at,
    )


def book_invoice(pool: PoolState, event: lg.ActualCostRecorded) -> PoolState:
    """`evolve_pool` of an invoice on a defined pool, reduced to the figures the monitor
    reads: the pool's actual total and the commitment the invoice settles. Its cells by
    project and month and its invoice references are the ledger's (they stay empty here)."""
    changes: dict[str, object] = {"version": pool.version + 1, "actual": pool.actual + event.amount}
    key = event.commitment_ref
    if key is not None and key in pool.commitments:
        line = pool.commitments[key]
        settled = with_changes(line, settled=line.settled + event.amount)
        changes["commitments"] = pool.commitments.set(key, settled)
        changes["open_commitments"] = pool.open_commitments - line.open + settled.open
    return with_changes(pool, **changes)


class AlertMonitor:
    """Folds the inputs of every metric and decides the alert events, one fact at a time."""

    def __init__(self) -> None:
        self.defaults = {rule.rule_id: rule for rule in default_rules()}
        self.rules = dict(self.defaults)
        self.open: dict[tuple[str, str], LiveAlert] = {}
        #: The keys of `open` by the alert's project (kept by `Decision.raise_` and `clear`).
        self.open_of_project: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.episodes: dict[tuple[str, str], int] = {}
        self.projects: dict[str, ProjectInfo] = {}
        self.pools: dict[str, PoolState] = {}
        self.roles: dict[str, CapacityState] = {}
        self.risks: dict[str, RiskState] = {}
        self.risks_of: dict[str, set[str]] = defaultdict(set)
        self.baselines: dict[str, BaselineState] = {}
        #: Each baseline's side of the project's earned value, kept until it changes.
        self.bases: dict[str, evm.Basis] = {}
        #: Each project's worst open threat score, kept until a risk changes.
        self.top_scores: dict[str, int | None] = {}
        self.actual_cost: dict[str, Decimal] = defaultdict(Decimal)

    @property
    def rules(self) -> dict[str, AlertRuleState]:
        return self._rules

    @rules.setter
    def rules(self, rules: dict[str, AlertRuleState]) -> None:
        self._rules = rules
        self._by_metric: dict[r.Metric, list[AlertRuleState]] | None = None
        self._ruled_metrics: frozenset[r.Metric] | None = None
        self._watches: dict[r.Metric, list[_Watch]] = {}
        self._evm_ruled: list[r.Metric] = []

    def rules_for(self, metric: r.Metric) -> list[AlertRuleState]:
        """The enabled rules of a metric, by rule id: kept between facts (a reading is
        evaluated several times per fact), computed again after a rule changes."""
        if self._by_metric is None:
            by_metric: dict[r.Metric, list[AlertRuleState]] = defaultdict(list)
            for rule in sorted(self._rules.values(), key=lambda x: x.rule_id):
                if rule.enabled:
                    by_metric[rule.metric].append(rule)
            self._by_metric = dict(by_metric)
            self._ruled_metrics = frozenset(by_metric)
            self._watches = {m: [_watch(x) for x in found] for m, found in by_metric.items()}
            self._evm_ruled = [m for m in EVM_ORDER if m in by_metric]
        return self._by_metric.get(metric, [])

    def watches(self, metric: r.Metric) -> list[_Watch]:
        """`rules_for(metric)` as `Decision.observe` checks them."""
        if self._by_metric is None:
            self.rules_for(metric)
        return self._watches.get(metric, [])

    def _ruled(self) -> frozenset[r.Metric]:
        """The metrics some enabled rule watches: a reading of any other changes nothing
        (an open alert exists only under an enabled rule)."""
        if self._by_metric is None:
            self.rules_for(r.Metric.CPI)
        assert self._ruled_metrics is not None
        return self._ruled_metrics

    # --- folding -----------------------------------------------------------------------------

    def fold(
        self,
        event: FrozenModel,
        cause_id: str,
        position: int | None = None,
        at: datetime | None = None,
    ) -> list[AlertEvent]:
        """Fold one fact; the alert events it calls for, in order (already applied)."""
        decision = Decision(self, (cause_id,), position, at)
        if type(event) is lg.ActualCostRecorded:  # most of the log: no other case matches it
            return self._pool_fact(decision, event)
        match event:
            case r.AlertRuleDefined() | r.AlertRuleDisabled():
                previous = self.rules.get(event.rule_id)
                defined = (
                    self.rules.get(event.rule_id) if event.rule_id not in self.defaults else None
                )
                base = defined if isinstance(event, r.AlertRuleDisabled) else None
                if isinstance(event, r.AlertRuleDisabled):
                    base = previous
                rule = evolve_alert_rule(base, event)
                if isinstance(event, r.AlertRuleDefined) and previous is not None:
                    rule = replace(rule, version=previous.version + 1)
                self.rules[event.rule_id] = rule
                self._by_metric = None
                decision.rule_changed(rule)
                return decision.events
            case p.ProjectProposed():
                self.projects[event.project_id] = ProjectInfo(
                    p.ProjectStatus.PROPOSED, event.programme, event.category
                )
                return []
            case _ if type(event) in r.RISK_EVENTS:
                risk_id: str = event.risk_id  # type: ignore[attr-defined]
                risk = evolve_risk(self.risks.get(risk_id), event)
                self.risks[risk_id] = risk
                self.top_scores.clear()
                decision.reading(self.risk_reading(risk))
                if risk.project_id is not None:
                    self.risks_of[risk.project_id].add(risk_id)
                    self.project_moved(decision, risk.project_id)
                return decision.events
            case _ if type(event) in r.BASELINE_EVENTS:
                project_id: str = event.project_id  # type: ignore[attr-defined]
                self.baselines[project_id] = evolve_baseline(self.baselines.get(project_id), event)
                self.bases.pop(project_id, None)
                self.project_moved(decision, project_id)
                return decision.events
            case _ if type(event) in lg.THRESHOLD_EVENTS:
                return []  # the ledger's own view; the monitor computes the figures itself
            case _ if lg.EVENT_AGGREGATE.get(type(event)) == lg.POOL:
                return self._pool_fact(decision, event)
            case _ if lg.EVENT_AGGREGATE.get(type(event)) == lg.CAPACITY:
                role_name: str = event.role  # type: ignore[attr-defined]
                if isinstance(event, lg.ActualHoursRecorded) and role_name in self.roles:
                    return []  # hours are no metric's input (before CapacitySet they raise)
                role = evolve_capacity(self.roles.get(role_name), event)
                self.roles[role_name] = role
                if isinstance(event, lg.CapacitySet | lg.DemandAssigned):
                    self.role_moved(decision, role, event.period)
                return decision.events
        status = p.status_after(event, None)
        subject = getattr(event, "project_id", None)
        if status is not None and isinstance(subject, str):
            info = self.projects.setdefault(
                subject, ProjectInfo(status, programme=None, category="")
            )
            info.status = status
            if status in CLOSED_STATUSES:
                decision.project_closed(subject)
        return decision.events

    def _pool_fact(self, decision: Decision, event: FrozenModel) -> list[AlertEvent]:
        pool_id: str = event.pool_id  # type: ignore[attr-defined]
        pool = self.pools.get(pool_id)
        if isinstance(event, lg.ActualCostRecorded) and pool is not None:
            pool = book_invoice(pool, event)
        else:
            pool = evolve_pool(pool, event)
            if pool.actual_refs.levels:  # duplicates are the ledger's to tell apart
                pool = with_changes(pool, actual_refs=NO_REFS)
        self.pools[pool_id] = pool
        self.pool_moved(decision, pool)
        if isinstance(event, lg.ActualCostRecorded):
            self.actual_cost[event.project_id] += event.amount
            self.project_moved(decision, event.project_id)
        return decision.events

    # --- readings -----------------------------------------------------------------------------

    def is_closed(self, project_id: str | None) -> bool:
        info = self.projects.get(project_id or "")
        return info is not None and info.status in CLOSED_STATUSES

    def programme_of(self, project_id: str | None) -> str | None:
        info = self.projects.get(project_id or "")
        return None if info is None else info.programme

    def pool_reading(self, pool: PoolState) -> Reading:
        consumed = pool.actual + pool.open_commitments
        value = float(consumed * HUNDRED / pool.amount) if pool.amount > 0 else None
        return Reading(
            metric=r.Metric.BUDGET_CONSUMPTION,
            subject_id=pool.pool_id,
            value=value,
            aggregate=(lg.POOL, pool.pool_id),
            figures=_pool_figures(
                consumed, pool.actual, pool.open_commitments, pool.amount, pool.currency
            ),
            gone=pool.closed,
            gone_reason="pool closed",
            subject_kind="pool",
            pool_id=pool.pool_id,
        )

    def role_reading(self, role: CapacityState, period: str) -> Reading:
        net, demand = role.net_capacity(period), role.demand_in(period)
        line = role.capacity.get(period)
        return Reading(
            metric=r.Metric.OVER_ALLOCATION,
            subject_id=f"{role.role}/{period}",
            value=float(demand * HUNDRED / net) if net > 0 else None,
            aggregate=(lg.CAPACITY, role.role),
            figures=_role_figures(role.role, period, demand, line, net, role.unit),
            subject_kind="role_month",
        )

    def risk_reading(self, risk: RiskState) -> Reading:
        reading = risk_reading(risk, programme_id=self.programme_of(risk.project_id))
        if self.is_closed(risk.project_id):
            return replace(reading, gone=True, gone_reason=r.PROJECT_CLOSED, subject_kind="risk")
        return replace(reading, subject_kind="risk", gone_reason="risk closed")

    def health(self, project_id: str) -> evm.Health | None:
        baseline = self.baselines.get(project_id)
        if baseline is None:
            return None
        return evm.project_health(
            baseline,
            self.actual_cost.get(project_id, Decimal(0)),
            top_risk_score=self.top_score(project_id),
            basis=self.basis(project_id),
        )

    def threat_emv(self, project_id: str) -> Decimal:
        found = contingency(self.risks[i] for i in self.risks_of.get(project_id, ()))
        return found.threats_by_project.get(project_id, Decimal("0.00"))

    def project_readings(
        self, project_id: str, metrics: frozenset[r.Metric] | None = None
    ) -> list[Reading]:
        """A project's readings; only those of `metrics` when given (what a fact needs
        evaluated), so the figures no rule watches are not computed on every invoice."""
        info = self.projects.get(project_id)
        programme = None if info is None else info.programme
        category = None if info is None else info.category
        gone = self.is_closed(project_id)
        readings: list[Reading] = []
        found = (
            None if metrics is not None and not metrics & EVM_METRICS else self.health(project_id)
        )
        if found is not None:
            readings += project_readings(found, programme_id=programme, category=category)
            if metrics is not None:
                readings = [x for x in readings if x.metric in metrics]
        if self.risks_of.get(project_id) and (metrics is None or r.Metric.THREAT_EMV in metrics):
            readings.append(
                Reading(
                    metric=r.Metric.THREAT_EMV,
                    subject_id=project_id,
                    value=self.threat_emv(project_id),
                    project_id=project_id,
                    programme_id=programme,
                    category=category,
                )
            )
        return [
            with_changes(x, subject_kind="project", gone=gone, gone_reason=r.PROJECT_CLOSED)
            for x in readings
        ]

    # --- what a fact moves, evaluated from the values first ------------------------------------
    # Most facts move a reading that decides nothing (no rule holds, none clears) or only
    # carries an open alert's value: the value is computed, the figures only for an open
    # alert (lazily, made when shown), the whole reading only when an alert is raised or
    # cleared. `Decision.observe` decides exactly what `Decision.evaluate` decides on the
    # whole reading.

    def pool_moved(self, decision: Decision, pool: PoolState) -> None:
        metric = r.Metric.BUDGET_CONSUMPTION
        if not self.rules_for(metric):
            return
        actual, open_commitments, amount = pool.actual, pool.open_commitments, pool.amount
        consumed = actual + open_commitments
        value = float(consumed * HUNDRED / amount) if amount > 0 else None
        decision.observe(
            metric,
            pool.pool_id,
            value,
            pool.closed,
            None,
            None,
            None,
            lambda: LazyFigures(
                _pool_figures, consumed, actual, open_commitments, amount, pool.currency
            ),
            lambda: self.pool_reading(pool),
        )

    def role_moved(self, decision: Decision, role: CapacityState, period: str) -> None:
        metric = r.Metric.OVER_ALLOCATION
        if not self.rules_for(metric):
            return
        net, demand = role.net_capacity(period), role.demand_in(period)
        line = role.capacity.get(period)
        decision.observe(
            metric,
            f"{role.role}/{period}",
            float(demand * HUNDRED / net) if net > 0 else None,
            False,
            None,
            None,
            None,
            lambda: LazyFigures(_role_figures, role.role, period, demand, line, net, role.unit),
            lambda: self.role_reading(role, period),
        )

    def basis(self, project_id: str) -> evm.Basis | None:
        basis = self.bases.get(project_id)
        if basis is None:
            baseline = self.baselines.get(project_id)
            if baseline is None:
                return None
            basis = self.bases[project_id] = evm.project_basis(baseline)
        return basis

    def top_score(self, project_id: str) -> int | None:
        """The project's worst open threat score (its RAG's risk indicator)."""
        if project_id in self.top_scores:
            return self.top_scores[project_id]
        found = self.top_scores[project_id] = highest_open_threat_score(
            (self.risks[i] for i in self.risks_of.get(project_id, ())), project_id
        )
        return found

    def project_moved(self, decision: Decision, project_id: str) -> None:
        """A project's readings of the metrics some rule watches, evaluated in the order of
        `project_readings`."""
        metrics = self._ruled()
        evm_metrics = self._evm_ruled  # kept with `metrics`
        basis = self.basis(project_id) if evm_metrics else None
        ac = self.actual_cost.get(project_id, ZERO)
        if basis is not None and not (basis.valid and ac.is_finite() and ac >= 0):
            # `earned_value` refuses these: the whole reading raises as it always did.
            decision.readings(self.project_readings(project_id, metrics))
            return
        if basis is not None:
            info = self.projects.get(project_id)
            programme = None if info is None else info.programme
            category = None if info is None else info.category
            gone = info is not None and info.status in CLOSED_STATUSES
            baseline = self.baselines[project_id]
            made: list[LazyFigures] = []

            def figures() -> LazyFigures:
                if not made:
                    made.append(
                        LazyFigures(
                            _project_figures, baseline, ac, self.top_score(project_id), basis
                        )
                    )
                return made[0]

            full: evm.EarnedValue | None = None
            for metric in evm_metrics:
                value: Decimal | int | None
                if metric == r.Metric.CPI:
                    value = basis.ev / ac if ac else None
                elif metric == r.Metric.SPI:
                    value = basis.ev / basis.pv if basis.pv else None
                elif metric == r.Metric.SCHEDULE_SLIP_DAYS:
                    value = basis.slip_days
                else:
                    full = full or evm.earned_value(basis.bac, basis.pv, basis.ev, ac)
                    value = getattr(full, str(metric))
                decision.observe(
                    metric,
                    project_id,
                    value,
                    gone,
                    project_id,
                    programme,
                    category,
                    figures,
                    lambda m=metric: self.project_reading(project_id, m),  # type: ignore[misc]
                )
        if r.Metric.THREAT_EMV in metrics and self.risks_of.get(project_id):
            decision.readings(self.project_readings(project_id, frozenset({r.Metric.THREAT_EMV})))

    def project_reading(self, project_id: str, metric: r.Metric) -> Reading:
        return next(x for x in self.project_readings(project_id, frozenset({metric})))

    def readings_of(self, metric: r.Metric) -> Iterator[Reading]:
        """The current reading of every subject a metric has."""
        if metric == r.Metric.BUDGET_CONSUMPTION:
            for pool_id in sorted(self.pools):
                yield self.pool_reading(self.pools[pool_id])
        elif metric == r.Metric.OVER_ALLOCATION:
            for name in sorted(self.roles):
                role = self.roles[name]
                for period in role.periods():
                    yield self.role_reading(role, period)
        elif metric == r.Metric.RISK_SCORE:
            for risk_id in sorted(self.risks):
                yield self.risk_reading(self.risks[risk_id])
        else:
            projects = sorted(set(self.baselines) | set(self.risks_of))
            for project_id in projects:
                yield from (x for x in self.project_readings(project_id) if x.metric == metric)

    def reading_of(self, metric: r.Metric, subject_id: str) -> Reading | None:
        if metric == r.Metric.BUDGET_CONSUMPTION:
            pool = self.pools.get(subject_id)
            return None if pool is None else self.pool_reading(pool)
        if metric == r.Metric.OVER_ALLOCATION:
            name, _, period = subject_id.rpartition("/")
            role = self.roles.get(name)
            return None if role is None else self.role_reading(role, period)
        if metric == r.Metric.RISK_SCORE:
            risk = self.risks.get(subject_id)
            return None if risk is None else self.risk_reading(risk)
        return next((x for x in self.project_readings(subject_id) if x.metric == metric), None)

    # --- views --------------------------------------------------------------------------------

    def open_alerts(self) -> list[LiveAlert]:
        return [self.open[key] for key in sorted(self.open)]

    def portfolio_health(self) -> tuple[evm.Health, list[evm.Health]]:
        """Worst wins over the open projects (into their programmes, then the portfolio);
        the closed ones (completed, cancelled) apart, never in the roll-up."""
        open_projects: list[evm.Health] = []
        closed: list[evm.Health] = []
        for project_id in sorted(self.baselines):
            found = self.health(project_id)
            if found is None:
                continue
            (closed if self.is_closed(project_id) else open_projects).append(found)
        programmes: dict[str, list[str]] = defaultdict(list)
        for project_id, info in sorted(self.projects.items()):
            if info.programme is not None and info.status not in CLOSED_STATUSES:
                programmes[info.programme].append(project_id)
        return evm.portfolio_health(open_projects, programmes), closed
