"""The formats a report renders to: table (rich), json, csv, md and html. Every format
but json renders the same `sections`. CSV on stdout puts them one after the other, each with its own
header row, and every row starts with its section name (`exports` writes one file per
table, and xlsx). HTML is one self-contained file:
inline CSS and the inline SVG charts (charts.py), no scripts and nothing fetched from the
network."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from shared import formatting
from shared.render.charts import charts_of
from shared.render.sections import sections
from shared.render.values import NUMERIC, RAG_HTML, Column, esc, pretty, raw, subtitle_of, title_of

#: The text formats; `xlsx` (and csv as a folder of files) are written by `exports`.
FORMATS = ("table", "json", "csv", "md", "html")
FILE_FORMATS = (*FORMATS, "xlsx")
RAG_COLOURS = {"red": "bold red", "amber": "yellow", "green": "green", "not_available": "dim"}


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
    """Decimals as strings at a fixed scale: money 2 places, ratios 4 (shared.formatting)."""
    return json.dumps(formatting.tidy_json(report), indent=2) + "\n"


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


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{margin:0 0 4px}h2{margin:28px 0 6px;font-size:18px}.sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:6px 0 4px}th,td{border-bottom:1px solid #ddd;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#555;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{border:1px solid #e4e4e4;padding:8px}
.chart h3{margin:0 0 6px;font-size:15px}.rag{color:#fff;border-radius:3px;padding:0 6px}
"""


def _html(report: dict[str, Any], width: int) -> str:
    body = [
        f"<h1>{esc(title_of(report))}</h1>",
        f'<div class="sub">{esc(subtitle_of(report))}</div>',
    ]
    charts = charts_of(report)
    if charts:
        body.append('<div class="charts">')
        body += [f'<div class="chart"><h3>{esc(t)}</h3>{svg}</div>' for t, svg in charts]
        body.append("</div>")
    for section in sections(report):
        body.append(f'<h2 id="{esc(section.name)}">{esc(section.title)}</h2>')
        if section.note:
            body.append(f'<div class="note">{esc(section.note)}</div>')
        if not section.rows:
            body.append('<div class="note"><em>none</em></div>')
            continue
        head = "".join(f"<th>{esc(c.name)}</th>" for c in section.columns)
        rows = []
        for row in section.rows:
            cells = "".join(_html_cell(v, c) for v, c in zip(row, section.columns, strict=True))
            rows.append(f"<tr>{cells}</tr>")
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title_of(report))}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _html_cell(value: Any, column: Column) -> str:
    text = esc(pretty(value, column.kind))
    if column.kind == "rag" and value in RAG_HTML:
        return f'<td><span class="rag" style="background:{RAG_HTML[value]}">{text}</span></td>'
    return f'<td class="n">{text}</td>' if column.kind in NUMERIC else f"<td>{text}</td>"


RENDERERS: dict[str, Callable[[dict[str, Any], int], str]] = {
    "table": _table,
    "json": _json,
    "csv": _csv,
    "md": _md,
    "html": _html,
}
