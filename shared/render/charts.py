"""Hand-written inline SVG charts: risk heat map, budget burn, value vs cost of the
ranking, capacity by role and month, planned vs actual cost of completed projects, EAC
convergence. Used by the html format and by the dashboard.

Axes tick at 1-2-5 steps (`nice_ticks`); every series and the bubble size have a legend;
point labels that would overlap another are left out (each mark keeps its SVG `<title>`).
A `link` function, when given (the dashboard), makes marks drill-down links."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from domain.risk import DEFAULT_ZONES, RiskZone
from shared.formatting import compact_text
from shared.render.outlook import outlook_charts
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
                *outlook_charts(report),
            ]
        case "forecast":
            return outlook_charts(report)
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
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{esc(text)}</text>'


def heat_map_svg(
    heat: Sequence[Sequence[int]], link: Callable[[int, int], str] | None = None
) -> str:
    """5 x 5: probability up (5 at the top), impact right; cells coloured by score zone,
    with a legend of the zones; `link(probability, impact)` makes a cell with open risks a
    link (the dashboard: to those risks)."""
    cell, left, top = 52, 64, 12
    parts = []
    for probability in range(5, 0, -1):
        y = top + (5 - probability) * cell
        parts.append(_text(left - 8, y + cell / 2 + 4, probability, text_anchor="end"))
        for impact in range(1, 6):
            x = left + (impact - 1) * cell
            count = heat[probability - 1][impact - 1]
            fill = ZONE_FILL[DEFAULT_ZONES.zone(probability * impact)]
            mark = (
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                f"<title>probability {probability} x impact {impact}: {count} open</title></rect>"
            )
            if count:
                mark += _text(
                    x + cell / 2 - 1,
                    y + cell / 2 + 5,
                    count,
                    text_anchor="middle",
                    font_weight="bold",
                )
            href = link(probability, impact) if link and count else None
            parts.append(_link(href, mark))
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
    zones = [
        (ZONE_FILL[RiskZone.HIGH], "high (15-25)"),
        (ZONE_FILL[RiskZone.MEDIUM], "medium (5-14)"),
        (ZONE_FILL[RiskZone.LOW], "low (1-4)"),
    ]
    parts.append(legend(left + 5 * cell + 14, top, zones))
    return _svg("risk-heat-map", left + 5 * cell + 130, top + 5 * cell + 44, "Risk heat map", parts)


def _compact(amount: float) -> str:
    return compact_text(amount)


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Ticks from 0 to at least `high` at a step of 1, 2 or 5 times a power of ten, about
    `count` of them (0, 250k, 500k, ... never 4.62M)."""
    if not high > 0 or not math.isfinite(high):
        return [0.0, 1.0]
    rough = high / max(1, count - 1)
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    ticks = [0.0]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


class Labels:
    """Text labels placed only where they overlap none placed before (boxes estimated from
    the font size); a label that would collide is skipped."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []

    def fits(self, x: float, y: float, text: str, size: float = 11) -> bool:
        box = (x, y - size, x + 0.6 * size * len(text), y + 2)
        if any(
            box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in self.boxes
        ):
            return False
        self.boxes.append(box)
        return True

    def block(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.boxes.append((x0, y0, x1, y1))


def legend(x: float, y: float, entries: Sequence[tuple[str, str]], dashed: bool = False) -> str:
    """Swatches with names, one per line from (x, y): (colour, name); `dashed` draws a line
    (e.g. an allocation) instead of a square."""
    parts = []
    for index, (colour, name) in enumerate(entries):
        top = y + 18 * index
        if dashed:
            parts.append(
                f'<line x1="{x}" y1="{top + 5}" x2="{x + 14}" y2="{top + 5}" stroke="{colour}" '
                'stroke-width="2" stroke-dasharray="4,3"/>'
            )
        else:
            parts.append(f'<rect x="{x}" y="{top}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 18, top + 9, name, font_size=12))
    return f'<g class="legend">{"".join(parts)}</g>'


def _link(href: str | None, mark: str) -> str:
    return mark if not href else f'<a href="{esc(href)}">{mark}</a>'


def _axes(
    left: int,
    top: int,
    width: int,
    height: int,
    ticks: Sequence[float],
    scale: Callable[[float], float],
    label: Callable[[float], str] = _compact,
) -> list[str]:
    parts = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" '
        'stroke="#888"/>',
    ]
    for value in ticks:
        y = scale(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            _text(left - 6, y + 4, label(value), text_anchor="end", font_size=11, class_="tick")
        )
    return parts


def _no_data(chart_id: str, label: str, message: str) -> str:
    return _svg(chart_id, 420, 80, label, [_text(210, 44, message, text_anchor="middle")])


def burn_svg(pools: Sequence[dict[str, Any]]) -> str:
    """Cumulative actual cost per pool by month (solid), its allocation (dashed), with a
    legend of both."""
    label = "Budget burn"
    periods = sorted({p for pool in pools for p in pool["actual_by_period"]})
    if not periods:
        return _no_data("budget-burn", label, "no actual costs yet")
    left, top, width, height = 64, 12, 520, 220
    series = []
    high = 1.0
    for pool in pools:
        running, points = 0.0, []
        for period in periods:
            running += float(pool["actual_by_period"].get(period, 0))
            points.append(running)
        allocated = float(pool["allocated"])
        series.append((pool["pool_id"], points, allocated))
        high = max(high, running, allocated)
    ticks = nice_ticks(high)
    y_max = ticks[-1]

    def x_of(index: int) -> float:
        return left + (width * index / max(1, len(periods) - 1) if len(periods) > 1 else width / 2)

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, ticks, y_of)
    every = max(1, math.ceil(len(periods) / 8))
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
            f"<title>{esc(pool_id)}: {money(points[-1])} actual</title></polyline>"
        )
        parts += [
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{colour}">'
            f"<title>{esc(pool_id)} {esc(periods[i])}: {money(v)} actual to date</title></circle>"
            for i, v in enumerate(points)
        ]
        y = y_of(allocated)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="5,4"><title>{esc(pool_id)} allocated '
            f"{money(allocated)}</title></line>"
        )
    colours = [(PALETTE[i % len(PALETTE)], s[0]) for i, s in enumerate(series)]
    parts.append(legend(left + width + 12, top, [(c, f"{n} actual") for c, n in colours]))
    parts.append(
        legend(
            left + width + 12,
            top + 18 * len(series) + 6,
            [(c, f"{n} allocated") for c, n in colours],
            dashed=True,
        )
    )
    return _svg(
        "budget-burn",
        left + width + 170,
        max(top + height + 30, top + 36 * len(series) + 20),
        label,
        parts,
    )


def bubble_svg(points: Sequence[dict[str, Any]], link: Callable[[str], str] | None = None) -> str:
    """Each ranked project: cost (x), score (y), expected benefits (bubble area), with a
    legend of the bubble sizes; `link(project_id)` makes a bubble a link (its scorecard)."""
    label = "Value vs cost"
    usable = [p for p in points if p.get("cost") is not None]
    if not usable:
        return _no_data("value-vs-cost", label, "no ranking yet")
    left, top, width, height = 64, 12, 520, 260
    x_ticks = nice_ticks(max(float(p["cost"]) for p in usable) * 1.05)
    y_ticks = nice_ticks(max(max(float(p["score"]) for p in usable) * 1.05, 0.01))
    x_max, y_max = x_ticks[-1], y_ticks[-1]
    v_max = max(float(p["value"] or 0) for p in usable) or 1.0

    def x_of(value: float) -> float:
        return left + width * value / x_max

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    def radius_of(value: float) -> float:
        return 4 + 18 * math.sqrt(value / v_max)

    parts = _axes(left, top, width, height, y_ticks, y_of, lambda v: f"{v:g}")
    for cost in x_ticks:
        parts.append(
            _text(x_of(cost), top + height + 16, _compact(cost), text_anchor="middle", font_size=11)
        )
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
    labels = Labels()
    ordered = sorted(usable, key=lambda p: -float(p["value"] or 0))
    for index, point in enumerate(ordered):
        radius = radius_of(float(point["value"] or 0))
        x, y = x_of(float(point["cost"])), y_of(float(point["score"]))
        colour = PALETTE[index % len(PALETTE)]
        mark = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}" '
            f'fill-opacity="0.45" stroke="{colour}"><title>#{point["rank"]} '
            f"{esc(point['project_id'])}: score {pretty(point['score'], 'index')}, cost "
            f"{money(point['cost'])}, value {money(point['value'])}</title></circle>"
        )
        parts.append(_link(link(point["project_id"]) if link else None, mark))
    # Labels for the best ranked first, each only where it overlaps no other label.
    for point in sorted(usable, key=lambda p: p["rank"]):
        radius = radius_of(float(point["value"] or 0))
        x, y = x_of(float(point["cost"])), y_of(float(point["score"]))
        name = str(point["project_id"])
        if point["rank"] <= 10 and labels.fits(x + radius + 2, y + 4, name):
            parts.append(_text(x + radius + 2, y + 4, name, font_size=11, class_="point-label"))
    sizes = [v_max, v_max / 4]
    legend_x = left + width + 16
    parts.append(_text(legend_x, top + 10, "bubble: value", font_size=12))
    offset = top + 24.0
    for value in sizes:
        radius = radius_of(value)
        parts.append(
            f'<circle cx="{legend_x + 22:.1f}" cy="{offset + radius:.1f}" r="{radius:.1f}" '
            'fill="#999" fill-opacity="0.3" stroke="#777"/>'
        )
        parts.append(_text(legend_x + 48, offset + radius + 4, money(value), font_size=11))
        offset += 2 * radius + 8
    return _svg("value-vs-cost", left + width + 150, top + height + 44, label, parts)


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
    key = [
        ("#a8d5a2", "up to 85%"),
        ("#ffd27f", "85-100%"),
        ("#f28b82", "over 100%"),
        ("#eee", "no capacity"),
    ]
    right = left + len(months) * cell_w + 14
    parts.append(legend(right, top, key))
    return _svg(
        "capacity", right + 110, max(top + len(roles) * cell_h + 10, top + 18 * 4 + 6), label, parts
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
    ticks = nice_ticks(
        max(max(float(x["planned_cost"]), float(x["actual_cost"])) for x in usable) * 1.05
    )
    y_max = ticks[-1]

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, ticks, y_of)
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
    ticks = nice_ticks(max(150.0, *(y for _, pts in lines for _, y in pts)))
    y_max = ticks[-1]

    def x_of(value: float) -> float:
        return left + width * value / 100

    def y_of(value: float) -> float:
        return top + height - height * value / y_max

    parts = _axes(left, top, width, height, ticks, y_of, lambda v: f"{v:.0f}%")
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
    parts.append(
        legend(left + width + 12, top + 18 * len(lines) + 6, [("#333", "final cost")], dashed=True)
    )
    return _svg("eac-convergence", left + width + 150, top + height + 44, label, parts)


#: Status colours of the roadmap (and its legend), by project status.
STATUS_COLOURS = {
    "proposed": "#c7d2e0",
    "under_review": "#9fb4d4",
    "approved": "#5b8def",
    "in_progress": "#2ca02c",
    "on_hold": "#f0ad4e",
    "completed": "#6c757d",
    "rejected": "#d9534f",
    "cancelled": "#b07aa1",
}


def _day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def roadmap_svg(
    items: Sequence[dict[str, Any]],
    slips: Mapping[str, int | None] | None = None,
    link: Callable[[str], str] | None = None,
    today: date | None = None,
) -> str:
    """Projects on a timeline, grouped by programme: the baseline (planned start to end) as
    an outline, the forecast (actual start, completion or the planned end moved by the
    schedule slip) as a bar in the status colour; a legend of both and of the statuses."""
    label = "Roadmap"
    slips = slips or {}
    rows: list[tuple[str, dict[str, Any], date, date, date, date]] = []
    for item in items:
        start, end = _day(item.get("planned_start")), _day(item.get("planned_end"))
        if start is None or end is None:
            continue
        slip = slips.get(item["project_id"]) or 0
        f_start = _day(item.get("started_on")) or start
        f_end = _day(item.get("completed_on")) or end + timedelta(days=slip)
        rows.append((item.get("programme") or "no programme", item, start, end, f_start, f_end))
    if not rows:
        return _no_data("roadmap", label, "no projects yet")
    rows.sort(key=lambda r: (r[0] == "no programme", r[0], r[2], r[1]["project_id"]))
    first = min(min(r[2], r[4]) for r in rows).replace(day=1)
    last = max(max(r[3], r[5]) for r in rows)
    span = max(1, (last - first).days)
    left, top, width, row_h = 200, 30, 760, 18

    def x_of(day: date) -> float:
        return left + width * (day - first).days / span

    parts = []
    # Quarter ticks along the top, at most ~12 labels.
    quarters = []
    cursor = date(first.year, 3 * ((first.month - 1) // 3) + 1, 1)
    while cursor <= last:
        quarters.append(cursor)
        month = cursor.month + 3
        cursor = date(cursor.year + (month > 12), (month - 1) % 12 + 1, 1)
    every = max(1, math.ceil(len(quarters) / 12))
    y = top
    height = 0
    programme = None
    marks = []
    for name, item, start, end, f_start, f_end in rows:
        if name != programme:
            programme = name
            y += 6
            marks.append(_text(8, y + 12, name, font_weight="bold", font_size=12))
            y += row_h
        status = str(item.get("status"))
        colour = STATUS_COLOURS.get(status, "#999")
        tip = (
            f"{item['project_id']} {item.get('name', '')}: {status}; baseline {start} to {end}; "
            f"forecast {f_start} to {f_end}"
        )
        row = _text(16, y + 12, item["project_id"], font_size=11)
        forecast_w = max(2.0, x_of(f_end) - x_of(f_start))
        baseline_w = max(2.0, x_of(end) - x_of(start))
        row += (
            f'<rect x="{x_of(f_start):.1f}" y="{y + 3}" width="{forecast_w:.1f}" '
            f'height="{row_h - 6}" fill="{colour}" class="forecast">'
            f"<title>{esc(tip)}</title></rect>"
            f'<rect x="{x_of(start):.1f}" y="{y + 1}" width="{baseline_w:.1f}" '
            f'height="{row_h - 2}" fill="none" stroke="#333" stroke-dasharray="3,2" '
            f'class="baseline"><title>{esc(tip)}</title></rect>'
        )
        marks.append(_link(link(item["project_id"]) if link else None, f"<g>{row}</g>"))
        y += row_h
    height = y + 8
    for index, quarter in enumerate(quarters):
        x = x_of(quarter)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" stroke="#eee"/>'
        )
        if index % every == 0:
            text = f"{quarter.year} Q{(quarter.month - 1) // 3 + 1}"
            parts.append(_text(x + 2, top - 8, text, font_size=11, class_="tick"))
    if today is not None and not first <= today <= last:
        today = None  # off the timeline: neither drawn nor in the legend
    if today is not None:
        x = x_of(today)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" stroke="#d9534f" '
            f'stroke-width="1.5"><title>today {today}</title></line>'
        )
    parts += marks
    used = [s for s in STATUS_COLOURS if any(str(r[1].get("status")) == s for r in rows)]
    key_x = left + width + 20
    parts.append(
        f'<rect x="{key_x}" y="{top}" width="14" height="10" fill="none" stroke="#333" '
        f'stroke-dasharray="3,2"/>' + _text(key_x + 18, top + 9, "baseline", font_size=12)
    )
    parts.append(legend(key_x, top + 18, [(STATUS_COLOURS[s], f"forecast: {s}") for s in used]))
    if today is not None:
        y_today = top + 18 * (len(used) + 1) + 5
        parts.append(
            f'<line x1="{key_x}" y1="{y_today}" x2="{key_x + 14}" y2="{y_today}" '
            'stroke="#d9534f" stroke-width="1.5"/>'
            + _text(key_x + 18, y_today + 4, "today", font_size=12)
        )
    return _svg("roadmap", key_x + 160, max(height, top + 18 * (len(used) + 2)), label, parts)
