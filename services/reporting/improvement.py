"""Continuous improvement, pure: what closed projects teach about estimating and delivering.

Folded by `PortfolioReport` (report.py); these functions turn its facts into figures
(`figures`: of every project or one; `find_lessons`: the lessons a search matches).

- **Estimate accuracy** (completed projects): the business case as proposed (capex + opex,
  planned start to planned end) against the actual cost recorded in the ledger and the
  actual duration (started to completed, both days counted). Variance = actual - planned,
  in percent of planned. A completed project without any actual cost recorded is listed
  but left out of the cost figures (its duration still counts). Grouped by category,
  sponsor and size band (the planned cost: small < 250,000, medium < 1,000,000, large),
  each group per currency: totals, the variance of the totals, the mean absolute error of
  its projects, how many landed within 10% of budget and on time.
- **Benefit realisation**: each completed project's expected benefits by year (business
  case) against the realised benefits recorded (the latest figure per year). Realisation
  = realised / expected to date, where "to date" are the years up to the last one realised.
- **EAC convergence**: at every progress report, the EAC (BAC x AC / EV, as the risk
  monitor computes it) with BAC and EV as reported then and AC = the actual costs booked
  for the months up to the reported one (so the order in which a month's invoices and its
  progress report arrive does not matter). For a completed project the final actual cost
  is the truth; the error of the forecast standing at 25%, 50% and 75% of its life
  (started to completed) is (EAC - final) / final, and the summary gives the mean
  absolute error at each point.
- **Lessons learned**: every lesson, searchable by words (all must appear in the title,
  description, recommendation, category or the project's id, name or category), project
  and category.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.reporting.facts import (
    LIST_LIMIT,
    ZERO,
    EacPoint,
    Lesson,
    ProjectFacts,
    Status,
    cumulative,
    money,
    text,
)
from services.reporting.report import PortfolioReport

TENTH = Decimal("0.1")
#: Upper bounds of the size bands, on the planned cost.
SIZE_BANDS = ((Decimal(250_000), "small"), (Decimal(1_000_000), "medium"))
LARGE = "large"
#: Within this percentage of the planned cost counts as on budget.
ON_BUDGET_PERCENT = Decimal(10)
#: Points of a project's life at which the EAC error is measured.
LIFE_POINTS = (25, 50, 75)
GROUPINGS = ("category", "sponsor", "size")


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if not whole else (part * 100 / whole).quantize(TENTH, rounding=ROUND_HALF_UP)


def size_band(cost: Decimal) -> str:
    return next((name for bound, name in SIZE_BANDS if cost < bound), LARGE)


def days(start: date, end: date) -> int:
    """Calendar days from start to end, both counted."""
    return (end - start).days + 1


# --- estimate accuracy -----------------------------------------------------------------------


def accuracy_row(facts: ProjectFacts, actual: Decimal | None) -> dict[str, Any] | None:
    """One completed project's planned against actual cost and duration (None: not
    completed). `actual` None: no actual cost recorded."""
    if facts.completed_on is None:
        return None
    planned = facts.proposed.cost
    started = facts.started_on or facts.proposed.planned_start
    planned_days = days(facts.proposed.planned_start, facts.proposed.planned_end)
    actual_days = days(started, facts.completed_on)
    return {
        "project_id": facts.profile.project_id,
        "name": facts.profile.name,
        "category": facts.profile.category,
        "sponsor": facts.profile.sponsor,
        "size": size_band(planned),
        "currency": facts.profile.currency,
        "planned_cost": money(planned),
        "latest_estimate": money(facts.profile.cost),
        "actual_cost": None if actual is None else money(actual),
        "cost_variance": None if actual is None else money(actual - planned),
        "cost_variance_percent": None
        if actual is None
        else text(percent(actual - planned, planned)),
        "planned_start": facts.proposed.planned_start.isoformat(),
        "planned_end": facts.proposed.planned_end.isoformat(),
        "started_on": started.isoformat(),
        "completed_on": facts.completed_on.isoformat(),
        "planned_days": planned_days,
        "actual_days": actual_days,
        "duration_variance_days": actual_days - planned_days,
        "duration_variance_percent": text(
            percent(Decimal(actual_days - planned_days), Decimal(planned_days))
        ),
    }


def _group(rows: list[dict[str, Any]]) -> dict[str, Any]:
    costed = [x for x in rows if x["actual_cost"] is not None]
    planned = sum((Decimal(x["planned_cost"]) for x in costed), ZERO)
    actual = sum((Decimal(x["actual_cost"]) for x in costed), ZERO)
    errors = [
        abs(Decimal(x["cost_variance_percent"])) for x in costed if x["cost_variance_percent"]
    ]
    planned_days = sum(x["planned_days"] for x in rows)
    actual_days = sum(x["actual_days"] for x in rows)
    day_errors = [abs(Decimal(x["duration_variance_percent"])) for x in rows]
    return {
        "projects": len(rows),
        "with_actuals": len(costed),
        "planned_cost": money(planned),
        "actual_cost": money(actual),
        "cost_variance_percent": text(percent(actual - planned, planned)),
        "mean_abs_cost_error_percent": text(_mean(errors)),
        "on_budget": sum(1 for e in errors if e <= ON_BUDGET_PERCENT),
        "planned_days": planned_days,
        "actual_days": actual_days,
        "duration_variance_percent": text(
            percent(Decimal(actual_days - planned_days), Decimal(planned_days))
        ),
        "mean_abs_duration_error_percent": text(_mean(day_errors)),
        "on_time": sum(1 for x in rows if x["actual_days"] <= x["planned_days"]),
    }


def _mean(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    return (sum(values, ZERO) / len(values)).quantize(TENTH, rounding=ROUND_HALF_UP)


def estimate_accuracy(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Completed projects' rows, their totals and the groups (each per currency)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for grouping in GROUPINGS:
        members: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            members[(row[grouping], row["currency"])].append(row)
        by[grouping] = [
            {grouping: key, "currency": currency, **_group(found)}
            for (key, currency), found in sorted(members.items())
        ]
    currencies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        currencies[row["currency"]].append(row)
    return {
        "projects": rows[:limit],
        "totals": [{"currency": c, **_group(found)} for c, found in sorted(currencies.items())],
        "without_actuals": [x["project_id"] for x in rows if x["actual_cost"] is None][:limit],
        **{f"by_{grouping}": by[grouping] for grouping in GROUPINGS},
    }


# --- benefit realisation ---------------------------------------------------------------------


def benefits_row(facts: ProjectFacts) -> dict[str, Any]:
    expected: dict[int, Decimal] = defaultdict(Decimal)
    for b in facts.profile.benefits:
        expected[b.year] += b.amount
    realised = facts.realised
    last = max(realised, default=None)
    to_date = sum((a for y, a in expected.items() if last is not None and y <= last), ZERO)
    realised_total = sum(realised.values(), ZERO)
    return {
        "project_id": facts.profile.project_id,
        "name": facts.profile.name,
        "status": str(facts.profile.status),
        "currency": facts.profile.currency,
        "expected_total": money(sum(expected.values(), ZERO)),
        "expected_to_date": money(to_date),
        "realised_total": money(realised_total),
        "realisation_percent": text(percent(realised_total, to_date)),
        "years": [
            {
                "year": year,
                "expected": money(expected.get(year, ZERO)),
                "realised": None if year not in realised else money(realised[year]),
            }
            for year in sorted(set(expected) | set(realised))
        ],
    }


def benefit_realisation(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        found = totals[row["currency"]]
        for name in ("expected_total", "expected_to_date", "realised_total"):
            found[name] += Decimal(row[name])
    return {
        "projects": rows[:limit],
        "awaiting": [x["project_id"] for x in rows if not any(y["realised"] for y in x["years"])][
            :limit
        ],
        "totals": [
            {
                "currency": currency,
                **{k: money(v) for k, v in sorted(f.items())},
                "realisation_percent": text(percent(f["realised_total"], f["expected_to_date"])),
            }
            for currency, f in sorted(totals.items())
        ],
    }


# --- EAC convergence -------------------------------------------------------------------------


def convergence_row(
    facts: ProjectFacts,
    points: list[EacPoint],
    spent: Mapping[str, Decimal],
    limit: int,
    series: bool = True,
) -> dict[str, Any]:
    """A project's EAC series (`spent`: its actual cost by month; none without `series`,
    for a row only its errors are kept of); for a completed one with actual costs, the
    error of the forecast standing at each point of its life."""
    final = sum(spent.values(), ZERO)
    ac_to = cumulative(spent)
    errors = []
    if facts.completed_on is not None and final:
        start = facts.started_on or facts.proposed.planned_start
        life = (facts.completed_on - start).days
        for at in LIFE_POINTS:
            moment = start + timedelta(days=life * at // 100)
            standing = next((x for x in reversed(points) if x.as_of <= moment), None)
            eac = None if standing is None else standing.eac(ac_to(standing.period))
            errors.append(
                {
                    "life_percent": at,
                    "date": moment.isoformat(),
                    "period": None if standing is None else standing.period,
                    "eac": None if eac is None else money(eac),
                    "error_percent": None if eac is None else text(percent(eac - final, final)),
                }
            )
    return {
        "project_id": facts.profile.project_id,
        "name": facts.profile.name,
        "status": str(facts.profile.status),
        "currency": facts.profile.currency,
        "final_cost": money(final) if final and facts.completed_on is not None else None,
        "series": [x.as_json(ac_to(x.period)) for x in points[:limit]] if series else [],
        "errors": errors,
    }


def eac_convergence(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    summary = []
    for index, at in enumerate(LIFE_POINTS):
        found = [
            abs(Decimal(e))
            for row in rows
            if row["errors"] and (e := row["errors"][index]["error_percent"]) is not None
        ]
        summary.append(
            {
                "life_percent": at,
                "projects": len(found),
                "mean_abs_error_percent": text(_mean(found)),
            }
        )
    return {"projects": rows[:limit], "summary": summary}


# --- lessons learned -------------------------------------------------------------------------


def matches(
    lesson: Lesson,
    facts: ProjectFacts | None,
    words: Iterable[str] = (),
    project_id: str | None = None,
    category: str | None = None,
) -> bool:
    if project_id is not None and lesson.project_id != project_id:
        return False
    if category is not None and lesson.category.casefold() != category.casefold():
        return False
    text = " ".join(
        (
            lesson.title,
            lesson.description,
            lesson.recommendation,
            lesson.category,
            lesson.project_id,
            facts.profile.name if facts else "",
            facts.profile.category if facts else "",
        )
    ).casefold()
    return all(word.casefold() in text for word in words)


def lesson_json(lesson: Lesson, facts: ProjectFacts | None) -> dict[str, Any]:
    return {
        "project_id": lesson.project_id,
        "project_name": facts.profile.name if facts else "",
        "project_category": facts.profile.category if facts else "",
        "project_status": str(facts.profile.status) if facts else None,
        "lesson_id": lesson.lesson_id,
        "title": lesson.title,
        "description": lesson.description,
        "recommendation": lesson.recommendation,
        "category": lesson.category,
        "actor": lesson.actor,
        "position": lesson.position,
        "recorded_at": lesson.recorded_at.isoformat(),
    }


def lessons_summary(
    lessons: list[Lesson], projects: Mapping[str, ProjectFacts], limit: int
) -> dict[str, Any]:
    by_category: dict[str, int] = defaultdict(int)
    for lesson in lessons:
        by_category[lesson.category] += 1
    latest = sorted(lessons, key=lambda x: -x.position)[:limit]
    return {
        "total": len(lessons),
        "by_category": dict(sorted(by_category.items())),
        "items": [lesson_json(x, projects.get(x.project_id)) for x in latest],
    }


# --- of the whole fold -----------------------------------------------------------------------


def figures(report: PortfolioReport, project_id: str | None = None) -> dict[str, Any]:
    """Estimate accuracy, benefit realisation, EAC convergence and lessons learned:
    of every project, or of one."""
    chosen = [
        facts
        for pid, facts in sorted(report.projects.items())
        if project_id is None or pid == project_id
    ]
    accuracy = [
        row
        for facts in chosen
        if (row := accuracy_row(facts, report.actual_cost.get(facts.profile.project_id)))
    ]
    benefits = [
        benefits_row(facts)
        for facts in chosen
        if facts.profile.status == Status.COMPLETED or facts.realised
    ]
    # Every project's errors make the summary, but only the first rows are listed: the
    # series (a point a month, most of the section's cost) only for those.
    convergence: list[dict[str, Any]] = []
    actuals = report.actual_cost_by_period(project_id)
    for facts in chosen:
        points = report.eac_points.get(facts.profile.project_id)
        if points is not None:
            spent = actuals.get(facts.profile.project_id, {})
            listed = len(convergence) < LIST_LIMIT
            convergence.append(convergence_row(facts, points, spent, LIST_LIMIT, listed))
    lessons = [x for x in report.lessons if project_id is None or x.project_id == project_id]
    return {
        "estimate_accuracy": estimate_accuracy(accuracy, LIST_LIMIT),
        "benefits": benefit_realisation(benefits, LIST_LIMIT),
        "eac_convergence": eac_convergence(convergence, LIST_LIMIT),
        "lessons": lessons_summary(lessons, report.projects, LIST_LIMIT),
    }


def find_lessons(
    report: PortfolioReport,
    words: Iterable[str] = (),
    project_id: str | None = None,
    category: str | None = None,
) -> list[dict[str, Any]]:
    """Lessons learned matching every word, the project and the category (log order)."""
    words = tuple(words)
    return [
        lesson_json(x, report.projects.get(x.project_id))
        for x in report.lessons
        if matches(x, report.projects.get(x.project_id), words, project_id, category)
    ]
