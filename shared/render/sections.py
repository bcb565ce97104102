"""A report's sections: the portfolio report's, a diff's, and the dispatch by kind (a
project's scorecard: scorecard.py; continuous improvement: improvement.py)."""

from __future__ import annotations

from typing import Any

from shared.render.improvement import improvement_sections
from shared.render.outlook import forecast_document, forecast_sections, stakeholder_sections
from shared.render.scorecard import project_sections
from shared.render.values import (
    RISK_COLUMNS,
    Section,
    cols,
    cut_rows,
    money,
    rank_change,
    risk_row,
    total_text,
)


def sections(report: dict[str, Any]) -> list[Section]:
    kind = report.get("kind")
    if kind == "portfolio":
        return _portfolio_sections(report)
    if kind == "project":
        return project_sections(report)
    if kind == "diff":
        return _diff_sections(report)
    if kind == "forecast":
        return forecast_document(report)
    raise ValueError(f"not a report: kind {kind!r}")


def _portfolio_sections(report: dict[str, Any]) -> list[Section]:
    projects, budget, coverage = report["projects"], report["budget"], report["coverage"]
    risks, health, capacity = report["risks"], report["health"], report["capacity"]
    ranking, alerts, changes = report["ranking"], report["alerts"], report["changes"]
    since = changes["since"]
    overview = Section("overview", "Overview", cols("item", "value"), cut_rows(report["cut"]))
    overview.rows += [
        ["projects", projects["total"]],
        ["open risks", risks["open"]],
        ["contingency reserve", total_text(risks["contingency_reserve"])],
        ["open alerts", alerts["open"]],
        ["portfolio health", health["portfolio"]["status"]],
        ["objectives without a funded project", ", ".join(coverage["unfunded"]) or "none"],
        ["changes since", _since_text(since)],
    ]
    for total in budget["totals"]:
        overview.rows.append(
            [
                f"budget {total['currency']}",
                f"allocated {money(total['allocated'])}, actual {money(total['actual'])}, "
                f"remaining {money(total['remaining'])}",
            ]
        )
    found = [
        overview,
        Section(
            "projects_by_status",
            "Projects by status",
            cols("status", "projects:int"),
            [[k, v] for k, v in projects["by_status"].items()],
        ),
        Section(
            "projects_by_stage",
            "Projects by stage",
            cols("stage", "projects:int"),
            [[k, v] for k, v in projects["by_stage"].items()],
        ),
        Section(
            "budget",
            "Budget by pool",
            cols(
                "pool",
                "name",
                "period",
                "currency",
                "amount:money",
                "allocated:money",
                "committed:money",
                "actual:money",
                "forecast:money",
                "remaining:money",
                "unallocated:money",
                "consumed:pct",
            ),
            [
                [
                    x["pool_id"],
                    x["name"],
                    x["period"],
                    x["currency"],
                    x["amount"],
                    x["allocated"],
                    x["committed"],
                    x["actual"],
                    x["forecast_at_completion"],
                    x["remaining"],
                    x["unallocated"],
                    x["consumption_percent"],
                ]
                for x in budget["pools"]
            ],
        ),
        Section(
            "coverage",
            "Strategic coverage by objective",
            cols(
                "objective",
                "name",
                "weight:number",
                "currency",
                "projects:int",
                "funded:int",
                "budget:money",
                "funded_budget:money",
                "value:money",
                "funded_value:money",
            ),
            [
                [
                    x["objective_id"],
                    x["name"],
                    x["weight"],
                    x["currency"],
                    x["projects"],
                    x["funded_projects"],
                    x["budget"],
                    x["funded_budget"],
                    x["value"],
                    x["funded_value"],
                ]
                for x in coverage["objectives"]
            ],
            note="unfunded: " + (", ".join(coverage["unfunded"]) or "none"),
        ),
        Section(
            "value",
            "Value (expected benefits of the business cases)",
            cols("currency", "planned:money", "funded:money", "completed:money"),
            [
                [
                    c,
                    v.get("planned_value", "0"),
                    v.get("funded_value", "0"),
                    v.get("completed_value", "0"),
                ]
                for c, v in coverage["value"].items()
            ],
        ),
        Section(
            "risks",
            "Top open risks",
            RISK_COLUMNS,
            [risk_row(x) for x in risks["top"]],
            note=f"{risks['open']} open ({risks['open_threats']} threats), contingency "
            f"reserve {money(risks['contingency_reserve'])}, opportunities "
            f"{money(risks['opportunities_emv'])}",
        ),
        Section(
            "risk_heat_map",
            "Risk heat map (open risks, probability x impact)",
            cols("probability", *(f"impact_{i}:int" for i in range(1, 6))),
            [[p, *risks["heat_map"][p - 1]] for p in range(5, 0, -1)],
        ),
        Section(
            "health",
            "Earned value health",
            cols(
                "project",
                "name",
                "rag:rag",
                "cpi:index",
                "spi:index",
                "slip_days:int",
                "ev:money",
                "ac:money",
                "eac:money",
                "why",
            ),
            [_health_row(x) for x in health["projects"]],
            note=f"portfolio {health['portfolio']['status']}"
            + (
                f"; in delivery without a baseline: {', '.join(health['without_baseline'])}"
                if health["without_baseline"]
                else ""
            ),
        ),
        Section(
            "capacity",
            "Capacity by role",
            cols(
                "role",
                "unit",
                "capacity:number",
                "demand:number",
                "utilisation:pct",
                "peak:pct",
                "over_allocated_months",
            ),
            [
                [
                    x["role"],
                    x["unit"],
                    x["capacity"],
                    x["demand"],
                    x["utilisation_percent"],
                    x["peak_utilisation_percent"],
                    ", ".join(x["over_allocated_months"]),
                ]
                for x in capacity["roles"]
            ],
        ),
        _ranking_section(ranking),
        Section(
            "alerts",
            "Open alerts",
            cols(
                "severity",
                "metric",
                "subject",
                "value:number",
                "threshold:number",
                "clear_at:number",
                "rule",
                "message",
            ),
            [
                [
                    x["severity"],
                    x["metric"],
                    x["subject_id"],
                    x["value"],
                    x["threshold"],
                    x.get("clear_at"),
                    # The revision it holds under now (a redefined rule revises it).
                    f"{x['rule_id']} r{x.get('rule_revision', 1)}",
                    x["message"],
                ]
                for x in alerts["items"]
            ],
        ),
    ]
    found += forecast_sections(report.get("forecast")) + stakeholder_sections(
        report.get("stakeholders")
    )
    return found + improvement_sections(report.get("improvement")) + _change_sections(changes)


def _ranking_section(ranking: dict[str, Any] | None) -> Section:
    section = Section(
        "ranking",
        "Ranking (top 10)",
        cols(
            "rank:int",
            "change",
            "project",
            "name",
            "status",
            "score:index",
            "cost:money",
            "value:money",
        ),
    )
    if ranking is None:
        section.note = "no open projects to rank"
        return section
    for x in ranking["top"]:
        section.rows.append(
            [
                x["rank"],
                rank_change(x["rank"], x["previous_rank"]),
                x["project_id"],
                x["name"],
                x["status"],
                x["score"],
                x["cost"],
                x["value"],
            ]
        )
    section.note = (
        f"model {ranking['model_id']} v{ranking['model_version']} ({ranking['method']}), "
        f"{ranking['source']} at log position {ranking['computed_at_position']}, "
        f"{ranking['ranked']} ranked of {ranking['candidates']} candidates"
    )
    return section


def _change_sections(changes: dict[str, Any]) -> list[Section]:
    counts = changes["counts"]
    labels = {
        "new_proposals": "new proposals",
        "approvals": "approvals",
        "status_changes": "status changes",
        "new_risks": "new risks",
        "closed_risks": "closed risks",
        "risk_score_changes": "risk scores changed",
        "alerts_raised": "alerts raised",
        "alerts_cleared": "alerts cleared",
        "budget_changes": "budget figures changed",
        "health_changes": "health changes",
        "entered_top": "entered the top 10",
        "left_top": "left the top 10",
    }

    def items(key: str) -> str:
        found = changes[key]
        shown = [
            x
            if isinstance(x, str)
            else x.get("project_id") or x.get("risk_id") or x.get("subject_id") or x["pool_id"]
            for x in found[:12]
        ]
        text = ", ".join(dict.fromkeys(shown))
        return text + (" …" if counts[key] > 12 else "")

    return [
        Section(
            "changes",
            "Changes since " + _since_text(changes.get("since", {"kind": "from"})),
            cols("change", "count:int", "which"),
            [[label, counts[key], items(key)] for key, label in labels.items()],
        ),
        Section(
            "status_changes",
            "Status changes",
            cols("project", "from", "to"),
            [[x["project_id"], x["from"], x["to"]] for x in changes["status_changes"]],
        ),
        Section(
            "budget_changes",
            "Budget figure changes",
            cols("pool", "currency", "figure", "from:money", "to:money", "delta:money"),
            [
                [x["pool_id"], x["currency"], x["figure"], x["from"], x["to"], x["delta"]]
                for x in changes["budget_changes"]
            ],
        ),
    ]


def _diff_sections(report: dict[str, Any]) -> list[Section]:
    start, end = report["from"], report["to"]
    totals = report["totals"]
    overview = Section("overview", "Diff", cols("item", "from", "to"))
    overview.rows = [
        ["as of (recorded)", start.get("as_of") or "now", end.get("as_of") or "now"],
        ["occurred as of", start.get("occurred_as_of") or "—", end.get("occurred_as_of") or "—"],
        ["log position", start["position"], end["position"]],
        ["projects", totals["from"]["projects"], totals["to"]["projects"]],
        ["open risks", totals["from"]["open_risks"], totals["to"]["open_risks"]],
        ["open alerts", totals["from"]["open_alerts"], totals["to"]["open_alerts"]],
        [
            "contingency reserve",
            totals["from"]["contingency_reserve"],
            totals["to"]["contingency_reserve"],
        ],
    ]
    changes = report["changes"]
    found = [overview, *_change_sections({"since": {"kind": "from"}, **changes})]
    steps = changes.get("transitions", [])
    more = changes.get("counts", {}).get("transitions", 0) - len(steps)
    found.append(
        Section(
            "transitions",
            "Every status step in between"
            + (f" (first {len(steps)}, {more} more)" if more > 0 else ""),
            cols("position:int", "occurred", "project", "from", "to", "by"),
            [
                [
                    x["position"],
                    x["occurred_at"],
                    x["project_id"],
                    x["from"] or "—",
                    x["to"],
                    x["actor"],
                ]
                for x in steps
            ],
        )
    )
    found.append(
        Section(
            "risk_score_changes",
            "Risk score changes",
            cols("risk", "from:int", "to:int"),
            [[x["risk_id"], x["from"], x["to"]] for x in changes["risk_score_changes"]],
        )
    )
    found.append(
        Section(
            "health_changes",
            "Health changes",
            cols("project", "from:rag", "to:rag"),
            [[x["project_id"], x["from"], x["to"]] for x in changes["health_changes"]],
        )
    )
    return found


def _health_row(x: dict[str, Any]) -> list[Any]:
    ev = x.get("earned_value") or {}
    return [
        x["project_id"],
        x["name"],
        x["status"],
        ev.get("cpi"),
        ev.get("spi"),
        x["schedule_slip_days"],
        ev.get("ev"),
        ev.get("ac"),
        ev.get("eac_typical"),
        x["explain"].split(": ", 1)[-1],
    ]


def _since_text(since: dict[str, Any]) -> str:
    match since.get("kind"):
        case "published":
            return (
                f"the report published at position {since['position']} "
                f"({since.get('generated_at')}: {since.get('rationale')})"
            )
        case "previous_day":
            return f"the day before (position {since['position']})"
        case "from":
            return "FROM"
    return "the start of the log"
