"""The sections of one project's scorecard."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.render.improvement import improvement_sections
from shared.render.values import RISK_COLUMNS, Section, cols, cut_rows, money, rank_change, risk_row


def project_sections(report: dict[str, Any]) -> list[Section]:
    project, case = report["project"], report["business_case"]
    ranking, health = report["ranking"], report["health"]
    card = Section("project", f"Project {project['project_id']}", cols("item", "value"))
    card.rows = [
        ["name", project["name"]],
        ["status", f"{project['status']} ({project['stage']})"],
        ["sponsor", project["sponsor"]],
        ["category", project["category"]],
        ["planned", f"{project['planned_start']} to {project['planned_end']}"],
        ["mandatory", "yes" if project["mandatory"] else "no"],
        ["dependencies", ", ".join(project["dependencies"]) or "none"],
        [
            "objectives",
            ", ".join(f"{x['objective_id']} ({x['contribution']})" for x in project["objectives"])
            or "none",
        ],
        *cut_rows(report["cut"]),
    ]
    business = Section(
        "business_case",
        "Business case",
        cols("year", "capex:money", "opex:money", "benefits:money"),
    )
    years = sorted({c["year"] for c in case["costs"]} | {b["year"] for b in case["benefits"]})
    for year in years:
        cost: dict[str, Any] = next((c for c in case["costs"] if c["year"] == year), {})
        benefit = sum(Decimal(b["amount"]) for b in case["benefits"] if b["year"] == year)
        business.rows.append([year, cost.get("capex"), cost.get("opex"), str(benefit)])
    business.rows.append(["total", case["capex"], case["opex"], case["benefits_total"]])
    business.note = f"{case['currency']}; NPV {money(case['npv'])}"
    rank = Section("ranking", "Ranking", cols("criterion", "contribution:index"))
    if ranking is None:
        rank.note = "no ranking yet"
    else:
        rank.rows = [[k, v] for k, v in ranking["breakdown"].items()]
        rank.note = (
            f"rank {ranking['rank']} of {ranking['of']}, score {ranking['score']} "
            f"({rank_change(ranking['rank'], ranking['previous_rank'])}), {ranking['source']} "
            f"by model {ranking['model_id']} at log position {ranking['computed_at_position']}"
            if ranking["rank"] is not None
            else f"not ranked: {ranking['why_not_ranked']}"
        )
    budget = Section(
        "budget",
        "Budget",
        cols(
            "pool",
            "currency",
            "allocated:money",
            "committed:money",
            "actual:money",
            "forecast:money",
            "remaining:money",
        ),
        [_budget_row(x["pool_id"], x) for x in report["budget"]["pools"]]
        + [_budget_row("total", x) for x in report["budget"]["totals"]],
    )
    risks = report["risks"]
    found = [
        card,
        business,
        rank,
        budget,
        Section(
            "risks",
            "Risks",
            (*RISK_COLUMNS, *cols("status")),
            [[*risk_row(x), x["status"]] for x in risks["items"]],
            note=f"contingency reserve {money(risks['contingency_reserve'])}",
        ),
        Section(
            "health",
            "Health",
            cols("indicator", "value:number", "status:rag", "reason"),
            []
            if health is None
            else [[i["name"], i["value"], i["status"], i["reason"]] for i in health["indicators"]],
            note="no baseline"
            if health is None
            else f"{health['status']}: {health['explain']}; earned value "
            + ", ".join(
                f"{k.upper()} {v if v is not None else 'n/a'}"
                for k, v in (health.get("earned_value") or {}).items()
            ),
        ),
        Section(
            "capacity",
            "Capacity demand",
            cols("role", "period", "demand:number", "unit"),
            [[x["role"], x["period"], x["demand"], x["unit"]] for x in report["capacity"]],
        ),
        Section(
            "alerts",
            "Open alerts",
            cols("severity", "metric", "value:number", "threshold:number", "message"),
            [
                [x["severity"], x["metric"], x["value"], x["threshold"], x["message"]]
                for x in report["alerts"]
            ],
        ),
        Section(
            "audit",
            "Decision history (latest highlights)",
            cols("position:int", "recorded_at:time", "actor", "event", "what"),
            [
                [
                    x["position"],
                    x["recorded_at"],
                    f"{x['actor']} via {x['source']}",
                    x["event_type"],
                    x["what"],
                ]
                for x in report["audit"]
            ],
        ),
    ]
    # Closure figures before the decision history, which stays last.
    found[-1:-1] = improvement_sections(report.get("improvement"), one_project=True)
    return found


def _budget_row(label: str, x: dict[str, Any]) -> list[Any]:
    return [
        label,
        x["currency"],
        x["allocated"],
        x["committed"],
        x["actual"],
        x["forecast_at_completion"],
        x["remaining"],
    ]
