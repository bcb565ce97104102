"""The forecast and the stakeholders as sections and charts: the portfolio report's
`forecast` and `stakeholders` parts, and the `forecast` answer (`portfolio forecast`).

Charts: the S-curve of the total cost (probability of not exceeding each cost) with the
P10/P50/P80/P90 lines, the plan and the plan plus today's EMV reserve; the power/interest
grid with each stakeholder placed by influence and interest, coloured by engagement gap.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from shared.render.values import Section, cols, cut_rows, esc, money

LEVELS = ("p10", "p50", "p80", "p90")
QUANTILE_COLUMNS = ("p10:money", "p50:money", "p80:money", "p90:money", "mean:money")
#: Colours of the S-curve's lines and of the grid's engagement gaps.
LINE = {"p10": "#9ecae1", "p50": "#3182bd", "p80": "#e6550d", "p90": "#a63603"}
GAP_FILL = {"behind": "#e6550d", "on target": "#31a354", "ahead": "#3182bd", "unassessed": "#999"}


# --- sections ---------------------------------------------------------------------------------


def forecast_sections(found: dict[str, Any] | None, all_projects: bool = False) -> list[Section]:
    """The forecast's tables; the report lists the ten projects likeliest to overrun,
    `portfolio forecast` every one it answered."""
    if not found:
        return []
    if "error" in found:
        return [Section("forecast", "Portfolio forecast", cols("note"), [[found["error"]]])]
    totals = Section(
        "forecast",
        f"Portfolio forecast (Monte Carlo, seed {found['seed']}, {found['iterations']:,} "
        "iterations)",
        cols("figure", *QUANTILE_COLUMNS),
        [
            ["total cost", *_q(found["total_cost"])],
            ["total benefit", *_q(found["total_benefit"])],
            *[[f"programme {x['programme_id']}", *_q(x)] for x in found["programmes"]],
        ],
        note=f"plan {money(found['planned_cost'])}; reserve needed at P80 "
        f"{money(found['reserve_p80'])} beside today's EMV reserve "
        f"{money(found['emv_reserve'])}; {found['scope']['projects']} projects, "
        f"{found['scope']['risks']} open risks; projects drawn independently",
    )
    budgets = Section(
        "forecast_budgets",
        "Forecast against budgets (pools and objectives' funding)",
        cols("budget", "kind", "amount:money", "p50:money", "p80:money", "p90:money", "within:pct"),
        [
            [
                x["id"],
                x["kind"],
                x["amount"],
                x["p50"],
                x["p80"],
                x["p90"],
                _percent(x["probability_within"]),
            ]
            for x in found["budgets"]
        ],
        note="within: the probability of staying within the amount",
    )
    rows = found["projects"] if all_projects else found["projects"][:10]
    projects = Section(
        "forecast_projects",
        "Forecast by project" + ("" if all_projects else " (the ten likeliest to overrun)"),
        cols(
            "project",
            "basis",
            "planned:money",
            "p50:money",
            "p80:money",
            "p90:money",
            "planned_end",
            "finish_p80",
        ),
        [
            [
                x["project_id"],
                x["basis"],
                x["planned_cost"],
                x["p50"],
                x["p80"],
                x["p90"],
                x["planned_end"],
                x["finish_p80"],
            ]
            for x in rows
        ],
        note=f"{found.get('more_projects', 0)} more not listed"
        if found.get("more_projects")
        else "",
    )
    return [totals, budgets, projects]


def forecast_document(found: dict[str, Any]) -> list[Section]:
    """`portfolio forecast`: its cut and scope, then every table."""
    scope = found["scope"]
    overview = Section("overview", "Forecast", cols("item", "value"), cut_rows(found["cut"]))
    overview.rows += [
        ["seed", found["seed"]],
        ["iterations", found["iterations"]],
        ["scope", _scope_text(scope)],
        ["currencies", ", ".join(scope["currencies"]) or "—"],
        [
            "total cost P10 / P50 / P80 / P90",
            " / ".join(money(found["total_cost"][k]) for k in LEVELS),
        ],
        ["planned cost", money(found["planned_cost"])],
        ["reserve needed at P80", money(found["reserve_p80"])],
        ["today's EMV reserve", money(found["emv_reserve"])],
    ]
    return [overview, *forecast_sections(found, all_projects=True)]


def stakeholder_sections(found: dict[str, Any] | None) -> list[Section]:
    if not found:
        return []
    grid = Section(
        "stakeholders",
        "Stakeholder engagement",
        cols(
            "stakeholder",
            "name",
            "role",
            "influence:int",
            "interest:int",
            "quadrant",
            "current",
            "desired",
            "gap:int",
            "open_feedback:int",
            "plans",
        ),
        [
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
                ", ".join(f"{p['content']} {p['frequency']} by {p['channel']}" for p in x["plans"]),
            ]
            for x in found["items"]
        ],
        note=f"{found['total']} stakeholders, {found['needing_engagement']} below their "
        f"desired engagement, {found['open_feedback']} open feedback; "
        + ", ".join(f"{k}: {v}" for k, v in found["by_quadrant"].items()),
    )
    feedback = Section(
        "open_feedback",
        "Open feedback (not yet answered)",
        cols("stakeholder", "feedback", "concerns", "decision", "text"),
        [
            [
                x["stakeholder_id"],
                x["feedback_id"],
                x["concerns"],
                x["decision_event_id"],
                x["text"],
            ]
            for x in found["open_feedback_items"]
        ],
    )
    return [grid, feedback]


def _q(q: dict[str, Any]) -> list[Any]:
    return [q["p10"], q["p50"], q["p80"], q["p90"], q["mean"]]


def _percent(probability: float) -> str:
    return f"{probability * 100:.1f}"


def _scope_text(scope: dict[str, Any]) -> str:
    if scope.get("project_id"):
        return f"project {scope['project_id']}"
    if scope.get("programme_id"):
        return f"programme {scope['programme_id']}"
    return "the committed portfolio" + (
        " and its pipeline" if scope.get("include_pipeline") else ""
    )


# --- charts -----------------------------------------------------------------------------------


def outlook_charts(report: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    forecast = report.get("forecast") if report.get("kind") == "portfolio" else report
    if forecast and "curve" in forecast:
        found.append(("Forecast: total cost S-curve with P-lines", s_curve_svg(forecast)))
    if report.get("kind") == "portfolio" and report.get("stakeholders"):
        found.append(
            ("Stakeholders: power / interest grid", grid_svg(report["stakeholders"]["items"]))
        )
    return found


def _number(value: Any) -> float | None:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError, TypeError):
        return None


def _text(x: float, y: float, text: Any, **attrs: Any) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{esc(text)}</text>'


def _svg(chart_id: str, width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg id="{chart_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>" + "".join(parts) + "</svg>"
    )


def _short(amount: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= size:
            return f"{amount / size:.3g}{unit}"
    return f"{amount:.0f}"


def s_curve_svg(forecast: dict[str, Any]) -> str:
    """Probability (up) of the total cost not exceeding each cost (right)."""
    label = "Total cost S-curve"
    points = [
        (float(q), cost) for q, c in forecast.get("curve", []) if (cost := _number(c)) is not None
    ]
    width, height, left, top, plot_w, plot_h = 720, 300, 60, 16, 420, 230
    if not points:
        return _svg("forecast-s-curve", width, 60, label, [_text(10, 30, "no forecast")])
    marks = {k: _number(forecast["total_cost"][k]) for k in LEVELS}
    plan = _number(forecast.get("planned_cost"))
    emv = _number(forecast.get("emv_reserve"))
    extra = [("plan", plan, "#555"), ("plan + EMV reserve", (plan or 0) + (emv or 0), "#756bb1")]
    costs: list[float] = [c for _, c in points] + [v for _, v, _ in extra if v is not None]
    low, high = min(costs), max(costs)
    span = high - low or max(abs(high), 1.0)
    low, high = low - span * 0.05, high + span * 0.05

    def x(cost: float) -> float:
        return left + (cost - low) / (high - low) * plot_w

    def y(probability: float) -> float:
        return top + (1 - probability) * plot_h

    parts = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" '
            'stroke="#eee"/>'
        )
        parts.append(_text(left - 6, y(tick) + 4, f"{tick:.0%}", text_anchor="end", font_size=11))
    for k in range(5):
        cost = low + (high - low) * k / 4
        parts.append(
            _text(x(cost), top + plot_h + 16, _short(cost), text_anchor="middle", font_size=11)
        )
    path = " ".join(f"{x(c):.1f},{y(q):.1f}" for q, c in points)
    parts.append(
        f'<polyline class="s-curve" points="{path}" fill="none" stroke="#3182bd" stroke-width="2"/>'
    )
    legend = []
    for name, value in marks.items():
        if value is None:
            continue
        parts.append(
            f'<line class="p-line" data-level="{name}" x1="{x(value):.1f}" y1="{top}" '
            f'x2="{x(value):.1f}" y2="{top + plot_h}" stroke="{LINE[name]}" '
            'stroke-dasharray="4,3"/>'
        )
        legend.append((LINE[name], f"{name.upper()} {_short(value)}"))
    for name, value, colour in extra:
        if value is None:
            continue
        parts.append(
            f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{top + plot_h}" '
            f'stroke="{colour}" stroke-width="1.5"/>'
        )
        legend.append((colour, f"{name} {_short(value)}"))
    for index, (colour, name) in enumerate(legend):
        ly = top + 18 * index
        parts.append(
            f'<rect x="{left + plot_w + 16}" y="{ly}" width="10" height="10" fill="{colour}"/>'
        )
        parts.append(_text(left + plot_w + 32, ly + 9, name, font_size=12))
    parts.append(
        _text(left + plot_w / 2, height - 4, "total cost at completion", text_anchor="middle")
    )
    return _svg("forecast-s-curve", width, height, label, parts)


def _gap_kind(gap: Any) -> str:
    if gap is None:
        return "unassessed"
    return "behind" if gap > 0 else "ahead" if gap < 0 else "on target"


def grid_svg(items: list[dict[str, Any]]) -> str:
    """Influence (up) by interest (right), 1-5; the high quadrants (4-5) shaded and named;
    each stakeholder a dot coloured by engagement gap, labelled by id."""
    cell, left, top = 56, 56, 12
    size = 5 * cell
    parts = []
    for name, (x0, y0) in {
        "keep satisfied": (0, 0),
        "manage closely": (3, 0),
        "monitor": (0, 2),
        "keep informed": (3, 2),
    }.items():
        w = 3 if x0 == 0 else 2
        h = 2 if y0 == 0 else 3
        fill = "#fde0dd" if name == "manage closely" else "#f7f7f7"
        parts.append(
            f'<rect x="{left + x0 * cell}" y="{top + y0 * cell}" width="{w * cell}" '
            f'height="{h * cell}" fill="{fill}" stroke="#ccc"/>'
        )
        parts.append(
            _text(left + x0 * cell + 4, top + y0 * cell + 14, name, font_size=11, fill="#666")
        )
    for level in range(1, 6):
        parts.append(
            _text(left + (level - 0.5) * cell, top + size + 16, level, text_anchor="middle")
        )
        parts.append(_text(left - 8, top + (5.5 - level) * cell + 4, level, text_anchor="end"))
    parts.append(_text(left + size / 2, top + size + 34, "interest", text_anchor="middle"))
    parts.append(
        _text(
            14,
            top + size / 2,
            "influence",
            text_anchor="middle",
            transform=f"rotate(-90 14 {top + size / 2})",
        )
    )
    placed: dict[tuple[int, int], int] = {}
    for x in items:
        if x.get("influence") is None or x.get("interest") is None:
            continue
        key = (int(x["interest"]), int(x["influence"]))
        n = placed.get(key, 0)
        placed[key] = n + 1
        cx = left + (key[0] - 0.5) * cell + (n % 3 - 1) * 14
        cy = top + (5.5 - key[1]) * cell + (n // 3) * 14 - 4
        colour = GAP_FILL[_gap_kind(x.get("engagement_gap"))]
        parts.append(
            f'<circle class="stakeholder" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{colour}">'
            f"<title>{esc(x['stakeholder_id'])} {esc(x['name'])}: gap "
            f"{esc(x.get('engagement_gap'))}, open feedback {esc(x.get('open_feedback'))}</title>"
            "</circle>"
        )
        if n < 3:
            parts.append(_text(cx + 8, cy + 4, x["stakeholder_id"][:12], font_size=10))
    for index, (name, colour) in enumerate(GAP_FILL.items()):
        ly = top + 18 * index
        parts.append(
            f'<rect x="{left + size + 16}" y="{ly}" width="10" height="10" fill="{colour}"/>'
        )
        parts.append(_text(left + size + 32, ly + 9, f"engagement {name}", font_size=12))
    return _svg(
        "stakeholder-grid", left + size + 215, top + size + 44, "Power / interest grid", parts
    )
