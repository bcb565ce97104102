"""What every rendering shares: a report as sections of one table each (`Section`,
`Column`), how a value reads in a cell (`pretty`, `raw`), the report's title, and the rows
several sections repeat."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

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


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def money(value: Any) -> str:
    """Whole currency units for people (csv and json keep the cents)."""
    amount = _decimal(value) if value is not None else None
    if amount is None:
        return "—" if value is None else str(value)
    return f"{amount.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def total_text(value: Any) -> str:
    return money(value)


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
            return money(number)
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


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
