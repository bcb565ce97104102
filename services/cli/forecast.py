"""`portfolio forecast`: the seeded Monte Carlo forecast of the portfolio (or one project,
or one programme): P10/P50/P80/P90 of the cost at completion, the probability of staying
within each budget pool and each objective's funding, and the reserve needed at P80 beside
today's EMV reserve. The seed and iterations are printed with it: the same seed at the same
log position gives the same answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from shared import render, times
from shared.client import PortfolioClient

from .connection import run
from .output import EXIT_USAGE, JsonFlag, UrlOption, console, errors, fail, refused


def forecast(
    project: Annotated[str | None, typer.Option(help="One project")] = None,
    programme: Annotated[str | None, typer.Option(help="One programme")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, the same forecast")] = 0,
    iterations: Annotated[int, typer.Option(help="Iterations (100 to 200,000)")] = 10_000,
    include_pipeline: Annotated[
        bool, typer.Option(help="Also proposed and under-review projects")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option(help="As recorded by then (ISO time, 'now', -2h, -7d)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv, md or html")] = "table",
    as_json: JsonFlag = False,
    url: UrlOption = None,
) -> None:
    """The probabilistic portfolio forecast (Monte Carlo over cost, finish and benefits)."""
    fmt = "json" if as_json else fmt
    if fmt not in render.FORMATS:
        fail(
            EXIT_USAGE,
            f"[red]unsupported format {escape(repr(fmt))}[/]; one of {', '.join(render.FORMATS)}",
        )
    if project is not None and programme is not None:
        fail(EXIT_USAGE, "[red]--project or --programme, not both[/]")
    if not 100 <= iterations <= 200_000:
        fail(EXIT_USAGE, f"[red]--iterations {iterations}: between 100 and 200,000[/]")
    if not 0 <= seed < 2**32:
        fail(EXIT_USAGE, f"[red]--seed {seed}: between 0 and 4294967295[/]")
    body: dict[str, Any] = {
        "seed": seed,
        "iterations": iterations,
        "include_pipeline": include_pipeline,
    }
    if project is not None:
        body["project_id"] = project
    if programme is not None:
        body["programme_id"] = programme
    if as_of is not None:
        try:
            body["as_of"] = times.parse_time(as_of, datetime.now(UTC)).isoformat()
        except ValueError as error:
            fail(EXIT_USAGE, f"[red]{escape(str(error))}[/]")

    async def work(client: PortfolioClient) -> Any:
        return await client.query("reporting", "forecast", body, timeout=120)

    answer: dict[str, Any] = run(work, url)
    refused(answer)
    if fmt == "table":
        render.print_report(answer, console)
        errors.print(
            f"seed {answer['seed']}, {answer['iterations']:,} iterations, log position "
            f"{answer['cut']['position']}: the same three give the same forecast"
        )
        return
    print(render.render(answer, fmt), end="")
