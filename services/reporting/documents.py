"""The two documents built from the fold: the portfolio report (every section, and what
changed since a baseline) and one project's scorecard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from domain import ledger, risk
from services.reporting import engagement, figures, forecasting, improvement
from services.reporting.diff import changes
from services.reporting.facts import LIST_LIMIT, UnknownProject, iso, money, stage_of
from services.reporting.report import PortfolioReport


def portfolio(
    report: PortfolioReport,
    generated_at: datetime,
    baseline: Mapping[str, Any] | None = None,
    since: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The portfolio report. Its changes are measured from `baseline` (a summary; None:
    the last published report's, else the empty portfolio), described by `since`."""
    if baseline is None and report.published is not None:
        baseline, since = report.published.summary, report.since()
    # Computed once here: the sections and the summary each asked for them again.
    healths = report.project_health()
    pool_rows = ledger.budget_report(report.pools.values(), ledger.Grouping.POOL)
    return {
        "kind": "portfolio",
        "generated_at": iso(generated_at),
        "cut": report.cut_json(),
        "projects": figures.project_counts(report.projects),
        "budget": figures.budget(report.pools, pool_rows),
        "coverage": figures.coverage(report.projects, report.objectives),
        "risks": figures.risk_exposure(report.risks),
        "health": figures.health(healths, report.projects),
        "capacity": figures.capacity(report.roles),
        "ranking": figures.ranking(report.latest_ranking(), report.projects),
        "alerts": figures.alerts_json(report.open_alerts()),
        "improvement": improvement.figures(report),
        "forecast": forecasting.section(report, healths),
        "stakeholders": engagement.figures(report.stakeholders),
        "changes": {
            "since": dict(since or {"kind": "start"}),
            **changes(baseline, report.summary(healths, pool_rows)),
        },
    }


def scorecard(report: PortfolioReport, project_id: str, generated_at: datetime) -> dict[str, Any]:
    """One project: status, business case, rank and breakdown, budget, risks, health,
    capacity demand, open alerts and the decision history (needs `focus`)."""
    facts = report.projects.get(project_id)
    if facts is None:
        raise UnknownProject(project_id)
    ranking = report.latest_ranking()
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
            "breakdown": {} if entry is None else figures.breakdown(entry.breakdown),
            "why_not_ranked": None
            if entry
            else (
                f"not scorable: missing {', '.join(missing.missing)}"
                if missing
                else f"not a candidate ({facts.profile.status})"
            ),
        }
    by_pool = ledger.budget_report(report.pools.values(), ledger.Grouping.POOL_PROJECT)
    by_project = ledger.budget_report(report.pools.values(), ledger.Grouping.PROJECT)
    own_risks = sorted(
        (x for x in report.risks.values() if x.project_id == project_id),
        key=lambda x: (not x.is_open, -x.current_score, x.risk_id),
    )
    reserve = risk.contingency(own_risks)
    health = report.project_health().get(project_id)
    demand = [
        {"role": role.role, "period": period, "demand": str(amount), "unit": str(role.unit)}
        for role in sorted(report.roles.values(), key=lambda x: x.role)
        for (pid, period), amount in sorted(role.demand.items(), key=lambda x: x[0][1])
        if pid == project_id
    ]
    return {
        "kind": "project",
        "generated_at": iso(generated_at),
        "cut": report.cut_json(),
        "project": {
            "project_id": facts.profile.project_id,
            "name": facts.profile.name,
            "sponsor": facts.profile.sponsor,
            "category": facts.profile.category,
            "status": str(facts.profile.status),
            "stage": stage_of(facts.profile.status),
            "planned_start": facts.profile.planned_start.isoformat(),
            "planned_end": facts.profile.planned_end.isoformat(),
            "mandatory": facts.profile.mandatory,
            "dependencies": list(facts.profile.dependencies),
            "objectives": [
                {
                    "objective_id": k,
                    "name": report.objectives[k].name if k in report.objectives else "",
                    "contribution": c,
                }
                for k, c in sorted(facts.profile.objectives.items())
            ],
        },
        "business_case": {
            "currency": facts.profile.currency,
            "capex": money(facts.profile.capex),
            "opex": money(facts.profile.opex),
            "total_cost": money(facts.profile.cost),
            "benefits_total": money(facts.profile.benefits_total),
            "npv": None if facts.profile.scoring.npv is None else money(facts.profile.scoring.npv),
            "costs": [
                {"year": c.year, "capex": money(c.capex), "opex": money(c.opex)}
                for c in facts.profile.costs
            ],
            "benefits": [
                {"year": b.year, "amount": money(b.amount), "description": b.description}
                for b in facts.profile.benefits
            ],
            "scoring": facts.profile.scoring.model_dump(mode="json"),
        },
        "ranking": ranked,
        "budget": {
            "pools": [
                {"pool_id": pool_id, "currency": f.currency, **figures.figures_json(f)}
                for (pool_id, pid), f in by_pool.items()
                if pid == project_id
            ],
            "totals": [
                {"currency": currency, **figures.figures_json(f)}
                for (pid, currency), f in by_project.items()
                if pid == project_id
            ],
        },
        "risks": {
            "contingency_reserve": money(reserve.reserve),
            "opportunities_emv": money(reserve.opportunities),
            "heat_map": figures.heat(x for x in own_risks if x.is_open),
            "items": [figures.risk_json(x) for x in own_risks[:LIST_LIMIT]],
        },
        "health": None if health is None else figures.health_json(health, report.projects),
        "capacity": demand[:LIST_LIMIT],
        "alerts": [a for a in report.open_alerts() if a["project_id"] == project_id],
        "improvement": improvement.figures(report, project_id),
        "audit": [h.as_json() for h in report.highlights] if report.focus == project_id else [],
    }
