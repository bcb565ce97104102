"""The dashboard's pages as HTML fragments: pure functions from the answers (the report,
the services' query answers, audit entries) to markup. Every value is escaped; charts are
the report's own inline SVG (`shared/render/charts.py`)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import date
from string import Template
from typing import Any
from urllib.parse import urlencode

from contracts.queries import AuditEntry
from shared import formatting
from shared.render import (
    NUMERIC,
    RAG_HTML,
    bubble_svg,
    burn_svg,
    capacity_svg,
    charts_of,
    heat_map_svg,
    pretty,
    sections,
)
from shared.render.charts import STATUS_COLOURS, roadmap_svg

#: Page name -> title, in the order of the navigation bar.
PAGES = {
    "overview": "Overview",
    "projects": "Projects",
    "roadmap": "Roadmap",
    "ranking": "Ranking",
    "risks": "Risks",
    "budget": "Budget",
    "capacity": "Capacity",
    "forecast": "Forecast",
    "stakeholders": "Stakeholders",
    "alerts": "Alerts",
    "audit": "Audit search",
}
MAX_ROWS = 500
SEVERITY_COLOURS = {"critical": "#d9534f", "warning": "#f0ad4e", "info": "#5bc0de"}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def shell(
    template: Template, page: str, content: str, controls: str = "", title: str | None = None
) -> str:
    """The whole page: navigation, the live indicator, the controls (a form the refresh
    leaves alone), the fragment and the script."""
    nav = "".join(
        f'<a href="/{name}"{" class=current" if name == page else ""}>{esc(label)}</a>'
        for name, label in PAGES.items()
    )
    title = title or PAGES.get(page, "Portfolio")
    return template.substitute(
        page=esc(page), title=esc(title), nav=nav, controls=controls, content=content
    )


def fragment(page: str, position: int | None, body: Iterable[str]) -> str:
    """What the browser swaps in on every change: the page's content, tagged with the log
    position it shows."""
    shown = "" if position is None else f' data-position="{position}"'
    return f'<section class="page" data-page="{esc(page)}"{shown}>' + "".join(body) + "</section>"


def subtitle(text: str) -> str:
    return f'<div class="sub">{esc(text)}</div>'


def notice(text: str, kind: str = "info") -> str:
    return f'<div class="notice {esc(kind)}">{esc(text)}</div>'


def rag(status: Any) -> str:
    colour = RAG_HTML.get(str(status), "#999")
    return f'<span class="rag" style="background:{colour}">{esc(status)}</span>'


def severity(level: Any) -> str:
    colour = SEVERITY_COLOURS.get(str(level), "#999")
    return f'<span class="rag" style="background:{colour}">{esc(level)}</span>'


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "none") -> str:
    """Columns are 'name' or 'name:kind' (shared.render's kinds, plus 'html' for markup made
    here and 'long' for text that may wrap); cells are formatted for people. At most
    MAX_ROWS rows, so that a page stays light however large the portfolio."""
    spec = [c.split(":", 1) if ":" in c else [c, "text"] for c in columns]
    head = "".join(f"<th>{esc(name)}</th>" for name, _ in spec)
    body = []
    rows = list(rows)
    for row in rows[:MAX_ROWS]:
        cells = []
        for value, (_, kind) in zip(row, spec, strict=True):
            if kind == "html":
                cells.append(f"<td>{value}</td>")
            elif kind == "rag":
                cells.append(f"<td>{rag(value)}</td>")
            elif kind == "long":
                cells.append(f'<td class="wrap">{esc(pretty(value, "text"))}</td>')
            elif kind in NUMERIC:
                cells.append(f'<td class="n">{esc(pretty(value, kind))}</td>')
            else:
                cells.append(f"<td>{esc(pretty(value, kind))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        return f'<div class="note"><em>{esc(empty)}</em></div>'
    more = (
        f'<div class="note">the first {MAX_ROWS} of {len(rows)} rows</div>'
        if len(rows) > MAX_ROWS
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def tiles(items: Iterable[tuple[str, str]]) -> str:
    """Key figures: (label, value as markup)."""
    cells = "".join(
        f'<div class="tile"><div class="value">{value}</div><div class="label">{esc(label)}'
        "</div></div>"
        for label, value in items
    )
    return f'<div class="tiles">{cells}</div>'


def chart(title: str, svg: str) -> str:
    return f'<figure class="chart"><figcaption>{esc(title)}</figcaption>{svg}</figure>'


def section(title: str, *parts: str) -> str:
    return f"<h2>{esc(title)}</h2>" + "".join(parts)


def _subtitle(report: dict[str, Any]) -> str:
    return f"log position {report['cut']['position']}, as of {report['generated_at'][:19]}Z"


# --- pages -------------------------------------------------------------------------------


def overview(report: dict[str, Any], latest: Sequence[AuditEntry]) -> str:
    projects, risks, alerts = report["projects"], report["risks"], report["alerts"]
    figures = [
        ("projects", f"{projects['total']}"),
        *((f"{stage}", f"{count}") for stage, count in projects["by_stage"].items()),
        ("open risks", f"{risks['open']}"),
        ("contingency reserve", esc(pretty(risks["contingency_reserve"], "money"))),
        ("open alerts", f"{alerts['open']}"),
        ("portfolio health", rag(report["health"]["portfolio"]["status"])),
    ]
    for total in report["budget"]["totals"]:
        currency = total["currency"]
        figures.append((f"allocated {currency}", esc(pretty(total["allocated"], "money"))))
        figures.append((f"actual {currency}", esc(pretty(total["actual"], "money"))))
        figures.append((f"remaining {currency}", esc(pretty(total["remaining"], "money"))))
    charts = "".join(chart(title, svg) for title, svg in linked_charts(report))
    return fragment(
        "overview",
        report["cut"]["position"],
        [
            subtitle(_subtitle(report)),
            tiles(figures),
            f'<div class="charts">{charts}</div>',
            section(
                "Latest events",
                table(
                    ("position:int", "recorded", "event", "aggregate", "actor", "details:long"),
                    (
                        [
                            e.position,
                            f"{e.recorded_at:%Y-%m-%d %H:%M:%S}",
                            e.event_type,
                            f"{e.aggregate_type}/{e.aggregate_id}",
                            e.actor,
                            _details(e.payload, 100),
                        ]
                        for e in latest
                    ),
                    empty="no events yet",
                ),
            ),
        ],
    )


def linked_charts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's charts, with drill-downs: a heat-map cell to its risks, a bubble to its
    project's scorecard."""
    found = []
    for title, svg in charts_of(report):
        if svg.startswith('<svg id="risk-heat-map"'):
            svg = heat_map_svg(report["risks"]["heat_map"], link=risks_link)
        elif svg.startswith('<svg id="value-vs-cost"'):
            svg = bubble_svg((report["ranking"] or {}).get("points", []), link=project_href)
        found.append((title, svg))
    return found


def risks_link(probability: int, impact: int) -> str:
    return f"/risks?probability={probability}&impact={impact}"


def project_href(project_id: str) -> str:
    return "/projects?" + urlencode({"project": project_id})


def ranking(answer: dict[str, Any] | None, report: dict[str, Any], problem: str = "") -> str:
    """The prioritization service's ranking, with the report's value vs cost chart."""
    parts = [subtitle(_subtitle(report))]
    if answer is None:
        parts.append(notice(f"no ranking: {problem}", "warn"))
    else:
        decided, names = answer["ranking"], answer["names"]
        criteria = sorted({c for r in decided["ranking"] for c in r["breakdown"]})
        parts.append(
            f'<div class="sub">model {esc(decided["model_id"])} v{decided["model_version"]} '
            f"({esc(decided['method'])}), computed at log position "
            f"{decided['computed_at_position']}</div>"
        )
        parts.append(
            table(
                ("rank:int", "change", "project:html", "name", "score:index", *map(_num, criteria)),
                (
                    [
                        r["rank"],
                        _rank_change(r["rank"], r["previous_rank"]),
                        project_link(r["project_id"]),
                        names.get(r["project_id"], ""),
                        r["score"],
                        *(r["breakdown"].get(c) for c in criteria),
                    ]
                    for r in decided["ranking"]
                ),
                empty="nothing to rank",
            )
        )
        for missing in decided["unscorable"]:
            parts.append(
                notice(f"not scorable {missing['project_id']}: {', '.join(missing['missing'])}")
            )
    points = (report["ranking"] or {}).get("points", [])
    parts.append(chart("Value vs cost of the ranking", bubble_svg(points, link=project_href)))
    return fragment("ranking", report["cut"]["position"], parts)


def _num(name: str) -> str:
    return f"{name}:index"


def _rank_change(rank: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    moved = previous - rank
    return f"+{moved}" if moved > 0 else str(moved) if moved else "="


def risks(
    register: dict[str, Any] | None,
    health: dict[str, Any] | None,
    report: dict[str, Any],
    problem: str = "",
    cell: tuple[int, int] | None = None,
) -> str:
    """The risk register and project health from the risk monitor; the heat map from the
    report, each cell a link to its risks (`cell`: only the open risks of that cell)."""
    parts = [subtitle(_subtitle(report))]
    parts.append(
        '<div class="charts">'
        + chart(
            "Risk heat map (open risks)",
            heat_map_svg(report["risks"]["heat_map"], link=risks_link),
        )
        + "</div>"
    )
    if register is None or health is None:
        parts.append(notice(f"no register: {problem}", "warn"))
        return fragment("risks", report["cut"]["position"], parts)
    found = register["risks"]
    title = "Risk register"
    if cell is not None:
        probability, impact = cell
        here = {
            x["risk_id"]
            for x in report["risks"].get("open_items", [])
            if (x["probability"], x["impact"]) == (probability, impact)
        }
        found = [x for x in found if x["risk_id"] in here]
        title = f"Open risks with probability {probability} and impact {impact}"
        parts.append('<div class="note"><a href="/risks">all risks</a></div>')
    by_score = sorted(found, key=lambda x: (not x["open"], -x["current_score"]))
    parts.append(
        section(
            title,
            table(
                ("risk", "project:html", "title", "kind", "score:int", "zone", "emv:money", "open"),
                (
                    [
                        x["risk_id"],
                        project_link(x["project_id"]) or "portfolio",
                        x["title"],
                        x["kind"],
                        x["current_score"],
                        x["zone"],
                        x["emv"],
                        "open" if x["open"] else "closed",
                    ]
                    for x in by_score
                ),
                empty="no risks",
            ),
            f'<div class="note">contingency reserve (open threats): '
            f"{esc(pretty(register['contingency']['reserve'], 'money'))}</div>",
        )
    )
    portfolio = health["portfolio"]
    parts.append(
        section(
            "Project health (earned value)",
            f'<div class="note">{rag(portfolio["status"])} {esc(portfolio["explain"])}</div>',
            table(
                (
                    "project:html",
                    "rag:rag",
                    "cpi:index",
                    "spi:index",
                    "eac (typical):money",
                    "vac:money",
                    "tcpi:index",
                    "why:long",
                ),
                (
                    [
                        project_link(project_id),
                        found["status"],
                        (found["earned_value"] or {}).get("cpi"),
                        (found["earned_value"] or {}).get("spi"),
                        (found["earned_value"] or {}).get("eac_typical"),
                        (found["earned_value"] or {}).get("vac"),
                        (found["earned_value"] or {}).get("tcpi"),
                        found["explain"].split(": ", 1)[-1],
                    ]
                    for project_id, found in health["projects"].items()
                ),
                empty="no project has a baseline",
            ),
        )
    )
    return fragment("risks", report["cut"]["position"], parts)


def projects(report: dict[str, Any]) -> str:
    """Every project with its status and stage, each a link to its scorecard."""
    listing = report["projects"]
    items = listing.get("items", [])
    parts = [subtitle(_subtitle(report))]
    parts.append(
        tiles(
            [("projects", str(listing["total"]))]
            + [(stage, str(count)) for stage, count in listing["by_stage"].items()]
        )
    )
    parts.append(
        table(
            (
                "project:html",
                "name",
                "status:html",
                "stage",
                "programme",
                "category",
                "planned start",
                "planned end",
            ),
            (
                [
                    project_link(x["project_id"]),
                    x["name"],
                    status_badge(x["status"]),
                    x["stage"],
                    x.get("programme") or "—",
                    x.get("category") or "—",
                    x["planned_start"],
                    x["planned_end"],
                ]
                for x in items
            ),
            empty="no projects yet",
        )
    )
    if listing.get("more"):
        parts.append(notice(f"{listing['more']} more projects not listed"))
    return fragment("projects", report["cut"]["position"], parts)


def status_badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#999")
    return f'<span class="rag" style="background:{colour}">{esc(status)}</span>'


def scorecard(card: dict[str, Any]) -> str:
    """One project's scorecard: the report's own sections (`portfolio report --project`),
    as tables, with its charts."""
    project = card["project"]
    trail = "/audit?" + urlencode({"project": project["project_id"]})
    parts = [
        subtitle(f"log position {card['cut']['position']}, as of {card['generated_at'][:19]}Z"),
        f'<div class="note"><a href="/projects">all projects</a> · '
        f'<a href="/roadmap">roadmap</a> · <a href="{esc(trail)}">audit trail</a></div>',
        f"<h2>{esc(project['project_id'])} {esc(project.get('name', ''))}</h2>",
    ]
    charts = "".join(chart(title, svg) for title, svg in charts_of(card))
    if charts:
        parts.append(f'<div class="charts">{charts}</div>')
    for found in sections(card):
        spec = [f"{c.name}:{c.kind}" if c.kind != "text" else c.name for c in found.columns]
        parts.append(
            section(
                found.title,
                *([f'<div class="note">{esc(found.note)}</div>'] if found.note else []),
                table(spec, found.rows, empty="none"),
            )
        )
    return fragment("projects", card["cut"]["position"], parts)


def roadmap(report: dict[str, Any]) -> str:
    """Projects on a timeline by programme: baseline against forecast, in status colours;
    each row a link to the project's scorecard."""
    items = report["projects"].get("items", [])
    slips = {x["project_id"]: x.get("schedule_slip_days") for x in report["health"]["projects"]}
    today = date.fromisoformat(report["generated_at"][:10])
    parts = [
        subtitle(_subtitle(report)),
        '<div class="note">dashed outline: the baseline (planned start to end); bar: the '
        "forecast (actual start, completion, or the planned end moved by the schedule slip "
        "of earned value), in the colour of the status; click a project for its "
        "scorecard</div>",
        chart("Roadmap by programme", roadmap_svg(items, slips, project_href, today)),
    ]
    late = [[project_link(pid), slip] for pid, slip in sorted(slips.items()) if slip and slip > 0]
    parts.append(
        section(
            "Forecast to finish late",
            table(("project:html", "slip (days):int"), late, empty="none forecast late"),
        )
    )
    return fragment("roadmap", report["cut"]["position"], parts)


BUDGET_VIEWS = ("pool", "project", "pool_project", "category", "fiscal_period")


def budget(
    pools: dict[str, Any] | None,
    rows: dict[str, Any] | None,
    by: str,
    position: int | None,
    problem: str = "",
) -> str:
    """The ledger's budget figures grouped `by`, and the burn chart of its pools."""
    parts = [subtitle(f"by {by}, log position {position}")]
    if pools is None or rows is None:
        parts.append(notice(f"no budget: {problem}", "warn"))
        return fragment("budget", position, parts)
    series = [{"pool_id": key, **row} for key, row in pools.items()]
    parts.append(chart("Budget burn (cumulative actual by pool)", burn_svg(series)))
    parts.append(
        table(
            (
                by,
                "currency",
                "amount:money",
                "allocated:money",
                "committed:money",
                "actual:money",
                "remaining:money",
                "forecast:money",
                "burn/month:money",
            ),
            (
                [
                    key,
                    row["currency"],
                    row["amount"],
                    row["allocated"],
                    row["committed"],
                    row["actual"],
                    row["remaining"],
                    row["forecast_at_completion"],
                    row["burn_rate"],
                ]
                for key, row in rows.items()
            ),
            empty="no budget pools",
        )
    )
    return fragment("budget", position, parts)


def budget_views(by: str) -> str:
    views = " ".join(
        f'<a href="?by={v}"{" class=current" if v == by else ""}>{esc(v)}</a>' for v in BUDGET_VIEWS
    )
    return f'<div class="views">group by: {views}</div>'


def capacity(cells: list[dict[str, Any]] | None, position: int | None, problem: str = "") -> str:
    """The ledger's capacity against demand by role and month."""
    parts = [subtitle(f"log position {position}")]
    if cells is None:
        parts.append(notice(f"no capacity: {problem}", "warn"))
        return fragment("capacity", position, parts)
    parts.append(chart("Utilisation by role and month", capacity_svg(cells)))
    over = [c for c in cells if c["over_allocated"]]
    parts.append(
        section(
            f"Over-allocated role-months ({len(over)})",
            table(
                ("role", "month", "net capacity:number", "demand:number", "utilisation:pct"),
                (
                    [
                        c["role"],
                        c["period"],
                        c["net_capacity"],
                        c["demand"],
                        c["utilisation_percent"],
                    ]
                    for c in over
                ),
                empty="none",
            ),
        )
    )
    return fragment("capacity", position, parts)


def alerts(found: list[dict[str, Any]] | None, position: int | None, problem: str = "") -> str:
    """The risk monitor's open alerts, each with its rule, figures and audit command."""
    parts = [subtitle(f"log position {position}")]
    if found is None:
        parts.append(notice(f"no alerts: {problem}", "warn"))
        return fragment("alerts", position, parts)
    counts: dict[str, int] = {}
    for alert in found:
        counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
    parts.append(
        tiles([("open alerts", str(len(found)))] + [(k, str(v)) for k, v in counts.items()])
    )
    parts.append(
        table(
            (
                "severity:html",
                "metric",
                "subject",
                "project:html",
                "value now",
                "threshold",
                "since",
                "why:long",
            ),
            (
                [
                    severity(a["severity"]),
                    a["metric"],
                    a["subject_id"],
                    project_link(a.get("project_id")),
                    # The current value, with enough digits to see why it holds.
                    str(a.get("value_shown") or a["value"]),
                    f"{a['threshold']:g} (clears at {a['clear_at']:g}, "
                    f"rev {a.get('rule_revision', 1)})",
                    a.get("raised_at") or "",
                    f"{a['message']} — {a['audit_link']}",
                ]
                for a in found
            ),
            empty="no open alerts",
        )
    )
    return fragment("alerts", position, parts)


def project_link(project_id: str | None) -> str:
    """A link to the project's page (alerts on pools and role-months have none)."""
    if not project_id:
        return ""
    return f'<a href="{esc(project_href(project_id))}">{esc(project_id)}</a>'


#: The audit search form's fields: (query parameter, label, placeholder).
AUDIT_FIELDS = (
    ("project", "project", "CRM-2027"),
    ("aggregate", "aggregate type", "project"),
    ("actor", "actor", "cfo"),
    ("type", "event type", "ProjectApproved"),
    ("correlation", "correlation id", ""),
    ("since", "recorded since", "2027-03-01 or -7d"),
    ("until", "recorded until", "now"),
    ("occurred_until", "occurred until", "2027-03-01"),
    ("after", "after position", "0"),
    ("limit", "limit", "100"),
)


def audit_form(params: dict[str, str]) -> str:
    fields = "".join(
        f'<label>{esc(label)}<input name="{name}" value="{esc(params.get(name, ""))}" '
        f'placeholder="{esc(hint)}"></label>'
        for name, label, hint in AUDIT_FIELDS
    )
    return (
        f'<form class="search" method="get" action="/audit">{fields}<button>search</button></form>'
    )


def audit(
    params: dict[str, str],
    entries: Sequence[AuditEntry] | None,
    next_after: int | None,
    problem: str = "",
    position: int | None = None,
) -> str:
    """The search form and the matching entries of the audit trail, oldest first."""
    parts = []
    if entries is None:
        parts.append(notice(problem, "error"))
        return fragment("audit", position, parts)
    parts.append(
        table(
            (
                "position:int",
                "recorded",
                "occurred",
                "event",
                "aggregate",
                "actor",
                "source",
                "details:long",
            ),
            (
                [
                    e.position,
                    f"{e.recorded_at:%Y-%m-%d %H:%M:%S}",
                    f"{e.occurred_at:%Y-%m-%d %H:%M:%S}",
                    e.event_type,
                    f"{e.aggregate_type}/{e.aggregate_id}",
                    e.actor,
                    e.source,
                    _details(e.payload),
                ]
                for e in entries
            ),
            empty="no matching entries",
        )
    )
    if next_after is not None:
        more = urlencode({**params, "after": next_after})
        parts.append(f'<div class="more"><a href="/audit?{esc(more)}">next page</a></div>')
    return fragment("audit", position, parts)


def _details(payload: dict[str, Any], limit: int = 160) -> str:
    text = ", ".join(
        f"{k}: {_value_text(v)}" for k, v in payload.items() if v not in (None, "", [], {})
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_text(value: Any) -> str:
    """A payload value as text: lists and mappings spelled out (`[...]`), never a repr."""
    if isinstance(value, dict | list):
        return f"[{formatting.text_of(value)}]"
    return formatting.text_of(value)


def error_page(status: int, title: str, message: str) -> str:
    """A 4xx/5xx answer: what went wrong and where to go, never a stack trace."""
    links = " ".join(f'<a href="/{name}">{esc(label)}</a>' for name, label in PAGES.items())
    return fragment(
        "error",
        None,
        [
            f'<div class="notice error"><strong>{status} {esc(title)}</strong>: {esc(message)}'
            "</div>",
            f'<div class="note">pages: {links}</div>',
        ],
    )
