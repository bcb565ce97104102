"""An oracle for the open alerts, written apart from the alert code.

It sees only the accepted commands, keeps the raw figures they carry (amounts, invoices,
purchase orders, capacity, demand, scores, progress, rules, lifecycle), recomputes every
metric from them after each command with its own arithmetic, and steps each rule with
its hysteresis. What it says is open must be exactly what the monitor says is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from contracts import ledger as lg
from contracts import projects as p
from contracts import risks as r

D = Decimal
CLOSING = (p.CompleteProject, p.CancelProject, p.RejectProject)


@dataclass
class Rule:
    metric: str
    comparison: str
    threshold: float
    clear_at: float
    scope: str = "portfolio"
    scope_id: str | None = None
    enabled: bool = True
    revision: int = 1

    def holds(self, v: float) -> bool:
        return {
            "lt": v < self.threshold,
            "le": v <= self.threshold,
            "gt": v > self.threshold,
            "ge": v >= self.threshold,
        }[self.comparison]

    def clears(self, v: float) -> bool:
        return v >= self.clear_at if self.comparison in ("lt", "le") else v <= self.clear_at


#: The shipped defaults, copied by hand (not imported: the oracle must not share code).
DEFAULTS = {
    "default-cpi": Rule("cpi", "lt", 0.9, 0.95),
    "default-spi": Rule("spi", "lt", 0.9, 0.95),
    "default-risk-score": Rule("risk_score", "ge", 15, 12),
    "default-budget-80": Rule("budget_consumption", "ge", 80, 75),
    "default-budget-100": Rule("budget_consumption", "ge", 100, 95),
    "default-over-allocation": Rule("over_allocation", "gt", 100, 95),
}


@dataclass
class Risk:
    project_id: str | None
    score: int
    residual: int | None = None
    open: bool = True
    kind: str = "threat"


@dataclass
class Oracle:
    rules: dict[str, Rule] = field(
        default_factory=lambda: {k: Rule(**vars(v)) for k, v in DEFAULTS.items()}
    )
    programme: dict[str, str | None] = field(default_factory=dict)
    closed_projects: set[str] = field(default_factory=set)
    pool_amount: dict[str, D] = field(default_factory=dict)
    pool_closed: set[str] = field(default_factory=set)
    #: Every invoice: (pool, project, amount, commitment named).
    invoices: list[tuple[str, str, D, str | None]] = field(default_factory=list)
    #: (pool, ref) -> amount committed.
    orders: dict[tuple[str, str], D] = field(default_factory=dict)
    capacity: dict[tuple[str, str], tuple[D, D]] = field(default_factory=dict)
    demand: dict[tuple[str, str, str], D] = field(default_factory=dict)
    risks: dict[str, Risk] = field(default_factory=dict)
    bac: dict[str, D] = field(default_factory=dict)
    planned: dict[str, list[tuple[str, D]]] = field(default_factory=dict)
    progress: dict[str, dict[str, D]] = field(default_factory=dict)
    #: Rules defined by command (a default's first definition is its revision 1 again).
    defined: set[str] = field(default_factory=set)
    #: (rule, metric, subject) -> the last known value while open.
    open: dict[tuple[str, str, str], float] = field(default_factory=dict)

    # --- commands -----------------------------------------------------------------------------

    def accept(self, command: Any) -> None:
        """Take in one accepted command, then step every rule."""
        match command:
            case p.ProposeProject():
                self.programme[command.project_id] = command.programme
            case _ if isinstance(command, CLOSING):
                self.closed_projects.add(command.project_id)
            case lg.DefineBudgetPool():
                self.pool_amount[command.pool_id] = command.amount
            case lg.AdjustBudgetPool():
                self.pool_amount[command.pool_id] = command.amount
            case lg.ClosePool():
                self.pool_closed.add(command.pool_id)
            case lg.RecordActualCost():
                self.invoices.append(
                    (command.pool_id, command.project_id, command.amount, command.commitment_ref)
                )
            case lg.RecordCommitment():
                self.orders[(command.pool_id, command.external_ref)] = command.amount
            case lg.SetCapacity():
                self.capacity[(command.role, command.period)] = (command.amount, command.time_off)
            case lg.AssignDemand():
                self.demand[(command.role, command.project_id, command.period)] = command.amount
            case r.IdentifyRisk():
                self.risks[command.risk_id] = Risk(
                    command.project_id, command.probability * command.impact, kind=command.kind
                )
            case r.AssessRisk():
                risk = self.risks[command.risk_id]
                risk.score, risk.residual = command.probability * command.impact, None
            case r.ReassessRisk():
                risk = self.risks[command.risk_id]
                risk.residual = command.residual_probability * command.residual_impact
            case r.CloseRisk():
                self.risks[command.risk_id].open = False
            case r.SetProjectBaseline():
                self.bac[command.project_id] = command.budget_at_completion
                self.planned[command.project_id] = [
                    (x.period, x.planned_value) for x in command.planned_value_by_period
                ]
                self.progress.setdefault(command.project_id, {})
            case r.ReportProgress():
                self.progress[command.project_id][command.period] = command.percent_complete
            case r.DefineAlertRule():
                old = self.rules.get(command.rule_id)
                self.rules[command.rule_id] = Rule(
                    str(command.metric),
                    str(command.comparison),
                    command.threshold,
                    command.clear_at,
                    str(command.scope),
                    command.scope_id,
                    revision=old.revision + 1 if old and command.rule_id in self.defined else 1,
                )
                self.defined.add(command.rule_id)
            case r.DisableAlertRule():
                self.rules[command.rule_id].enabled = False
        self.step()

    # --- figures ------------------------------------------------------------------------------

    def consumption(self, pool: str) -> float | None:
        amount = self.pool_amount[pool]
        actual = sum((a for q, _, a, _ in self.invoices if q == pool), D(0))
        settled: dict[str, D] = {}
        for q, _, a, ref in self.invoices:
            if q == pool and ref is not None and (pool, ref) in self.orders:
                settled[ref] = settled.get(ref, D(0)) + a
        still_open = sum(
            (
                max(D(0), v - settled.get(ref, D(0)))
                for (q, ref), v in self.orders.items()
                if q == pool
            ),
            D(0),
        )
        return float((actual + still_open) * 100 / amount) if amount > 0 else None

    def utilisation(self, role: str, period: str) -> float | None:
        amount, off = self.capacity.get((role, period), (D(0), D(0)))
        need = sum(
            (v for (ro, _, pe), v in self.demand.items() if (ro, pe) == (role, period)), D(0)
        )
        return float(need * 100 / (amount - off)) if amount - off > 0 else None

    def earned(self, project: str) -> tuple[D, D, D]:
        """(EV, PV, AC) at the latest reported month."""
        reports = self.progress.get(project, {})
        ac = sum((a for _, pr, a, _ in self.invoices if pr == project), D(0))
        if not reports:
            return D(0), D(0), ac
        latest = max(reports)
        ev = (self.bac[project] * reports[latest] / 100).quantize(D("0.01"), ROUND_HALF_EVEN)
        pv = D(0)
        for period, value in self.planned[project]:
            if period <= latest:
                pv = value
        return ev, pv, ac

    def value(self, metric: str, subject: str) -> float | None:
        if metric == "budget_consumption":
            return self.consumption(subject)
        if metric == "over_allocation":
            role, _, period = subject.rpartition("/")
            return self.utilisation(role, period)
        if metric == "risk_score":
            risk = self.risks[subject]
            return float(risk.residual if risk.residual is not None else risk.score)
        ev, pv, ac = self.earned(subject)
        if metric == "cpi":
            return float(ev / ac) if ac else None
        if metric == "spi":
            return float(ev / pv) if pv else None
        raise AssertionError(f"the oracle does not know {metric}")

    def subjects(self, metric: str) -> list[str]:
        if metric == "budget_consumption":
            return sorted(self.pool_amount)
        if metric == "over_allocation":
            cells = set(self.capacity) | {(ro, pe) for ro, _, pe in self.demand}
            return sorted(f"{ro}/{pe}" for ro, pe in cells)
        if metric == "risk_score":
            return sorted(self.risks)
        return sorted(self.bac)

    def project_of(self, metric: str, subject: str) -> str | None:
        if metric in ("budget_consumption", "over_allocation"):
            return None
        if metric == "risk_score":
            return self.risks[subject].project_id
        return subject

    def gone(self, metric: str, subject: str) -> bool:
        if metric == "budget_consumption":
            return subject in self.pool_closed
        if metric == "risk_score" and not self.risks[subject].open:
            return True
        return self.project_of(metric, subject) in self.closed_projects

    def in_scope(self, rule: Rule, metric: str, subject: str) -> bool:
        if rule.scope == "portfolio":
            return True
        project = self.project_of(metric, subject)
        if rule.scope == "project":
            return project == rule.scope_id
        if rule.scope == "programme":
            return project is not None and self.programme.get(project) == rule.scope_id
        return False

    # --- the rules, stepped -------------------------------------------------------------------

    def step(self) -> None:
        for key in list(self.open):
            rule = self.rules.get(key[0])
            if rule is None or not rule.enabled or rule.metric != key[1]:
                del self.open[key]
        for rule_id, rule in sorted(self.rules.items()):
            if not rule.enabled:
                continue
            for subject in self.subjects(rule.metric):
                key = (rule_id, rule.metric, subject)
                v = self.value(rule.metric, subject)
                out = self.gone(rule.metric, subject) or not self.in_scope(
                    rule, rule.metric, subject
                )
                if key in self.open:
                    if out or (v is not None and rule.clears(v)):
                        del self.open[key]
                    elif v is not None:
                        self.open[key] = v
                elif not out and v is not None and rule.holds(v):
                    self.open[key] = v

    def expected(self) -> dict[tuple[str, str, str], float]:
        return dict(sorted(self.open.items()))
