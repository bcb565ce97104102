"""Hand-written inline SVG charts: risk heat map, budget burn, value vs cost of the
ranking, capacity by role and month, planned vs actual cost of completed projects, EAC
convergence. Used by the html format and by the dashboard."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from domain.risk import DEFAULT_ZONES, RiskZone
from shared.render.values import esc, money, pretty

SVG_NS = "http://www.w3.org/2000/svg"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
ZONE_FILL = {RiskZone.LOW: "#cfe8cf", RiskZone.MEDIUM: "#ffe08a", RiskZone.HIGH: "#f4a3a3"}


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
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">'
        f"<title>{esc(label)}</title>" + "".join(parts) + "</svg>"
    )


def _text(x: float, y: float, text: Any, **attrs: Any) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{esc(text)}</text>'


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
            f"<title>{esc(pool_id)}: {_compact(points[-1])} actual</title></polyline>"
        )
        parts += [
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{colour}"/>'
            for i, v in enumerate(points)
        ]
        y = y_of(allocated)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="5,4"><title>{esc(pool_id)} allocated '
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
            f"{esc(point['project_id'])}: score {point['score']}, cost "
            f"{money(point['cost'])}, value {money(point['value'])}</title></circle>"
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
                f"<title>{esc(tip)}</title></rect>"
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
            f"{row['project_id']}: planned {money(row['planned_cost'])}, actual "
            f"{money(row['actual_cost'])} ({pretty(row['cost_variance_percent'], 'pct')})"
        )
        for offset, value, fill in ((0, planned, "#bbb"), (16, actual, colour)):
            y = y_of(value)
            parts.append(
                f'<rect x="{x + offset}" y="{y:.1f}" width="15" height="{top + height - y:.1f}" '
                f'fill="{fill}"><title>{esc(tip)}</title></rect>'
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
            f"<title>{esc(project_id)}</title></polyline>"
        )
        parts += [
            f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" fill="{colour}">'
            f"<title>{esc(project_id)} at {x:.0f}%: EAC {y:.0f}% of final</title></circle>"
            for x, y in points
        ]
        parts.append(
            f'<rect x="{left + width + 12}" y="{top + 18 * index}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        parts.append(_text(left + width + 26, top + 18 * index + 9, project_id, font_size=12))
    return _svg("eac-convergence", left + width + 150, top + height + 44, label, parts)
