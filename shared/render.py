"""Rendering a report (the JSON the reporting service answers) as table, json, csv, md or
html. Pure: text in, text out; the CLI prints it or writes it to a file.

Every format but json renders the same `sections` (one table each). CSV puts them one
after the other, each with its own header row, and every row starts with its section name.
HTML is one self-contained file: inline CSS and hand-written inline SVG charts (risk heat
map, budget burn, value vs cost of the ranking, capacity by role and month, planned vs
actual cost of completed projects, EAC convergence), no scripts
and nothing fetched from the network.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.risk import DEFAULT_ZONES, RiskZone

FORMATS = ("table", "json", "csv", "md", "html")
SVG_NS = "http://www.w3.org/2000/svg"
NUMERIC = frozenset({"money", "int", "pct", "index", "number"})
RAG_COLOURS = {"red": "bold red", "amber": "yellow", "green": "green", "not_available": "dim"}
RAG_HTML = {"red": "#d9534f", "amber": "#f0ad4e", "green": "#5cb85c", "not_available": "#999"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
ZONE_FILL = {RiskZone.LOW: "#cfe8cf", RiskZone.MEDIUM: "#ffe08a", RiskZone.HIGH: "#f4a3a3"}


@dataclass(frozen=True)
class Column:
    name: str
    #: text, money, int, pct, index, number, rag, time
    kind: str = "text"


@dataclass
class Section:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""


def _cols(*spec: str) -> tuple[Column, ...]:
    """Columns from 'name' or 'name:kind'."""
    return tuple(Column(*s.split(":", 1)) if ":" in s else Column(s) for s in spec)


# --- sections ----------------------------------------------------------------------------


def sections(report: dict[str, Any]) -> list[Section]:
    kind = report.get("kind")
    if kind == "portfolio":
        return _portfolio_sections(report)
    if kind == "project":
        return _project_sections(report)
    if kind == "diff":
        return _diff_sections(report)
    raise ValueError(f"not a report: kind {kind!r}")


def _cut_rows(cut: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    return [
        [f"{prefix}as of (recorded)", cut.get("as_of") or "now"],
        [f"{prefix}occurred as of (business time)", cut.get("occurred_as_of") or "—"],
        [f"{prefix}log position", cut["position"]],
        [f"{prefix}events folded", cut["events"]],
        [f"{prefix}events skipped", cut["skipped"]],
    ]


def _portfolio_sections(report: dict[str, Any]) -> list[Section]:
    projects, budget, coverage = report["projects"], report["budget"], report["coverage"]
    risks, health, capacity = report["risks"], report["health"], report["capacity"]
    ranking, alerts, changes = report["ranking"], report["alerts"], report["changes"]
    since = changes["since"]
    overview = Section("overview", "Overview", _cols("item", "value"), _cut_rows(report["cut"]))
    overview.rows += [
        ["projects", projects["total"]],
        ["open risks", risks["open"]],
        ["contingency reserve", _total_text(risks["contingency_reserve"])],
        ["open alerts", alerts["open"]],
        ["portfolio health", health["portfolio"]["status"]],
        ["objectives without a funded project", ", ".join(coverage["unfunded"]) or "none"],
        ["changes since", _since_text(since)],
    ]
    for total in budget["totals"]:
        overview.rows.append(
            [
                f"budget {total['currency']}",
                f"allocated {_money(total['allocated'])}, actual {_money(total['actual'])}, "
                f"remaining {_money(total['remaining'])}",
            ]
        )
    found = [
        overview,
        Section(
            "projects_by_status",
            "Projects by status",
            _cols("status", "projects:int"),
            [[k, v] for k, v in projects["by_status"].items()],
        ),
        Section(
            "projects_by_stage",
            "Projects by stage",
            _cols("stage", "projects:int"),
            [[k, v] for k, v in projects["by_stage"].items()],
        ),
        Section(
            "budget",
            "Budget by pool",
            _cols(
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
            _cols(
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
            _cols("currency", "planned:money", "funded:money", "completed:money"),
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
            _cols(
                "risk",
                "project",
                "title",
                "kind",
                "probability:int",
                "impact:int",
                "score:int",
                "zone",
                "emv:money",
                "response",
            ),
            [_risk_row(x) for x in risks["top"]],
            note=f"{risks['open']} open ({risks['open_threats']} threats), contingency "
            f"reserve {_money(risks['contingency_reserve'])}, opportunities "
            f"{_money(risks['opportunities_emv'])}",
        ),
        Section(
            "risk_heat_map",
            "Risk heat map (open risks, probability x impact)",
            _cols("probability", *(f"impact_{i}:int" for i in range(1, 6))),
            [[p, *risks["heat_map"][p - 1]] for p in range(5, 0, -1)],
        ),
        Section(
            "health",
            "Earned value health",
            _cols(
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
            _cols(
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
            _cols("severity", "metric", "subject", "value:number", "threshold:number", "message"),
            [
                [
                    x["severity"],
                    x["metric"],
                    x["subject_id"],
                    x["value"],
                    x["threshold"],
                    x["message"],
                ]
                for x in alerts["items"]
            ],
        ),
    ]
    return found + _improvement_sections(report.get("improvement")) + _change_sections(changes)


def _ranking_section(ranking: dict[str, Any] | None) -> Section:
    section = Section(
        "ranking",
        "Ranking (top 10)",
        _cols(
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
                _rank_change(x["rank"], x["previous_rank"]),
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
            _cols("change", "count:int", "which"),
            [[label, counts[key], items(key)] for key, label in labels.items()],
        ),
        Section(
            "status_changes",
            "Status changes",
            _cols("project", "from", "to"),
            [[x["project_id"], x["from"], x["to"]] for x in changes["status_changes"]],
        ),
        Section(
            "budget_changes",
            "Budget figure changes",
            _cols("pool", "currency", "figure", "from:money", "to:money", "delta:money"),
            [
                [x["pool_id"], x["currency"], x["figure"], x["from"], x["to"], x["delta"]]
                for x in changes["budget_changes"]
            ],
        ),
    ]


def _project_sections(report: dict[str, Any]) -> list[Section]:
    project, case = report["project"], report["business_case"]
    ranking, health = report["ranking"], report["health"]
    card = Section("project", f"Project {project['project_id']}", _cols("item", "value"))
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
        *_cut_rows(report["cut"]),
    ]
    business = Section(
        "business_case",
        "Business case",
        _cols("year", "capex:money", "opex:money", "benefits:money"),
    )
    years = sorted({c["year"] for c in case["costs"]} | {b["year"] for b in case["benefits"]})
    for year in years:
        cost: dict[str, Any] = next((c for c in case["costs"] if c["year"] == year), {})
        benefit = sum(Decimal(b["amount"]) for b in case["benefits"] if b["year"] == year)
        business.rows.append([year, cost.get("capex"), cost.get("opex"), str(benefit)])
    business.rows.append(["total", case["capex"], case["opex"], case["benefits_total"]])
    business.note = f"{case['currency']}; NPV {_money(case['npv'])}"
    rank = Section("ranking", "Ranking", _cols("criterion", "contribution:index"))
    if ranking is None:
        rank.note = "no ranking yet"
    else:
        rank.rows = [[k, v] for k, v in ranking["breakdown"].items()]
        rank.note = (
            f"rank {ranking['rank']} of {ranking['of']}, score {ranking['score']} "
            f"({_rank_change(ranking['rank'], ranking['previous_rank'])}), {ranking['source']} "
            f"by model {ranking['model_id']} at log position {ranking['computed_at_position']}"
            if ranking["rank"] is not None
            else f"not ranked: {ranking['why_not_ranked']}"
        )
    budget = Section(
        "budget",
        "Budget",
        _cols(
            "pool",
            "currency",
            "allocated:money",
            "committed:money",
            "actual:money",
            "forecast:money",
            "remaining:money",
        ),
        [
            [
                x["pool_id"],
                x["currency"],
                x["allocated"],
                x["committed"],
                x["actual"],
                x["forecast_at_completion"],
                x["remaining"],
            ]
            for x in report["budget"]["pools"]
        ],
    )
    budget.rows += [
        [
            "total",
            x["currency"],
            x["allocated"],
            x["committed"],
            x["actual"],
            x["forecast_at_completion"],
            x["remaining"],
        ]
        for x in report["budget"]["totals"]
    ]
    risks = report["risks"]
    found = [
        card,
        business,
        rank,
        budget,
        Section(
            "risks",
            "Risks",
            _cols(
                "risk",
                "project",
                "title",
                "kind",
                "probability:int",
                "impact:int",
                "score:int",
                "zone",
                "emv:money",
                "response",
                "status",
            ),
            [[*_risk_row(x), x["status"]] for x in risks["items"]],
            note=f"contingency reserve {_money(risks['contingency_reserve'])}",
        ),
        Section(
            "health",
            "Health",
            _cols("indicator", "value:number", "status:rag", "reason"),
            []
            if health is None
            else [[i["name"], i["value"], i["status"], i["reason"]] for i in health["indicators"]],
            note="no baseline"
            if health is None
            else f"{health['status']}: {health['explain']}; EVM "
            + ", ".join(f"{k.upper()} {v}" for k, v in (health["evm"] or {}).items()),
        ),
        Section(
            "capacity",
            "Capacity demand",
            _cols("role", "period", "demand:number", "unit"),
            [[x["role"], x["period"], x["demand"], x["unit"]] for x in report["capacity"]],
        ),
        Section(
            "alerts",
            "Open alerts",
            _cols("severity", "metric", "value:number", "threshold:number", "message"),
            [
                [x["severity"], x["metric"], x["value"], x["threshold"], x["message"]]
                for x in report["alerts"]
            ],
        ),
        Section(
            "audit",
            "Decision history (latest highlights)",
            _cols("position:int", "recorded_at:time", "actor", "event", "what"),
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
    found[-1:-1] = _improvement_sections(report.get("improvement"), one_project=True)
    return found


def _improvement_sections(
    improvement: dict[str, Any] | None, one_project: bool = False
) -> list[Section]:
    """Estimate accuracy, benefit realisation, EAC convergence and lessons learned."""
    if improvement is None:  # a report from before these figures existed
        return []
    accuracy, benefits = improvement["estimate_accuracy"], improvement["benefits"]
    convergence, lessons = improvement["eac_convergence"], improvement["lessons"]
    found = [
        Section(
            "accuracy",
            "Estimate accuracy (completed projects: business case vs actual)",
            _cols(
                "project",
                "category",
                "sponsor",
                "size",
                "planned:money",
                "latest_estimate:money",
                "actual:money",
                "cost_variance:pct",
                "planned_days:int",
                "actual_days:int",
                "days_late:int",
                "duration_variance:pct",
            ),
            [
                [
                    x["project_id"],
                    x["category"],
                    x["sponsor"],
                    x["size"],
                    x["planned_cost"],
                    x["latest_estimate"],
                    x["actual_cost"],
                    x["cost_variance_percent"],
                    x["planned_days"],
                    x["actual_days"],
                    x["duration_variance_days"],
                    x["duration_variance_percent"],
                ]
                for x in accuracy["projects"]
            ],
            note="no actual cost recorded: " + (", ".join(accuracy["without_actuals"]) or "none"),
        )
    ]
    if not one_project:
        groups = [
            [grouping, x[grouping], x]
            for grouping in ("category", "sponsor", "size")
            for x in accuracy[f"by_{grouping}"]
        ] + [["total", "all", x] for x in accuracy["totals"]]
        found.append(
            Section(
                "accuracy_by_group",
                "Estimate accuracy by category, sponsor and size",
                _cols(
                    "by",
                    "group",
                    "currency",
                    "projects:int",
                    "with_actuals:int",
                    "planned:money",
                    "actual:money",
                    "cost_variance:pct",
                    "mean_abs_cost_error:pct",
                    "on_budget:int",
                    "duration_variance:pct",
                    "mean_abs_duration_error:pct",
                    "on_time:int",
                ),
                [
                    [
                        by,
                        key,
                        x["currency"],
                        x["projects"],
                        x["with_actuals"],
                        x["planned_cost"],
                        x["actual_cost"],
                        x["cost_variance_percent"],
                        x["mean_abs_cost_error_percent"],
                        x["on_budget"],
                        x["duration_variance_percent"],
                        x["mean_abs_duration_error_percent"],
                        x["on_time"],
                    ]
                    for by, key, x in groups
                ],
                note="size by planned cost: small < 250k, medium < 1M, large; on budget: "
                "within 10%",
            )
        )
    found += [
        Section(
            "benefits",
            "Benefit realisation (business case vs realised)",
            _cols(
                "project",
                "status",
                "currency",
                "expected:money",
                "expected_to_date:money",
                "realised:money",
                "realisation:pct",
                "by_year (expected / realised)",
            ),
            [
                [
                    x["project_id"],
                    x["status"],
                    x["currency"],
                    x["expected_total"],
                    x["expected_to_date"],
                    x["realised_total"],
                    x["realisation_percent"],
                    "; ".join(
                        f"{y['year']}: {_money(y['expected'])} / {_money(y['realised'])}"
                        for y in x["years"]
                    ),
                ]
                for x in benefits["projects"]
            ],
            note="awaiting realised benefits: "
            + (", ".join(benefits["awaiting"]) or "none")
            + "".join(
                f"; {t['currency']} realised {_money(t['realised_total'])} of "
                f"{_money(t['expected_to_date'])} expected to date"
                for t in benefits["totals"]
            ),
        ),
        Section(
            "eac_convergence",
            "EAC convergence (error against the final cost at 25/50/75% of the life)",
            _cols(
                "project",
                "status",
                "reports:int",
                "latest_eac:money",
                "final_cost:money",
                "error_25:pct",
                "error_50:pct",
                "error_75:pct",
            ),
            [
                [
                    x["project_id"],
                    x["status"],
                    len(x["series"]),
                    x["series"][-1]["eac"] if x["series"] else None,
                    x["final_cost"],
                    *(
                        [e["error_percent"] for e in x["errors"]]
                        if x["errors"]
                        else [None, None, None]
                    ),
                ]
                for x in convergence["projects"]
            ],
            note="mean absolute error: "
            + ", ".join(
                f"{s['life_percent']}% of life {pretty(s['mean_abs_error_percent'], 'pct')} "
                f"({s['projects']} projects)"
                for s in convergence["summary"]
            ),
        ),
        Section(
            "eac_series",
            "EAC at each progress report",
            _cols(
                "project",
                "period",
                "complete:pct",
                "bac:money",
                "ac:money",
                "ev:money",
                "eac:money",
            ),
            [
                [
                    x["project_id"],
                    p["period"],
                    p["percent_complete"],
                    p["bac"],
                    p["ac"],
                    p["ev"],
                    p["eac"],
                ]
                for x in convergence["projects"]
                for p in x["series"]
            ],
        ),
        Section(
            "lessons",
            "Lessons learned" + ("" if one_project else " (latest first)"),
            _cols("project", "lesson", "category", "title", "recommendation", "recorded_at:time"),
            [
                [
                    x["project_id"],
                    x["lesson_id"],
                    x["category"],
                    x["title"],
                    x["recommendation"],
                    x["recorded_at"],
                ]
                for x in lessons["items"]
            ],
            note=f"{lessons['total']} lessons"
            + (
                ": " + ", ".join(f"{k} {v}" for k, v in lessons["by_category"].items())
                if lessons["by_category"]
                else ""
            )
            + "; search them with `portfolio lessons --search WORDS`",
        ),
    ]
    return found


def _diff_sections(report: dict[str, Any]) -> list[Section]:
    start, end = report["from"], report["to"]
    totals = report["totals"]
    overview = Section("overview", "Diff", _cols("item", "from", "to"))
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
    found.append(
        Section(
            "risk_score_changes",
            "Risk score changes",
            _cols("risk", "from:int", "to:int"),
            [[x["risk_id"], x["from"], x["to"]] for x in changes["risk_score_changes"]],
        )
    )
    found.append(
        Section(
            "health_changes",
            "Health changes",
            _cols("project", "from:rag", "to:rag"),
            [[x["project_id"], x["from"], x["to"]] for x in changes["health_changes"]],
        )
    )
    return found


def _risk_row(x: dict[str, Any]) -> list[Any]:
    return [
        x["risk_id"],
        x["project_id"] or "portfolio",
        x["title"],
        x["kind"],
        x["probability"],
        x["impact"],
        x["score"],
        x["zone"],
        x["emv"],
        x["response"],
    ]


def _health_row(x: dict[str, Any]) -> list[Any]:
    ev = x["evm"] or {}
    return [
        x["project_id"],
        x["name"],
        x["status"],
        ev.get("cpi"),
        ev.get("spi"),
        x["schedule_slip_days"],
        ev.get("ev"),
        ev.get("ac"),
        ev.get("eac"),
        x["explain"].split(": ", 1)[-1],
    ]


def _rank_change(rank: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    moved = previous - rank
    return f"+{moved}" if moved > 0 else str(moved) if moved else "="


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


# --- formatting --------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _money(value: Any) -> str:
    """Whole currency units for people (csv and json keep the cents)."""
    amount = _decimal(value) if value is not None else None
    if amount is None:
        return "—" if value is None else str(value)
    return f"{amount.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def _total_text(value: Any) -> str:
    return _money(value)


def pretty(value: Any, kind: str) -> str:
    """A cell for people (table, md, html); csv keeps the raw value."""
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if kind == "time":
        try:
            return f"{datetime.fromisoformat(str(value)):%Y-%m-%d %H:%M:%S}"
        except ValueError:
            return str(value)
    number = _decimal(value) if kind in NUMERIC else None
    if number is None:
        return str(value)
    match kind:
        case "money":
            return _money(number)
        case "pct":
            return f"{number:.0f}%"
        case "index":
            return f"{number:.3f}"
        case "number":
            if number == number.to_integral_value():
                return f"{number:,.0f}"
            return f"{number:,.2f}"
    return str(value)


def raw(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return str(value)


def title_of(report: dict[str, Any]) -> str:
    match report.get("kind"):
        case "project":
            return f"Project scorecard {report['project']['project_id']}"
        case "diff":
            return "Portfolio diff"
    return "Portfolio report"


def subtitle_of(report: dict[str, Any]) -> str:
    if report.get("kind") == "diff":
        start, end = report["from"], report["to"]
        return f"from log position {start['position']} to {end['position']}"
    cut = report["cut"]
    parts = [f"as of {cut.get('as_of') or 'now'}"]
    if cut.get("occurred_as_of"):
        parts.append(f"occurred by {cut['occurred_as_of']}")
    parts.append(f"log position {cut['position']}")
    return ", ".join(parts) + f"; generated {report['generated_at']}"


# --- renderers ---------------------------------------------------------------------------


def render(report: dict[str, Any], fmt: str, width: int = 160) -> str:
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unsupported format {fmt!r}; one of {', '.join(FORMATS)}")
    return renderer(report, width)


def rich_tables(report: dict[str, Any]) -> list[Table]:
    tables = []
    for section in sections(report):
        table = Table(title=section.title, caption=section.note or None, title_justify="left")
        for column in section.columns:
            numeric = column.kind in NUMERIC or column.kind == "rag"
            table.add_column(
                column.name,
                justify="right" if column.kind in NUMERIC else "left",
                no_wrap=numeric,
                overflow="fold",
            )
        for row in section.rows:
            table.add_row(
                *(_rich_cell(v, c.kind) for v, c in zip(row, section.columns, strict=True))
            )
        tables.append(table)
    return tables


def _rich_cell(value: Any, kind: str) -> str:
    text = pretty(value, kind).replace("[", "\\[")
    if kind == "rag" and value in RAG_COLOURS:
        return f"[{RAG_COLOURS[value]}]{text}[/]"
    return text


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{title_of(report)}[/] — {subtitle_of(report)}")
    for table in rich_tables(report):
        console.print(table)


def _table(report: dict[str, Any], width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    print_report(report, console)
    return console.export_text()


def _json(report: dict[str, Any], width: int) -> str:
    return json.dumps(report, indent=2) + "\n"


def _csv(report: dict[str, Any], width: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for index, section in enumerate(sections(report)):
        if index:
            writer.writerow([])
        writer.writerow(["section", *(c.name for c in section.columns)])
        for row in section.rows:
            writer.writerow([section.name, *(raw(v) for v in row)])
    return out.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md(report: dict[str, Any], width: int) -> str:
    lines = [f"# {title_of(report)}", "", f"_{subtitle_of(report)}_", ""]
    for section in sections(report):
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [_md_cell(section.note), ""]
        if not section.rows:
            lines += ["_none_", ""]
            continue
        lines.append("| " + " | ".join(c.name for c in section.columns) + " |")
        lines.append(
            "|" + "|".join("---:" if c.kind in NUMERIC else "---" for c in section.columns) + "|"
        )
        for row in section.rows:
            cells = (_md_cell(pretty(v, c.kind)) for v, c in zip(row, section.columns, strict=True))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- html and its charts -----------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px}h2{margin:28px 0 6px;font-size:18px}.sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:6px 0 4px}th,td{border-bottom:1px solid #ddd;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#555;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{border:1px solid #e4e4e4;padding:8px}
.chart h3{margin:0 0 6px;font-size:15px}.rag{color:#fff;border-radius:3px;padding:0 6px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html(report: dict[str, Any], width: int) -> str:
    body = [
        f"<h1>{_esc(title_of(report))}</h1>",
        f'<div class="sub">{_esc(subtitle_of(report))}</div>',
    ]
    charts = charts_of(report)
    if charts:
        body.append('<div class="charts">')
        body += [f'<div class="chart"><h3>{_esc(t)}</h3>{svg}</div>' for t, svg in charts]
        body.append("</div>")
    for section in sections(report):
        body.append(f'<h2 id="{_esc(section.name)}">{_esc(section.title)}</h2>')
        if section.note:
            body.append(f'<div class="note">{_esc(section.note)}</div>')
        if not section.rows:
            body.append('<div class="note"><em>none</em></div>')
            continue
        head = "".join(f"<th>{_esc(c.name)}</th>" for c in section.columns)
        rows = []
        for row in section.rows:
            cells = "".join(_html_cell(v, c) for v, c in zip(row, section.columns, strict=True))
            rows.append(f"<tr>{cells}</tr>")
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title_of(report))}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_cell(value: Any, column: Column) -> str:
    text = _esc(pretty(value, column.kind))
    if column.kind == "rag" and value in RAG_HTML:
        return f'<td><span class="rag" style="background:{RAG_HTML[value]}">{text}</span></td>'
    return f'<td class="n">{text}</td>' if column.kind in NUMERIC else f"<td>{text}</td>"


def charts_of(report: dict[str, Any]) -> list[tuple[str, str]]:
    match report.get("kind"):
        case "portfolio":
            return [
                ("Risk heat map", heat_map_svg(report["risks"]["heat_map"])),
                ("Budget burn (cumulative actual by pool)", burn_svg(report["budget"]["pools"])),
                (
                    "Value vs cost of the ranking",
                    bubble_svg((report["ranking"] or {}).get("points", [])),
                ),
                ("Capacity by role and month", capacity_svg(report["capacity"]["cells"])),
                *_improvement_charts(report.get("improvement")),
            ]
        case "project":
            return [
                ("Risk heat map", heat_map_svg(report["risks"]["heat_map"])),
                ("Budget burn (cumulative actual by pool)", burn_svg(report["budget"]["pools"])),
                *_improvement_charts(report.get("improvement")),
            ]
    return []


def _improvement_charts(improvement: dict[str, Any] | None) -> list[tuple[str, str]]:
    if improvement is None:
        return []
    return [
        (
            "Estimate accuracy: planned vs actual cost",
            accuracy_svg(improvement["estimate_accuracy"]["projects"]),
        ),
        (
            "EAC convergence (EAC as % of the final cost, by % complete)",
            convergence_svg(improvement["eac_convergence"]["projects"]),
        ),
    ]


def _svg(chart_id: str, width: int, height: int, label: str, parts: Iterable[str]) -> str:
    return (
        f'<svg id="{chart_id}" xmlns="{SVG_NS}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">'
        f"<title>{_esc(label)}</title>" + "".join(parts) + "</svg>"
    )


def _text(x: float, y: float, text: Any, **attrs: Any) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{_esc(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{_esc(text)}</text>'


def heat_map_svg(heat: Sequence[Sequence[int]]) -> str:
    """5 x 5: probability up (5 at the top), impact right; cells coloured by score zone."""
    cell, left, top = 52, 64, 12
    parts = []
    for probability in range(5, 0, -1):
        y = top + (5 - probability) * cell
        parts.append(_text(left - 8, y + cell / 2 + 4, probability, text_anchor="end"))
        for impact in range(1, 6):
            x = left + (impact - 1) * cell
            count = heat[probability - 1][impact - 1]
            fill = ZONE_FILL[DEFAULT_ZONES.zone(probability * impact)]
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                f"<title>probability {probability} x impact {impact}: {count} open</title></rect>"
            )
            if count:
                parts.append(
                    _text(
                        x + cell / 2 - 1,
                        y + cell / 2 + 5,
                        count,
                        text_anchor="middle",
                        font_weight="bold",
                    )
                )
    for impact in range(1, 6):
        middle = left + (impact - 1) * cell + cell / 2 - 1
        parts.append(_text(middle, top + 5 * cell + 16, impact, text_anchor="middle"))
    parts.append(_text(left + 2.5 * cell, top + 5 * cell + 34, "impact", text_anchor="middle"))
    parts.append(
        _text(
            16,
            top + 2.5 * cell,
            "probability",
            text_anchor="middle",
            transform=f"rotate(-90 16 {top + 2.5 * cell})",
        )
    )
    return _svg("risk-heat-map", left + 5 * cell + 10, top + 5 * cell + 44, "Risk heat map", parts)


def _compact(amount: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= limit:
            return f"{amount / limit:.3g}{suffix}"
    return f"{amount:.0f}"


def _axes(
    left: int,
    top: int,
    width: int,
    height: int,
    y_max: float,
    scale: Callable[[float], float],
    label: Callable[[float], str] = _compact,
) -> list[str]:
    parts = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" '
        'stroke="#888"/>',
    ]
    for step in range(5):
        value = y_max * step / 4
        y = scale(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(_text(left - 6, y + 4, label(value), text_anchor="end", font_size=11))
    return parts


def _no_data(chart_id: str, label: str, message: str) -> str:
    return _svg(chart_id, 420, 80, label, [_text(210, 44, message, text_anchor="middle")])


def burn_svg(pools: Sequence[dict[str, Any]]) -> str:
    """Cumulative actual cost per pool by month, its allocation as a dashed line."""
    label = "Budget burn"
    periods = sorted({p for pool in pools for p in pool["actual_by_period"]})
    if not periods:
        return _no_data("budget-burn", label, "no actual costs yet")
    left, top, width, height = 64, 12, 520, 220
    series = []
    y_max = 1.0
    for pool in pools:
        running, points = 0.0, []
        for period in periods:
            running += float(pool["actual_by_period"].get(period, 0))
            points.append(running)
        allocated = float(pool["allocated"])
        series.append((pool["pool_id"], points, allocated))
        y_max = max(y_max, running, allocated)
    y_max *= 1.05

    def x_of(index: int) -> float:
        return left + (width * index / max(1, len(periods) - 1) if len(periods) > 1 else width / 2)

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, y_max, y_of)
    every = max(1, math.ceil(len(periods) / 12))
    for index, period in enumerate(periods):
        if index % every == 0:
            parts.append(
                _text(x_of(index), top + height + 16, period, text_anchor="middle", font_size=11)
            )
    for index, (pool_id, points, allocated) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(points))
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{_esc(pool_id)}: {_compact(points[-1])} actual</title></polyline>"
        )
        parts += [
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{colour}"/>'
            for i, v in enumerate(points)
        ]
        y = y_of(allocated)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="5,4"><title>{_esc(pool_id)} allocated '
            f"{_compact(allocated)}</title></line>"
        )
        parts.append(
            f'<rect x="{left + width + 12}" y="{top + 18 * index}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        parts.append(_text(left + width + 26, top + 18 * index + 9, pool_id, font_size=12))
    return _svg("budget-burn", left + width + 150, top + height + 30, label, parts)


def bubble_svg(points: Sequence[dict[str, Any]]) -> str:
    """Each ranked project: cost (x), score (y), expected benefits (bubble area)."""
    label = "Value vs cost"
    usable = [p for p in points if p.get("cost") is not None]
    if not usable:
        return _no_data("value-vs-cost", label, "no ranking yet")
    left, top, width, height = 64, 12, 520, 260
    x_max = max(float(p["cost"]) for p in usable) * 1.1 or 1.0
    y_max = max(max(float(p["score"]) for p in usable) * 1.1, 0.01)
    v_max = max(float(p["value"] or 0) for p in usable) or 1.0

    def x_of(value: float) -> float:
        return left + width * value / x_max

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, y_max, y_of, lambda v: f"{v:.2f}")
    for step in range(5):
        cost = x_max * step / 4
        parts.append(_text(x_of(cost), top + height + 16, _compact(cost), text_anchor="middle"))
    parts.append(_text(left + width / 2, top + height + 34, "cost", text_anchor="middle"))
    parts.append(
        _text(
            14,
            top + height / 2,
            "score",
            text_anchor="middle",
            transform=f"rotate(-90 14 {top + height / 2})",
        )
    )
    for index, point in enumerate(sorted(usable, key=lambda p: -float(p["value"] or 0))):
        radius = 4 + 18 * math.sqrt(float(point["value"] or 0) / v_max)
        x, y = x_of(float(point["cost"])), y_of(float(point["score"]))
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}" '
            f'fill-opacity="0.45" stroke="{colour}"><title>#{point["rank"]} '
            f"{_esc(point['project_id'])}: score {point['score']}, cost "
            f"{_money(point['cost'])}, value {_money(point['value'])}</title></circle>"
        )
        if point["rank"] <= 10:
            parts.append(_text(x + radius + 2, y + 4, point["project_id"], font_size=11))
    return _svg("value-vs-cost", left + width + 90, top + height + 44, label, parts)


def capacity_svg(cells: Sequence[dict[str, Any]]) -> str:
    """Utilisation per role (rows) and month (columns): green up to 85 %, amber up to
    100 %, red beyond."""
    label = "Capacity by role and month"
    roles = sorted({c["role"] for c in cells})
    months = sorted({c["period"] for c in cells})
    if not cells:
        return _no_data("capacity", label, "no capacity set")
    by_cell = {(c["role"], c["period"]): c for c in cells}
    cell_w, cell_h, left, top = 46, 26, 130, 40
    parts = []
    for column, month in enumerate(months):
        x = left + column * cell_w + cell_w / 2
        parts.append(
            _text(
                x,
                top - 8,
                month,
                text_anchor="middle",
                font_size=10,
                transform=f"rotate(-30 {x} {top - 8})",
            )
        )
    for row, role in enumerate(roles):
        y = top + row * cell_h
        parts.append(_text(left - 8, y + cell_h / 2 + 4, role, text_anchor="end", font_size=12))
        for column, month in enumerate(months):
            found = by_cell.get((role, month))
            x = left + column * cell_w
            percent = None if found is None else found["utilisation_percent"]
            if percent is None:
                fill, text = "#eee", ""
            else:
                value = float(percent)
                fill = "#a8d5a2" if value <= 85 else "#ffd27f" if value <= 100 else "#f28b82"
                text = f"{value:.0f}%"
            tip = (
                f"{role} {month}: no capacity"
                if found is None
                else f"{role} {month}: demand {found['demand']} of {found['net_capacity']}"
            )
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}">'
                f"<title>{_esc(tip)}</title></rect>"
            )
            if text:
                parts.append(
                    _text(
                        x + cell_w / 2 - 1,
                        y + cell_h / 2 + 4,
                        text,
                        text_anchor="middle",
                        font_size=10,
                    )
                )
    return _svg(
        "capacity", left + len(months) * cell_w + 10, top + len(roles) * cell_h + 10, label, parts
    )


def accuracy_svg(rows: Sequence[dict[str, Any]]) -> str:
    """Per completed project with actual costs: planned (grey) and actual (coloured: red
    above plan, green within it) cost bars side by side."""
    label = "Planned vs actual cost"
    usable = [x for x in rows if x["actual_cost"] is not None][:40]
    if not usable:
        return _no_data("estimate-accuracy", label, "no completed project with actual costs")
    left, top, height, group = 64, 12, 220, 44
    width = group * len(usable)
    y_max = max(max(float(x["planned_cost"]), float(x["actual_cost"])) for x in usable) * 1.1
    y_max = y_max or 1.0

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, y_max, y_of)
    for index, row in enumerate(usable):
        x = left + index * group + 6
        planned, actual = float(row["planned_cost"]), float(row["actual_cost"])
        colour = "#d9534f" if actual > planned else "#5cb85c"
        tip = (
            f"{row['project_id']}: planned {_money(row['planned_cost'])}, actual "
            f"{_money(row['actual_cost'])} ({pretty(row['cost_variance_percent'], 'pct')})"
        )
        for offset, value, fill in ((0, planned, "#bbb"), (16, actual, colour)):
            y = y_of(value)
            parts.append(
                f'<rect x="{x + offset}" y="{y:.1f}" width="15" height="{top + height - y:.1f}" '
                f'fill="{fill}"><title>{_esc(tip)}</title></rect>'
            )
        middle = x + 15
        parts.append(
            _text(
                middle,
                top + height + 12,
                row["project_id"],
                text_anchor="end",
                font_size=10,
                transform=f"rotate(-40 {middle} {top + height + 12})",
            )
        )
    legend = (("#bbb", "planned"), ("#5cb85c", "actual within plan"), ("#d9534f", "over plan"))
    for index, (fill, name) in enumerate(legend):
        y = top + height + 62 + 16 * index
        parts.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{fill}"/>')
        parts.append(_text(left + 14, y, name, font_size=11))
    return _svg("estimate-accuracy", max(left + width + 20, 220), top + height + 112, label, parts)


def convergence_svg(rows: Sequence[dict[str, Any]]) -> str:
    """One line per completed project: its EAC at each progress report as a percentage of
    the final cost against percent complete; 100% is the truth."""
    label = "EAC convergence"
    lines: list[tuple[str, list[tuple[float, float]]]] = []
    for row in [x for x in rows if x["final_cost"]][: len(PALETTE)]:
        final = float(row["final_cost"])
        reports = [(float(p["percent_complete"]), p["eac"]) for p in row["series"] if p["eac"]]
        if reports:
            lines.append((row["project_id"], [(x, 100 * float(e) / final) for x, e in reports]))
    if not lines:
        return _no_data("eac-convergence", label, "no completed project with progress reports")
    left, top, width, height = 64, 12, 420, 220
    y_max = max(150.0, *(y for _, pts in lines for _, y in pts)) * 1.05

    def x_of(value: float) -> float:
        return left + width * value / 100

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, y_max, y_of, lambda v: f"{v:.0f}%")
    for step in range(5):
        parts.append(
            _text(x_of(step * 25), top + height + 16, f"{step * 25}%", text_anchor="middle")
        )
    parts.append(_text(left + width / 2, top + height + 34, "complete", text_anchor="middle"))
    truth_y = y_of(100)
    parts.append(
        f'<line x1="{left}" y1="{truth_y:.1f}" x2="{left + width}" y2="{truth_y:.1f}" '
        'stroke="#333" stroke-dasharray="5,4"><title>final cost</title></line>'
    )
    for index, (project_id, points) in enumerate(lines):
        colour = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{_esc(project_id)}</title></polyline>"
        )
        parts += [
            f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" fill="{colour}">'
            f"<title>{_esc(project_id)} at {x:.0f}%: EAC {y:.0f}% of final</title></circle>"
            for x, y in points
        ]
        parts.append(
            f'<rect x="{left + width + 12}" y="{top + 18 * index}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        parts.append(_text(left + width + 26, top + 18 * index + 9, project_id, font_size=12))
    return _svg("eac-convergence", left + width + 150, top + height + 44, label, parts)


RENDERERS: dict[str, Callable[[dict[str, Any], int], str]] = {
    "table": _table,
    "json": _json,
    "csv": _csv,
    "md": _md,
    "html": _html,
}
