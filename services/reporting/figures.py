"""The sections of the portfolio report, each built from the part of the fold it reads.

- **strategic coverage** per active objective: a live project's cost (capex + opex) and
  value (the expected benefits of its business case) are split over the active objectives
  it serves in proportion to its contributions; `funded_*` counts funded projects only.
  An objective no funded project serves is listed as unfunded; a live project serving no
  active objective is counted as unaligned.
- **heat map**: open risks by current probability (rows 1..5) x current impact (columns
  1..5), the residual ones once reassessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from contracts import prioritization as pr
from contracts import risks as r
from domain import ledger, risk
from domain.risk import evm
from services.reporting.facts import (
    FUNDED,
    INDEX,
    LIST_LIMIT,
    LIVE,
    STAGES,
    TOP,
    ZERO,
    ObjectiveFacts,
    ProjectFacts,
    Status,
    money,
    stage_of,
    text,
)
from shared import formatting


def project_counts(projects: Mapping[str, ProjectFacts]) -> dict[str, Any]:
    by_status = {str(s): 0 for s in Status}
    by_stage = dict.fromkeys(STAGES, 0)
    by_category: dict[str, int] = defaultdict(int)
    for facts in projects.values():
        by_status[str(facts.profile.status)] += 1
        by_stage[stage_of(facts.profile.status)] += 1
        by_category[facts.profile.category] += 1
    listed = sorted(projects.values(), key=lambda f: f.profile.project_id)
    return {
        "total": len(projects),
        "by_status": by_status,
        "by_stage": by_stage,
        "by_category": dict(sorted(by_category.items())),
        # Every project with its status and stage, and its dates (the dashboard's roadmap).
        "items": [_project_item(f) for f in listed[:LIST_LIMIT]],
        "more": max(0, len(listed) - LIST_LIMIT),
    }


def _project_item(facts: ProjectFacts) -> dict[str, Any]:
    profile = facts.profile
    return {
        "project_id": profile.project_id,
        "name": profile.name,
        "status": str(profile.status),
        "stage": stage_of(profile.status),
        "programme": facts.programme,
        "category": profile.category,
        "planned_start": profile.planned_start.isoformat(),
        "planned_end": profile.planned_end.isoformat(),
        "started_on": None if facts.started_on is None else facts.started_on.isoformat(),
        "completed_on": None if facts.completed_on is None else facts.completed_on.isoformat(),
    }


def budget(
    pools: Mapping[str, ledger.PoolState],
    rows: Mapping[tuple[str, ...], ledger.BudgetFigures] | None = None,
) -> dict[str, Any]:
    """The budget section; `rows`: the pools' `budget_report` by pool, when computed."""
    if rows is None:
        rows = ledger.budget_report(pools.values(), ledger.Grouping.POOL)
    listed = []
    totals: dict[str, dict[str, Decimal]] = {}
    for (pool_id,), figures in rows.items():
        pool = pools[pool_id]
        listed.append(
            {
                "pool_id": pool_id,
                "name": pool.name,
                "category": str(pool.category),
                "period": pool.label,
                "currency": pool.currency,
                "closed": pool.closed,
                **figures_json(figures),
                "consumption_percent": text(pool.consumption_percent),
            }
        )
        total = totals.setdefault(pool.currency, defaultdict(Decimal))
        for name in _BUDGET_FIELDS:
            total[name] += getattr(figures, name) or ZERO
    return {
        "pools": listed,
        "totals": [
            {"currency": currency, **{k: money(v) for k, v in figures.items()}}
            for currency, figures in sorted(totals.items())
        ],
    }


def coverage(
    projects: Mapping[str, ProjectFacts], objectives: Mapping[str, ObjectiveFacts]
) -> dict[str, Any]:
    active = {k: v for k, v in sorted(objectives.items()) if not v.retired}
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

    for facts in projects.values():
        figures = value[facts.profile.currency]
        if facts.profile.status == Status.COMPLETED:
            figures["completed_value"] += facts.profile.benefits_total
        if facts.profile.status not in LIVE:
            continue
        funded = facts.profile.status in FUNDED
        figures["planned_value"] += facts.profile.benefits_total
        if funded:
            figures["funded_value"] += facts.profile.benefits_total
        served = {k: c for k, c in facts.profile.objectives.items() if k in active}
        if not served:
            unaligned[facts.profile.currency] += facts.profile.cost
            continue
        points = sum(served.values())
        for objective_id, contribution in served.items():
            share = Decimal(contribution) / points
            target = row(objective_id, facts.profile.currency)
            target["projects"] += 1
            target["contribution_points"] += contribution
            target["budget"] += facts.profile.cost * share
            target["value"] += facts.profile.benefits_total * share
            if funded:
                target["funded_projects"] += 1
                target["funded_budget"] += facts.profile.cost * share
                target["funded_value"] += facts.profile.benefits_total * share
    listed = []
    for objective_id, objective in active.items():
        found = [(c, v) for (k, c), v in sorted(rows.items()) if k == objective_id]
        for currency, figures in found or [("", row(objective_id, ""))]:
            listed.append(
                {
                    "objective_id": objective_id,
                    "name": objective.name,
                    "owner": objective.owner,
                    "weight": str(objective.weight),
                    "currency": currency,
                    **{k: money(v) if isinstance(v, Decimal) else v for k, v in figures.items()},
                }
            )
    funded_somewhere = {k for (k, _), v in rows.items() if v["funded_projects"]}
    return {
        "objectives": listed,
        "unfunded": [k for k in active if k not in funded_somewhere],
        "unaligned_budget": {c: money(v) for c, v in sorted(unaligned.items())},
        "value": {c: {k: money(v) for k, v in sorted(f.items())} for c, f in sorted(value.items())},
    }


def risk_exposure(risks: Mapping[str, risk.RiskState]) -> dict[str, Any]:
    all_risks = sorted(risks.values(), key=lambda x: x.risk_id)
    open_risks = [x for x in all_risks if x.is_open]
    by_zone = {str(z): 0 for z in risk.RiskZone}
    for found in open_risks:
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
        "heat_map": heat(open_risks),
        "top": [risk_json(x) for x in top[:TOP]],
        # Every open risk (the heat map's cells drill down to them).
        "open_items": [risk_json(x) for x in top if x.is_open][:LIST_LIMIT],
    }


def risk_json(found: risk.RiskState) -> dict[str, Any]:
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


def health(
    healths: Mapping[str, evm.Health], projects: Mapping[str, ProjectFacts]
) -> dict[str, Any]:
    overall = evm.portfolio_health(healths.values())
    by_status = {str(s): 0 for s in evm.Rag}
    for found in healths.values():
        by_status[str(found.status)] += 1
    worst = sorted(healths.values(), key=lambda h: (-h.status.rank, h.subject_id))
    delivery = {k for k, v in projects.items() if v.profile.status in STAGES["delivery"]}
    return {
        "portfolio": {"status": str(overall.status), "explain": overall.explain()},
        "by_status": by_status,
        "without_baseline": sorted(delivery - set(healths))[:LIST_LIMIT],
        "projects": [health_json(h, projects) for h in worst[:LIST_LIMIT]],
        "more": max(0, len(worst) - LIST_LIMIT),
    }


def health_json(health: evm.Health, projects: Mapping[str, ProjectFacts]) -> dict[str, Any]:
    facts = projects.get(health.subject_id)
    ev = health.earned_value
    return {
        "project_id": health.subject_id,
        "name": facts.profile.name if facts else "",
        "project_status": str(facts.profile.status) if facts else None,
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
        # Every figure under the risk monitor's names (`shared.formatting.EARNED_VALUE`).
        "earned_value": None if ev is None else formatting.earned_value_json(ev.figures()),
        "schedule_slip_days": health.schedule_slip_days,
    }


def capacity(roles: Mapping[str, ledger.CapacityState]) -> dict[str, Any]:
    cells = ledger.capacity_report(roles.values())
    by_role: dict[str, dict[str, Any]] = {}
    for cell in cells:
        found = by_role.setdefault(
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
                "utilisation_percent": text(ledger.percent(found["demand"], found["capacity"])),
                "peak_utilisation_percent": text(found["peak_utilisation_percent"]),
            }
            for found in by_role.values()
        ],
        "cells": [
            {
                "role": c.role,
                "period": c.period,
                "net_capacity": str(c.net_capacity),
                "demand": str(c.demand),
                "utilisation_percent": text(c.utilisation_percent),
                "over_allocated": c.over_allocated,
            }
            for c in cells[: LIST_LIMIT * 10]
        ],
    }


def ranking(
    found: tuple[pr.RankingDecided, str] | None, projects: Mapping[str, ProjectFacts]
) -> dict[str, Any] | None:
    if found is None:
        return None
    decided, source = found

    def entry(x: pr.RankedProject) -> dict[str, Any]:
        facts = projects.get(x.project_id)
        return {
            "rank": x.rank,
            "project_id": x.project_id,
            "name": facts.profile.name if facts else "",
            "status": str(facts.profile.status) if facts else None,
            "score": round(x.score, 4),
            "previous_rank": x.previous_rank,
            "cost": money(facts.profile.cost) if facts else None,
            "value": money(facts.profile.benefits_total) if facts else None,
            "breakdown": breakdown(x.breakdown),
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


def alerts_json(found: list[dict[str, Any]]) -> dict[str, Any]:
    by_severity = {str(s): 0 for s in r.Severity}
    for alert in found:
        by_severity[alert["severity"]] += 1
    return {"open": len(found), "by_severity": by_severity, "items": found[:LIST_LIMIT]}


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


def figures_json(figures: ledger.BudgetFigures) -> dict[str, Any]:
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


def heat(risks: Iterable[risk.RiskState]) -> list[list[int]]:
    grid = [[0] * 5 for _ in range(5)]
    for found in risks:
        probability, impact = current_grid(found)
        grid[probability - 1][impact - 1] += 1
    return grid


def breakdown(scores: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 4) for k, v in scores.items()}


def _round(value: Decimal | int) -> Decimal | int:
    return value.quantize(INDEX, rounding=ROUND_HALF_UP) if isinstance(value, Decimal) else value
