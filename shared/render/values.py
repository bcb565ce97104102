"""What every rendering shares: a report as sections of one table each (`Section`,
`Column`), how a value reads in a cell (`pretty`, `raw`), the report's title, and the rows
several sections repeat."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import formatting

NUMERIC = frozenset({"money", "int", "pct", "index", "number"})
RAG_HTML = {"red": "#d9534f", "amber": "#f0ad4e", "green": "#5cb85c", "not_available": "#999"}


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


def cols(*spec: str) -> tuple[Column, ...]:
    """Columns from 'name' or 'name:kind'."""
    return tuple(Column(*s.split(":", 1)) if ":" in s else Column(s) for s in spec)


#: The columns of `risk_row`.
RISK_COLUMNS = cols(
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
)


def cut_rows(cut: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    return [
        [f"{prefix}as of (recorded)", cut.get("as_of") or "now"],
        [f"{prefix}occurred as of (business time)", cut.get("occurred_as_of") or "—"],
        [f"{prefix}log position", cut["position"]],
        [f"{prefix}events folded", cut["events"]],
        [f"{prefix}events skipped", cut["skipped"]],
    ]


def risk_row(x: dict[str, Any]) -> list[Any]:
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


def rank_change(rank: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    moved = previous - rank
    return f"+{moved}" if moved > 0 else str(moved) if moved else "="


def money(value: Any, currency: str | None = None) -> str:
    """Whole currency units for people (csv, json and xlsx keep the cents)."""
    return formatting.money_text(value, currency)


def total_text(value: Any) -> str:
    return money(value)


def pretty(value: Any, kind: str) -> str:
    """A cell for people (table, md, html), by `shared.formatting`; csv keeps the raw
    value. Undefined is `n/a`; lists and mappings read as text, never as a repr."""
    if value is None or value == "":
        return formatting.NA if kind in NUMERIC else "—"
    if isinstance(value, list | tuple | dict):
        return formatting.text_of(value)
    if kind == "time":
        try:
            return f"{datetime.fromisoformat(str(value)):%Y-%m-%d %H:%M:%S}"
        except ValueError:
            return str(value)
    if kind in NUMERIC and formatting.decimal_of(value) is None:
        return str(value)
    match kind:
        case "money":
            return formatting.money_text(value)
        case "pct":
            return formatting.percent_text(value)
        case "index":
            return formatting.ratio_text(value)
        case "number" | "int":
            return formatting.number_text(value)
    return formatting.text_of(value)


def raw(value: Any) -> str:
    """A csv cell: the value as the JSON has it (money with its cents), lists `;`-joined,
    mappings as `key: value` pairs; empty when undefined."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(map(formatting.text_of, value))
    if isinstance(value, dict):
        return formatting.text_of(value)
    return str(value)


def title_of(report: dict[str, Any]) -> str:
    match report.get("kind"):
        case "project":
            return f"Project scorecard {report['project']['project_id']}"
        case "diff":
            return "Portfolio diff"
        case "forecast":
            return "Portfolio forecast"
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


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
