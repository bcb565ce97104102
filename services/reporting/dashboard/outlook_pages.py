"""The dashboard's forecast and stakeholder pages, from the portfolio report's `forecast`
and `stakeholders` sections (the same figures as `portfolio report`; `portfolio forecast`
asks for more iterations or one project or programme)."""

from __future__ import annotations

from typing import Any

from services.reporting.dashboard.pages import (
    chart,
    esc,
    fragment,
    notice,
    section,
    subtitle,
    table,
    tiles,
)
from shared.render import grid_svg, pretty, s_curve_svg


def _money(value: Any) -> str:
    return esc(pretty(value, "money"))


def forecast(report: dict[str, Any]) -> str:
    found = report.get("forecast") or {}
    position = report["cut"]["position"]
    if "error" in found or "total_cost" not in found:
        why = found.get("error", "no forecast in this report")
        return fragment("forecast", position, [notice(f"no forecast: {why}", "error")])
    total = found["total_cost"]
    figures = [
        ("P10 cost", _money(total["p10"])),
        ("P50 cost", _money(total["p50"])),
        ("P80 cost", _money(total["p80"])),
        ("P90 cost", _money(total["p90"])),
        ("plan", _money(found["planned_cost"])),
        ("reserve needed at P80", _money(found["reserve_p80"])),
        ("today's EMV reserve", _money(found["emv_reserve"])),
    ]
    scope = found["scope"]
    return fragment(
        "forecast",
        position,
        [
            subtitle(
                f"seed {found['seed']}, {found['iterations']:,} iterations over "
                f"{scope['projects']} committed projects and {scope['risks']} open risks, at "
                f"log position {position}; projects drawn independently"
            ),
            tiles(figures),
            chart("Total cost at completion: S-curve with P-lines", s_curve_svg(found)),
            section(
                "Budgets: probability of staying within",
                table(
                    ("budget", "kind", "amount:money", "p50:money", "p80:money", "within:pct"),
                    (
                        [
                            x["id"],
                            x["kind"],
                            x["amount"],
                            x["p50"],
                            x["p80"],
                            f"{x['probability_within'] * 100:.1f}",
                        ]
                        for x in found["budgets"]
                    ),
                    empty="no pool or objective funds a committed project",
                ),
            ),
            section(
                "Projects likeliest to overrun",
                table(
                    (
                        "project",
                        "name",
                        "basis",
                        "planned:money",
                        "p50:money",
                        "p80:money",
                        "planned end",
                        "finish P80",
                    ),
                    (
                        [
                            x["project_id"],
                            x["name"],
                            x["basis"],
                            x["planned_cost"],
                            x["p50"],
                            x["p80"],
                            x["planned_end"],
                            x["finish_p80"],
                        ]
                        for x in found["projects"]
                    ),
                    empty="no committed projects",
                ),
            ),
        ],
    )


def stakeholders(report: dict[str, Any]) -> str:
    found = report.get("stakeholders") or {}
    position = report["cut"]["position"]
    items = found.get("items", [])
    figures = [
        ("stakeholders", str(found.get("total", 0))),
        ("assessed", str(found.get("assessed", 0))),
        ("below desired engagement", str(found.get("needing_engagement", 0))),
        ("open feedback", str(found.get("open_feedback", 0))),
        ("communication plans", str(found.get("communication_plans", 0))),
    ]
    return fragment(
        "stakeholders",
        position,
        [
            subtitle(f"log position {position}"),
            tiles(figures),
            chart("Power / interest grid (colour: engagement gap)", grid_svg(items)),
            section(
                "Engagement",
                table(
                    (
                        "stakeholder",
                        "name",
                        "role",
                        "influence:int",
                        "interest:int",
                        "quadrant",
                        "current",
                        "desired",
                        "gap:int",
                        "open feedback:int",
                        "cares about",
                    ),
                    (
                        [
                            x["stakeholder_id"],
                            x["name"],
                            x["role"],
                            x["influence"],
                            x["interest"],
                            x["quadrant"],
                            x["current_engagement"],
                            x["desired_engagement"],
                            x["engagement_gap"],
                            x["open_feedback"],
                            ", ".join(x["cares_about"]),
                        ]
                        for x in items
                    ),
                    empty="no stakeholders registered",
                ),
            ),
            section(
                "Open feedback",
                table(
                    ("stakeholder", "feedback", "concerns", "text:long"),
                    (
                        [x["stakeholder_id"], x["feedback_id"], x["concerns"], x["text"]]
                        for x in found.get("open_feedback_items", [])
                    ),
                    empty="every piece of feedback has been answered",
                ),
            ),
        ],
    )
