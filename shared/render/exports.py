"""A report as files a spreadsheet or a dataframe loads: `xlsx` (one sheet per table,
numbers as numbers, money formatted) and a folder of csv files (one per table, a header
row each). The tables are the report's `sections`, the same as every other format."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared import formatting
from shared.render.sections import sections
from shared.render.values import NUMERIC, Section, raw, subtitle_of, title_of

#: Spreadsheet number formats by column kind (money: its cents, thousands separated).
XLSX_FORMATS = {
    "money": "#,##0.00",
    "int": "#,##0",
    "number": "#,##0.##",
    "pct": '0.0"%"',
    "index": "0.0000",
}
SHEET_NAME = re.compile(r"[\[\]:*?/\\]")


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "table"


def csv_files(report: dict[str, Any]) -> dict[str, str]:
    """File name -> csv text, one per table: a header row, then its rows (money with its
    cents, undefined empty)."""
    files: dict[str, str] = {}
    for section in sections(report):
        name = _file_stem(section.name)
        stem, n = name, 2
        while f"{name}.csv" in files:
            name, n = f"{stem}_{n}", n + 1
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.name for c in section.columns])
        for row in section.rows:
            writer.writerow([raw(v) for v in row])
        files[f"{name}.csv"] = out.getvalue()
    return files


def write_csv_dir(report: dict[str, Any], folder: Path) -> list[Path]:
    """Writes `csv_files` into `folder` (created if missing); the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in csv_files(report).items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _cell(value: Any, kind: str) -> Any:
    """A spreadsheet cell: a number for numeric columns (money stays exact to the cent),
    text for the rest; None leaves the cell empty."""
    if value is None or value == "":
        return None
    if kind in NUMERIC:
        number = formatting.decimal_of(value)
        if number is not None:
            if kind in ("int",) and number == number.to_integral_value():
                return int(number)
            return float(number.quantize(Decimal("0.0001")))
    if isinstance(value, list | dict | tuple):
        return formatting.text_of(value)
    return value if isinstance(value, int | float) else str(value)


def _sheet_title(name: str, taken: set[str]) -> str:
    title = SHEET_NAME.sub("_", name)[:31] or "table"
    base, n = title, 2
    while title.lower() in taken:
        suffix = f"_{n}"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def xlsx_bytes(report: dict[str, Any]) -> bytes:
    """The report as an Excel workbook: a first sheet naming the report and its cut, then
    one sheet per table with a bold header row, numbers as numbers (money `#,##0.00`)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.worksheets[0])
    about = book.create_sheet("report")
    about.append([title_of(report)])
    about.append([subtitle_of(report)])
    about["A1"].font = Font(bold=True, size=14)
    taken = {"report"}
    tables: list[Section] = sections(report)
    about.append([])
    about.append(["sheet", "table", "rows"])
    for section in tables:
        sheet = book.create_sheet(_sheet_title(section.name, taken))
        about.append([sheet.title, section.title, len(section.rows)])
        sheet.append([c.name for c in section.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in section.rows:
            sheet.append([_cell(v, c.kind) for v, c in zip(row, section.columns, strict=True)])
        for index, column in enumerate(section.columns, start=1):
            fmt = XLSX_FORMATS.get(column.kind)
            letter = sheet.cell(row=1, column=index).column_letter
            width = max([len(column.name)] + [len(raw(r[index - 1])) for r in section.rows[:200]])
            sheet.column_dimensions[letter].width = min(60, max(8, width + 2))
            if fmt is None:
                continue
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = fmt
        if section.note:
            sheet.append([])
            sheet.append([section.note])
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
