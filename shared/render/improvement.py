"""The continuous-improvement sections: estimate accuracy, benefit realisation, EAC
convergence and lessons learned (of the portfolio, or of one project)."""

from __future__ import annotations

from typing import Any

from shared.render.values import Section, cols, money, pretty


def improvement_sections(
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
            cols(
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
                cols(
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
            cols(
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
                        f"{y['year']}: {money(y['expected'])} / {money(y['realised'])}"
                        for y in x["years"]
                    ),
                ]
                for x in benefits["projects"]
            ],
            note="awaiting realised benefits: "
            + (", ".join(benefits["awaiting"]) or "none")
            + "".join(
                f"; {t['currency']} realised {money(t['realised_total'])} of "
                f"{money(t['expected_to_date'])} expected to date"
                for t in benefits["totals"]
            ),
        ),
        Section(
            "eac_convergence",
            "EAC convergence (error against the final cost at 25/50/75% of the life)",
            cols(
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
            cols(
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
            cols("project", "lesson", "category", "title", "recommendation", "recorded_at:time"),
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
