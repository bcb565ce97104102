"""The portfolio forecast from the report's fold: the inputs of `domain.forecast.simulate`
built from what the log says, and its answer as JSON (the query, the report's section, the
dashboard's chart).

Inputs (README, "Portfolio forecast"):
- **projects**: the committed ones (approved, in progress, on hold; with
  `include_pipeline` also proposed and under review). Cost: with progress (EV and AC above
  zero), a triangle between its EAC formulas (typical, atypical, composite); without, the
  default spread around its budget at completion (the baseline's BAC, else the business
  case's capex + opex). Slip from its SPI over the remaining duration, else the default
  spread of its planned duration. Benefits: the default spread around its business case.
- **risks**: every open threat and opportunity on a forecast project, and the
  portfolio-wide ones (no filter only): probability from the register's 1-5 scale
  (`PROBABILITY_FRACTION`: 10, 30, 50, 70, 90 %), impact its current range (min / most
  likely / max) or its single monetary impact, delay its current `delay_days`.
- **budgets**: each open budget pool (its amount against the share of each project's
  drawn cost it funds: allocation / the larger of the planned cost and all allocations
  to the project), and each active objective's funding (what the pools allocated to the
  projects serving it, split by their contribution points, against the same share of
  their drawn cost). With a project or programme filter, a pool's amount is what it
  allocated to those projects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from contracts import risks as r
from domain import forecast as fc
from domain import risk
from domain.risk import evm
from services.reporting.facts import FUNDED, LIST_LIMIT, STAGES, ProjectFacts, iso, money
from services.reporting.report import PortfolioReport

#: What the report's forecast section runs (the query takes its own).
REPORT_SEED = 0
#: (a report is made often: by the dashboard, on every publication; about 0.15 s of one
#: core for 3,000 projects)
REPORT_ITERATIONS = 1_000
#: iterations x projects a query may ask for (about 15 s of one core).
MAX_DRAWS = 100_000_000
COMMITTED = FUNDED | STAGES["delivery"]


class ScopeError(LookupError):
    """A project or programme the fold does not know."""


@dataclass(frozen=True)
class Inputs:
    projects: list[fc.ProjectOutlook]
    risks: list[fc.Uncertainty]
    budgets: list[fc.Budget]
    #: Budget name -> (kind, id) for the answer.
    budget_kinds: dict[str, tuple[str, str]]
    #: Today's EMV reserve over the same open threats (the register's figure).
    emv_reserve: Decimal
    currencies: list[str]


def inputs(
    report: PortfolioReport,
    project_id: str | None = None,
    programme_id: str | None = None,
    include_pipeline: bool = False,
    healths: Mapping[str, evm.Health] | None = None,
) -> Inputs:
    statuses = COMMITTED | (STAGES["pipeline"] if include_pipeline else frozenset())
    if project_id is not None and project_id not in report.projects:
        raise ScopeError(f"unknown project {project_id}")
    if programme_id is not None and not any(
        f.programme == programme_id for f in report.projects.values()
    ):
        raise ScopeError(f"unknown programme {programme_id}")
    chosen: dict[str, ProjectFacts] = {
        pid: facts
        for pid, facts in sorted(report.projects.items())
        if facts.profile.status in statuses
        and (project_id is None or pid == project_id)
        and (programme_id is None or facts.programme == programme_id)
    }
    healths = report.project_health() if healths is None else healths
    outlooks = []
    for pid, facts in chosen.items():
        baseline = report.baselines.get(pid)
        health = healths.get(pid)
        bac = baseline.budget_at_completion if baseline is not None else facts.profile.cost
        planned_end = facts.profile.planned_end
        if baseline is not None and baseline.planned_end is not None:
            planned_end = baseline.planned_end
        outlooks.append(
            fc.project_outlook(
                pid,
                bac,
                None if health is None else health.earned_value,
                planned_start=facts.profile.planned_start,
                planned_end=planned_end,
                benefit=facts.profile.benefits_total,
                programme=facts.programme,
            )
        )
    whole = project_id is None and programme_id is None
    open_risks = [
        x
        for x in report.risks.values()
        if x.is_open and (x.project_id in chosen or (whole and x.project_id is None))
    ]
    uncertainties = [_uncertainty(x) for x in sorted(open_risks, key=lambda x: x.risk_id)]
    budgets, kinds = _budgets(report, outlooks, whole)
    return Inputs(
        projects=outlooks,
        risks=uncertainties,
        budgets=budgets,
        budget_kinds=kinds,
        emv_reserve=risk.contingency(open_risks).reserve,
        currencies=sorted({f.profile.currency for f in chosen.values()}),
    )


def _uncertainty(found: risk.RiskState) -> fc.Uncertainty:
    ranged = found.current_impact_range
    impact = (
        fc.Triangle(float(ranged.minimum), float(ranged.most_likely), float(ranged.maximum))
        if ranged is not None
        else fc.Triangle.point(float(found.current_monetary_impact))
    )
    return fc.Uncertainty(
        risk_id=found.risk_id,
        probability=float(risk.PROBABILITY_FRACTION[found.current_probability]),
        impact=impact,
        project_id=found.project_id,
        opportunity=found.kind == r.RiskKind.OPPORTUNITY,
        delay_days=float(found.current_delay_days or 0),
    )


def _budgets(
    report: PortfolioReport, outlooks: list[fc.ProjectOutlook], whole: bool
) -> tuple[list[fc.Budget], dict[str, tuple[str, str]]]:
    """Pools and objectives as budgets. A pool carries the share of each project's cost it
    funds: its allocation / the larger of the project's planned cost and everything
    allocated to it (a project funded beyond its plan spreads its cost over its pools by
    allocation; one funded below it leaves the rest unfunded)."""
    planned = {o.project_id: o.cost.mode for o in outlooks}
    by_pool: dict[str, dict[str, float]] = {}
    allocated: dict[str, float] = defaultdict(float)
    for pool_id, pool in sorted(report.pools.items()):
        shares = {
            pid: float(pool.allocated_to(pid))
            for pid in pool.allocations
            if pid in planned and pool.allocated_to(pid) > 0
        }
        by_pool[pool_id] = shares
        for pid, amount in shares.items():
            allocated[pid] += amount
    basis = {pid: max(planned[pid], allocated.get(pid, 0.0)) for pid in planned}
    budgets: list[fc.Budget] = []
    kinds: dict[str, tuple[str, str]] = {}
    for pool_id, shares in by_pool.items():
        if report.pools[pool_id].closed or not shares:
            continue
        amount = float(report.pools[pool_id].amount) if whole else sum(shares.values())
        name = f"pool {pool_id}"
        weights = {pid: a / basis[pid] if basis[pid] else 0.0 for pid, a in shares.items()}
        budgets.append(fc.Budget(name, amount, frozenset(shares), weights))
        kinds[name] = ("pool", pool_id)
    for objective_id, objective in sorted(report.objectives.items()):
        if objective.retired:
            continue
        objective_weights: dict[str, float] = {}
        funding = 0.0
        for pid in planned:
            served = {
                k: c
                for k, c in report.projects[pid].profile.objectives.items()
                if k in report.objectives and not report.objectives[k].retired
            }
            if objective_id not in served or not allocated.get(pid) or not basis[pid]:
                continue
            share = served[objective_id] / sum(served.values())
            funding += allocated[pid] * share
            objective_weights[pid] = share * allocated[pid] / basis[pid]
        if not objective_weights:
            continue
        name = f"objective {objective_id}"
        budgets.append(fc.Budget(name, funding, frozenset(objective_weights), objective_weights))
        kinds[name] = ("objective", objective_id)
    return budgets, kinds


def run(
    report: PortfolioReport,
    *,
    seed: int,
    iterations: int,
    project_id: str | None = None,
    programme_id: str | None = None,
    include_pipeline: bool = False,
    generated_at: datetime | None = None,
    healths: Mapping[str, evm.Health] | None = None,
) -> dict[str, Any]:
    """The forecast answer (kind `forecast`): reproducible from its seed and iterations.
    `healths`: the report's `project_health()` when the caller has it already."""
    found = inputs(report, project_id, programme_id, include_pipeline, healths)
    result = fc.simulate(
        found.projects, found.risks, found.budgets, iterations=iterations, seed=seed
    )
    return answer(report, found, result, project_id, programme_id, include_pipeline, generated_at)


def answer(
    report: PortfolioReport,
    found: Inputs,
    result: fc.Forecast,
    project_id: str | None,
    programme_id: str | None,
    include_pipeline: bool,
    generated_at: datetime | None,
) -> dict[str, Any]:
    planned = {o.project_id: o for o in found.projects}
    projects = sorted(
        result.projects.items(),
        key=lambda x: (-(x[1].cost.p80 - planned[x[0]].cost.mode), x[0]),
    )
    return {
        "kind": "forecast",
        "generated_at": iso(generated_at),
        "cut": report.cut_json(),
        "seed": result.seed,
        "iterations": result.iterations,
        "scope": {
            "project_id": project_id,
            "programme_id": programme_id,
            "include_pipeline": include_pipeline,
            "projects": len(found.projects),
            "risks": len(found.risks),
            "currencies": found.currencies,
        },
        "method": {
            "default_cost_spread": list(fc.DEFAULT_COST_SPREAD),
            "default_slip_spread": list(fc.DEFAULT_SLIP_SPREAD),
            "default_benefit_spread": list(fc.DEFAULT_BENEFIT_SPREAD),
            "probability_fraction": {str(k): str(v) for k, v in risk.PROBABILITY_FRACTION.items()},
            "independence": "projects and risks are drawn independently (no correlation)",
        },
        "total_cost": _quantiles(result.total_cost),
        "total_benefit": _quantiles(result.total_benefit),
        "planned_cost": _round(result.planned_cost),
        "reserve_p80": _round(result.reserve_p80),
        "emv_reserve": money(found.emv_reserve),
        "budgets": [
            {
                "budget": name,
                "kind": found.budget_kinds[name][0],
                "id": found.budget_kinds[name][1],
                "amount": _round(outlook.amount),
                **_quantiles(outlook.cost),
                "probability_within": round(outlook.probability_within, 4),
            }
            for name, outlook in result.budgets.items()
        ],
        "programmes": [
            {"programme_id": name, **_quantiles(q)} for name, q in sorted(result.programmes.items())
        ],
        "projects": [
            {
                "project_id": pid,
                "name": report.projects[pid].profile.name,
                "basis": forecast.basis,
                "planned_cost": _round(planned[pid].cost.mode),
                **_quantiles(forecast.cost),
                "planned_end": iso_date(planned[pid].planned_end),
                "finish_p50": iso_date(forecast.finish.get("p50")),
                "finish_p80": iso_date(forecast.finish.get("p80")),
                "finish_p90": iso_date(forecast.finish.get("p90")),
            }
            for pid, forecast in projects[:LIST_LIMIT]
        ],
        "more_projects": max(0, len(projects) - LIST_LIMIT),
        "curve": [[q, _round(cost)] for q, cost in result.curve],
    }


def _quantiles(q: fc.Quantiles) -> dict[str, str | None]:
    return {
        "p10": _round(q.p10),
        "p50": _round(q.p50),
        "p80": _round(q.p80),
        "p90": _round(q.p90),
        "mean": _round(q.mean),
        "std": None if q.std is None else _round(q.std),
    }


def _round(value: float) -> str:
    """Money as everywhere in the answers: a decimal string at 2 places."""
    return money(Decimal(repr(float(value))))


def iso_date(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def section(
    report: PortfolioReport, healths: Mapping[str, evm.Health] | None = None
) -> dict[str, Any]:
    """The report's forecast section: the whole committed portfolio, seed 0, 1,000
    iterations (`portfolio forecast` asks for more)."""
    try:
        found = run(report, seed=REPORT_SEED, iterations=REPORT_ITERATIONS, healths=healths)
    except ValueError as error:  # an input the simulation cannot take: said, not raised
        return {"kind": "forecast", "error": str(error)}
    # The report carries its own cut and time.
    return {k: v for k, v in found.items() if k not in ("cut", "generated_at")}
