"""`portfolio report` (the portfolio, a project's scorecard or a diff, at any point in
time, in any format) and `portfolio lessons` (what closed projects taught)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shared import render, times
from shared.client import PortfolioClient
from shared.render import exports
from shared.render.formats import FILE_FORMATS
from shared.settings import CliSettings

from .connection import SOURCE, identity, run
from .output import EXIT_USAGE, ActorOption, JsonFlag, UrlOption, console, errors, fail, refused


def report(
    as_of: Annotated[
        str | None, typer.Option(help="As recorded by then (ISO time, 'now', -2h, -7d)")
    ] = None,
    occurred_as_of: Annotated[
        str | None, typer.Option(help="Only facts that had occurred by then (business time)")
    ] = None,
    project: Annotated[str | None, typer.Option(help="One project's scorecard")] = None,
    diff: Annotated[
        tuple[str, str] | None, typer.Option(help="What changed between two times: FROM TO")
    ] = None,
    business_time: Annotated[
        bool, typer.Option(help="--diff by business time (occurred_at), not recorded time")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="table, json, csv, md, html or xlsx (needs --output)")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write the report to this file; with csv, a folder (one file per table) "
            "unless the name ends in .csv"
        ),
    ] = None,
    publish: Annotated[
        bool, typer.Option(help="Put the current report on the record (PortfolioReportPublished)")
    ] = False,
    rationale: Annotated[str | None, typer.Option(help="Why, when publishing")] = None,
    actor: ActorOption = None,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """The portfolio report (or a project's scorecard, or a diff), at any point in time."""
    fmt = "json" if as_json else fmt
    if fmt not in FILE_FORMATS:
        fail(
            EXIT_USAGE,
            f"[red]unsupported format {escape(repr(fmt))}[/]; one of {', '.join(FILE_FORMATS)}",
        )
    if fmt == "xlsx" and output is None:
        fail(EXIT_USAGE, "[red]--format xlsx needs --output FILE.xlsx[/]")
    now = datetime.now(UTC)
    body: dict[str, Any] = {}
    try:
        for name, text in (("as_of", as_of), ("occurred_as_of", occurred_as_of)):
            if text is not None:
                body[name] = times.parse_time(text, now).isoformat()
        if diff is not None:
            body["diff_from"], body["diff_to"] = (
                times.parse_time(t, now).isoformat() for t in diff
            )
            body["diff_by"] = "occurred" if business_time else "recorded"
    except ValueError as error:
        fail(EXIT_USAGE, f"[red]{escape(str(error))}[/]")
    if project is not None:
        body["project_id"] = project
    if diff is not None and (as_of or occurred_as_of or project):
        fail(EXIT_USAGE, "[red]--diff takes its two times only (no --as-of or --project)[/]")
    if publish and (body or not rationale):
        fail(EXIT_USAGE, "[red]--publish needs --rationale; it publishes the current report[/]")
    who = identity(actor, None, CliSettings())

    async def work(client: PortfolioClient) -> Any:
        if publish:
            request = {"rationale": rationale, "actor": who.actor, "source": SOURCE}
            return await client.control("reporting", "publish", request, timeout=60)
        return await client.query("reporting", "report", body, timeout=60)

    answer: dict[str, Any] = run(work, url)
    refused(answer)
    if publish:
        appended = answer["appended"]
        errors.print(f"[bold green]published[/] at log position {appended['position']}")
        answer = answer["report"]
    if output is None and fmt == "table":
        render.print_report(answer, console)
        return
    if output is not None and fmt in ("xlsx", "csv"):
        _export(answer, fmt, output)
        return
    text = render.render(answer, fmt)
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(EXIT_USAGE, f"[red]cannot write {escape(str(output))}[/]: {escape(str(error))}")
    errors.print(f"wrote {escape(str(output))} ({fmt}, {len(text.encode())} bytes)")


def _export(answer: dict[str, Any], fmt: str, output: Path) -> None:
    """xlsx to a file; csv to a folder of one file per table (or one file named .csv)."""
    try:
        if fmt == "xlsx":
            data = exports.xlsx_bytes(answer)
            output.write_bytes(data)
            errors.print(f"wrote {escape(str(output))} (xlsx, {len(data)} bytes)")
            return
        if output.suffix.lower() == ".csv" and not output.is_dir():
            text = render.render(answer, "csv")
            output.write_text(text, encoding="utf-8")
            errors.print(f"wrote {escape(str(output))} (csv, every table, {len(text)} bytes)")
            return
        written = exports.write_csv_dir(answer, output)
    except OSError as error:
        fail(EXIT_USAGE, f"[red]cannot write {escape(str(output))}[/]: {escape(str(error))}")
    errors.print(f"wrote {len(written)} csv files (one per table) to {escape(str(output))}")


def lessons(
    search: Annotated[
        str | None, typer.Option(help="Words that must all appear (title, text, project)")
    ] = None,
    project: Annotated[str | None, typer.Option(help="One project's lessons")] = None,
    category: Annotated[str | None, typer.Option(help="One category (any case)")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, the latest")] = 500,
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """Lessons learned by closed projects, searchable."""
    body = {"search": search, "project_id": project, "category": category, "limit": limit}

    async def work(client: PortfolioClient) -> Any:
        wanted = {k: v for k, v in body.items() if v is not None}
        return await client.query("reporting", "lessons", wanted, timeout=60)

    answer: dict[str, Any] = run(work, url)
    refused(answer)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    table = Table("project", "lesson", "category", "title and description", "recommendation")
    for found in answer["lessons"]:
        table.add_row(
            f"{escape(found['project_id'])}\n[dim]{escape(found['project_status'])}[/]",
            escape(found["lesson_id"]),
            escape(found["category"]),
            f"[bold]{escape(found['title'])}[/]\n{escape(found['description'])}",
            escape(found["recommendation"]),
        )
    console.print(table)
    shown = len(answer["lessons"])
    more = f" (the latest {shown} shown)" if shown < answer["total"] else ""
    console.print(f"{answer['total']} lessons{more}")
